"""Gradio Space for a SMaRt one-step GAN generator: sample grids, latent interpolation and a timed comparison
with the multi-step diffusion teacher whose score regularised the generator.

The model is a smart_hf export (a local folder or a Hub id), chosen with the `SMART_MODEL` environment
variable (on a Space: the Space's variable, which `smart-hf push-space` sets) and, from a smart_hf checkout,
`outputs/demo` by default. It is loaded with `DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`,
which runs the pipeline code shipped in the export, so this app needs torch, diffusers and gradio but not
smart_hf.

    SMART_MODEL=outputs/demo/pipeline python spaces/smart_gan_demo/app.py

The generation logic is plain functions (`load_model`, `generate`, `interpolate`, `compare_with_teacher`);
`build_demo` wraps them in the UI and turns bad input into messages on the page.
"""

import importlib.util
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor
from huggingface_hub import hf_hub_download, snapshot_download
from PIL import Image

logger = logging.getLogger(__name__)

MODEL_ENV = "SMART_MODEL"
TEACHER_ENV = "SMART_TEACHER"  # overrides the teacher named in smart_hf.json, e.g. with a Hub id
NO_MODEL = (
    f"No model chosen: set the Space variable {MODEL_ENV} to the Hub id of a smart_hf export (Settings → "
    "Variables and secrets, then restart the Space), or deploy with "
    "`smart-hf push-space <space id> --model <model id>`."
)
# `make demo` trains into outputs/demo and exports the pipeline to its pipeline/ subfolder.
LOCAL_DEMO_MODEL = Path(__file__).resolve().parents[2] / "outputs" / "demo"
METADATA_NAME = "smart_hf.json"
MAX_IMAGES = 64
MAX_SEED = 2**32 - 1
MAX_FRAMES = 16
MAX_TEACHER_IMAGES = 16
MAX_TEACHER_STEPS = 1000
MIN_TILE_SIZE = 128  # small images are enlarged to at least this many pixels, nearest-neighbour
CONCURRENCY_LIMIT = int(os.environ.get("SMART_CONCURRENCY_LIMIT", "2"))
MAX_QUEUE_SIZE = 64
TEACHER_SCHEDULERS = {"DDIM": DDIMScheduler, "DDPM": DDPMScheduler}
# Only configs and safetensors weights of a teacher are downloaded: pickled weights can run code.
TEACHER_ALLOW_PATTERNS = [
    f"{folder}{name}"
    for folder in ("", "unet/", "scheduler/")
    for name in ("config.json", "scheduler_config.json", "*.safetensors")
]
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# System fonts: the page needs nothing from outside the server. Pixelated scaling keeps small images crisp.
THEME = gr.themes.Soft(
    font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
)
CSS = "#gallery img, #strip img, #grid img { image-rendering: pixelated; }"


@dataclass
class Teacher:
    """The frozen diffusion model the generator was regularised with: a `UNet2DModel` and its schedule."""

    unet: UNet2DModel
    scheduler_config: dict[str, Any]
    source: str

    @property
    def num_classes(self) -> int:
        return self.unet.config.num_class_embeds or 0


@dataclass
class LoadedModel:
    """A one-step pipeline, what its smart_hf.json says, and its teacher when that loads."""

    pipeline: DiffusionPipeline
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)
    teacher: Teacher | None = None
    teacher_status: str = ""

    @property
    def num_classes(self) -> int:
        return self.pipeline.gan.config.num_classes or 0

    @property
    def latent_dim(self) -> int:
        return self.pipeline.gan.config.latent_dim


def default_model() -> str | None:
    """`SMART_MODEL`, else the model `make demo` writes when this file runs from the smart_hf repository, else
    None: a deployed Space names its model only by its variable, as no model is the same for every Space."""
    if os.environ.get(MODEL_ENV):
        return os.environ[MODEL_ENV]
    if Path(__file__).resolve().parent.parent.name == "spaces":
        return str(LOCAL_DEMO_MODEL)
    return None


