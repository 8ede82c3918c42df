"""`make mutation`'s configuration (tests/mutation.py): every module of the scope is mutated and tested, and a
run of some modules mutates and runs only theirs."""

import ast
import json
import re
from pathlib import Path

import pytest

from tests import mutation

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = (REPO / "pyproject.toml").read_text()


def setting(text: str, key: str) -> list[str]:
    """A [tool.mutmut] list that mutmut_settings wrote (as JSON, on one line)."""
    return json.loads(re.search(rf"^{key} = (\[.*\])$", text, flags=re.MULTILINE)[1])


def repository_file(module: str) -> Path:
    """A module's file in the repository (the pipelines sit outside src/)."""
    path = mutation.module_file(module)
    if "pipelines" in module:
        return REPO / "pipelines" / path.relative_to("src/smart_hf/pipelines")
    return REPO / path


def test_every_module_in_scope_is_mutated_and_runs_test_files_that_exist():
    assert mutation.SCOPE.keys() == mutation.TESTS.keys()
    full = mutation.mutmut_settings(PYPROJECT)
    for module in mutation.SCOPE:
        path = str(mutation.module_file(module))
        assert path in setting(full, "only_mutate") and path in PYPROJECT
        assert repository_file(module).is_file(), module
        assert all((REPO / test).is_file() for test in mutation.TESTS[module])
    all_tests = {test for tests in mutation.TESTS.values() for test in tests}
    assert setting(full, "pytest_add_cli_args_test_selection") == sorted(all_tests)


def test_a_partial_run_mutates_and_tests_only_its_modules():
    partial = mutation.mutmut_settings(PYPROJECT, ["nice", "losses:r1_penalty"])
    assert setting(partial, "only_mutate") == ["src/smart_hf/losses.py", "src/smart_hf/nice.py"]
    expected_tests = {*mutation.TESTS["smart_hf.nice"], *mutation.TESTS["smart_hf.losses"]}
    assert setting(partial, "pytest_add_cli_args_test_selection") == sorted(expected_tests)
    deselected = re.search(r"^pytest_add_cli_args = \[.*?\]$", PYPROJECT, flags=re.MULTILINE | re.DOTALL)[0]
    assert "--deselect" in deselected and deselected in partial  # the subprocess tests stay deselected
    assert mutation.patterns(["losses:r1_penalty"]) == ["smart_hf.losses.x_r1_penalty__mutmut_*"]
    assert mutation.in_scope("smart_hf.nice.xǁNICERegularizerǁupdate__mutmut_3", ["nice"])
    assert not mutation.in_scope("smart_hf.nice.xǁNICERegularizerǁcheck_settings__mutmut_1", ["nice"])


def test_functions_outside_the_scope_are_marked_for_mutmut_to_leave_alone():
    source = (
        "def kept(y):\n    def inner():\n        return 1\n    return y + inner()\n\n\n"
        "class Model:\n    def forward(self):  # noqa: D102\n        return 2\n\n"
        "    def check(\n        self,\n    ) -> int:\n        return 3\n\n\n"
        "def helper():\n    return 4\n"
    )
    marked = mutation.mark_out_of_scope(source, ["kept", "Modelǁcheck"])
    assert marked == source.replace(
        "def forward(self):  # noqa: D102", "def forward(self):  # noqa: D102  # pragma: no mutate block"
    ).replace("def helper():", "def helper():  # pragma: no mutate block")
    assert mutation.mark_out_of_scope(source, ["*"]) == source
    one_line = "class Protocol:\n    def __call__(self, x: int) -> int: ...\n"
    assert mutation.mark_out_of_scope(one_line, []) == one_line.replace(
        "...", "...  # pragma: no mutate block"
    )


@pytest.mark.parametrize("module", sorted(mutation.SCOPE))
def test_every_function_of_the_scope_exists_and_only_the_others_are_marked(module):
    """A misspelt SCOPE entry would leave its function unmutated without a word."""
    source, scope = repository_file(module).read_text(), mutation.SCOPE[module]
    functions = {}  # SCOPE's name -> the lines of the function's header
    for node in ast.parse(source).body:
        for inner in node.body if isinstance(node, ast.ClassDef) else [node]:
            if isinstance(inner, ast.FunctionDef):
                name = f"{node.name}ǁ{inner.name}" if inner is not node else inner.name
                functions[name] = range(inner.lineno, max(inner.body[0].lineno, inner.lineno + 1))
    assert "*" in scope or set(scope) <= functions.keys()
    marked = mutation.mark_out_of_scope(source, scope).splitlines()
    original = source.splitlines()
    assert len(marked) == len(original)
    changed = {number for number, (a, b) in enumerate(zip(original, marked, strict=True), start=1) if a != b}
    assert all(marked[number - 1].endswith("  # pragma: no mutate block") for number in changed)
    outside = {name for name in functions if "*" not in scope and name not in scope}
    assert {name for name, header in functions.items() if changed & set(header)} == outside


def test_listed_equivalents_count_apart_only_while_they_survive_as_the_listed_code(
    tmp_path, monkeypatch, capsys
):
    mutated = tmp_path / "mutants" / "src" / "smart_hf" / "nats.py"
    mutated.parent.mkdir(parents=True)
    mutated.write_text(
        "def x_f__mutmut_1(x):\n    return x.to(None)\n\ndef x_f__mutmut_2(x):\n    return x + 2\n\n"
        "def x_f__mutmut_3(x):\n    return x - 1\n"
    )
    listed = tmp_path / "equivalent.txt"
    listed.write_text(
        "# why\nsmart_hf.nats.x_f__mutmut_1 :: x.to(None)\nsmart_hf.nats.x_f__mutmut_2 :: x.to(None)\n"
        "smart_hf.nats.x_f__mutmut_3 :: x - 1\n"
    )
    monkeypatch.setattr(mutation, "STAGE", tmp_path)
    monkeypatch.setattr(mutation, "EQUIVALENT_FILE", listed)
    statuses = {f"smart_hf.nats.x_f__mutmut_{n}": status for n, status in ((1, "survived"), (2, "survived"))}
    statuses["smart_hf.nats.x_f__mutmut_3"] = "killed"
    assert mutation.confirmed_equivalent(statuses) == {"smart_hf.nats.x_f__mutmut_1"}
    warnings = capsys.readouterr().err
    assert "smart_hf.nats.x_f__mutmut_2 is no longer `x.to(None)`" in warnings
    assert "smart_hf.nats.x_f__mutmut_3 is listed as equivalent, but a test caught it" in warnings
