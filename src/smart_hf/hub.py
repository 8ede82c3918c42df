"""Export a trained generator as a self-contained pipeline folder, describe it with a model card, push it.

An export loads three ways: `SmartOneStepPipeline.from_pretrained(folder)` with smart_hf installed,
`DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` without it, and the generator alone with
`<GeneratorClass>.from_pretrained(folder, subfolder="gan")`. `SmartOneStepPipeline.save_pretrained` writes its
first five entries (so a saved pipeline loads the same ways); the export adds the last three. Its layout:

    model_index.json   {"_class_name": ["pipeline", "SmartOneStepPipeline"], "gan": ["<module>", "<Class>"]}
                       and `_smart_hf_library`: the smart_hf class of each component
    pipeline.py        copy of pipelines/smart_one_step/pipeline.py
    gan/               config.json, diffusion_pytorch_model.safetensors, <module>.py (the model's source file)
    discriminator/     the same for the discriminator, when exported with one (for `refine_steps`)
    smart_hf.json      score model, dataset, metrics and training settings, for tools such as the Space
    samples.png        sample grid shown by the model card
    README.md          model card
"""

import importlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from diffusers.models.modeling_utils import ModelMixin
from huggingface_hub import ModelCard, ModelCardData, create_repo, upload_folder
from huggingface_hub.utils import HFValidationError, validate_repo_id
from PIL import Image

from smart_hf import __version__, models
from smart_hf.image_grid import image_grid
from smart_hf.pipelines import SmartOneStepPipeline
from smart_hf.pipelines.smart_one_step.pipeline import GENERATOR_CONFIG_FIELDS, remote_code_source

COMPONENT_NAME = "gan"
METADATA_NAME = "smart_hf.json"
SAMPLES_NAME = "samples.png"
# Never uploaded: training state (optimizer, RNG, checkpoints), logs, pickles and anything secret.
PUSH_IGNORE_PATTERNS = [
    "checkpoint-*",
    "*/checkpoint-*",
    "logs/*",
    "*/logs/*",
    "runs/*",
    "wandb/*",
    "*.pt",
    "*.pth",
    "*.bin",
    "*.ckpt",
    "*.pkl",
    "*.pickle",
    "*.npy",
    "*optimizer*",
    "random_states*",
    ".env",
    ".env.*",
    "*.env",
    "*token*",
    "*.key",
    ".netrc",
    ".git-credentials",
    "__pycache__/*",
    "*/__pycache__/*",
    "*.pyc",
]


