"""Mutation testing of the core (`make mutation`): mutmut in a snapshot of the tree, the score per module.

    python -m tests.mutation            # snapshot into build/mutation/, run mutmut there, print the table
    python -m tests.mutation --report   # the table of the last run only

The snapshot puts pipelines/ at src/smart_hf/pipelines/, where it is installed, so that mutmut (configured in
pyproject.toml's [tool.mutmut]) names the pipeline's mutants after the module the tests import; it also keeps
the run on one version of the files while the working tree changes, and marks the functions outside SCOPE
`# pragma: no mutate block`, so that mutmut neither generates their mutants nor rewrites them (a file of
thousands of mutated copies is slow to import and to parse: an export parses the pipeline's file). Each mutant
runs only the tests that call the function it mutates. Mutants listed in tests/mutation_equivalent.txt
(`name :: a piece of its mutated code`, checked against the snapshot) behave like the original code and count
apart from the score.
"""

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import libcst

REPO = Path(__file__).resolve().parents[1]
STAGE = REPO / "build" / "mutation"
EQUIVALENT_FILE = REPO / "tests" / "mutation_equivalent.txt"
# The functions of the core per module ("*": all of it; a method is "Classǁmethod").
# Left out: argument checks and messages (SmartConfig.check, ...), model cards, Hub pushes, loading helpers.
SCOPE = {
    "smart_hf.smart": [f"SmartRegularizerǁ{name}" for name in ("__init__", "from_config", "weight_at")]
    + [
        f"SmartRegularizerǁ{name}"
        for name in ("sample_weights", "is_active", "score_matching_loss", "__call__")
    ]
    + ["_weighted_mse"],
    "smart_hf.losses": ["*"],
    "smart_hf.training.gan": [
        "register_model_hooks",
        "checkpoint_state",
        "restore_progress",
        "averaged_generator",
    ],
    "smart_hf.training.checkpoints": ["*"],
    "smart_hf.hub": ["export_pipeline", "validate_export", "generator_folders", "load_generator"],
    "smart_hf.pipelines.smart_one_step.pipeline": ["SmartOneStepPipelineǁprepare_class_labels"]
    + ["SmartOneStepPipelineǁrefine"],
    "smart_hf.scores": ["ScoreFunctionǁsignal_and_noise_scales", "ScoreFunctionǁadd_noise"]
    + ["GaussianMixtureScoreǁpredict_noise", "ModelScoreǁpredict_noise"],
    "smart_hf.diffusion_gan": [
        f"DiffusionAugmentǁ{name}"
        for name in ("__call__", "diffuse", "adjust", "update", "schedule", "draw_t_list")
    ],
    "smart_hf.masked_gan": [
        f"BalancedSpectralMaskǁ{name}" for name in ("__call__", "update", "remove_bands", "radial_bands")
    ]
    + ["ShiftedSpatialMaskǁ__call__", "ShiftedSpatialMaskǁmask"],
    "smart_hf.nice": [
        f"NICERegularizerǁ{name}" for name in ("consistency_loss", "update", "adjust", "_modulate")
    ],
    "smart_hf.nats": ["refine_samples"]
    + [
        f"NATSRefinerǁ{name}"
        for name in ("refine", "regression_loss", "weight_at", "step_weights", "is_active")
    ],
    "smart_hf.training.run_folder": ["run_identity", "run_id", "claim_output_dir"],
}
# The test files each module's mutants run (of them, only the tests that call the mutated function).
TESTS = {
    "smart_hf.smart": [
        "tests/smart_hf/test_smart.py",
        "tests/smart_hf/test_losses.py",
        "tests/smart_hf/test_smart_variants.py",
    ],
    "smart_hf.losses": [
        "tests/smart_hf/test_losses.py",
        "tests/smart_hf/test_nice.py",
        "tests/smart_hf/test_nats.py",
        "tests/smart_hf/test_smart_variants.py",
    ],
    "smart_hf.training.gan": ["tests/training/test_ema.py"],
    "smart_hf.training.checkpoints": ["tests/training/test_checkpoints.py", "tests/training/test_ema.py"],
    "smart_hf.hub": [
        "tests/smart_hf/test_hub.py",
        "tests/smart_hf/test_model_card.py",
        "tests/smart_hf/test_push.py",
        "tests/smart_hf/test_nats.py",
    ],
    "smart_hf.pipelines.smart_one_step.pipeline": [
        "tests/pipelines/test_pipeline.py",
        "tests/smart_hf/test_nats.py",
    ],
    "smart_hf.scores": ["tests/smart_hf/test_scores.py", "tests/smart_hf/test_smart.py"],
    "smart_hf.diffusion_gan": ["tests/smart_hf/test_diffusion_gan.py"],
    "smart_hf.masked_gan": ["tests/smart_hf/test_masked_gan.py"],
    "smart_hf.nice": ["tests/smart_hf/test_nice.py"],
    "smart_hf.nats": ["tests/smart_hf/test_nats.py"],
    "smart_hf.training.run_folder": ["tests/training/test_checkpoints.py", "tests/training/test_faults.py"],
}
STATUS = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    36: "timeout",
    24: "timeout",
}
STATUS |= {-24: "timeout", 152: "timeout", 255: "timeout"}


