"""`smart-hf`: the command line of smart_hf.

    smart-hf generate <export folder, generator folder or Hub id> --num-images 16 --seed 0 --out grid.png
    smart-hf generate <score model: a DDPMPipeline folder or Hub id> --sampler cas --eds
    smart-hf export <training output or generator folder> --out <export folder>
    smart-hf push <export folder> --repo-id <user/name>
    smart-hf evaluate <model as for generate, or image folder> --reference digits --metric fd_digits
    smart-hf push-space <user/space> --model <user/model> [--teacher <user/teacher>] [--private]

Each subcommand is a `Command` in `COMMANDS`: a name, a one-line help, a function that adds its arguments and
a function that runs it. Adding a subcommand means adding one entry.

Building the parser imports neither torch nor diffusers (`smart-hf --help` answers at once): each `run`
imports what it needs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from smart_hf import DEFAULT_LICENSE
from smart_hf.evaluation import options as evaluate_options

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

    from smart_hf.pipelines import SmartOneStepPipeline

SAMPLERS = ("ddpm", "ddim", "cas", "als")
DEFAULT_INFERENCE_STEPS = {"ddpm": 1000, "ddim": 50, "cas": 100, "als": 100}
DTYPES = ("bfloat16", "float16", "float32")
DEVICE_HELP = "cpu, cuda, ... (default: cuda when available, else cpu)."


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]


def _generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        help="An export folder or Hub id (loaded with SmartOneStepPipeline.from_pretrained), or a generator "
        "folder: a training output folder (generator_ema/ or generator/) or a save_pretrained folder.",
    )
    parser.add_argument("--num-images", type=int, default=16, help="Number of images (default: 16).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed (default: 0).")
    parser.add_argument(
        "--class-label",
        type=int,
        default=None,
        help="Class of every image, for a class-conditional model (default: random classes).",
    )
    parser.add_argument(
        "--truncation",
        type=float,
        default=1.0,
        help="Latent scale, <1 trades diversity for fidelity (default: 1).",
    )
    parser.add_argument(
        "--out", default="grid.png", help="Where to write the image grid (default: grid.png)."
    )
    parser.add_argument(
        "--save-individual", metavar="DIR", help="Also write each image as DIR/00000.png, ..."
    )
    parser.add_argument(
        "--refine-steps",
        type=int,
        default=0,
        help="Discriminator-guided refinement steps after the generator (NATS); needs an export with a "
        "discriminator, e.g. from a --nats run (default: 0).",
    )
    parser.add_argument(
        "--refine-step-size",
        type=float,
        default=0.25,
        help="Step size of each refinement step (default: 0.25).",
    )
    parser.add_argument("--columns", type=int, default=None, help="Grid columns (default: square-ish grid).")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="Images per forward pass (default: 64). Images depend on the seed and on the batch size.",
    )
    parser.add_argument("--device", help=DEVICE_HELP)
    parser.add_argument(
        "--dtype", choices=DTYPES, default="float32", help="Compute dtype (default: float32)."
    )
    sampling = parser.add_argument_group(
        "multi-step sampling of a score model",
        "With --sampler, MODEL is a diffusion score model (a DDPMPipeline folder or Hub id with an "
        "epsilon-prediction UNet, e.g. a teacher of SMaRt) sampled in many steps instead of a one-step GAN.",
    )
    sampling.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=None,
        help="ddpm (ancestral), ddim (eta 0), cas (consistent annealed sampling) or als (annealed Langevin).",
    )
    sampling.add_argument(
        "--num-inference-steps",
        type=int,
        default=None,
        help="Steps (ddpm, ddim) or sigma levels (cas, als) (default: "
        + ", ".join(f"{name} {steps}" for name, steps in DEFAULT_INFERENCE_STEPS.items())
        + ").",
    )
    sampling.add_argument(
        "--eds", action="store_true", help="cas/als: end with the Expected Denoised Sample step."
    )
    sampling.add_argument(
        "--sigma-max",
        type=float,
        default=None,
        help="cas/als: top of the geometric sigma ladder (default: the model's largest noise level).",
    )


def _device(args: argparse.Namespace) -> str:
    """--device, or cuda when available, else cpu; a device this torch cannot use is refused in one line."""
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as error:  # torch's "not compiled with CUDA enabled" is an assert
        raise ValueError(
            f"--device {device} cannot be used with this torch {torch.__version__} ({error}); pass --device "
            "cpu, or install a torch build for that device."
        ) from None
    return device


def positive_int(value: str) -> int:
    """An argparse type: an integer >= 1."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def _load_score_sampler(args: argparse.Namespace) -> DiffusionPipeline:
    """The score model `args.model` with the multi-step sampler `args.sampler`."""
    import torch
    from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DiffusionPipeline

    from smart_hf.pipelines import AnnealedSamplingPipeline
    from smart_hf.schedulers import AnnealedLangevinScheduler, ConsistentAnnealedSamplingScheduler

    path = Path(args.model)
    if not path.exists() and args.model.count("/") != 1:
        raise ValueError(f"{args.model!r} is neither a folder nor a Hub id like 'user/model'.")
    if path.is_dir():
        index = path / DDPMPipeline.config_name
        components = DiffusionPipeline.load_config(path) if index.is_file() else {}
        if not {"unet", "scheduler"} <= components.keys():
            raise ValueError(
                f"--sampler samples a diffusion score model saved as a DDPMPipeline (a {index.name} naming a "
                f"unet and a scheduler); {args.model} is not one. One-step generators need no --sampler."
            )
    teacher = DDPMPipeline.from_pretrained(args.model, torch_dtype=getattr(torch, args.dtype))
    if args.sampler == "ddpm":
        return teacher
    if args.sampler == "ddim":
        return DDIMPipeline(unet=teacher.unet, scheduler=DDIMScheduler.from_config(teacher.scheduler.config))
    schedulers = {"cas": ConsistentAnnealedSamplingScheduler, "als": AnnealedLangevinScheduler}
    scheduler = schedulers[args.sampler].from_config(
        teacher.scheduler.config, sigma_max=args.sigma_max, use_eds=args.eds
    )
    return AnnealedSamplingPipeline(unet=teacher.unet, scheduler=scheduler)