def resolve_model_path(path: str | os.PathLike) -> str:
    """The export folder for `path` (the folder itself or its pipeline/ subfolder, as in a training output
    folder), or a Hub id as is. Raises a `ValueError` that says what to do when there is no model."""
    path = os.fspath(path)
    folder = Path(path).expanduser()
    if folder.is_dir():
        for candidate in (folder, folder / "pipeline"):
            if (candidate / "model_index.json").is_file():
                return str(candidate)
        raise ValueError(
            f"No one-step pipeline in `{path}`: expected model_index.json there or in its pipeline/ "
            f"subfolder. Run `make demo`, or set {MODEL_ENV} to an export folder or a Hub id."
        )
    if _is_hub_id(path):
        return path
    raise ValueError(
        f"No model at `{path}`: there is no such folder. Run `make demo` to train and export one, or set "
        f"{MODEL_ENV} to an export folder or a Hub id."
    )


def load_model(path: str | os.PathLike, teacher: str | None = None) -> LoadedModel:
    """Load a one-step pipeline (a smart_hf export) from a folder or the Hub, without smart_hf installed.

    The teacher is `teacher` if given, else the one the export's smart_hf.json names (`metadata_teacher`). A
    teacher that does not load is not an error: the model still generates, and `teacher_status` says why there
    is no comparison.
    """
    source = resolve_model_path(path)
    try:
        pipeline = DiffusionPipeline.from_pretrained(source, trust_remote_code=True)
    except Exception as error:  # broken files fail in many ways; the page shows which
        raise ValueError(
            f"Could not load the pipeline in `{source}`: {type(error).__name__}: {error}"
        ) from error
    gan = getattr(pipeline, "gan", None)
    if gan is None or "latent_dim" not in gan.config:
        raise ValueError(f"`{source}` is not a smart_hf one-step pipeline: it has no `gan` image generator.")
    model = LoadedModel(pipeline=pipeline.to(DEVICE), source=source, metadata=_read_metadata(source))
    teacher = teacher or metadata_teacher(model.metadata)
    if not teacher:
        model.teacher_status = f"the model's {METADATA_NAME} names no teacher score model."
        return model
    try:
        model.teacher = load_teacher(teacher, relative_to=source)
    except ValueError as error:
        model.teacher_status = str(error)
    return model


def metadata_teacher(metadata: dict[str, Any]) -> str | None:
    """The teacher a smart_hf.json names, never by a local path: a Hub id, or the folder name of a local
    teacher (`score_model_source` "local", found only beside the model or the working directory) or of one
    shipped with smart_hf ("smart_hf": taken from the installed smart_hf when there is one, e.g. for
    `make space`; a Space has none)."""
    name = metadata.get("score_model")
    if (
        name
        and metadata.get("score_model_source") == "smart_hf"
        and (spec := importlib.util.find_spec("smart_hf"))
    ):
        shipped = Path(spec.submodule_search_locations[0], "assets", "score_models", name)
        if shipped.is_dir():
            return str(shipped)
    return name


def load_teacher(name: str, relative_to: str | None = None) -> Teacher:
    """A `UNet2DModel` teacher and its scheduler config, from a DDPMPipeline folder (unet/ + scheduler/), a
    bare model folder or a Hub id. A relative folder is looked up from the working directory, then from
    `relative_to` (the model folder). Without a scheduler config, DDPM's defaults apply."""
    candidates = [Path(name).expanduser()]
    if relative_to and not Path(name).is_absolute():
        candidates.append(Path(relative_to) / name)
    root = next((path for path in candidates if path.is_dir()), None)
    if root is None:
        if not _is_hub_id(name):
            raise ValueError(
                f"The teacher `{name}` is neither a folder here nor a Hub id; set {TEACHER_ENV} to its "
                "Hub id."
            )
        try:
            root = Path(snapshot_download(name, allow_patterns=TEACHER_ALLOW_PATTERNS))
        except Exception as error:
            raise ValueError(f"Could not download the teacher `{name}`: {type(error).__name__}.") from error
    subfolder = "unet" if (root / "unet" / "config.json").is_file() else None
    config_path = root / (subfolder or "") / "config.json"
    if not config_path.is_file():
        raise ValueError(f"The teacher `{name}` is not a DDPMPipeline folder: it has no unet/config.json.")
    class_name = json.loads(config_path.read_text()).get("_class_name")
    if class_name != UNet2DModel.__name__:
        raise ValueError(f"The teacher `{name}` is a {class_name}; only UNet2DModel teachers sample images.")
    try:
        unet = UNet2DModel.from_pretrained(root, subfolder=subfolder, use_safetensors=True)
    except Exception as error:
        raise ValueError(f"Could not load the teacher `{name}`: {type(error).__name__}: {error}") from error
    scheduler_folder = root / "scheduler" if subfolder else root
    scheduler_config = {}
    if (scheduler_folder / "scheduler_config.json").is_file():
        scheduler_config = dict(DDPMScheduler.load_config(scheduler_folder))
    return Teacher(unet=unet.to(DEVICE).eval(), scheduler_config=scheduler_config, source=name)


