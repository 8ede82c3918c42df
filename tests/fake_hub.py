"""A stand-in for the Hub functions `smart_hf.hub` calls, which records what would be created and uploaded."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from smart_hf import hub


class FakeHub:
    """`whoami`, `create_repo` and `create_commit`, patched into `smart_hf.hub`: `calls` lists the calls in
    order, `created` the repositories, `commits` each commit's repository, files (path: bytes) and options."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, user: str = "me"):
        self.user = user
        self.calls: list[str] = []
        self.created: list[tuple[str, dict]] = []
        self.commits: list[tuple[str, dict[str, bytes], dict]] = []
        for name in ("whoami", "create_repo", "create_commit"):
            monkeypatch.setattr(hub, name, getattr(self, name))

    def whoami(self, token=None) -> dict:
        self.calls.append("whoami")
        return {"name": self.user}

    def create_repo(self, repo_id: str, **kwargs) -> SimpleNamespace:
        self.calls.append("create_repo")
        self.created.append((repo_id, kwargs))
        return SimpleNamespace(repo_id=repo_id if "/" in repo_id else f"{self.user}/{repo_id}")

    def create_commit(self, repo_id: str, operations, **kwargs) -> SimpleNamespace:
        self.calls.append("create_commit")
        files = {op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in operations}
        self.commits.append((repo_id, files, kwargs))
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/abc123")

    @property
    def uploaded(self) -> list[str]:
        """The paths of the last commit, sorted."""
        return sorted(self.commits[-1][1])
