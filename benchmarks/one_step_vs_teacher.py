"""One-step SMaRt generator vs its own teacher on the embedded 8×8 digits: quality and speed in one run.

The generator (`--model`: an exported pipeline or a training output folder; default `outputs/demo/pipeline`,
which `make demo` writes) against the score model it was regularised by (`--teacher`; default: the one the
model records, i.e. the shipped `digits-unet` for `make demo`), sampled with diffusers' own `DDPMPipeline`:
its `DDPMScheduler` at 1000 steps, and `DDIMScheduler` (η = 0) at 50 and 10 steps.

- Quality: FD_digits (the Fréchet distance in the digits classifier's features, against all 1,797 digits),
  precision and recall (k-NN manifolds, k = 3, same features) and density and coverage (Naeem et al., 2020,
  k = 3: fidelity and diversity from the real balls only), all from `smart_hf.evaluation`. Images are
  rounded to 8 bits first, as saved samples would be. FD_digits is not comparable with Inception FID.
- Speed: images per second of each pipeline call (latents to images, 8-bit conversion excluded), measured in
  this run at the same batch size, device and thread count, after one untimed warm-up call per pipeline.

Drawing 1000-step DDPM samples costs 1.3–1.7 s per image on one CPU thread here, so by default DDPM draws
only `--ddpm_num_samples` (200) images: its speed is measured on them, and the quality of every method is then
also reported on its first 200 images (the equal-count table). `--ddpm_num_samples 2000` puts all methods at
the same count (about 45 minutes on one thread). Targets: one-step at least 500× faster than DDPM-1000, and
an FD_digits no worse than DDIM-10's.

    OMP_NUM_THREADS=1 python -m benchmarks.one_step_vs_teacher                      # ~9 min on one thread
    OMP_NUM_THREADS=1 python -m benchmarks.one_step_vs_teacher --ddpm_num_samples 2000

Writes results.json and a figure of sample grids side by side to --output_dir.
"""

import argparse
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DDPMPipeline, DiffusionPipeline

from benchmarks.common import (
    argument_parser,
    draw_digits,
    markdown_table,
    real_digits,
    save_panels,
    synchronize,
)
from smart_hf import hub
from smart_hf.evaluation import DigitsFeatureExtractor, FeatureStatistics, frechet_distance, precision_recall
from smart_hf.evaluation.precision_recall import density_coverage
from smart_hf.pipelines import SmartOneStepPipeline

DEFAULT_MODEL = os.path.join("outputs", "demo", "pipeline")
ONE_STEP = "SMaRt one-step"
SPEED_UP_TARGET = 500
QUALITY_HEADER = ["FD_digits", "precision", "recall", "density", "coverage"]