def generate(
    model: LoadedModel,
    num_images: int = 16,
    seed: int = 0,
    class_label: int | str | None = None,
    truncation: float = 1.0,
) -> list[Image.Image]:
    """`num_images` images from one forward pass, reproducible from `seed`; a class-conditional model draws
    random classes when `class_label` is None."""
    images, _ = _generate_timed(model, num_images, seed, class_label, truncation)
    return images


def interpolate(
    model: LoadedModel,
    seed_a: int,
    seed_b: int,
    num_frames: int = 8,
    class_label: int | str | None = None,
    truncation: float = 1.0,
) -> Image.Image:
    """A strip of `num_frames` images along the spherical interpolation between the latents of two seeds.

    The ends are the latents of `generate(model, 1, seed_a)` and `generate(model, 1, seed_b)`. A
    class-conditional model keeps one class along the strip: `class_label`, or the one `seed_a` draws.
    """
    seed_a = _check_int("seed A", seed_a, 0, MAX_SEED)
    seed_b = _check_int("seed B", seed_b, 0, MAX_SEED)
    num_frames = _check_int("number of frames", num_frames, 2, MAX_FRAMES)
    truncation = _check_truncation(truncation)
    label = parse_class_label(class_label, model.num_classes)
    generator_a = torch.Generator().manual_seed(seed_a)
    start = torch.randn(1, model.latent_dim, generator=generator_a)
    if model.num_classes and label is None:
        label = int(torch.randint(model.num_classes, (1,), generator=generator_a))
    end = torch.randn(1, model.latent_dim, generator=torch.Generator().manual_seed(seed_b))
    latents = torch.cat([slerp(start, end, weight) for weight in torch.linspace(0, 1, num_frames).tolist()])
    images = model.pipeline(
        batch_size=num_frames, class_labels=label, latents=latents, truncation=truncation
    ).images
    return image_grid(images, num_columns=num_frames)


def compare_with_teacher(
    model: LoadedModel,
    num_images: int = 8,
    seed: int = 0,
    class_label: int | str | None = None,
    truncation: float = 1.0,
    scheduler: str = "DDIM",
    num_steps: int = 50,
) -> tuple[Image.Image, Image.Image, dict[str, float]]:
    """Grids from the one-step generator and from the teacher's `num_steps`-step sampling with the same
    seed, and the measured wall time of each in seconds (`{"one_step": ..., "teacher": ...}`)."""
    if model.teacher is None:
        raise ValueError(f"No teacher to compare with: {model.teacher_status}")
    num_images = _check_int("number of images", num_images, 1, MAX_TEACHER_IMAGES)
    seed = _check_int("seed", seed, 0, MAX_SEED)
    num_steps = _check_int("number of teacher steps", num_steps, 1, MAX_TEACHER_STEPS)
    if not isinstance(scheduler, str) or scheduler not in TEACHER_SCHEDULERS:
        raise ValueError(f"Unknown sampler {scheduler!r}; choose one of {sorted(TEACHER_SCHEDULERS)}.")
    images, one_step_seconds = _generate_timed(model, num_images, seed, class_label, truncation)
    label = parse_class_label(class_label, model.num_classes)
    teacher_images, teacher_seconds = sample_teacher(
        model.teacher, num_images, seed, scheduler, num_steps, label
    )
    timings = {"one_step": one_step_seconds, "teacher": teacher_seconds}
    return image_grid(images), image_grid(teacher_images), timings