def _check_sampling_arguments(args: argparse.Namespace) -> None:
    if args.sampler is None:
        given = [
            flag
            for flag, value in (
                ("--num-inference-steps", args.num_inference_steps),
                ("--eds", args.eds or None),
                ("--sigma-max", args.sigma_max),
            )
            if value is not None
        ]
        if given:
            raise ValueError(
                f"{', '.join(given)}: only with --sampler (a score model sampled in many steps)."
            )
        return
    if args.class_label is not None or args.truncation != 1.0 or args.refine_steps:
        raise ValueError(
            "--class-label, --truncation and --refine-steps are for one-step GANs, not for --sampler."
        )
    if args.sampler in ("ddpm", "ddim") and (args.eds or args.sigma_max is not None):
        raise ValueError("--eds and --sigma-max are options of the cas and als samplers.")
    if args.num_inference_steps is not None and args.num_inference_steps < 1:
        raise ValueError(f"--num-inference-steps must be >= 1, got {args.num_inference_steps}.")


def _load_pipeline(model: str, dtype: str) -> SmartOneStepPipeline:
    import torch
    from diffusers import DDPMPipeline, DiffusionPipeline

    from smart_hf import hub
    from smart_hf.pipelines import SmartOneStepPipeline

    torch_dtype = getattr(torch, dtype)
    path = Path(model)
    if path.is_dir() and not (path / SmartOneStepPipeline.config_name).is_file():
        return SmartOneStepPipeline(gan=hub.load_generator(path, torch_dtype=torch_dtype))
    if (path / DDPMPipeline.config_name).is_file() and "gan" not in DiffusionPipeline.load_config(path):
        raise ValueError(
            f"{model} holds no one-step generator (no `gan` component); a diffusion score model is sampled "
            f"with --sampler {{{','.join(SAMPLERS)}}}."
        )
    if not path.exists() and model.count("/") != 1:
        raise ValueError(f"{model!r} is neither a folder nor a Hub id like 'user/model'.")
    return SmartOneStepPipeline.from_pretrained(model, torch_dtype=torch_dtype)