@dataclass
class Method:
    """A sampler: a pipeline and the keyword arguments of its calls."""

    name: str
    pipeline: DiffusionPipeline
    network_evaluations: int
    call_kwargs: dict


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help="Exported pipeline or training output folder (`make demo`)."
    )
    parser.add_argument(
        "--teacher",
        default=None,
        help="DDPMPipeline folder of the teacher. Default: the one the model records.",
    )
    parser.add_argument("--num_samples", type=int, default=2000, help="Images per method (quality, speed).")
    parser.add_argument(
        "--ddpm_num_samples",
        type=int,
        default=200,
        help="Images of the DDPM teacher (at most --num_samples).",
    )
    parser.add_argument("--ddpm_steps", type=int, default=1000, help="Steps of the DDPM teacher.")
    parser.add_argument("--ddim_steps", type=int, nargs="+", default=[50, 10], help="One DDIM run per value.")
    parser.add_argument("--batch_size", type=int, default=100, help="Images per pipeline call, every method.")
    parser.add_argument("--num_threads", type=int, default=1, help="torch threads (CPU).")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--k", type=int, default=3, help="Neighbours of precision/recall.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default=os.path.join("outputs", "benchmarks", "one_step_vs_teacher"))
    args = parser.parse_args(argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    if not os.path.exists(args.model):
        how = (
            "run `make demo` first (it trains and exports one there), or "
            if args.model == DEFAULT_MODEL
            else ""
        )
        raise FileNotFoundError(
            f"No model at {args.model}: {how}pass --model PATH (an exported pipeline or a training output "
            "folder)."
        )
    if args.batch_size < 1 or args.num_threads < 1 or args.ddpm_steps < 1 or min(args.ddim_steps) < 1:
        raise ValueError("--batch_size, --num_threads, --ddpm_steps and --ddim_steps must be >= 1.")
    if not args.batch_size <= args.ddpm_num_samples <= args.num_samples:
        raise ValueError(
            f"Need --batch_size <= --ddpm_num_samples <= --num_samples, got {args.batch_size}, "
            f"{args.ddpm_num_samples} and {args.num_samples}."
        )
    for flag in ("num_samples", "ddpm_num_samples"):
        if getattr(args, flag) % args.batch_size:
            raise ValueError(
                f"--{flag} ({getattr(args, flag)}) must be a multiple of --batch_size ({args.batch_size}): "
                "every method is timed on full batches of the same size."
            )
    if not 1 <= args.k < args.ddpm_num_samples:
        raise ValueError(f"--k must be in [1, --ddpm_num_samples − 1], got {args.k}.")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: CUDA is not available here; use --device cpu.")


def recorded_teacher(model: str) -> str | None:
    """The score model a training run records in its metrics.json (in `model`, or above it when `model` is the
    run's pipeline/ export), else the one an export's `smart_hf.json` names: a Hub id, or only the folder
    name of a local teacher, as an export carries no local path."""
    for metrics in (Path(model, "metrics.json"), Path(model).resolve().parent / "metrics.json"):
        if metrics.is_file():
            return json.loads(metrics.read_text()).get("config", {}).get("score")
    for path in (Path(model, hub.METADATA_NAME), Path(model, "pipeline", hub.METADATA_NAME)):
        if path.is_file():
            return json.loads(path.read_text()).get("score_model")
    return None


def load_teacher(model: str, teacher: str | None) -> DDPMPipeline:
    teacher = teacher or recorded_teacher(model)
    if teacher is None or not os.path.isdir(teacher):
        found = (
            f"records the teacher {teacher!r}, which is not a folder here"
            if teacher
            else "records no teacher"
        )
        raise ValueError(f"{model} {found}; pass --teacher PATH (a DDPMPipeline folder).")
    try:
        return DDPMPipeline.from_pretrained(teacher)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"Cannot load the teacher {teacher} as a DDPMPipeline ({error}); pass --teacher."
        ) from error


def check_compatible(
    one_step: SmartOneStepPipeline, teacher: DDPMPipeline, extractor: DigitsFeatureExtractor
) -> None:
    """The generator, the teacher and the digits classifier must all work on the same images."""
    gan, unet = one_step.gan.config, teacher.unet.config
    shapes = {
        "the generator": (gan.out_channels, gan.resolution),
        "the teacher": (unet.in_channels, unet.sample_size),
        "the digits classifier": (extractor.channels, extractor.resolution),
    }
    if len(set(shapes.values())) > 1:
        described = ", ".join(f"{name} {c}×{r}×{r}" for name, (c, r) in shapes.items())
        raise ValueError(f"Shapes differ ({described}): this benchmark needs a model of the 8×8 digits.")
    if unet.num_class_embeds:
        raise ValueError("The teacher is class-conditional; DDPMPipeline samples unconditional models only.")


def build_methods(
    one_step: SmartOneStepPipeline, teacher: DDPMPipeline, args: argparse.Namespace
) -> list[Method]:
    methods = [
        Method(ONE_STEP, one_step, 1, {}),
        Method(f"DDPM-{args.ddpm_steps}", teacher, args.ddpm_steps, {"num_inference_steps": args.ddpm_steps}),
    ]
    ddim = DDPMPipeline(unet=teacher.unet, scheduler=DDIMScheduler.from_config(teacher.scheduler.config))
    for steps in args.ddim_steps:
        methods.append(Method(f"DDIM-{steps}", ddim, steps, {"num_inference_steps": steps}))
    return methods