@torch.no_grad()
def sample_teacher(
    teacher: Teacher, num_images: int, seed: int, scheduler: str, num_steps: int, class_label: int | None
) -> tuple[list[Image.Image], float]:
    """Ancestral (DDPM) or deterministic (DDIM) sampling with `num_steps` teacher evaluations, and its wall
    time in seconds. Each call builds its own scheduler: `set_timesteps` mutates it, and calls run
    concurrently."""
    noise_scheduler = TEACHER_SCHEDULERS[scheduler].from_config(teacher.scheduler_config)
    num_train_timesteps = noise_scheduler.config.num_train_timesteps
    if num_steps > num_train_timesteps:
        raise ValueError(
            f"The teacher has {num_train_timesteps} noise levels; ask for at most that many steps."
        )
    config = teacher.unet.config
    size = config.sample_size if isinstance(config.sample_size, int) else config.sample_size[0]
    generator = torch.Generator().manual_seed(seed)
    labels = None
    if teacher.num_classes:  # the generator's class when the teacher has it, else random classes
        if class_label is not None and class_label < teacher.num_classes:
            labels = torch.full((num_images,), class_label, device=DEVICE)
        else:
            labels = torch.randint(teacher.num_classes, (num_images,), generator=generator).to(DEVICE)
    start = _now()
    noise_scheduler.set_timesteps(num_steps)
    sample = randn_tensor((num_images, config.in_channels, size, size), generator=generator, device=DEVICE)
    sample = sample * noise_scheduler.init_noise_sigma
    for timestep in noise_scheduler.timesteps:
        output = teacher.unet(sample, timestep, class_labels=labels).sample
        output = output[:, : config.in_channels]  # drop a learned variance: both samplers use a fixed one
        sample = noise_scheduler.step(output, timestep, sample, generator=generator).prev_sample
    seconds = _now() - start
    return to_pil(sample / 2 + 0.5), seconds


def slerp(start: torch.Tensor, end: torch.Tensor, weight: float) -> torch.Tensor:
    """Spherical interpolation: it keeps Gaussian latents at a typical norm, where a straight line passes
    through short latents the generator rarely saw."""
    cosine = (start * end).sum() / (start.norm() * end.norm())
    angle = torch.acos(cosine.clamp(-1, 1))
    if angle < 1e-4:
        return torch.lerp(start, end, weight)
    return (torch.sin((1 - weight) * angle) * start + torch.sin(weight * angle) * end) / torch.sin(angle)


def parse_class_label(value: int | str | None, num_classes: int) -> int | None:
    """A class label from the UI: None, "" or "random" mean random classes; anything else must be one of
    the model's classes."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "random")):
        return None
    if not num_classes:
        raise ValueError(f"This model is unconditional: it has no class {value!r}.")
    try:
        label = int(str(value).strip())
    except ValueError:
        raise ValueError(f"The class label {value!r} is not a whole number.") from None
    if not 0 <= label < num_classes:
        raise ValueError(f"This model has classes 0 to {num_classes - 1}; there is no class {label}.")
    return label


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Images in [0, 1], shape (N, C, H, W), as PIL images (grayscale for one channel)."""
    pixels = (images.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image) for image in pixels]


