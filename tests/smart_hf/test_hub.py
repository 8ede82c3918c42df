"""Export folders: layout, the three loading paths, refusals and the model card (pushing: test_push.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image

import smart_hf
from smart_hf import hub
from smart_hf.models import DCGANGenerator, ResNetGenerator, ToyGenerator
from smart_hf.pipelines import SmartOneStepPipeline
from tests.helpers_without_smart_hf import run_without_smart_hf

REPO = Path(__file__).resolve().parents[2]
TINY = {"latent_dim": 8, "resolution": 8, "base_channels": 4, "max_channel_multiplier": 2}
CARD_INFO = {
    "score_model": "google/ddpm-cifar10-32",
    "dataset": "uoft-cs/cifar10",
    "metrics": {"fid": 42.5, "inception_score": 3.25},
    "training_config": {"smart_weight": 0.1, "max_train_steps": 1000},
}
EXPORT_FILES = {
    "model_index.json",
    "pipeline.py",
    "smart_hf.json",
    "samples.png",
    "README.md",
    "gan/config.json",
    "gan/diffusion_pytorch_model.safetensors",
    "gan/resnet_gan.py",
}


def files_in(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def sample(pipe, seed=0) -> np.ndarray:
    return pipe(batch_size=4, generator=torch.Generator().manual_seed(seed), output_type="np").images


@pytest.fixture(scope="module")
def generator_model():
    torch.manual_seed(0)
    return ResNetGenerator(num_classes=3, **TINY).eval()


@pytest.fixture
def export(generator_model, tmp_path):
    """A fresh export per test (0.03 s): mutation testing runs only the tests that call `export_pipeline`
    themselves, which a module-scoped export would hide."""
    return hub.export_pipeline(
        generator_model, tmp_path / "smart-gan", repo_id="user/smart-gan", num_samples=6, **CARD_INFO
    )


def test_export_layout(export, generator_model):
    assert files_in(export) == EXPORT_FILES
    model_index = json.loads((export / "model_index.json").read_text())
    assert model_index["_class_name"] == ["pipeline", "SmartOneStepPipeline"]
    assert model_index["gan"] == ["resnet_gan", "ResNetGenerator"]
    assert model_index["_smart_hf_library"] == {"gan": ["smart_hf.models.resnet_gan", "ResNetGenerator"]}
    pipeline_source = REPO / "pipelines" / "smart_one_step" / "pipeline.py"
    assert (export / "pipeline.py").read_text() == pipeline_source.read_text()
    assert (export / "gan" / "resnet_gan.py").read_text() == (
        REPO / "src/smart_hf/models/resnet_gan.py"
    ).read_text()
    assert json.loads((export / "smart_hf.json").read_text()) == {
        "smart_hf_version": smart_hf.__version__,
        "pipeline": "SmartOneStepPipeline",
        "generator": {
            "class": "ResNetGenerator",
            "latent_dim": 8,
            "out_channels": 3,
            "resolution": 8,
            "num_classes": 3,
        },
        "score_model": "google/ddpm-cifar10-32",
        "score_model_source": "hub",
        "dataset": "uoft-cs/cifar10",
        "dataset_source": "hub",
        "license": "apache-2.0",
        "metrics": CARD_INFO["metrics"],
        "evaluation": {},
        "training": CARD_INFO["training_config"],
        "files": sorted(EXPORT_FILES),
    }
    assert hub.validate_export(export) == model_index


def test_load_with_the_library_class(export, generator_model):
    pipe = SmartOneStepPipeline.from_pretrained(export)
    assert type(pipe) is SmartOneStepPipeline
    assert type(pipe.gan) is ResNetGenerator and not pipe.gan.training
    np.testing.assert_array_equal(sample(pipe), sample(SmartOneStepPipeline(gan=generator_model)))


def test_load_with_the_library_class_in_half_precision(export):
    pipe = SmartOneStepPipeline.from_pretrained(export, torch_dtype=torch.float16)
    assert pipe.gan.dtype == torch.float16


def test_load_the_generator_alone(export, generator_model):
    loaded = ResNetGenerator.from_pretrained(export, subfolder="gan")
    latents, labels = torch.randn(2, 8), torch.tensor([0, 2])
    torch.testing.assert_close(loaded(latents, labels), generator_model(latents, labels))


@pytest.mark.parametrize("use_ema", [True, False])
def test_a_training_folder_loads_the_generator_of_the_run_its_metrics_describe(tmp_path, use_ema):
    live, averaged = DCGANGenerator(**TINY), DCGANGenerator(**TINY)
    live.save_pretrained(tmp_path / "generator")
    averaged.save_pretrained(tmp_path / "generator_ema")  # another run's, when this one kept no EMA
    (tmp_path / "metrics.json").write_text(json.dumps({"config": {"use_ema": use_ema}}))
    loaded = hub.load_generator(tmp_path)
    expected = averaged if use_ema else live
    for name, parameter in expected.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], parameter), name


# Runs in a fresh interpreter, outside the repository, with every import of smart_hf refused.
WITHOUT_SMART_HF = """
    import sys
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline

    try:
        import smart_hf  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("smart_hf should not be importable here")
    pipe = DiffusionPipeline.from_pretrained(sys.argv[1], trust_remote_code=True)
    images = pipe(batch_size=4, generator=torch.Generator().manual_seed(0), output_type="np").images
    np.save(sys.argv[2], images)
    print(type(pipe).__module__, type(pipe.gan).__module__)
    assert not any(name.startswith("smart_hf") for name in sys.modules)
    """


def test_load_with_diffusers_without_smart_hf(export, generator_model, tmp_path):
    result = run_without_smart_hf(
        WITHOUT_SMART_HF, str(export), str(tmp_path / "images.npy"), tmp_path=tmp_path
    )
    assert result.stdout.split() == ["diffusers_modules.local.pipeline", "diffusers_modules.local.resnet_gan"]
    expected = sample(SmartOneStepPipeline(gan=generator_model))
    np.testing.assert_array_equal(np.load(tmp_path / "images.npy"), expected)


def test_only_safetensors_and_no_pickles(export):
    assert not [name for name in files_in(export) if name.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]


def test_refuses_a_folder_without_model_index(tmp_path):
    with pytest.raises(ValueError, match="not a smart_hf export: it has no model_index.json"):
        SmartOneStepPipeline.from_pretrained(tmp_path)


def copy_export(export: Path, destination: Path) -> Path:
    for name in files_in(export):
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        (destination / name).write_bytes((export / name).read_bytes())
    return destination


def test_refuses_another_pipeline_class(export, tmp_path):
    folder = copy_export(export, tmp_path)
    model_index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**model_index, "_class_name": "DDPMPipeline"}))
    with pytest.raises(
        ValueError, match="not a SmartOneStepPipeline export: its model_index.json names 'DDPMPipeline'"
    ):
        SmartOneStepPipeline.from_pretrained(folder)
    with pytest.raises(ValueError) as refused:
        hub.validate_export(folder)
    assert str(refused.value) == (
        f"{folder} is not a smart_hf export: model_index.json names 'DDPMPipeline', "
        "expected ['pipeline', 'SmartOneStepPipeline']."
    )


def test_refuses_unknown_config_keys(export, tmp_path):
    folder = copy_export(export, tmp_path)
    config = json.loads((folder / "gan" / "config.json").read_text())
    (folder / "gan" / "config.json").write_text(json.dumps({**config, "num_class": 5}))
    with pytest.raises(ValueError, match=r"keys that ResNetGenerator does not take: \['num_class'\]"):
        SmartOneStepPipeline.from_pretrained(folder)


def test_refuses_to_import_modules_outside_smart_hf(export, tmp_path):
    folder = copy_export(export, tmp_path)
    model_index = json.loads((folder / "model_index.json").read_text())
    model_index["_smart_hf_library"] = {"gan": ["os", "ResNetGenerator"]}
    (folder / "model_index.json").write_text(json.dumps(model_index))
    with pytest.raises(ValueError, match="Refusing to import 'os'"):
        SmartOneStepPipeline.from_pretrained(folder)


def test_refuses_unexpected_keyword_arguments(export):
    with pytest.raises(ValueError, match=r"Unexpected keyword arguments .*\['use_onnx'\]"):
        SmartOneStepPipeline.from_pretrained(export, use_onnx=True)


def test_passed_components_are_used(export):
    gan = DCGANGenerator(**TINY)
    assert SmartOneStepPipeline.from_pretrained(export, gan=gan).gan is gan


@pytest.mark.parametrize("removed", ["pipeline.py", "gan/resnet_gan.py", "gan/config.json"])
def test_incomplete_export_is_refused(export, tmp_path, removed):
    folder = copy_export(export, tmp_path)
    (folder / removed).unlink()
    with pytest.raises(ValueError) as refused:
        hub.validate_export(folder)
    assert str(refused.value) == f"{folder} is an incomplete smart_hf export: missing [{removed!r}]."


def test_export_refuses_what_it_could_not_load(tmp_path):
    with pytest.raises(ValueError, match="not an image generator"):
        hub.export_pipeline(ToyGenerator(), tmp_path / "toy")
    with pytest.raises(ValueError, match="ModelMixin"):
        hub.export_pipeline(torch.nn.Linear(2, 2), tmp_path / "linear")


class OutsideGenerator(ResNetGenerator):
    """Defined outside smart_hf, so SmartOneStepPipeline.from_pretrained would not import it."""


def test_export_refuses_classes_outside_smart_hf(tmp_path):
    with pytest.raises(ValueError, match="Only smart_hf model classes"):
        hub.export_pipeline(OutsideGenerator(**TINY), tmp_path / "outside")


def test_export_overwrite(generator_model, tmp_path):
    folder = hub.export_pipeline(generator_model, tmp_path / "export", num_samples=0)
    assert "samples.png" not in files_in(folder)
    assert "samples.png" not in (folder / "README.md").read_text()
    with pytest.raises(ValueError, match="not empty; pass overwrite=True"):
        hub.export_pipeline(generator_model, folder, num_samples=0)
    (folder / "stale.txt").write_text("from an earlier export")
    hub.export_pipeline(generator_model, folder, num_samples=0, overwrite=True)
    assert "stale.txt" not in files_in(folder)
    other = tmp_path / "not-an-export"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a smart_hf export"):
        hub.export_pipeline(generator_model, other, overwrite=True)
    assert (other / "notes.txt").read_text() == "keep me"


def test_export_restores_training_mode(tmp_path):
    model = DCGANGenerator(**TINY).train()
    hub.export_pipeline(model, tmp_path / "export", num_samples=2)
    assert model.training


def test_sample_grid_has_one_class_per_column(export):
    with Image.open(export / "samples.png") as grid:
        # 6 samples of 3 classes: 3 columns × 2 rows of 8×8 images enlarged ×8, with 2-pixel padding.
        assert grid.size == (3 * 66 + 2, 2 * 66 + 2)


@pytest.mark.parametrize(
    "given, num_samples, seed", [({}, 16, 0), ({"num_samples": 1, "seed": 3}, 1, 3)], ids=["default", "one"]
)
def test_sample_grid_is_drawn_with_the_seed(generator_model, tmp_path, given, num_samples, seed):
    """By default 16 samples of seed 0; a single sample gets a grid too."""
    folder = hub.export_pipeline(generator_model, tmp_path / "export", **given)
    expected = hub.sample_grid(SmartOneStepPipeline(gan=generator_model), num_samples, seed)
    with Image.open(folder / "samples.png") as grid:
        np.testing.assert_array_equal(np.asarray(grid), np.asarray(expected))


def test_model_card(export):
    card = ModelCard.load(export / "README.md")
    data = card.data
    assert data.library_name == "diffusers"
    assert data.pipeline_tag == "unconditional-image-generation"
    assert {"gan", "one-step", "smart", "smart_hf"} <= set(data.tags)
    assert data.base_model == "google/ddpm-cifar10-32"
    assert data.datasets == ["uoft-cs/cifar10"]
    text = card.text
    assert "![Samples](samples.png)" in text
    assert 'DiffusionPipeline.from_pretrained("user/smart-gan", trust_remote_code=True)' in text
    assert 'SmartOneStepPipeline.from_pretrained("user/smart-gan")' in text
    assert "class_labels=[0, 1, 2, 0]" in text
    assert "| fid | 42.5 | Fréchet distance in Inception-v3 pool3 features" in text
    assert "| inception_score | 3.25 |" in text
    assert "| max_train_steps | 1000 |" in text and "| smart_weight |" not in text  # 0.1 is the default
    assert "| resolution | 8 |" in text
    assert "refine_steps" not in text  # no discriminator exported


@pytest.mark.parametrize("score_model", ["analytic", None, "some/local/path"])
def test_model_card_base_model_only_for_hub_ids(score_model):
    card = hub.model_card(DCGANGenerator(**TINY), score_model=score_model)
    assert card.data.base_model is None
    assert "class_labels" not in card.text


def assert_same_weights(loaded, expected):
    assert type(loaded) is type(expected)
    assert loaded.state_dict().keys() == expected.state_dict().keys()
    for name, tensor in expected.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_load_generator_prefers_ema_weights(tmp_path):
    live, averaged = DCGANGenerator(**TINY), ResNetGenerator(**TINY)
    live.save_pretrained(tmp_path / "generator")
    averaged.save_pretrained(tmp_path / "generator_ema")
    assert_same_weights(hub.load_generator(tmp_path), averaged)
    assert_same_weights(hub.load_generator(tmp_path, subfolder="generator"), live)
    assert_same_weights(hub.load_generator(tmp_path / "generator"), live)
    half = hub.load_generator(tmp_path, torch_dtype=torch.float16)
    assert {p.dtype for p in half.parameters()} == {torch.float16}


def test_load_generator_reads_an_exports_gan_before_any_training_folder(tmp_path):
    exported, averaged = DCGANGenerator(**TINY), DCGANGenerator(**TINY)
    exported.save_pretrained(tmp_path / "gan")
    averaged.save_pretrained(tmp_path / "generator_ema")
    assert_same_weights(hub.load_generator(tmp_path), exported)
    assert hub.generator_folders(tmp_path) == ["gan", "generator_ema", "generator", ""]
    (tmp_path / "metrics.json").write_text(json.dumps({"config": {"use_ema": False}}))
    assert hub.generator_folders(tmp_path) == ["gan", "generator", ""]
    (tmp_path / "metrics.json").write_text(json.dumps({"config": {}}))
    assert hub.generator_folders(tmp_path) == ["gan", "generator_ema", "generator", ""]
    (tmp_path / "metrics.json").write_text(json.dumps({"fd_digits": 1.0}))  # metrics without the run's config
    assert hub.generator_folders(tmp_path) == ["gan", "generator_ema", "generator", ""]


def test_load_generator_reads_safetensors_only(tmp_path):
    DCGANGenerator(**TINY).save_pretrained(tmp_path / "generator", safe_serialization=False)
    with pytest.raises(EnvironmentError):
        hub.load_generator(tmp_path)


def test_load_generator_errors(tmp_path):
    with pytest.raises(ValueError) as refused:
        hub.load_generator(tmp_path)
    assert str(refused.value) == (
        f"No generator in {tmp_path}: expected config.json in "
        "gan/, generator_ema/, generator/, the folder itself."
    )
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ValueError) as refused:
        hub.load_generator(tmp_path)
    assert (
        str(refused.value)
        == f"{tmp_path}/config.json names 'UNet2DModel', which is not a smart_hf model class."
    )
