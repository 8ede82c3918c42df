"""`smart-hf push-space`: what a Space deploy would create, upload and set, with huggingface_hub patched
(nothing here reaches the Hub)."""

import os
import shutil
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import SpaceCard
from huggingface_hub.utils import validate_repo_id

from smart_hf import cli
from smart_hf.hub_network import network_errors
from tests.spaces.test_space import APP_FILE, load_app

SPACE = APP_FILE.parent
DEPLOYED = {"README.md", "app.py", "requirements.txt"}


class FakeHub:
    """Stands in for the huggingface_hub functions push-space calls, recording what the Hub would get."""

    def __init__(self, models: set[str]):
        self.models = models
        self.created, self.uploads = [], []
        self.variables: dict[str, str] = {}

    def repo_exists(self, repo_id, token=None):
        validate_repo_id(repo_id)  # as the real one does
        return repo_id in self.models

    def create_repo(self, repo_id, **kwargs):
        self.created.append((repo_id, kwargs))
        return huggingface_hub.RepoUrl(f"https://huggingface.co/spaces/{repo_id}")

    def get_space_variables(self, repo_id, token=None):
        return dict(self.variables)

    def add_space_variable(self, repo_id, key, value, token=None):
        self.variables[key] = value

    def delete_space_variable(self, repo_id, key, token=None):
        del self.variables[key]

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        """Records every entry of the folder, symlinks and folders included, as upload_folder would see it."""
        root = Path(folder_path)
        entries = {}
        for folder, names, files in os.walk(root):
            for name in names + files:
                path = Path(folder, name)
                entries[path.relative_to(root).as_posix()] = None if path.is_dir() else path.read_bytes()
        self.uploads.append((repo_id, entries, kwargs))
        return type(
            "CommitInfo", (), {"commit_url": f"https://huggingface.co/spaces/{repo_id}/commit/abc123"}
        )()


@pytest.fixture
def fake_hub(monkeypatch):
    fake = FakeHub(models={"user/smart-gan", "user/other-gan", "google/ddpm-cifar10-32"})
    for name in (
        "repo_exists",
        "create_repo",
        "get_space_variables",
        "add_space_variable",
        "delete_space_variable",
        "upload_folder",
    ):
        monkeypatch.setattr(huggingface_hub, name, getattr(fake, name))
    return fake