def upscale(image: Image.Image, min_size: int = MIN_TILE_SIZE) -> Image.Image:
    """Enlarge by an integer factor with nearest-neighbour resampling, so 8×8 pixels stay crisp squares."""
    scale = max(1, math.ceil(min_size / max(image.size)))
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def image_grid(images: list[Image.Image], num_columns: int | None = None, padding: int = 2) -> Image.Image:
    """Row-major grid of upscaled images on black, square-ish by default (like `smart_hf.image_grid`, which
    a Space does not have)."""
    tiles = [upscale(image) for image in images]
    num_columns = min(num_columns or math.ceil(math.sqrt(len(tiles))), len(tiles))
    num_rows = math.ceil(len(tiles) / num_columns)
    width, height = tiles[0].size
    mode = "L" if all(tile.mode == "L" for tile in tiles) else "RGB"
    grid = Image.new(
        mode, (num_columns * (width + padding) + padding, num_rows * (height + padding) + padding)
    )
    for index, tile in enumerate(tiles):
        row, column = divmod(index, num_columns)
        grid.paste(
            tile.convert(mode), (padding + column * (width + padding), padding + row * (height + padding))
        )
    return grid


def speed_summary(timings: dict[str, float], num_images: int, scheduler: str, num_steps: int) -> str:
    """Markdown line with both wall times and the one-step speed-up."""
    speedup = timings["teacher"] / max(timings["one_step"], 1e-9)
    return (
        f"{num_images} images · one-step generator: **{timings['one_step'] * 1000:.1f} ms** · "
        f"teacher ({scheduler}, {num_steps} steps): **{timings['teacher'] * 1000:.1f} ms** · "
        f"speed-up **×{speedup:.0f}** (wall time on {DEVICE.type})"
    )


