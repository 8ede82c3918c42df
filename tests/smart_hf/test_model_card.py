"""The model card and smart_hf.json of an export: Hub ids only as Hub metadata, local teachers and data sets
by folder name, no local path in any text file pushed, the license, quality metrics in the table and in
`model-index`, the settings that differ from the defaults, citations."""

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from smart_hf import cli, hub
from smart_hf.models import DCGANGenerator
from smart_hf.training.config import DIGITS_SCORE, parse_gan_args
from smart_hf.training.options import to_flat

REPO = Path(__file__).resolve().parents[2]
TINY = {"latent_dim": 8, "resolution": 8, "base_channels": 4, "max_channel_multiplier": 2}
DIGITS_METRICS = {"fd_digits": 12.5, "precision": 0.75, "recall": 0.5, "global_step": 300}
DIGITS_EVALUATION = {
    "feature_extractor": "digits_classifier",
    "feature_dim": 64,
    "reference": "training images",
    "num_samples": 200,
    "num_reference": 200,
    "k": 3,
}
PUSHED_TEXT_FILES = ["README.md", "smart_hf.json", "model_index.json", "gan/config.json"]


@pytest.fixture(scope="module")
def generator_model():
    torch.manual_seed(0)
    return DCGANGenerator(out_channels=1, **TINY)


def card_of(folder: Path) -> ModelCard:
    return ModelCard.load(folder / "README.md")


def string_values(data) -> list[str]:
    if isinstance(data, dict):
        return [text for value in data.values() for text in string_values(value)]
    if isinstance(data, list):
        return [text for value in data for text in string_values(value)]
    return [data] if isinstance(data, str) else []


def assert_no_local_path(folder: Path, *local: Path) -> None:
    """No text file pushed names a local folder, and no JSON string is an absolute path."""
    for name in PUSHED_TEXT_FILES:
        text = (folder / name).read_text()
        for path in (*local, REPO, hub.PACKAGE_DIR):
            assert str(path) not in text, f"{name} names {path}"
        if name.endswith(".json"):
            assert not [value for value in string_values(json.loads(text)) if value.startswith("/")], name


def test_local_teacher_and_data_set_are_named_by_folder_name(generator_model, tmp_path):
    teacher, images = tmp_path / "my-teacher", tmp_path / "data" / "cats"
    teacher.mkdir()
    images.mkdir(parents=True)
    options = to_flat(parse_gan_args(["--train_data_dir", str(images), "--score", str(teacher)]))
    options["output_dir"] = str(tmp_path / "run")
    folder = hub.export_pipeline(
        generator_model,
        tmp_path / "export",
        score_model=str(teacher),
        dataset=str(images),
        training_config=options,
        num_samples=0,
    )

    assert_no_local_path(folder, tmp_path)
    card = card_of(folder)
    assert card.data.base_model is None and card.data.datasets is None
    assert "trained on `cats`, a local data set (not on the Hub)" in card.text
    assert (
        "the local diffusion model `my-teacher` (a folder on the training machine, not on the Hub)"
        in card.text
    )
    metadata = json.loads((folder / "smart_hf.json").read_text())
    assert (metadata["score_model"], metadata["score_model_source"]) == ("my-teacher", "local")
    assert (metadata["dataset"], metadata["dataset_source"]) == ("cats", "local")
    assert not {"output_dir", "train_data_dir", "score", "dataset_name", "cache_dir"} & set(
        metadata["training"]
    )


def test_hub_teacher_and_data_set_are_hub_metadata(generator_model, tmp_path):
    folder = hub.export_pipeline(
        generator_model,
        tmp_path / "export",
        score_model="google/ddpm-cifar10-32",
        dataset="uoft-cs/cifar10",
        num_samples=0,
    )
    card = card_of(folder)
    assert card.data.base_model == "google/ddpm-cifar10-32"
    assert card.data.datasets == ["uoft-cs/cifar10"]
    assert "[`uoft-cs/cifar10`](https://huggingface.co/datasets/uoft-cs/cifar10)" in card.text
    assert "[`google/ddpm-cifar10-32`](https://huggingface.co/google/ddpm-cifar10-32)" in card.text
    metadata = json.loads((folder / "smart_hf.json").read_text())
    assert (metadata["score_model_source"], metadata["dataset_source"]) == ("hub", "hub")


