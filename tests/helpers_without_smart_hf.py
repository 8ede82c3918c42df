"""Runs a script in a fresh interpreter, outside the repository, with every import of smart_hf refused: how a
user without smart_hf loads an export through Hub remote code."""

import os
import subprocess
import sys
import textwrap

import torch

REFUSE_SMART_HF = textwrap.dedent(
    """
    import importlib.abc, sys

    class RefuseSmartHf(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "smart_hf" or name.startswith("smart_hf."):
                raise ImportError(f"{name} is blocked in this test")

    sys.meta_path.insert(0, RefuseSmartHf())
    """
)


def run_without_smart_hf(script: str, *args: str, tmp_path) -> subprocess.CompletedProcess:
    """`script` (dedented) after the import blocker, offline, in `tmp_path`; fails the test on an error."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    # As many threads as this process uses: float sums then match the in-process results exactly.
    threads = str(torch.get_num_threads())
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS=threads)
    result = subprocess.run(
        [sys.executable, "-c", REFUSE_SMART_HF + textwrap.dedent(script), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result
