"""`make mutation`'s configuration (tests/mutation.py): every module of the scope is mutated and tested, and a
run of some modules mutates and runs only theirs."""

import json
import re
from pathlib import Path

from tests import mutation

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = (REPO / "pyproject.toml").read_text()


def setting(text: str, key: str) -> list[str]:
    """A [tool.mutmut] list that mutmut_settings wrote (as JSON, on one line)."""
    return json.loads(re.search(rf"^{key} = (\[.*\])$", text, flags=re.MULTILINE)[1])


def test_every_module_in_scope_is_mutated_and_runs_test_files_that_exist():
    assert mutation.SCOPE.keys() == mutation.TESTS.keys()
    full = mutation.mutmut_settings(PYPROJECT)
    for module in mutation.SCOPE:
        path = Path("src", *module.split(".")).with_suffix(".py")
        assert str(path) in setting(full, "only_mutate") and str(path) in PYPROJECT
        source = (
            REPO / "pipelines" / path.relative_to("src/smart_hf/pipelines")
            if "pipelines" in module
            else REPO / path
        )
        assert source.is_file(), source
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