def test_digits_card(generator_model, tmp_path):
    """The embedded digits are no Hub data set; the shipped teacher is named as shipped; the measured metrics
    are in the table and in `model-index`; the license defaults to apache-2.0."""
    options = to_flat(parse_gan_args(["--config", str(REPO / "training/configs/digits.yaml")]))
    folder = hub.export_pipeline(
        generator_model,
        tmp_path / "export",
        score_model=DIGITS_SCORE,
        dataset="digits",
        metrics=DIGITS_METRICS,
        evaluation=DIGITS_EVALUATION,
        training_config=options,
        repo_id="me/smart-gan-digits",
        num_samples=0,
    )

    card = card_of(folder)
    assert card.data.license == "apache-2.0"
    assert card.data.datasets is None and card.data.base_model is None
    assert "the scikit-learn digits embedded in smart_hf" in card.text
    assert "the diffusion model `digits-unet` shipped with smart_hf (local, not on the Hub)" in card.text
    assert "with weight λ = 0.7 at diffusion steps t in [100, 300], on every generator step." in card.text
    assert card.data.model_name == "smart-gan-digits"
    results = {result.metric_type: result for result in card.data.eval_results}
    assert {key: result.metric_value for key, result in results.items()} == {
        "fd_digits": 12.5,
        "precision": 0.75,
        "recall": 0.5,
    }
    assert {result.dataset_type for result in results.values()} == {"digits"}
    assert {result.metric_config for result in results.values()} == {"digits_classifier"}
    assert results["precision"].metric_args == {"num_samples": 200, "k": 3}
    assert results["fd_digits"].metric_args == {"num_samples": 200}
    assert "| fd_digits | 12.5 | Fréchet distance in the digits classifier's features" in card.text
    assert "| precision | 0.75 |" in card.text and "| recall | 0.5 |" in card.text
    assert "on 200 generated samples against 200 training images, in the 64-d features of " in card.text
    assert "| global_step | 300 |" in card.text
    assert_no_local_path(folder, tmp_path)


def settings_table(card: ModelCard) -> dict[str, str]:
    section = card.text.split("## Training")[1].split("## Model")[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    return {row[0][2:]: row[1].rstrip(" |") for row in rows[1:]}


def test_settings_are_those_switched_on_or_changed(generator_model, tmp_path):
    """Not every option: defaults (also derived ones, such as the betas of each network), the options of
    switched-off techniques, toy-only options of an image run, and outputs, logging and the Hub are left
    out."""
    flags = (
        "--dataset_name digits --use_ema --diffusion_gan --diffusion_gan_t_max 20 --r1_gamma 0.1 "
        "--mask_ratio 0.5 --hidden_dim 512 --max_train_steps 300 --logging_steps 7 --hub_model_id me/x "
        "--d_learning_rate 1e-4 --output_dir /somewhere/else"
    ).split()
    options = to_flat(parse_gan_args(flags))
    folder = hub.export_pipeline(
        generator_model, tmp_path / "export", dataset="digits", training_config=options, num_samples=0
    )
    card = card_of(folder)
    assert settings_table(card) == {
        "max_train_steps": "300",
        "r1_gamma": "0.1",
        "d_learning_rate": "0.0001",
        "use_ema": "True",
        "diffusion_gan": "True",
        "diffusion_gan_t_max": "20",
    }
    citations = card.text.split("## Citation")[1]
    assert "@inproceedings{xia2024smart," in citations
    assert (
        "@inproceedings{wang2023diffusiongan," in citations
        and "@inproceedings{mescheder2018training," in citations
    )
    # Equal learning rates and betas: no TTUR; no MaskedGAN (--mask_ratio alone does not switch it on).
    assert "heusel2017gans" not in citations and "huang2022maskedgan" not in citations
    recorded = json.loads((folder / "smart_hf.json").read_text())["training"]
    assert recorded["mask_ratio"] == 0.5 and "output_dir" not in recorded and "logging_steps" not in recorded


def test_plain_gan_and_unmeasured_quality(generator_model, tmp_path):
    options = to_flat(parse_gan_args(["--dataset_name", "someone/cats", "--score", "someone/ddpm-cats"]))
    options["smart_weight"] = 0.0
    note = "FD, precision and recall were not measured: no feature extractor."
    folder = hub.export_pipeline(
        generator_model,
        tmp_path / "export",
        dataset="someone/cats",
        evaluation={"note": note},
        training_config=options,
        license="mit",
        num_samples=0,
    )
    card = card_of(folder)
    assert card.data.license == "mit" and card.data.eval_results is None
    assert "It was trained as a plain GAN: SMaRt's regularizer was off (λ = 0)." in card.text
    assert f"Note: {note}" in card.text
    assert settings_table(card) == {"smart_weight": "0"}


def test_cli_export_of_a_training_run_names_no_local_path(tmp_path, capsys):
    """`smart-hf export` of a run folder whose metrics.json holds the run's local paths."""
    run = tmp_path / "run"
    DCGANGenerator(out_channels=1, **TINY).save_pretrained(run / "generator")
    options = to_flat(
        parse_gan_args(["--train_data_dir", str(tmp_path / "images"), "--score", str(tmp_path)])
    )
    options |= {"output_dir": str(run), "cache_dir": str(tmp_path / "cache")}
    results = {**DIGITS_METRICS, "evaluation": DIGITS_EVALUATION, "config": options}
    (run / "metrics.json").write_text(json.dumps(results))

    assert cli.main(["export", str(run), "--out", str(tmp_path / "export"), "--license", "mit"]) == 0

    folder = tmp_path / "export"
    assert_no_local_path(folder, tmp_path)  # the generator was loaded from the run folder
    card = card_of(folder)
    assert card.data.license == "mit" and len(card.data.eval_results) == 3
    metadata = json.loads((folder / "smart_hf.json").read_text())
    assert metadata["dataset"] == "images" and metadata["score_model"] == tmp_path.name
    assert metadata["evaluation"] == DIGITS_EVALUATION


def test_export_license_default_is_stated(capsys):
    with pytest.raises(SystemExit):
        cli.main(["export", "--help"])
    assert "(default: apache-2.0, smart_hf's own)" in " ".join(capsys.readouterr().out.split())
