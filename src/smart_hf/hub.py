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
    smart_hf.json      teacher, data set, license, metrics and training settings (no local paths), for tools
                       such as the Space, and `files`: every file of the export, what `push_to_hub` uploads
    samples.png        sample grid shown by the model card
    README.md          model card
"""

import importlib
import importlib.metadata
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from diffusers.models.modeling_utils import ModelMixin
from huggingface_hub import (
    CommitOperationAdd,
    EvalResult,
    ModelCard,
    ModelCardData,
    create_commit,
    create_repo,
    whoami,
)
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError
from huggingface_hub.utils import HFValidationError, validate_repo_id
from PIL import Image

from smart_hf import DEFAULT_LICENSE, __version__, models
from smart_hf.data import DIGITS
from smart_hf.hub_network import network_errors
from smart_hf.image_grid import image_grid
from smart_hf.pipelines import SmartOneStepPipeline
from smart_hf.pipelines.smart_one_step.pipeline import GENERATOR_CONFIG_FIELDS, remote_code_source
from smart_hf.training.config import GANTrainingConfig, changed_settings, from_options, recorded_settings

COMPONENT_NAME = "gan"
METADATA_NAME = "smart_hf.json"
SAMPLES_NAME = "samples.png"
# smart_hf's installed files: a teacher among them (the shipped digits-unet) is named as shipped with it.
PACKAGE_DIR = Path(__file__).resolve().parent
SMART_PAPER_URL = "https://arxiv.org/abs/2311.18208"
EMBEDDED_DIGITS = "scikit-learn digits embedded in smart_hf"
# Quality metrics a card explains and lists in its `model-index` (display name, meaning).
QUALITY_METRICS = {
    "fd_digits": ("FD_digits", "Fréchet distance in the digits classifier's features (lower is better)"),
    "fd_dinov2": ("FD_DINOv2", "Fréchet distance in DINOv2 features (lower is better)"),
    "fid": ("FID", "Fréchet distance in Inception-v3 pool3 features (lower is better)"),
    "precision": ("precision", "fidelity: share of samples inside the real k-NN manifold (higher is better)"),
    "recall": ("recall", "coverage: share of real images inside the samples' manifold (higher is better)"),
}
# Further measurements a card explains.
MEASUREMENTS = {
    "score_matching_error": "the teacher's denoising error on samples over SMaRt's t range (lower: closer to "
    "what the teacher learned)",
    "score_matching_error_real": "the same on training images: what a perfect generator would get",
}
# The papers of each technique (`GANTrainingConfig.techniques`) and metric, cited by the model card.
TECHNIQUE_PAPERS = {
    "smart": ["xia2024smart"],
    "diffusion_gan": ["wang2023diffusiongan"],
    "masked_gan": ["huang2022maskedgan"],
    "nice": ["ni2023nice"],
    "nats": ["wan2025nats", "johnson2018composite"],
    "fake_score": ["yin2024improved"],
    "ttur": ["heusel2017gans"],
    "r1": ["mescheder2018training"],
    "fd": ["heusel2017gans"],
    "precision_recall": ["kynkaanniemi2019improved"],
}
BIBTEX = {
    "yin2024improved": """@inproceedings{yin2024improved,
  title={Improved Distribution Matching Distillation for Fast Image Synthesis},
  author={Yin, Tianwei and Gharbi, Micha{\\"e}l and Park, Taesung and Zhang, Richard and Shechtman, Eli and
          Durand, Fr{\\'e}do and Freeman, William T.},
  booktitle={Advances in Neural Information Processing Systems (NeurIPS)},
  year={2024}
}""",
    "xia2024smart": """@inproceedings{xia2024smart,
  title={{SMaRt}: Improving {GANs} with Score Matching Regularity},
  author={Xia, Mengfei and Shen, Yujun and Yang, Ceyuan and Yi, Ran and Wang, Wenping and Liu, Yong-Jin},
  booktitle={International Conference on Machine Learning (ICML)},
  year={2024}
}""",
    "wang2023diffusiongan": """@inproceedings{wang2023diffusiongan,
  title={Diffusion-{GAN}: Training {GANs} with Diffusion},
  author={Wang, Zhendong and Zheng, Huangjie and He, Pengcheng and Chen, Weizhu and Zhou, Mingyuan},
  booktitle={International Conference on Learning Representations (ICLR)},
  year={2023}
}""",
    "huang2022maskedgan": """@inproceedings{huang2022maskedgan,
  title={Masked Generative Adversarial Networks are Data-Efficient Generation Learners},
  author={Huang, Jiaxing and Cui, Kaiwen and Guan, Dayan and Xiao, Aoran and Zhan, Fangneng and Lu, Shijian
          and Liao, Shengcai and Xing, Eric},
  booktitle={Advances in Neural Information Processing Systems (NeurIPS)},
  year={2022}
}""",
    "ni2023nice": """@inproceedings{ni2023nice,
  title={{NICE}: NoIse-modulated Consistency rEgularization for Data-Efficient {GANs}},
  author={Ni, Yao and Koniusz, Piotr},
  booktitle={Advances in Neural Information Processing Systems (NeurIPS)},
  year={2023}
}""",
    "wan2025nats": """@article{wan2025nats,
  title={Nested Annealed Training Scheme for Generative Adversarial Networks},
  author={Wan, Chang and Yang, Ming-Hsuan and Li, Minglu and Jiang, Yunliang and Zheng, Zhonglong},
  journal={IEEE Transactions on Circuits and Systems for Video Technology},
  year={2025},
  note={arXiv:2501.11318}
}""",
    "johnson2018composite": """@inproceedings{johnson2018composite,
  title={Composite Functional Gradient Learning of Generative Adversarial Models},
  author={Johnson, Rie and Zhang, Tong},
  booktitle={International Conference on Machine Learning (ICML)},
  year={2018}
}""",
    "heusel2017gans": """@inproceedings{heusel2017gans,
  title={{GANs} Trained by a Two Time-Scale Update Rule Converge to a Local {Nash} Equilibrium},
  author={Heusel, Martin and Ramsauer, Hubert and Unterthiner, Thomas and Nessler, Bernhard
          and Hochreiter, Sepp},
  booktitle={Advances in Neural Information Processing Systems (NeurIPS)},
  year={2017}
}""",
    "mescheder2018training": """@inproceedings{mescheder2018training,
  title={Which Training Methods for {GANs} do actually Converge?},
  author={Mescheder, Lars and Geiger, Andreas and Nowozin, Sebastian},
  booktitle={International Conference on Machine Learning (ICML)},
  year={2018}
}""",
    "kynkaanniemi2019improved": """@inproceedings{kynkaanniemi2019improved,
  title={Improved Precision and Recall Metric for Assessing Generative Models},
  author={Kynk{\\"a}{\\"a}nniemi, Tuomas and Karras, Tero and Laine, Samuli and Lehtinen, Jaakko
          and Aila, Timo},
  booktitle={Advances in Neural Information Processing Systems (NeurIPS)},
  year={2019}
}""",
}


def export_pipeline(
    generator_model: ModelMixin,
    output_dir: str | os.PathLike,
    *,
    discriminator_model: ModelMixin | None = None,
    score_model: str | None = None,
    dataset: str | None = None,
    metrics: dict[str, float] | None = None,
    evaluation: dict[str, Any] | None = None,
    training_config: dict[str, Any] | None = None,
    repo_id: str | None = None,
    license: str | None = DEFAULT_LICENSE,
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
        score_model: Hub id or path of the frozen teacher score model; a Hub id is the card's `base_model`, a
            local folder is named by its folder name only (`public_name`).
        dataset: training data set: `digits`, a Hub id (the card's `datasets`) or a local folder (its name).
        metrics: measured numbers (e.g. `{"fd_digits": 1.2, "precision": 0.8}`): quality metrics go into the
            card's table and `model-index`, other numbers into its table of the run.
        evaluation: how the quality metrics were measured (`feature_extractor`, `num_samples`, `k`, ...) or
            a `note` on why they were not, as `smart_hf.training.report.quality_metrics` describes them.
        training_config: the run's options as metrics.json records them; the card lists those that differ
            from the defaults, smart_hf.json records all that shaped the model, local paths replaced.
        repo_id: the Hub id the folder will be pushed to, used in the card's usage code.
        license: license of the weights, the card's `license` (default: smart_hf's own, apache-2.0).
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

    has_samples = num_samples > 0
    if has_samples:
        sample_grid(pipeline, num_samples, seed).save(output_dir / SAMPLES_NAME)
    card = model_card(
        generator_model,
        score_model=score_model,
        dataset=dataset,
        metrics=metrics,
        evaluation=evaluation,
        training_config=training_config,
        repo_id=repo_id,
        license=license,
        samples_image=SAMPLES_NAME if has_samples else None,
        has_discriminator=discriminator_model is not None,
    )
    card.save(output_dir / "README.md")
    # Written last, as it lists every file of the export (itself included): the folder was empty before.
    files = sorted({*_regular_files(output_dir), METADATA_NAME})
    teacher, teacher_source = public_name(score_model)
    data, data_source = public_name(dataset)
    config = generator_model.config
    _write_json(
        output_dir / METADATA_NAME,
        {
            "smart_hf_version": __version__,
            "pipeline": SmartOneStepPipeline.__name__,
            "generator": {
                "class": type(generator_model).__name__,
                **{field: config[field] for field in GENERATOR_CONFIG_FIELDS},
            },
            "score_model": teacher,
            "score_model_source": teacher_source,
            "dataset": data,
            "dataset_source": data_source,
            "license": license,
            "metrics": _numbers(metrics),
            "evaluation": evaluation or {},
            "training": {
                key: _public_value(value) for key, value in recorded_settings(training_config or {}).items()
            },
            "files": files,
        },
    )
    return output_dir


def model_card(
    generator_model: ModelMixin,
    *,
    score_model: str | None = None,
    dataset: str | None = None,
    metrics: dict[str, float] | None = None,
    evaluation: dict[str, Any] | None = None,
    training_config: dict[str, Any] | None = None,
    repo_id: str | None = None,
    license: str | None = DEFAULT_LICENSE,
    samples_image: str | None = SAMPLES_NAME,
    has_discriminator: bool = False,
) -> ModelCard:
    """The export's model card (arguments as for `export_pipeline`): Hub metadata (license, the teacher as
    `base_model` and the data set when they are Hub ids, the quality metrics as `model-index`), sample grid,
    usage code for both loading ways, evaluation, the training settings that differ from the defaults, the
    model, citations of SMaRt and of each technique and metric used. A local teacher or data set is named by
    its folder name only."""
    config = generator_model.config
    class_name = type(generator_model).__name__
    num_classes = config.num_classes or 0
    teacher, teacher_source = public_name(score_model)
    data, data_source = public_name(dataset)
    metrics = _numbers(metrics)
    evaluation = evaluation or {}
    # What SMaRt and the techniques did is known from a run's options (metrics.json), not from a subset.
    run = from_options(training_config) if training_config and "smart_weight" in training_config else None
    techniques = run.techniques if run else []
    title = repo_id.split("/")[-1] if repo_id else "SMaRt one-step image generator"
    eval_results = _eval_results(metrics, evaluation, data, data_source)
    card_data = ModelCardData(
        library_name="diffusers",
        pipeline_tag="unconditional-image-generation",
        license=license,
        tags=["gan", "one-step", "smart", "smart_hf", "image-generation", class_name],
        base_model=teacher if teacher_source == "hub" else None,
        datasets=[data] if data_source == "hub" else None,
        model_name=title if eval_results else None,
        eval_results=eval_results or None,
    )
    kind = f"class-conditional ({num_classes} classes)" if num_classes else "unconditional"
    channels = {1: "grayscale", 3: "RGB"}.get(config.out_channels, f"{config.out_channels}-channel")
    size = f"{config.resolution}×{config.resolution}"
    sections = [
        f"# {title}",
        f"A one-step, {kind} GAN generator (`{class_name}`) that maps Gaussian noise to {size} {channels} "
        f"images in a single forward pass, trained on {_describe_data(data, data_source)}. "
        + _describe_smart(teacher, teacher_source, run),
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
    sections += _evaluation_sections(metrics, evaluation)
    if training_config:
        settings = changed_settings(training_config)
        sections += [
            "## Training",
            f"The settings that differ from smart_hf {__version__}'s defaults or switch a technique on "
            f"(`{METADATA_NAME}` records every setting):",
            _table(("setting", "value"), settings.items()) if settings else "none: every default.",
        ]
    model_settings = [
        ("generator", class_name),
        *((key, config[key]) for key in sorted(config) if key[0] != "_"),
    ]
    sections += ["## Model", _table(("setting", "value"), model_settings)]
    sections += _citation_sections(techniques, metrics)
    project_url = _project_url()
    sections.append(
        f"Trained and exported with smart_hf {__version__}, an implementation of SMaRt ([paper]"
        f"({SMART_PAPER_URL})) with one-step diffusers pipelines"
        + (f": {project_url}." if project_url else ".")
    )
    body = "\n\n".join(sections)
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}\n")


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload SMaRt one-step generator",
) -> str:
    """Upload exactly the files of the export in `folder` (`export_files`: nothing else in the folder, and
    never through a symlink) to `repo_id`, created if needed once the login is checked (`create_hub_repo`).
    Returns the commit URL. A refused folder raises a `ValueError`, the Hub's refusal or no network a one-line
    `OSError`."""
    folder = Path(folder)
    files = export_files(folder)
    repo_id = create_hub_repo(repo_id, private=private, token=token)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=folder / name) for name in files]
    try:
        commit = create_commit(
            repo_id, operations, commit_message=commit_message, token=token, repo_type="model"
        )
    except network_errors() as error:  # no network, DNS, proxy, time-out, HF_HUB_OFFLINE
        raise OSError(_unreachable("push to", repo_id, error)) from None
    except HfHubHTTPError as error:
        raise OSError(f"The Hub refused the upload to {repo_id}: {_one_line(error)}") from None
    return commit.commit_url


def create_hub_repo(repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Check the Hub login (`whoami`) and create the model repository `repo_id` unless it exists, so that a
    long job that will push there fails at once, not at its end. Returns the repository's full id (a bare
    name gets the user's namespace); raises a one-line `ValueError` for an invalid id or a missing or refused
    login, an `OSError` when the Hub cannot be reached."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"{repo_id!r} is not a valid Hub repository id: {_one_line(error)}") from None
    try:
        user = whoami(token=token)["name"]
    except LocalTokenNotFoundError:
        raise ValueError(
            f"Not logged in to the Hugging Face Hub, so {repo_id} cannot be created or pushed to: run "
            "`hf auth login` (a token with write access) or set HF_TOKEN, then retry."
        ) from None
    except network_errors() as error:
        raise OSError(_unreachable("log in for", repo_id, error)) from None
    except HfHubHTTPError as error:  # e.g. an invalid or expired token
        raise ValueError(f"The Hub refused the login for {repo_id}: {_one_line(error)}") from None
    try:
        return create_repo(repo_id, private=private, token=token, exist_ok=True, repo_type="model").repo_id
    except network_errors() as error:
        raise OSError(_unreachable("create", repo_id, error)) from None
    except HfHubHTTPError as error:  # e.g. a read-only token, or another user's namespace
        raise ValueError(f"The Hub refused to create {repo_id} as {user}: {_one_line(error)}") from None


def export_files(folder: str | os.PathLike) -> list[str]:
    """The files of the export in `folder`, as the list in its smart_hf.json (which `export_pipeline` writes)
    names them: what `push_to_hub` uploads. Raises a `ValueError` unless `folder` is an export whose listed
    files are all there as regular files inside it: a symlink, which an upload would follow to whatever it
    points at, is refused."""
    folder = Path(folder)
    _check_inside(folder, METADATA_NAME)
    metadata = folder / METADATA_NAME
    files = json.loads(metadata.read_text()).get("files") if metadata.is_file() else None
    if not isinstance(files, list) or METADATA_NAME not in files:
        raise ValueError(
            f"{folder} is not a smart_hf export: it has no {METADATA_NAME} listing its files (an export "
            "written before smart_hf listed them needs exporting again with `smart-hf export`)."
        )
    for name in files:
        _check_inside(folder, name)
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"{folder} is an incomplete smart_hf export: missing {missing}.")
    validate_export(folder)
    return files


def public_name(name: str | None) -> tuple[str | None, str | None]:
    """How an export names a teacher or data set without local paths: `(name, source)`, source `"hub"` for a
    Hub id, `"embedded"` for the digits smart_hf embeds, `"smart_hf"` for a folder shipped with smart_hf and
    `"local"` for any other path (both by their folder name only), `"name"` for anything else (as given)."""
    if not name:
        return None, None
    if name == DIGITS:
        return name, "embedded"
    if _is_hub_id(name):
        return name, "hub"
    path = Path(name).expanduser()
    if path.is_absolute() or path.exists() or len(path.parts) > 1:
        path = path.resolve()
        return path.name, "smart_hf" if path.is_relative_to(PACKAGE_DIR) else "local"
    return name, "name"


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


def sample_grid(pipeline: SmartOneStepPipeline, num_samples: int, seed: int) -> Image.Image:
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


def _describe_data(name: str | None, source: str | None) -> str:
    if source == "embedded":
        return f"the {EMBEDDED_DIGITS} (1,797 8×8 grayscale handwritten digits; not a Hub data set)"
    if source == "hub":
        return f"[`{name}`](https://huggingface.co/datasets/{name})"
    if source == "local":
        return f"`{name}`, a local data set (not on the Hub)"
    return f"`{name}`" if name else "an unnamed data set"


def _describe_smart(teacher: str | None, source: str | None, run: GANTrainingConfig | None) -> str:
    """What SMaRt did: the teacher, named without local paths, and the regularizer's settings when known."""
    if run is not None and run.smart.weight == 0:
        return "It was trained as a plain GAN: SMaRt's regularizer was off (λ = 0)."
    if source == "hub":
        named = f"the diffusion model [`{teacher}`](https://huggingface.co/{teacher})"
    elif source == "smart_hf":
        named = f"the diffusion model `{teacher}` shipped with smart_hf (local, not on the Hub)"
    elif source == "local":
        named = f"the local diffusion model `{teacher}` (a folder on the training machine, not on the Hub)"
    else:
        named = f"`{teacher}`" if teacher else "a frozen diffusion model"
    text = (
        f"It was trained with [SMaRt]({SMART_PAPER_URL}) (score matching regularity, Xia et al., ICML 2024): "
        f"{named} regularised the generator"
    )
    if run is None:
        return text + "."
    smart = run.smart
    every = "on every generator step" if smart.interval == 1 else f"every {smart.interval} generator steps"
    steps = f"t in [{smart.t_min}, {smart.t_max}]"
    return f"{text} with weight λ = {smart.weight:g} at diffusion steps {steps}, {every}."


def _evaluation_sections(metrics: dict[str, float], evaluation: dict[str, Any]) -> list[str]:
    """The card's evaluation: how the quality metrics were measured (or why not) and their table; then the
    other numbers of the run."""
    sections = ["## Evaluation"]
    extractor = evaluation.get("feature_extractor")
    if extractor:
        sections.append(
            f"Measured at the end of training on {evaluation.get('num_samples')} generated samples against "
            f"{evaluation.get('num_reference')} {evaluation.get('reference', 'real images')}, in the "
            f"{evaluation.get('feature_dim')}-d features of `{extractor}`"
            + (f" (precision and recall: k = {evaluation['k']})" if "k" in evaluation else "")
            + ". Distances in these features are not comparable with FIDs in Inception features; compare "
            "models with `smart-hf evaluate` on 10,000 or more samples."
        )
    if evaluation.get("note"):
        sections.append(f"Note: {evaluation['note']}")
    if best := evaluation.get("best_during_training"):
        sections.append(_describe_best(best))
    known = {**{key: meaning for key, (_, meaning) in QUALITY_METRICS.items()}, **MEASUREMENTS}
    measured = [(key, metrics[key], meaning) for key, meaning in known.items() if key in metrics]
    if measured:
        lines = ["| metric | value | meaning |", "| --- | --- | --- |"]
        lines += [f"| {key} | {_format_value(value)} | {meaning} |" for key, value, meaning in measured]
        sections.append("\n".join(lines))
    others = [(key, value) for key, value in metrics.items() if key not in known]
    if others:
        sections += ["Training run:", _table(("measure", "value"), others)]
    return sections if len(sections) > 1 else []


def _describe_best(best: dict[str, Any]) -> str:
    """The lowest FD measured during training (`--eval_steps`), as `TrainingEvaluator` records it."""
    metric = best["metric"]
    name = QUALITY_METRICS.get(metric, (metric,))[0]
    others = "".join(f", {key} {_format_value(best[key])}" for key in ("precision", "recall") if key in best)
    return (
        f"Best during training (evaluated every `--eval_steps`): {name} {_format_value(best[metric])}"
        f"{others} at step {best['step']}, on {best['num_samples']} generated samples against as many "
        f"{best.get('reference', 'real images')} in the {best.get('feature_dim')}-d features of "
        f"`{best['feature_extractor']}`. The run's `checkpoint-best/` holds that generator; this export is "
        "the final one."
    )


def _eval_results(
    metrics: dict[str, float], evaluation: dict[str, Any], data: str | None, data_source: str | None
) -> list[EvalResult]:
    """The quality metrics as the card's `model-index` entries."""
    return [
        EvalResult(
            task_type="unconditional-image-generation",
            dataset_type=data or "unknown",
            dataset_name=EMBEDDED_DIGITS if data_source == "embedded" else data or "unknown",
            dataset_split="train",
            metric_type=key,
            metric_name=name,
            metric_value=metrics[key],
            metric_config=evaluation.get("feature_extractor"),
            metric_args={arg: evaluation[arg] for arg in _metric_args(key) if arg in evaluation} or None,
        )
        for key, (name, _) in QUALITY_METRICS.items()
        if key in metrics
    ]


def _metric_args(metric: str) -> tuple[str, ...]:
    return ("num_samples", "k") if metric in ("precision", "recall") else ("num_samples",)


def _citation_sections(techniques: list[str], metrics: dict[str, float]) -> list[str]:
    """BibTeX of SMaRt, of each technique used and of the metrics reported."""
    used = ["smart", *techniques]
    used += ["fd"] if any(key in metrics for key in ("fd_digits", "fd_dinov2", "fid")) else []
    used += ["precision_recall"] if "precision" in metrics or "recall" in metrics else []
    papers = list(dict.fromkeys(paper for name in used for paper in TECHNIQUE_PAPERS[name]))
    entries = "\n\n".join(BIBTEX[paper] for paper in papers)
    intro = "SMaRt, and the techniques and metrics this model used:"
    return ["## Citation", intro, f"```bibtex\n{entries}\n```"]


def _project_url() -> str | None:
    """smart_hf's home page, from its package metadata (pyproject.toml's `[project.urls]`), if it has one."""
    try:
        urls = importlib.metadata.metadata("smart_hf").get_all("Project-URL") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    return next((url.split(",", 1)[1].strip() for url in urls if "," in url), None)


def _check_inside(folder: Path, name: Any) -> None:
    """Refuse a listed file that is not a relative path inside `folder`, or that a symlink leads to."""
    parts = Path(name).parts if isinstance(name, str) else ()
    if not parts or Path(name).is_absolute() or ".." in parts:
        raise ValueError(f"{folder}/{METADATA_NAME} lists {name!r}, which is not a file inside the export.")
    path = folder
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise ValueError(
                f"{path} is a symlink: an upload would follow it to whatever it points at. Replace it with "
                "the file itself, or export again."
            )


def _regular_files(folder: Path) -> list[str]:
    """Relative POSIX paths of the regular files under `folder` (symlinks neither listed nor followed)."""
    files = []
    for root, _, names in os.walk(folder):  # does not enter symlinked folders
        paths = [Path(root, name) for name in names]
        files += [path.relative_to(folder).as_posix() for path in paths if not path.is_symlink()]
    return files


def _numbers(values: dict[str, Any] | None) -> dict[str, float]:
    """The numeric entries of `values` (not booleans, not None)."""
    return {
        key: value
        for key, value in (values or {}).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def _public_value(value: Any) -> Any:
    """A recorded setting without local paths: each path-like string replaced by its folder name."""
    if isinstance(value, list):
        return [_public_value(item) for item in value]
    return public_name(value)[0] if isinstance(value, str) else value


def _unreachable(action: str, repo_id: str, error: Exception) -> str:
    return f"Cannot reach the Hub to {action} {repo_id} ({_one_line(error)}); check the network, then retry."


def _one_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


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