def patterns(modules: list[str] | None = None) -> list[str]:
    """mutmut's mutant-name globs for SCOPE (or its `modules`, named by their last part, e.g. "smart"):
    `module.x_function__mutmut_N`, `module.xǁClassǁmethod__mutmut_N`."""
    found = []
    for module, functions in selected(modules).items():
        for function in functions:
            prefix = "xǁ" if "ǁ" in function else "x_"
            found += [f"{module}.{prefix}{function}__mutmut_*"] if function != "*" else [f"{module}.*"]
    return found


def in_scope(name: str, modules: list[str] | None = None) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns(modules))


def selected(modules: list[str] | None) -> dict[str, list[str]]:
    """The modules of SCOPE named in `modules` (by their last part, e.g. "smart"; "losses:r1_penalty" names
    functions of one, comma-separated), with their functions; all of SCOPE without `modules`."""
    wanted: dict[str, list[str]] = {}
    for entry in modules or []:
        name, _, functions = entry.partition(":")
        wanted.setdefault(name, []).extend(functions.split(",") if functions else [])
    return {
        module: wanted.get(module.rsplit(".", 1)[-1]) or functions
        for module, functions in SCOPE.items()
        if not modules or module.rsplit(".", 1)[-1] in wanted
    }


def module_file(module: str) -> Path:
    """A module's file, relative to the snapshot (where pipelines/ sits inside the package)."""
    return Path("src", *module.split(".")).with_suffix(".py")


def mutmut_settings(pyproject: str, modules: list[str] | None = None) -> str:
    """pyproject.toml with [tool.mutmut]'s files and test selection narrowed to `modules` and their test files
    (generating mutants for the other files takes minutes)."""
    files = [str(module_file(module)) for module in selected(modules)]
    tests = sorted({test for module in selected(modules) for test in TESTS[module]})
    for key, value in (("only_mutate", files), ("pytest_add_cli_args_test_selection", tests)):
        pattern = rf"^{key} = \[.*?\]$"
        if not re.search(pattern, pyproject, flags=re.MULTILINE | re.DOTALL):
            raise ValueError(f"pyproject.toml's [tool.mutmut] has no `{key} = [...]`.")
        pyproject = re.sub(
            pattern, f"{key} = {json.dumps(value)}", pyproject, count=1, flags=re.MULTILINE | re.DOTALL
        )
    return pyproject