def run_generate(args: argparse.Namespace) -> None:
    import torch

    from smart_hf.image_grid import image_grid

    if args.num_images < 1 or args.batch_size < 1:
        raise ValueError("--num-images and --batch-size must be >= 1.")
    _check_sampling_arguments(args)
    if args.sampler is None:
        pipeline = _load_pipeline(args.model, args.dtype)
        call_arguments = {
            "class_labels": args.class_label,
            "truncation": args.truncation,
            "refine_steps": args.refine_steps,
            "refine_step_size": args.refine_step_size,
        }
    else:
        pipeline = _load_score_sampler(args)
        steps = args.num_inference_steps or DEFAULT_INFERENCE_STEPS[args.sampler]
        call_arguments = {"num_inference_steps": steps}
    pipeline = pipeline.to(_device(args))
    generator = torch.Generator().manual_seed(args.seed)
    images = []
    for start in range(0, args.num_images, args.batch_size):
        batch_size = min(args.batch_size, args.num_images - start)
        images += pipeline(batch_size=batch_size, generator=generator, **call_arguments).images
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, num_columns=args.columns).save(args.out)
    print(f"Wrote a grid of {len(images)} images to {args.out}")
    if args.save_individual:
        os.makedirs(args.save_individual, exist_ok=True)
        for index, image in enumerate(images):
            image.save(os.path.join(args.save_individual, f"{index:05d}.png"))
        print(f"Wrote {len(images)} images to {args.save_individual}/")


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        help="A training output folder (generator_ema/ preferred over generator/; its metrics.json gives the "
        "card's metrics and training settings) or a folder with a generator saved by save_pretrained.",
    )
    parser.add_argument("--out", required=True, help="Export folder to create.")
    parser.add_argument(
        "--subfolder", help="Generator subfolder of SOURCE, e.g. 'generator' to skip the EMA weights."
    )
    parser.add_argument("--score-model", help="Teacher score model id or path (default: from metrics.json).")
    parser.add_argument(
        "--dataset",
        help="Training data set: digits, a Hub id or a folder, named by its folder name only (default: from "
        "metrics.json).",
    )
    parser.add_argument("--metrics", help="JSON file of metrics and 'config' (default: SOURCE/metrics.json).")
    parser.add_argument(
        "--repo-id", help="Hub id the export will be pushed to, used in the card's usage code."
    )
    parser.add_argument(
        "--license",
        default=DEFAULT_LICENSE,
        help="License of the weights, the model card's `license`: a Hub license id such as mit or other "
        "(default: %(default)s, smart_hf's own).",
    )
    parser.add_argument(
        "--num-samples", type=positive_int, default=16, help="Images in the card's grid (default: 16)."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the card's grid (default: 0).")
    parser.add_argument("--overwrite", action="store_true", help="Replace an earlier export in --out.")


def run_export(args: argparse.Namespace) -> None:
    from smart_hf import hub

    generator = hub.load_generator(args.source, subfolder=args.subfolder)
    metrics_path = Path(args.metrics) if args.metrics else Path(args.source) / "metrics.json"
    results = json.loads(metrics_path.read_text()) if metrics_path.is_file() or args.metrics else {}
    training = results.get("config", {})
    out = hub.export_pipeline(
        generator,
        args.out,
        score_model=args.score_model or training.get("score_model") or training.get("score"),
        dataset=args.dataset or training.get("train_data_dir") or training.get("dataset_name"),
        metrics=results,
        evaluation=results.get("evaluation"),
        training_config=training,
        repo_id=args.repo_id,
        license=args.license,
        num_samples=args.num_samples,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(f"Exported {type(generator).__name__} to {out}")


def _push_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folder",
        help="Export folder written by `smart-hf export` or by training: exactly the files its smart_hf.json "
        "lists are uploaded, never other files in the folder nor symlinks.",
    )
    parser.add_argument("--repo-id", required=True, help="Hub model repository, e.g. user/smart-gan-cifar10.")
    parser.add_argument("--private", action="store_true", help="Create the repository as private.")
    parser.add_argument("--token", help="Hub token (default: the token of `hf auth login` or HF_TOKEN).")
    parser.add_argument("--commit-message", default="Upload SMaRt one-step generator")


def run_push(args: argparse.Namespace) -> None:
    from smart_hf import hub

    url = hub.push_to_hub(
        args.folder, args.repo_id, private=args.private, token=args.token, commit_message=args.commit_message
    )
    print(f"Pushed {args.folder} to {url}")


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "samples",
        help="What to evaluate: a model (export folder, generator folder or Hub id, as for `generate`) or a "
        "folder of images.",
    )
    parser.add_argument(
        "--reference",
        required=True,
        help="Real images: a data set name (e.g. digits), a Hub data set, a save_to_disk folder or an image "
        "folder.",
    )
    parser.add_argument(
        "--metric",
        required=True,
        choices=evaluate_options.METRICS,
        help="fd_digits: Fréchet distance in the digits classifier's features; fd_dinov2: in DINOv2's; fid: "
        "in Inception-v3's (needs pytorch-fid); pr: precision and recall (k-NN manifolds) in --features.",
    )
    parser.add_argument(
        "--features",
        choices=evaluate_options.FEATURE_SPACES,
        help="Feature space of pr (default: digits for the digits reference).",
    )
    parser.add_argument(
        "--num-samples",
        type=positive_int,
        help=f"Generated images (default: {evaluate_options.DEFAULT_NUM_SAMPLES} for a Fréchet distance, the "
        "reference's size for pr; every image of a folder).",
    )
    parser.add_argument(
        "--reference-stats",
        metavar="CACHE.npz",
        help="Cache of the reference: read when it exists, else computed and written (statistics for Fréchet "
        "distances, features for pr).",
    )
    parser.add_argument(
        "--k",
        type=int,
        default=evaluate_options.DEFAULT_K,
        help="Neighbour defining the pr manifolds (default: %(default)s).",
    )
    parser.add_argument(
        "--resolution",
        type=int,
        help="Size images are loaded at (default: 8 for digits features, else the generator's resolution).",
    )
    parser.add_argument(
        "--dinov2-model",
        default=evaluate_options.DEFAULT_DINOV2_MODEL,
        help="DINOv2 Hub id or local folder (default: %(default)s).",
    )
    parser.add_argument(
        "--inception-weights",
        metavar="PATH",
        help="pytorch-fid's Inception weights file (pt_inception-2015-12-05-6726825d.pth), for offline "
        "machines.",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="Images per batch (default: 64).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the generated images (default: 0).")
    parser.add_argument("--device", help=DEVICE_HELP)
    parser.add_argument("--output", help="Also write the results to this JSON file.")