def build_demo(model_path: str | os.PathLike | None = None, teacher: str | None = None) -> gr.Blocks:
    """The Space's UI for the model at `model_path` (default: `default_model()`). When no model loads, the
    page says why and every button answers with that message.

    Events skip Gradio's preprocessing (`preprocess=False`), which fails on a non-numeric API input with a
    traceback and a generic error: the raw values reach the checks of the generation functions, whose
    messages the caller sees. Images go back to Gradio as PIL images, so the only files are Gradio's cached
    copies, which `delete_cache` removes.
    """
    model_path = os.fspath(model_path) if model_path is not None else default_model()
    try:
        if model_path is None:
            raise ValueError(NO_MODEL)
        model: LoadedModel | None = load_model(model_path, teacher=teacher)
        load_error, status = "", _describe(model)
    except ValueError as error:
        model, load_error = None, f"No model loaded. {error}"
        status = f"**No model loaded.** {error}"
        logger.warning(load_error)
    num_classes = model.num_classes if model else 0

    def loaded() -> LoadedModel:
        if model is None:
            raise gr.Error(load_error, print_exception=False)
        return model

    @_show_errors
    def on_generate(
        num_images: float, seed: float, class_label: str, truncation: float
    ) -> tuple[list[Image.Image], Image.Image, str]:
        images, seconds = _generate_timed(loaded(), num_images, seed, class_label, truncation)
        timing = f"{len(images)} images in **{seconds * 1000:.1f} ms** (one forward pass on {DEVICE.type})"
        return [upscale(image) for image in images], image_grid(images), timing

    @_show_errors
    def on_interpolate(
        seed_a: float, seed_b: float, num_frames: float, class_label: str, truncation: float
    ) -> Image.Image:
        return interpolate(loaded(), seed_a, seed_b, num_frames, class_label, truncation)

    @_show_errors
    def on_compare(
        num_images: float, seed: float, class_label: str, truncation: float, scheduler: str, num_steps: float
    ) -> tuple[Image.Image, Image.Image, str]:
        num_images = _check_int("number of images", num_images, 1, MAX_TEACHER_IMAGES)
        num_steps = _check_int("number of teacher steps", num_steps, 1, MAX_TEACHER_STEPS)
        one_step, multi_step, timings = compare_with_teacher(
            loaded(), num_images, seed, class_label, truncation, scheduler, num_steps
        )
        return one_step, multi_step, speed_summary(timings, num_images, scheduler, num_steps)

    with gr.Blocks(title="SMaRt one-step generator", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# SMaRt one-step generator\nA GAN generator trained with SMaRt (score matching regularity): a "
            "frozen diffusion model regularised its training, and it draws images in **one** forward pass."
        )
        gr.Markdown(status, elem_id="status")
        if model is not None and (metrics := _metrics_table(model)):
            with gr.Accordion(f"Training metrics ({METADATA_NAME})", open=False):
                gr.Markdown(metrics)
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                num_images = gr.Slider(1, MAX_IMAGES, value=16, step=1, label="Number of images")
                with gr.Row():
                    seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED, scale=2)
                    random_seed = gr.Button("Random seed", scale=1, elem_id="random-seed")
                class_label = gr.Dropdown(
                    ["random", *map(str, range(num_classes))],
                    value="random",
                    label="Class label",
                    allow_custom_value=True,  # typed labels reach parse_class_label, which explains bad ones
                    visible=num_classes > 0,
                )
                truncation = gr.Slider(
                    0.05, 2.0, value=1.0, step=0.05, label="Truncation (latent scale; below 1: less diverse)"
                )
            with gr.Column(scale=3):
                with gr.Tab("Generate"):
                    generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
                    timing = gr.Markdown(elem_id="timing")
                    gallery = gr.Gallery(
                        label="Samples", columns=8, height="auto", format="png", elem_id="gallery"
                    )
                    with gr.Accordion("The grid, to download (PNG)", open=False):
                        grid = gr.Image(
                            label="Grid", type="pil", format="png", buttons=["download"], elem_id="grid"
                        )
                with gr.Tab("Interpolate"):
                    with gr.Row():
                        seed_b = gr.Number(
                            1, label="Seed B (seed A is the seed)", precision=0, minimum=0, maximum=MAX_SEED
                        )
                        num_frames = gr.Slider(2, MAX_FRAMES, value=8, step=1, label="Frames")
                    interpolate_button = gr.Button("Interpolate", variant="primary", elem_id="interpolate")
                    strip = gr.Image(label="Latent interpolation", type="pil", format="png", elem_id="strip")
                with gr.Tab("One step vs. teacher"):
                    if model is not None and model.teacher is not None:
                        gr.Markdown(
                            f"Teacher `{model.teacher.source}`, same seed and number of images "
                            f"(at most {MAX_TEACHER_IMAGES})."
                        )
                        with gr.Row():
                            scheduler = gr.Radio(
                                list(TEACHER_SCHEDULERS), value="DDIM", label="Teacher sampler"
                            )
                            num_steps = gr.Slider(
                                1, MAX_TEACHER_STEPS, value=50, step=1, label="Teacher steps"
                            )
                        compare_button = gr.Button("Compare", variant="primary", elem_id="compare")
                        speed = gr.Markdown(elem_id="speed")
                        with gr.Row():
                            one_step_grid = gr.Image(label="One-step generator", type="pil", format="png")
                            teacher_grid = gr.Image(label="Teacher", type="pil", format="png")
                        compare_button.click(
                            on_compare,
                            [num_images, seed, class_label, truncation, scheduler, num_steps],
                            [one_step_grid, teacher_grid, speed],
                            api_name="compare",
                            preprocess=False,
                            # Multi-step sampling can take minutes on a CPU: one at a time, in its own
                            # queue, so that it never holds up one-step generation.
                            concurrency_limit=1,
                            concurrency_id="teacher",
                        )
                    else:
                        reason = model.teacher_status if model else "no model loaded."
                        gr.Markdown(f"No side-by-side with the teacher: {reason}", elem_id="teacher-status")

        generate_inputs = [num_images, seed, class_label, truncation]
        generate_outputs = [gallery, grid, timing]
        generate_button.click(
            on_generate, generate_inputs, generate_outputs, api_name="generate", preprocess=False
        )
        random_seed.click(
            lambda: random.randint(0, MAX_SEED), None, seed, api_name="random_seed", queue=False
        ).then(on_generate, generate_inputs, generate_outputs, api_visibility="private", preprocess=False)
        interpolate_button.click(
            on_interpolate,
            [seed, seed_b, num_frames, class_label, truncation],
            strip,
            api_name="interpolate",
            preprocess=False,
        )
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=MAX_QUEUE_SIZE)
    return demo