class OutOfScopeMarker(libcst.CSTTransformer):
    """Adds `# pragma: no mutate block` to the header of each function and method that `functions` (SCOPE's
    names: "function", "Classǁmethod", "*") leaves out; nested functions belong to their outer one."""

    PRAGMA = "# pragma: no mutate block"

    def __init__(self, functions: list[str]):
        super().__init__()
        self.functions = functions
        self.classes: list[str] = []
        self.depth = 0  # functions entered

    def visit_ClassDef(self, node: libcst.ClassDef) -> None:
        self.classes.append(node.name.value)

    def leave_ClassDef(self, original: libcst.ClassDef, updated: libcst.ClassDef) -> libcst.ClassDef:
        self.classes.pop()
        return updated

    def visit_FunctionDef(self, node: libcst.FunctionDef) -> None:
        self.depth += 1

    def leave_FunctionDef(
        self, original: libcst.FunctionDef, updated: libcst.FunctionDef
    ) -> libcst.FunctionDef:
        self.depth -= 1
        name = "ǁ".join([*self.classes, updated.name.value])
        if self.depth or "*" in self.functions or name in self.functions:
            return updated
        # The comment after the header's colon: a block's header, or the end of a one-line function.
        body = updated.body
        field = "header" if isinstance(body, libcst.IndentedBlock) else "trailing_whitespace"
        line_end = getattr(body, field)
        comment = f"{line_end.comment.value}  {self.PRAGMA}" if line_end.comment else self.PRAGMA
        line_end = line_end.with_changes(
            whitespace=libcst.SimpleWhitespace("  "), comment=libcst.Comment(comment)
        )
        return updated.with_changes(body=body.with_changes(**{field: line_end}))


def mark_out_of_scope(source: str, functions: list[str]) -> str:
    """`source` with the functions outside `functions` marked for mutmut to leave alone."""
    return libcst.parse_module(source).visit(OutOfScopeMarker(functions)).code