@pytest.fixture
def space_copy(tmp_path) -> Path:
    """A copy of the Space folder with what must never be deployed planted in it."""
    folder = shutil.copytree(SPACE, tmp_path / "smart_gan_demo", ignore=shutil.ignore_patterns("__pycache__"))
    (folder / ".env").write_text("HF_TOKEN=hf_secret\n")
    (folder / "notes.txt").write_text("local notes\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (folder / "outputs" / "demo").mkdir(parents=True)
    (folder / "outputs" / "demo" / "model_index.json").write_text("{}")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the Hub\n")
    (folder / "linked.txt").symlink_to(secret)
    (folder / "linked-folder").symlink_to(tmp_path, target_is_directory=True)
    return folder


def push_space(*argv: str) -> int:
    return cli.main(["push-space", *argv])


def test_uploads_exactly_the_space_files_and_sets_the_variables(space_copy, fake_hub, capsys):
    argv = ["user/smart-demo", "--model", "user/smart-gan", "--teacher", "google/ddpm-cifar10-32"]
    assert push_space(*argv, "--private", "--token", "hf_xxx", "--space-dir", str(space_copy)) == 0

    assert fake_hub.created == [
        (
            "user/smart-demo",
            {
                "repo_type": "space",
                "space_sdk": "gradio",
                "private": True,
                "token": "hf_xxx",
                "exist_ok": True,
            },
        )
    ]
    assert fake_hub.variables == {"SMART_MODEL": "user/smart-gan", "SMART_TEACHER": "google/ddpm-cifar10-32"}
    ((repo_id, files, kwargs),) = fake_hub.uploads
    assert repo_id == "user/smart-demo"
    assert set(files) == DEPLOYED
    assert kwargs == {
        "repo_type": "space",
        "commit_message": "Deploy the SMaRt demo of user/smart-gan",
        "token": "hf_xxx",
    }
    assert files["app.py"] == (SPACE / "app.py").read_bytes()
    assert files["requirements.txt"] == (SPACE / "requirements.txt").read_bytes()
    card, template = SpaceCard(files["README.md"].decode()), SpaceCard.load(SPACE / "README.md")
    assert card.data.models == ["user/smart-gan", "google/ddpm-cifar10-32"]
    assert card.data.to_dict() == {**template.data.to_dict(), "models": card.data.models}
    assert card.text == template.text
    assert capsys.readouterr().out == (
        "Deployed user/smart-gan to https://huggingface.co/spaces/user/smart-demo "
        "(https://huggingface.co/spaces/user/smart-demo/commit/abc123)\n"
    )


def test_redeploy_without_a_teacher_drops_the_old_one(space_copy, fake_hub):
    """Without --teacher the app uses the teacher the model names, so an earlier SMART_TEACHER must go."""
    argv = ["user/smart-demo", "--space-dir", str(space_copy)]
    assert push_space(*argv, "--model", "user/smart-gan", "--teacher", "google/ddpm-cifar10-32") == 0
    assert push_space(*argv, "--model", "user/other-gan") == 0
    assert fake_hub.variables == {"SMART_MODEL": "user/other-gan"}
    assert [call[1]["private"] for call in fake_hub.created] == [False, False]
    card = SpaceCard(fake_hub.uploads[-1][1]["README.md"].decode())
    assert card.data.models == ["user/other-gan"]


@pytest.mark.parametrize("option", ["--model", "--teacher"])
def test_refuses_models_that_are_not_on_the_hub(space_copy, fake_hub, tmp_path, capsys, option):
    for missing in ("user/never-pushed", str(tmp_path / "outputs" / "demo")):
        models = {"--model": "user/smart-gan", "--teacher": "google/ddpm-cifar10-32", option: missing}
        argv = ["user/smart-demo", "--space-dir", str(space_copy)]
        assert push_space(*argv, *(item for pair in models.items() for item in pair)) == 1
        assert capsys.readouterr().err == (
            f"smart-hf push-space: error: {missing} is not a model on the Hub: the Space loads its models "
            "from there (push an export with `smart-hf push <folder> --repo-id <id>`).\n"
        )
    assert fake_hub.created == fake_hub.uploads == [] and fake_hub.variables == {}


def test_refuses_a_symlinked_or_missing_space_file(space_copy, fake_hub, capsys):
    (space_copy / "app.py").unlink()
    assert push_space("user/smart-demo", "--model", "user/smart-gan", "--space-dir", str(space_copy)) == 1
    assert capsys.readouterr().err.endswith(
        f"{space_copy / 'app.py'} is missing: the Space needs it as a regular file.\n"
    )
    (space_copy / "app.py").symlink_to(SPACE / "app.py")
    assert push_space("user/smart-demo", "--model", "user/smart-gan", "--space-dir", str(space_copy)) == 1
    assert capsys.readouterr().err.endswith(
        f"{space_copy / 'app.py'} is a symlink: the Space needs it as a regular file.\n"
    )
    assert fake_hub.created == fake_hub.uploads == []


def test_unreachable_hub_is_one_line(space_copy, fake_hub, monkeypatch, capsys):
    def refuse(repo_id, token=None):
        raise network_errors()[-1]("Connection refused")

    monkeypatch.setattr(huggingface_hub, "repo_exists", refuse)
    assert push_space("user/smart-demo", "--model", "user/smart-gan", "--space-dir", str(space_copy)) == 1
    assert capsys.readouterr().err == (
        "smart-hf push-space: error: Cannot reach the Hub to deploy user/smart-demo (Connection refused); "
        "check the network, then retry.\n"
    )


def test_defaults_to_this_checkout_s_space_and_its_variables():
    assert cli.SPACE_FOLDER == SPACE
    assert {path.name for path in cli.space_files(SPACE)} == DEPLOYED
    app = load_app()
    assert (cli.SPACE_MODEL_VARIABLE, cli.SPACE_TEACHER_VARIABLE) == (app.MODEL_ENV, app.TEACHER_ENV)


def test_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["push-space", "--help"])
    help_text = capsys.readouterr().out
    assert all(option in help_text for option in ("space_repo_id", "--model", "--teacher", "--private"))