def _is_image_folder(path: Path) -> bool:
    """A folder that holds neither a pipeline export nor a generator (which `_load_pipeline` reads)."""
    from smart_hf.hub import generator_folders

    model_files = ["model_index.json"] + [
        os.path.join(name, "config.json") for name in generator_folders(path)
    ]
    return path.is_dir() and not any((path / name).is_file() for name in model_files)


def run_evaluate(args: argparse.Namespace) -> None:
    from smart_hf.evaluation import runner

    device = _device(args)
    samples = args.samples
    if not _is_image_folder(Path(samples)):
        samples = _load_pipeline(samples, "float32").to(device)
    results = runner.evaluate_images(
        samples,
        args.reference,
        args.metric,
        features=args.features,
        num_samples=args.num_samples,
        reference_cache=args.reference_stats,
        resolution=args.resolution,
        k=args.k,
        batch_size=args.batch_size,
        seed=args.seed,
        device=device,
        dinov2_model=args.dinov2_model,
        inception_weights=args.inception_weights,
    )
    print(json.dumps(results, indent=2))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


# The Gradio Space of a smart_hf checkout, and the only files a deploy uploads: the app, its pinned
# requirements and its card. Anything else in the folder (caches, local outputs, a .env) stays here.
SPACE_FOLDER = Path(__file__).resolve().parents[2] / "spaces" / "smart_gan_demo"
SPACE_FILES = ("README.md", "app.py", "requirements.txt")
# The Space's variables the app reads (MODEL_ENV and TEACHER_ENV in its app.py).
SPACE_MODEL_VARIABLE = "SMART_MODEL"
SPACE_TEACHER_VARIABLE = "SMART_TEACHER"


def _push_space_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("space_repo_id", help="Hub Space to create or update, e.g. user/smart-gan-demo.")
    parser.add_argument(
        "--model",
        required=True,
        help="Hub id of the smart_hf export the Space serves (pushed with `smart-hf push`); set as the "
        f"Space variable {SPACE_MODEL_VARIABLE}. A private model needs an HF_TOKEN secret on the Space.",
    )
    parser.add_argument(
        "--teacher",
        help=f"Hub id of the teacher score model for the side-by-side, set as {SPACE_TEACHER_VARIABLE} "
        "(default: the teacher the model's smart_hf.json names, when that is a Hub id).",
    )
    parser.add_argument("--private", action="store_true", help="Create the Space as private.")
    parser.add_argument("--token", help="Hub token (default: the token of `hf auth login` or HF_TOKEN).")
    parser.add_argument(
        "--space-dir",
        type=Path,
        default=SPACE_FOLDER,
        help="The Space's folder (default: spaces/smart_gan_demo of this smart_hf checkout).",
    )