def sample(
    method: Method, num_images: int, batch_size: int, seed: int, device: torch.device
) -> tuple[torch.Tensor, float]:
    """`num_images` 8-bit images in [−1, 1] on the CPU, and the seconds spent in the pipeline calls."""
    generator = torch.Generator().manual_seed(seed)
    batches, seconds = [], 0.0
    for _ in range(num_images // batch_size):
        synchronize(device)
        start = time.perf_counter()
        images = method.pipeline(
            batch_size=batch_size, generator=generator, output_type="pt", **method.call_kwargs
        ).images
        synchronize(device)
        seconds += time.perf_counter() - start
        batches.append((images.float().cpu() * 255).round() / 127.5 - 1)  # [0, 1] → 8 bits → [−1, 1]
    return torch.cat(batches), seconds


def warm_up(methods: list[Method], batch_size: int) -> None:
    """One untimed call per pipeline (one denoising step for the teacher), so lazy set-up is not timed."""
    for pipeline in {id(method.pipeline): method.pipeline for method in methods}.values():
        kwargs = {} if isinstance(pipeline, SmartOneStepPipeline) else {"num_inference_steps": 1}
        pipeline(
            batch_size=batch_size, generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs
        )


def quality(
    extractor: DigitsFeatureExtractor,
    images: torch.Tensor,
    reference: FeatureStatistics,
    real_features: torch.Tensor,
    k: int,
) -> dict[str, float]:
    features = extractor.extract(images)
    fd = frechet_distance(FeatureStatistics.from_features(features), reference)
    return {
        "fd_digits": fd,
        **precision_recall(real_features, features, k),
        **density_coverage(real_features, features, k),
    }


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    model = platform.processor() or platform.machine()
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(
                (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model
            )
    return f"CPU ({model}), {torch.get_num_threads()} torch thread(s), {os.cpu_count()} cores"


def quality_cells(row: dict) -> list[str]:
    return [f"{row['fd_digits']:.2f}", *(f"{row[key]:.3f}" for key in QUALITY_HEADER[1:])]


def print_report(
    rows: list[dict], equal_rows: list[dict] | None, targets: dict, args: argparse.Namespace, machine: dict
) -> None:
    ddpm = targets["speed_up"]["reference"]
    print(
        f"\n### {ONE_STEP} vs its teacher on the digits: {args.num_samples} images per method "
        f"({ddpm}: {args.ddpm_num_samples}), batch {args.batch_size}, {machine['device']}\n"
    )
    table = []
    for row in rows:
        if row["num_images"] < args.num_samples:  # quality only in the equal-count table
            images, scores = f"{row['num_images']} †", ["— †"] * len(QUALITY_HEADER)
        else:
            images, scores = row["num_images"], quality_cells(row)
        speed = [f"{row['images_per_second']:,.1f}", f"{row['speed_up']:,.1f}×"]
        table.append([row["method"], row["network_evaluations"], images, *scores, *speed])
    header = ["method", "network evaluations per image", "images", *QUALITY_HEADER, "images/s"]
    print(markdown_table([*header, f"speed-up vs {ddpm}"], table))
    if equal_rows:
        count = args.ddpm_num_samples
        print(
            f"\n† {ddpm} drew {count} images only (its speed is measured on them). All methods on their "
            f"first {count} images (small counts bias FD upward and recall downward, alike for all):\n"
        )
        table = [[row["method"], row["num_images"], *quality_cells(row)] for row in equal_rows]
        print(markdown_table(["method", "images", *QUALITY_HEADER], table))
    speed, fd = targets["speed_up"], targets["fd"]
    print(
        f"\nTarget 1, speed: {ONE_STEP} is {speed['value']:,.0f}× faster than {speed['reference']} "
        f"(target ≥ {SPEED_UP_TARGET}×): {'met' if speed['met'] else 'NOT met'}."
    )
    print(
        f"Target 2, quality: FD_digits {fd['value']:.2f} vs {fd['reference']}'s {fd['reference_value']:.2f} "
        f"(target: no worse): {'met' if fd['met'] else 'NOT met'}."
    )
    print(f"\nMachine: {json.dumps(machine)}")


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.num_threads)
    device = torch.device(args.device)
    one_step = SmartOneStepPipeline(gan=hub.load_generator(args.model).eval())
    teacher = load_teacher(args.model, args.teacher)
    extractor = DigitsFeatureExtractor()
    check_compatible(one_step, teacher, extractor)
    methods = build_methods(one_step, teacher, args)
    for method in methods:
        method.pipeline.to(device)
        method.pipeline.set_progress_bar_config(disable=True)
    os.makedirs(args.output_dir, exist_ok=True)

    real = real_digits()
    real_features = extractor.extract(real)
    reference = FeatureStatistics.from_features(real_features)
    machine = {
        "device": device_description(device),
        "torch": torch.__version__,
        "load_before": os.getloadavg(),
    }
    start = time.time()
    warm_up(methods, args.batch_size)
    rows, samples = [], {}
    for method in methods:
        count = args.ddpm_num_samples if method.pipeline is teacher else args.num_samples
        images, seconds = sample(method, count, args.batch_size, args.seed, device)
        samples[method.name] = images
        row = {"method": method.name, "network_evaluations": method.network_evaluations, "num_images": count}
        row |= {"seconds": seconds, "images_per_second": count / seconds}
        row |= quality(extractor, images, reference, real_features, args.k)
        rows.append(row)
        print(row, flush=True)
    ddpm = next(row for row in rows if row["method"] == f"DDPM-{args.ddpm_steps}")
    for row in rows:
        row["speed_up"] = row["images_per_second"] / ddpm["images_per_second"]

    equal_rows = None
    if args.ddpm_num_samples < args.num_samples:
        equal_rows = [
            {"method": name, "num_images": args.ddpm_num_samples}
            | quality(extractor, images[: args.ddpm_num_samples], reference, real_features, args.k)
            for name, images in samples.items()
        ]
    fewest_ddim = min(
        (row for row in rows if row["method"].startswith("DDIM")), key=lambda row: row["network_evaluations"]
    )
    targets = {
        "speed_up": {
            "value": rows[0]["speed_up"],
            "reference": ddpm["method"],
            "target": SPEED_UP_TARGET,
            "met": rows[0]["speed_up"] >= SPEED_UP_TARGET,
        },
        "fd": {
            "value": rows[0]["fd_digits"],
            "reference": fewest_ddim["method"],
            "reference_value": fewest_ddim["fd_digits"],
            "met": rows[0]["fd_digits"] <= fewest_ddim["fd_digits"],
        },
    }
    machine |= {"load_after": os.getloadavg(), "sampling_wall_seconds": time.time() - start}
    print_report(rows, equal_rows, targets, args, machine)

    figure = os.path.join(args.output_dir, "one_step_vs_teacher.png")
    titles = [
        f"{row['method']}\nFD_digits {row['fd_digits']:.1f} ({row['num_images']} images)"
        for row in equal_rows or rows
    ]
    panels = {"real digits": real, **dict(zip(titles, samples.values(), strict=True))}
    save_panels(panels, draw_digits, figure, (3.2, 3.6))
    results = {"args": vars(args), "machine": machine, "rows": rows, "equal_count_rows": equal_rows}
    results["targets"] = targets
    with open(os.path.join(args.output_dir, "results.json"), "w") as file:
        json.dump(results, file, indent=2)
    print(f"Figure: {figure}\nResults: {os.path.join(args.output_dir, 'results.json')}")
    return results


if __name__ == "__main__":
    main()