def stage(modules: list[str] | None = None) -> None:
    """A fresh snapshot of what the tests need, with the pipelines inside the package, and mutmut's settings
    narrowed to `modules`."""
    shutil.rmtree(STAGE, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("src", "tests", "training", "benchmarks", "pipelines"):
        shutil.copytree(REPO / name, STAGE / name, ignore=ignore)
    shutil.copytree(REPO / "pipelines", STAGE / "src" / "smart_hf" / "pipelines", ignore=ignore)
    (STAGE / "pyproject.toml").write_text(mutmut_settings((REPO / "pyproject.toml").read_text(), modules))
    # A mutated module imports mutmut's trampoline; exports copy the pipeline's (mutated) file, whose imports
    # they check.
    pipeline = STAGE / "src" / "smart_hf" / "pipelines" / "smart_one_step" / "pipeline.py"
    source = pipeline.read_text()
    allowed = re.search(r"^REMOTE_CODE_IMPORTS = .*$", source, flags=re.MULTILINE)
    pipeline.write_text(source.replace(allowed[0], allowed[0] + '\nREMOTE_CODE_IMPORTS += ("mutmut",)', 1))
    for module, functions in selected(modules).items():
        path = STAGE / module_file(module)
        path.write_text(mark_out_of_scope(path.read_text(), functions))
    # Tests compare an export's pipeline.py with pipelines/: in mutants/ both are the (mutated) installed one.
    (STAGE / "mutants").mkdir()
    (STAGE / "mutants" / "pipelines").symlink_to(Path("src", "smart_hf", "pipelines"))


def run(max_children: int, modules: list[str] | None, names: list[str] | None = None) -> float:
    """mutmut on the mutants of `modules`, or only on the mutants `names`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = ["nice", "-n", "10", sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)]
    start = time.monotonic()
    subprocess.run([*command, *(names or patterns(modules))], cwd=STAGE, env=env, check=True)
    return time.monotonic() - start


def equivalent_mutants() -> dict[str, str]:
    """{mutant name: a piece of its mutated code} from EQUIVALENT_FILE (`name :: code`, `#` comments)."""
    if not EQUIVALENT_FILE.is_file():
        return {}
    entries = {}
    for line in EQUIVALENT_FILE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, code = line.partition(" :: ")
            entries[name.strip()] = code.strip()
    return entries


def mutant_source(name: str) -> str:
    """The code of mutant `name` in the snapshot's mutated file (empty if it is not there)."""
    module, _, function = name.partition(".x")
    path = STAGE / "mutants" / module_file(module)
    if not path.is_file():
        path = path.with_suffix("") / "__init__.py"
    source = path.read_text() if path.is_file() else ""
    start = source.find(f"def x{function}(")
    if start < 0:
        return ""
    end = source.find("def x", start + 1)
    return source[start : end if end > 0 else len(source)]


def confirmed_equivalent(statuses: dict[str, str]) -> set[str]:
    """Listed mutants that survived and still are the listed code change (numbers move when a function's code
    changes: a listed name that now names another mutant is reported and scored as a survivor)."""
    confirmed = set()
    for name, code in equivalent_mutants().items():
        if statuses.get(name) in ("killed", "timeout"):
            print(
                f"warning: {name} is listed as equivalent, but a test caught it: remove it", file=sys.stderr
            )
        if statuses.get(name) != "survived":
            continue
        if code and " ".join(code.split()) in " ".join(mutant_source(name).split()):  # spaces as in the file
            confirmed.add(name)
        else:
            print(f"warning: {name} is no longer `{code}`: update {EQUIVALENT_FILE.name}", file=sys.stderr)
    return confirmed


def results(modules: list[str] | None = None) -> dict[str, str]:
    """Status of each mutant in scope, from mutmut's `.meta` files."""
    statuses, outside = {}, 0
    for meta in (STAGE / "mutants" / "src").rglob("*.py.meta"):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if in_scope(name, modules):
                statuses[name] = "not checked" if code is None else STATUS.get(code, "suspicious")
            else:
                outside += 1
    if outside:
        print(f"warning: {outside} mutants outside SCOPE: was the pragma ignored?", file=sys.stderr)
    return statuses


def table(statuses: dict[str, str]) -> str:
    equivalent = confirmed_equivalent(statuses)
    rows = {}
    for name, status in statuses.items():
        module = name.split(".x")[0]
        rows.setdefault(module, Counter())[
            status if not (status == "survived" and name in equivalent) else "eq"
        ] += 1
    header = (
        "| module | mutants | killed | survived | timeout | no tests | equivalent | not checked | score |"
    )
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    total = Counter()
    for module in sorted(rows) + ["total"]:
        counts = rows[module] if module != "total" else total
        total.update(counts if module != "total" else {})
        mutants = sum(counts.values())
        caught = counts["killed"] + counts["timeout"]
        scored = mutants - counts["eq"] - counts["not checked"]
        score = f"{100 * caught / scored:.1f}%" if scored else "-"
        lines.append(
            f"| {module} | {mutants} | {counts['killed']} | {counts['survived']} | {counts['timeout']} | "
            f"{counts['no tests']} | {counts['eq']} | {counts['not checked']} | {score} |"
        )
    return "\n".join(lines)


def main() -> None:
    global STAGE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="only print the table of the last run")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--survivors", action="store_true", help="also list the surviving mutants")
    parser.add_argument("--modules", nargs="+", help="only these modules of the scope, e.g. smart losses gan")
    parser.add_argument("--stage", type=Path, help=f"with --report: a snapshot other than {STAGE}")
    parser.add_argument(
        "--survivors_again",
        action="store_true",
        help="run only the last run's survivors again (after new tests); the table keeps its other results",
    )
    args = parser.parse_args()
    if args.stage:
        STAGE = args.stage
    previous, again = {}, []
    if args.survivors_again:  # mutant numbers stay as long as the mutated source files do not change
        previous = results(args.modules)
        equivalent = confirmed_equivalent(previous)
        left = ("survived", "no tests")
        again = sorted(name for name, s in previous.items() if s in left and name not in equivalent)
        if not again:
            parser.error("The last run left no survivors to run again.")
    if not args.report:
        stage(args.modules)
        seconds = run(args.max_children, args.modules, again)
        print(
            f"\nmutmut ran {seconds / 60:.1f} min ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} now)"
        )
    statuses = results(args.modules)
    if again:  # the mutants run again, over the last run's results
        statuses = previous | {name: statuses[name] for name in again if name in statuses}
    print(table(statuses))
    score_note = (
        "score = (killed + timeout) / (mutants - equivalent - not checked); 'no tests' (no selected test "
        "calls the function) count as survivors"
    )
    print(f"\n{score_note}")
    if args.survivors:
        equivalent = confirmed_equivalent(statuses)
        for name in sorted(
            n for n, s in statuses.items() if s in ("survived", "no tests") and n not in equivalent
        ):
            print(statuses[name], name)


if __name__ == "__main__":
    main()
