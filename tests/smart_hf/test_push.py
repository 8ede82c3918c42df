"""`smart-hf push` (`smart_hf.hub.push_to_hub`) with the Hub patched: it uploads exactly the files the export
lists, never another file of the folder nor a symlink, checks the login before creating the repository, and
refuses with one-line messages."""

import json
import shutil
from pathlib import Path

import httpx2
import pytest
import torch
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

from smart_hf import cli, hub
from smart_hf.models import DCGANGenerator
from tests.fake_hub import FakeHub

TINY = {"latent_dim": 8, "resolution": 8, "base_channels": 4, "max_channel_multiplier": 2}
EXPORT_FILES = [
    "README.md",
    "gan/config.json",
    "gan/dcgan.py",
    "gan/diffusion_pytorch_model.safetensors",
    "model_index.json",
    "pipeline.py",
    "samples.png",
    "smart_hf.json",
]
PUSH = ["push", "--repo-id", "user/smart-gan"]


@pytest.fixture
def export(tmp_path_factory) -> Path:
    """A fresh export per test, so that mutation testing runs each test that reads one."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("export") / "smart-gan"
    return hub.export_pipeline(DCGANGenerator(out_channels=1, **TINY), folder, num_samples=2)


@pytest.fixture
def folder(export, tmp_path) -> Path:
    """A copy of the export to plant files in."""
    return shutil.copytree(export, tmp_path / "export")


def push(folder: Path, *flags: str) -> int:
    return cli.main([*PUSH[:1], str(folder), *PUSH[1:], *flags])


def test_the_export_lists_every_file_it_wrote(export):
    written = sorted(path.relative_to(export).as_posix() for path in export.rglob("*") if path.is_file())
    assert written == EXPORT_FILES
    assert json.loads((export / "smart_hf.json").read_text())["files"] == EXPORT_FILES
    assert hub.export_files(export) == EXPORT_FILES


def test_push_uploads_exactly_the_files_of_the_export(folder, export, tmp_path, monkeypatch, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("hf_secret_token")
    planted = [
        "notes.txt",
        ".env",
        "checkpoint-500/optimizer.bin",
        "logs/events.out.tfevents.1",
        "gan/extra.safetensors",
    ]
    for name in planted:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("not part of the export")
    (folder / "link.txt").symlink_to(secret)
    (folder / "gan" / "link.safetensors").symlink_to(secret)
    (folder / "linked").symlink_to(tmp_path, target_is_directory=True)
    hub_calls = FakeHub(monkeypatch)

    assert push(folder, "--private", "--token", "hf_x", "--commit-message", "Add model") == 0

    assert hub_calls.calls == ["whoami", "create_repo", "create_commit"]
    assert hub_calls.created == [
        ("user/smart-gan", {"private": True, "token": "hf_x", "exist_ok": True, "repo_type": "model"})
    ]
    ((repo_id, files, options),) = hub_calls.commits
    assert repo_id == "user/smart-gan"
    assert sorted(files) == EXPORT_FILES
    assert all(content == (export / name).read_bytes() for name, content in files.items())
    assert options == {"commit_message": "Add model", "token": "hf_x", "repo_type": "model"}
    assert "Pushed" in capsys.readouterr().out


@pytest.mark.parametrize("listed", ["gan/diffusion_pytorch_model.safetensors", "gan", "smart_hf.json"])
def test_push_refuses_a_listed_file_behind_a_symlink(folder, tmp_path, monkeypatch, capsys, listed):
    """A listed file (or its folder) replaced by a symlink would upload whatever the link points at."""
    moved = tmp_path / "elsewhere"
    shutil.move(folder / listed, moved)
    (folder / listed).symlink_to(moved, target_is_directory=moved.is_dir())
    hub_calls = FakeHub(monkeypatch)

    assert push(folder) == 1
    assert f"{folder / listed} is a symlink" in capsys.readouterr().err
    assert hub_calls.calls == []


def edit_files_list(folder: Path, files) -> None:
    metadata = json.loads((folder / "smart_hf.json").read_text())
    (folder / "smart_hf.json").write_text(json.dumps({**metadata, "files": files}))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda folder: shutil.rmtree(folder), "not a smart_hf export: it has no smart_hf.json"),
        (lambda folder: (folder / "smart_hf.json").unlink(), "has no smart_hf.json listing its files"),
        (lambda folder: edit_files_list(folder, None), "has no smart_hf.json listing its files"),
        (
            lambda folder: edit_files_list(folder, [*EXPORT_FILES, "../secret.txt"]),
            "lists '../secret.txt', which is not a file inside the export",
        ),
        (
            lambda folder: (folder / "gan" / "dcgan.py").unlink(),
            r"incomplete smart_hf export: missing \['gan/dcgan.py'\]",
        ),
        (
            lambda folder: (folder / "model_index.json").write_text('{"_class_name": "DDPMPipeline"}'),
            "not a smart_hf export: model_index.json names 'DDPMPipeline'",
        ),
    ],
    ids=[
        "empty folder",
        "no smart_hf.json",
        "no files list",
        "outside path",
        "missing file",
        "other pipeline",
    ],
)
def test_push_refuses_a_folder_that_is_not_an_export(folder, monkeypatch, capsys, change, message):
    change(folder)
    folder.mkdir(exist_ok=True)
    hub_calls = FakeHub(monkeypatch)
    assert push(folder) == 1
    error = capsys.readouterr().err
    assert error.startswith("smart-hf push: error: ") and error.count("\n") == 1
    with pytest.raises(ValueError, match=message):
        hub.push_to_hub(folder, "user/smart-gan")
    assert hub_calls.calls == []


def refusal(status: int, text: str) -> HfHubHTTPError:
    response = httpx2.Response(
        status, request=httpx2.Request("POST", "https://huggingface.co/api/repos/create")
    )
    return HfHubHTTPError(f"{text}\nRequest ID: 123", response=response)


def fail(error: Exception):
    def raise_error(*args, **kwargs):
        raise error

    return raise_error


@pytest.mark.parametrize(
    "function, error, message",
    [
        (
            "whoami",
            LocalTokenNotFoundError("no token"),
            "Not logged in to the Hugging Face Hub, so user/smart-gan cannot be created or pushed to: run "
            "`hf auth login` (a token with write access) or set HF_TOKEN, then retry.",
        ),
        (
            "whoami",
            refusal(401, "Invalid user token."),
            "The Hub refused the login for user/smart-gan: Invalid user token.",
        ),
        (
            "whoami",
            OfflineModeIsEnabled("offline mode is enabled"),
            "Cannot reach the Hub to log in for user/smart-gan (offline mode is enabled); check the network, "
            "then retry.",
        ),
        (
            "create_repo",
            refusal(403, "403 Forbidden: no rights to create a model under the namespace user"),
            "The Hub refused to create user/smart-gan as me: 403 Forbidden: no rights to create a model "
            "under the namespace user",
        ),
        (
            "create_commit",
            httpx2.ConnectError("[Errno -3] name resolution failed"),
            "Cannot reach the Hub to push to user/smart-gan ([Errno -3] name resolution failed); check the "
            "network, then retry.",
        ),
    ],
    ids=["not logged in", "invalid token", "offline", "no rights", "no network"],
)
def test_push_failures_are_one_line_errors(export, monkeypatch, capsys, function, error, message):
    hub_calls = FakeHub(monkeypatch)
    monkeypatch.setattr(hub, function, fail(error))
    assert push(export) == 1
    assert capsys.readouterr().err == f"smart-hf push: error: {message}\n"
    assert "create_commit" not in hub_calls.calls


def test_push_refuses_an_invalid_repository_id(export, monkeypatch, capsys):
    hub_calls = FakeHub(monkeypatch)
    assert cli.main(["push", str(export), "--repo-id", "user/smart gan"]) == 1
    assert "'user/smart gan' is not a valid Hub repository id" in capsys.readouterr().err
    assert hub_calls.calls == []


def test_a_bare_name_gets_the_user_namespace(export, monkeypatch):
    hub_calls = FakeHub(monkeypatch, user="alice")
    url = hub.push_to_hub(export, "smart-gan")
    assert url == "https://huggingface.co/alice/smart-gan/commit/abc123"
    assert hub_calls.commits[0][0] == "alice/smart-gan"