def _generate_timed(
    model: LoadedModel, num_images: int, seed: int, class_label: int | str | None, truncation: float
) -> tuple[list[Image.Image], float]:
    """Validated one-step generation and the wall time of the pipeline call in seconds."""
    num_images = _check_int("number of images", num_images, 1, MAX_IMAGES)
    seed = _check_int("seed", seed, 0, MAX_SEED)
    truncation = _check_truncation(truncation)
    label = parse_class_label(class_label, model.num_classes)
    start = _now()
    images = model.pipeline(
        batch_size=num_images,
        class_labels=label,
        generator=torch.Generator().manual_seed(seed),
        truncation=truncation,
        output_type="pt",
    ).images
    seconds = _now() - start
    return to_pil(images), seconds


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    """`value` as an int when it is a whole number in [low, high] (gradio sends floats), else a ValueError."""
    number = _as_float(value)
    if isinstance(value, bool) or not number.is_integer() or not low <= number <= high:
        raise ValueError(f"The {name} must be a whole number from {low} to {high}, got {value!r}.")
    return int(number)


def _check_truncation(value: Any) -> float:
    number = _as_float(value)
    if isinstance(value, bool) or not 0 < number < math.inf:
        raise ValueError(f"Truncation must be a number above 0 (1 = none), got {value!r}.")
    return number


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _now() -> float:
    """Wall clock that first waits for queued GPU work, so timings measure the computation."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def _is_hub_id(name: str) -> bool:
    """`owner/name`, unless `owner` is a local folder: then `name` is a missing folder, such as outputs/demo
    before `make demo`."""
    parts = name.split("/")
    if len(parts) != 2 or not all(parts) or name.startswith((".", "~")) or "\\" in name:
        return False
    return not Path(parts[0]).is_dir()


def _read_metadata(source: str) -> dict[str, Any]:
    """smart_hf.json of a folder or Hub repository; empty when missing or unreadable, as it is optional."""
    try:
        path = (
            Path(source) / METADATA_NAME if Path(source).is_dir() else hf_hub_download(source, METADATA_NAME)
        )
        return json.loads(Path(path).read_text())
    except Exception as error:
        logger.warning(f"No readable {METADATA_NAME} for {source}: {error}")
        return {}


def _describe(model: LoadedModel) -> str:
    """Status line: what was loaded, its classes and its teacher."""
    config = model.pipeline.gan.config
    kind = f"{model.num_classes} classes" if model.num_classes else "unconditional"
    status = (
        f"Model `{model.source}`: {type(model.pipeline.gan).__name__}, "
        f"{config.resolution}×{config.resolution}, {config.out_channels} channel(s), {kind}."
    )
    if model.teacher is not None:
        status += f" Teacher: `{model.teacher.source}`."
    return status


def _metrics_table(model: LoadedModel) -> str:
    """Markdown table of the numbers under `metrics` in smart_hf.json; empty when there are none."""
    metrics = model.metadata.get("metrics") or {}
    rows = [
        f"| {key} | {value:.4g} |" for key, value in sorted(metrics.items()) if isinstance(value, int | float)
    ]
    return "\n".join(["| metric | value |", "| --- | --- |", *rows]) if rows else ""


def _show_errors(function: Callable) -> Callable:
    """Show errors as a message on the page (`gr.Error`) instead of gradio's generic "Error"."""

    @wraps(function)
    def wrapper(*args: Any) -> Any:
        try:
            return function(*args)
        except gr.Error:
            raise
        except ValueError as error:  # bad input: the message says what to change, a traceback adds nothing
            raise gr.Error(str(error), print_exception=False) from error
        except Exception as error:
            logger.exception("Generation failed")  # the traceback, once
            raise gr.Error(
                f"Generation failed: {type(error).__name__}: {error}", print_exception=False
            ) from error

    return wrapper


demo = build_demo(teacher=os.environ.get(TEACHER_ENV) or None)

if __name__ == "__main__":
    demo.launch(theme=THEME, css=CSS)
