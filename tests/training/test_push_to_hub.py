"""Training with --push_to_hub (the Hub patched): the login is checked and the repository created before the
first step; the export's files, and only they, are uploaded at the end; the card of a digits run carries the
license, the metrics measured at the end of training (table and `model-index`), the settings switched on,
citations, and no local path."""

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from huggingface_hub.errors import LocalTokenNotFoundError

from smart_hf import hub
from smart_hf.training import gan
from smart_hf.training.config import parse_gan_args
from smart_hf.training.gan import train_gan
from tests.fake_hub import FakeHub
from tests.helpers import TINY_GAN

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[2]
PUSH = ["--push_to_hub", "--hub_model_id", "tiny", "--hub_private_repo"]
# 100 samples: more than the 64 feature dimensions of FD_digits, and still cheap.
DIGITS_RUN = [*TINY_GAN, "--dataset_name", "digits", "--max_train_steps", "2", "--num_eval_samples", "100"]


def record_steps(monkeypatch, hub_calls: FakeHub) -> None:
    """Each optimizer update appends "step" to the calls, to order them with the Hub's."""
    apply_update = gan.apply_update
    monkeypatch.setattr(
        gan, "apply_update", lambda *args: hub_calls.calls.append("step") or apply_update(*args)
    )


def test_push_to_hub_without_a_login_fails_before_training(tmp_path, monkeypatch):
    hub_calls = FakeHub(monkeypatch)
    record_steps(monkeypatch, hub_calls)

    def not_logged_in(token=None):
        raise LocalTokenNotFoundError("Token is required")

    monkeypatch.setattr(hub, "whoami", not_logged_in)
    out = tmp_path / "run"
    with pytest.raises(
        ValueError, match=r"^Not logged in to the Hugging Face Hub, so tiny cannot be created"
    ):
        train_gan(parse_gan_args([*DIGITS_RUN, "--output_dir", str(out), *PUSH]))
    assert hub_calls.calls == [] and not out.exists()


def test_push_to_hub_uploads_the_export_and_its_card(tmp_path, monkeypatch):
    hub_calls = FakeHub(monkeypatch, user="me")
    record_steps(monkeypatch, hub_calls)
    export_pipeline = hub.export_pipeline

    def export_and_plant(generator, folder, **kwargs):
        """The export, then what must not be uploaded: another file and symlinks beside its own files."""
        folder = export_pipeline(generator, folder, **kwargs)
        (folder / "notes.txt").write_text("not part of the export")
        (folder / "gan" / "secret.safetensors").symlink_to(tmp_path / "run" / "metrics.json")
        (folder / "run").symlink_to(tmp_path / "run", target_is_directory=True)
        return folder

    monkeypatch.setattr(hub, "export_pipeline", export_and_plant)
    out = tmp_path / "run"
    flags = ["--diffusion_gan", "--diffusion_gan_t_max", "20", "--hub_license", "mit"]
    results = train_gan(parse_gan_args([*DIGITS_RUN, "--output_dir", str(out), *PUSH, *flags]))

    # The repository (a bare name: the user's namespace) exists before the first step; the push comes last.
    assert hub_calls.calls[:2] == ["whoami", "create_repo"] and hub_calls.calls[2] == "step"
    assert hub_calls.calls[-3:] == ["whoami", "create_repo", "create_commit"]
    assert [repo for repo, _ in hub_calls.created] == ["tiny", "me/tiny"]
    assert hub_calls.created[0][1]["private"] is True
    export = out / "pipeline"
    ((repo_id, files, _),) = hub_calls.commits
    assert repo_id == "me/tiny"
    assert sorted(files) == [
        "README.md",
        "gan/config.json",
        "gan/dcgan.py",
        "gan/diffusion_pytorch_model.safetensors",
        "model_index.json",
        "pipeline.py",
        "samples.png",
        "smart_hf.json",
    ]
    assert all(content == (export / name).read_bytes() for name, content in files.items())

    # No local path in any pushed text file.
    for name in ("README.md", "smart_hf.json", "model_index.json", "gan/config.json"):
        text = files[name].decode()
        assert str(tmp_path) not in text and str(REPO) not in text and str(hub.PACKAGE_DIR) not in text, name

    # The quality metrics, measured at the end of training, in metrics.json and the card.
    saved = json.loads((out / "metrics.json").read_text())
    quality = {key: saved[key] for key in ("fd_digits", "precision", "recall")}
    assert quality == {key: results[key] for key in quality} and quality["fd_digits"] > 0
    assert saved["evaluation"] == {
        "feature_extractor": "digits_classifier",
        "feature_dim": 64,
        "reference": "training images",
        "num_samples": 100,
        "num_reference": 100,
        "k": 3,
    }
    card = ModelCard(files["README.md"].decode())
    assert card.data.license == "mit" and card.data.model_name == "tiny"
    assert {result.metric_type: result.metric_value for result in card.data.eval_results} == quality
    assert f"| fd_digits | {quality['fd_digits']:.6g} |" in card.text
    assert 'DiffusionPipeline.from_pretrained("me/tiny", trust_remote_code=True)' in card.text
    settings = card.text.split("## Training")[1].split("## Model")[0]
    assert "| diffusion_gan | True |" in settings and "| diffusion_gan_t_max | 20 |" in settings
    for switched_off in (
        "mask_",
        "nice",
        "nats",
        "hidden_dim",
        "fourier",
        "hub_",
        "output_dir",
        "push_to_hub",
    ):
        assert switched_off not in settings
    assert "@inproceedings{wang2023diffusiongan," in card.text.split("## Citation")[1]


def test_push_to_hub_of_a_toy_run_is_refused(tmp_path):
    with pytest.raises(ValueError, match="grid25 is a toy 2-D set, whose runs export none"):
        train_gan(parse_gan_args(["--output_dir", str(tmp_path), *PUSH]))