def space_files(folder: Path) -> list[Path]:
    """The files of `SPACE_FILES` in `folder`; a `ValueError` when one is missing or is a symlink, which an
    upload would follow to whatever it points at."""
    if not folder.is_dir():
        raise ValueError(
            f"No Space folder at {folder}; pass --space-dir <smart_hf checkout>/spaces/smart_gan_demo."
        )
    files = [folder / name for name in SPACE_FILES]
    for path in files:
        if path.is_symlink() or not path.is_file():
            problem = "a symlink" if path.is_symlink() else "missing"
            raise ValueError(f"{path} is {problem}: the Space needs it as a regular file.")
    return files


def run_push_space(args: argparse.Namespace) -> None:
    """Create or update the Space: check that its models are on the Hub, set its variables, then upload a
    staged copy of exactly `SPACE_FILES` whose card names the models it uses."""
    import huggingface_hub
    from huggingface_hub.utils import HFValidationError

    from smart_hf.hub_network import network_errors

    files = space_files(args.space_dir)
    models = [args.model, *([args.teacher] if args.teacher else [])]
    try:
        for repo_id in models:
            try:
                found = huggingface_hub.repo_exists(repo_id, token=args.token)
            except HFValidationError:  # not a Hub id: a local path, for instance
                found = False
            if not found:
                raise ValueError(
                    f"{repo_id} is not a model on the Hub: the Space loads its models from there (push an "
                    "export with `smart-hf push <folder> --repo-id <id>`)."
                )
        space = huggingface_hub.create_repo(
            args.space_repo_id,
            repo_type="space",
            space_sdk="gradio",
            private=args.private,
            token=args.token,
            exist_ok=True,
        ).repo_id
        variables = {SPACE_MODEL_VARIABLE: args.model, SPACE_TEACHER_VARIABLE: args.teacher}
        existing = huggingface_hub.get_space_variables(space, token=args.token)
        for key, value in variables.items():
            if value:
                huggingface_hub.add_space_variable(space, key, value, token=args.token)
            elif key in existing:  # a teacher of an earlier deploy would override the model's own
                huggingface_hub.delete_space_variable(space, key, token=args.token)
        with tempfile.TemporaryDirectory() as staging:
            for path in files:
                shutil.copyfile(path, Path(staging) / path.name)
            card = huggingface_hub.SpaceCard.load(args.space_dir / "README.md")
            card.data.models = models
            card.save(Path(staging) / "README.md")
            commit = huggingface_hub.upload_folder(
                repo_id=space,
                repo_type="space",
                folder_path=staging,
                commit_message=f"Deploy the SMaRt demo of {args.model}",
                token=args.token,
            )
    except network_errors() as error:  # no network, DNS, proxy, time-out
        raise OSError(
            f"Cannot reach the Hub to deploy {args.space_repo_id} ({error}); check the network, then retry."
        ) from None
    print(f"Deployed {args.model} to https://huggingface.co/spaces/{space} ({commit.commit_url})")


COMMANDS = [
    Command(
        "generate",
        "Generate images with a trained generator and save them as a grid.",
        _generate_arguments,
        run_generate,
    ),
    Command(
        "export",
        "Export a trained generator as a Hub-ready pipeline folder with a model card.",
        _export_arguments,
        run_export,
    ),
    Command("push", "Upload an export folder to the Hugging Face Hub.", _push_arguments, run_push),
    Command(
        "evaluate",
        "Score generated images against a reference: Fréchet distances, precision and recall.",
        _evaluate_arguments,
        run_evaluate,
    ),
    Command(
        "push-space",
        "Deploy the Gradio demo Space for a model on the Hub (files, card and variables).",
        _push_space_arguments,
        run_push_space,
    ),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smart-hf", description="SMaRt one-step GAN generators: generate, export and share on the Hub."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        subparser = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(subparser)
        subparser.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `smart-hf` with `argv` (default: the command line); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError, ImportError) as error:
        print(f"smart-hf {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