def export_pipeline(
    generator_model: ModelMixin,
    output_dir: str | os.PathLike,
    *,
    discriminator_model: ModelMixin | None = None,
    score_model: str | None = None,
    dataset: str | None = None,
    metrics: dict[str, float] | None = None,
    training_config: dict[str, Any] | None = None,
    repo_id: str | None = None,
    license: str | None = None,
    num_samples: int = 16,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write `generator_model` as a pipeline folder that loads with or without smart_hf (see the module doc).

    Args:
        generator_model: a smart_hf image generator (e.g. `ResNetGenerator`), unwrapped from accelerate/DDP.
        output_dir: the folder to create; it must be empty or missing, or an earlier export with `overwrite`.
        discriminator_model: a smart_hf discriminator to ship beside the generator, for the pipeline's
            discriminator-guided refinement (`refine_steps`); none by default.
        score_model: Hub id or path of the frozen teacher score model; a Hub id is the card's `base_model`.
        dataset: training data set name or Hub id.
        metrics: measured metrics (e.g. `{"fid": 12.3}`), shown in the card.
        training_config: training settings, shown in the card.
        repo_id: the Hub id the folder will be pushed to, used in the card's usage code.
        license: license of the weights, for the card.
        num_samples: images in the card's sample grid (0: no grid); drawn with `seed`.
        overwrite: replace an existing export in `output_dir`.

    Returns:
        The export folder.
    """
    _check_generator(generator_model)
    if discriminator_model is not None:
        _check_discriminator(discriminator_model, generator_model)
    output_dir = _prepare_output_dir(Path(output_dir), overwrite)
    pipeline = SmartOneStepPipeline(gan=generator_model, discriminator=discriminator_model)
    pipeline.save_pretrained(output_dir)

    class_name = type(generator_model).__name__
    config = generator_model.config
    _write_json(
        output_dir / METADATA_NAME,
        {
            "smart_hf_version": __version__,
            "pipeline": SmartOneStepPipeline.__name__,
            "generator": {"class": class_name, **{field: config[field] for field in GENERATOR_CONFIG_FIELDS}},
            "score_model": score_model,
            "dataset": dataset,
            "metrics": metrics or {},
            "training": training_config or {},
        },
    )
    has_samples = num_samples > 0
    if has_samples:
        _sample_grid(pipeline, num_samples, seed).save(output_dir / SAMPLES_NAME)
    card = model_card(
        generator_model,
        score_model=score_model,
        dataset=dataset,
        metrics=metrics,
        training_config=training_config,
        repo_id=repo_id,
        license=license,
        samples_image=SAMPLES_NAME if has_samples else None,
        has_discriminator=discriminator_model is not None,
    )
    card.save(output_dir / "README.md")
    return output_dir


def model_card(
    generator_model: ModelMixin,
    *,
    score_model: str | None = None,
    dataset: str | None = None,
    metrics: dict[str, float] | None = None,
    training_config: dict[str, Any] | None = None,
    repo_id: str | None = None,
    license: str | None = None,
    samples_image: str | None = SAMPLES_NAME,
    has_discriminator: bool = False,
) -> ModelCard:
    """The export's model card: Hub metadata, sample grid, usage code for both loading ways, model,
    training settings and metrics."""
    config = generator_model.config
    class_name = type(generator_model).__name__
    num_classes = config.num_classes or 0
    card_data = ModelCardData(
        library_name="diffusers",
        pipeline_tag="unconditional-image-generation",
        license=license,
        tags=["gan", "one-step", "smart", "smart_hf", "image-generation", class_name],
        base_model=score_model if _is_hub_id(score_model) else None,
        datasets=[dataset] if dataset else None,
    )
    title = repo_id.split("/")[-1] if repo_id else "SMaRt one-step image generator"
    teacher = f"`{score_model}`" if score_model else "a frozen diffusion model"
    kind = f"class-conditional ({num_classes} classes)" if num_classes else "unconditional"
    channels = {1: "grayscale", 3: "RGB"}.get(config.out_channels, f"{config.out_channels}-channel")
    size = f"{config.resolution}×{config.resolution}"
    sections = [
        f"# {title}",
        f"A one-step, {kind} GAN generator (`{class_name}`) that maps Gaussian noise to {size} {channels} "
        f"images in a single forward pass. It was trained with SMaRt (score matching regularity, Xia et al., "
        f"ICML 2024): {teacher} regularised the generator" + (f" on `{dataset}`." if dataset else "."),
    ]
    if samples_image:
        sections.append(f"![Samples]({samples_image})")
    sections += ["## Usage", _usage(repo_id or "path/to/this/folder", num_classes)]
    if has_discriminator:
        sections.append(
            "The export also holds the discriminator trained with the generator: `pipe(..., refine_steps=5, "
            "refine_step_size=0.25)` moves each sample along the discriminator's gradient after the one-step "
            "generator (composite functional gradient refinement; `refine_steps=0`, the default, skips it)."
        )
    model_settings = [
        ("generator", class_name),
        *((key, config[key]) for key in sorted(config) if key[0] != "_"),
    ]
    sections += ["## Model", _table(("setting", "value"), model_settings)]
    if training_config:
        sections += ["## Training", _table(("setting", "value"), sorted(training_config.items()))]
    if metrics:
        sections += ["## Metrics", _table(("metric", "value"), sorted(metrics.items()))]
    body = "\n\n".join(sections)
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}\n")


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload SMaRt one-step generator",
) -> str:
    """Create `repo_id` if needed and upload an export folder, without training state, logs, pickles or
    secrets (`PUSH_IGNORE_PATTERNS`). Returns the commit URL."""
    validate_export(folder)
    try:
        repo = create_repo(repo_id, private=private, token=token, exist_ok=True, repo_type="model")
        commit = upload_folder(
            repo_id=repo.repo_id,
            folder_path=os.fspath(folder),
            commit_message=commit_message,
            token=token,
            ignore_patterns=PUSH_IGNORE_PATTERNS,
        )
    except _network_errors() as error:  # no network, DNS, proxy, time-out
        raise OSError(
            f"Cannot reach the Hub to push {repo_id} ({error}); check the network, then retry."
        ) from None
    return commit.commit_url


def _network_errors() -> tuple[type[Exception], ...]:
    """Transport errors of the HTTP clients huggingface_hub may use (httpx; httpx2 from its version 2 on)."""
    errors = []
    for name in ("httpx", "httpx2"):
        try:
            errors.append(importlib.import_module(name).TransportError)
        except ImportError:
            continue
    return tuple(errors)


def validate_export(folder: str | os.PathLike) -> dict[str, Any]:
    """Raise a `ValueError` naming what is missing unless `folder` is a complete smart_hf export; returns its
    model_index.json."""
    folder = Path(folder)
    index_path = folder / SmartOneStepPipeline.config_name
    if not index_path.is_file():
        raise ValueError(f"{folder} is not a smart_hf export: it has no {index_path.name}.")
    model_index = json.loads(index_path.read_text())
    expected = ["pipeline", SmartOneStepPipeline.__name__]
    if model_index.get("_class_name") != expected:
        raise ValueError(
            f"{folder} is not a smart_hf export: {index_path.name} names {model_index.get('_class_name')!r}, "
            f"expected {expected}."
        )
    required = ["pipeline.py"]
    for name, value in model_index.items():
        if not name.startswith("_"):
            module, _ = value
            required += [
                f"{name}/{module}.py",
                f"{name}/config.json",
                f"{name}/diffusion_pytorch_model.safetensors",
            ]
    missing = [path for path in required if not (folder / path).is_file()]
    if missing:
        raise ValueError(f"{folder} is an incomplete smart_hf export: missing {missing}.")
    return model_index


def generator_folders(path: str | os.PathLike) -> list[str]:
    """Where a generator may be, in order of preference: `gan/` (an export), `generator_ema/`, `generator/` (a
    training output folder), the folder itself. When the folder's metrics.json describes a run without an EMA,
    a `generator_ema/` beside it is not that run's and is skipped."""
    metrics = Path(path, "metrics.json")
    used_ema = (
        json.loads(metrics.read_text()).get("config", {}).get("use_ema", True) if metrics.is_file() else True
    )
    return [COMPONENT_NAME, *(["generator_ema"] if used_ema else []), "generator", ""]


def load_generator(
    path: str | os.PathLike, subfolder: str | None = None, torch_dtype: torch.dtype | None = None
) -> ModelMixin:
    """Load a smart_hf generator from a folder written by `save_pretrained`, found in `subfolder` or else in
    the first of `generator_folders(path)` (the EMA weights of a training output folder are preferred). Only
    safetensors weights are read."""
    path = Path(path)
    candidates = [subfolder] if subfolder is not None else generator_folders(path)
    found = next((name for name in candidates if (path / name / "config.json").is_file()), None)
    if found is None:
        raise ValueError(
            f"No generator in {path}: expected config.json in "
            + ", ".join(f"{name}/" if name else "the folder itself" for name in candidates)
            + "."
        )
    class_name = json.loads((path / found / "config.json").read_text()).get("_class_name")
    model_class = getattr(models, class_name or "", None)
    if not (isinstance(model_class, type) and issubclass(model_class, ModelMixin)):
        raise ValueError(
            f"{path / found}/config.json names {class_name!r}, which is not a smart_hf model class."
        )
    return model_class.from_pretrained(
        path, subfolder=found or None, torch_dtype=torch_dtype, use_safetensors=True
    )


def _check_generator(generator_model: ModelMixin) -> None:
    """Refuse what the export could not load back, before an earlier export is replaced."""
    _check_model_mixin(generator_model, "generator")
    missing = [field for field in GENERATOR_CONFIG_FIELDS if field not in generator_model.config]
    if missing:
        raise ValueError(
            f"{type(generator_model).__name__} is not an image generator: its config lacks {missing}."
        )
    _check_model_source(generator_model)


def _check_discriminator(discriminator_model: ModelMixin, generator_model: ModelMixin) -> None:
    """Refuse a discriminator the pipeline could not use with the generator."""
    _check_model_mixin(discriminator_model, "discriminator")
    SmartOneStepPipeline(gan=generator_model, discriminator=discriminator_model)  # checks that they fit
    _check_model_source(discriminator_model)


def _check_model_mixin(model: Any, role: str) -> None:
    if not isinstance(model, ModelMixin):
        raise ValueError(
            f"Expected a diffusers ModelMixin {role}, got {type(model).__name__}; unwrap models "
            "prepared by accelerate with `accelerator.unwrap_model` first."
        )


def _check_model_source(model: ModelMixin) -> None:
    """An export loads with `SmartOneStepPipeline.from_pretrained` too, which builds smart_hf classes only;
    and the source file `save_pretrained` ships must run without smart_hf."""
    module = type(model).__module__
    if not module.startswith("smart_hf."):
        raise ValueError(f"Only smart_hf model classes can be exported, got {module}.{type(model).__name__}.")
    remote_code_source(type(model))


def _prepare_output_dir(output_dir: Path, overwrite: bool) -> Path:
    if output_dir.exists() and any(output_dir.iterdir()):
        if not overwrite:
            raise ValueError(
                f"{output_dir} is not empty; pass overwrite=True (`--overwrite`) to replace an export."
            )
        validate_export(output_dir)  # only ever delete an export
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    return output_dir


def _sample_grid(pipeline: SmartOneStepPipeline, num_samples: int, seed: int) -> Image.Image:
    """Sample grid (the pipeline runs its models in eval mode); a class-conditional generator with at most 16
    classes gets one class per column."""
    num_classes = pipeline.num_classes
    by_column = 0 < num_classes <= 16
    labels = [index % num_classes for index in range(num_samples)] if by_column else None
    images = pipeline(
        batch_size=num_samples, class_labels=labels, generator=torch.Generator().manual_seed(seed)
    ).images
    return image_grid(images, num_columns=num_classes if by_column else None)


def _usage(repo: str, num_classes: int) -> str:
    labels = f", class_labels=[{', '.join(str(i % num_classes) for i in range(4))}]" if num_classes else ""
    return f"""With plain diffusers (runs the pipeline code shipped in this repository):

```python
import torch
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained("{repo}", trust_remote_code=True)
images = pipe(batch_size=4{labels}, generator=torch.Generator().manual_seed(0)).images
images[0].save("sample.png")
```

With smart_hf installed (no remote code: the classes come from the library):

```python
import torch
from smart_hf.pipelines import SmartOneStepPipeline

pipe = SmartOneStepPipeline.from_pretrained("{repo}")
images = pipe(batch_size=4{labels}, generator=torch.Generator().manual_seed(0)).images
```

or from the command line: `smart-hf generate {repo} --num-images 16 --seed 0 --out grid.png`"""


def _table(header: tuple[str, str], rows) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    lines += [f"| {key} | {_format_value(value)} |" for key, value in rows]
    return "\n".join(lines)


def _format_value(value: Any) -> str:
    text = (
        f"{value:.6g}"
        if isinstance(value, float)
        else json.dumps(value)
        if isinstance(value, list | dict)
        else str(value)
    )
    return text.replace("|", "\\|")


def _is_hub_id(name: str | None) -> bool:
    if not name or os.path.exists(name) or name.count("/") != 1:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
