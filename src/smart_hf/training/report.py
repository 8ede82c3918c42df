"""What a run shows and leaves behind: logged means, sample grids and plots, final metrics, the export.

A toy run ends with metrics.json (modes covered, % high quality, …), a scatter plot and the raw samples; an
image run with metrics.json (score-matching errors; FD, precision and recall where a feature extractor for its
data works offline), samples.png and the Hub-ready `pipeline/` export, whose model card shows them.
"""

import json
import os
import resource
import sys
from typing import Any

import matplotlib
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from diffusers.models.modeling_utils import ModelMixin
from PIL import Image

from smart_hf import hub
from smart_hf.data import DIGITS, DIGITS_RESOLUTION, ImageDataset
from smart_hf.evaluation.features import DigitsFeatureExtractor
from smart_hf.evaluation.frechet import FeatureStatistics, frechet_distance
from smart_hf.evaluation.options import DEFAULT_K
from smart_hf.evaluation.precision_recall import precision_recall
from smart_hf.pipelines import SmartOneStepPipeline
from smart_hf.smart import SmartRegularizer
from smart_hf.toy2d import ToyDataset, toy_metrics
from smart_hf.training.config import GANTrainingConfig
from smart_hf.training.options import to_flat

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

logger = get_logger(__name__, log_level="INFO")

NO_FEATURES_NOTE = (
    "FD, precision and recall were not measured: smart_hf's only feature extractor that works offline is its "
    "digits classifier, which means nothing on other data. Measure them with `smart-hf evaluate EXPORT "
    "--reference DATA --metric fid` (Inception-v3; needs pytorch-fid and its weights) or --metric fd_dinov2."
)


class LogWindow:
    """Means of the logged values since the last report (SMaRt and R1 run only on some steps)."""

    def __init__(self):
        self.values: dict[str, list[float]] = {}

    def add(self, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            self.values.setdefault(key, []).append(value)

    def pop_means(self) -> dict[str, float]:
        means = {key: sum(values) / len(values) for key, values in self.values.items()}
        self.values.clear()
        return means


def sample_grid(generator: ModelMixin, num_images: int, seed: int) -> Image.Image:
    """The export's sample grid of `generator` (one class per column for up to 16 classes)."""
    return hub.sample_grid(SmartOneStepPipeline(gan=generator), num_images, seed)


def save_sample_grid(
    accelerator: Accelerator, config: GANTrainingConfig, generator: ModelMixin, step: int
) -> None:
    """A grid from fixed latents into samples/step-<step>.png, and to tensorboard."""
    grid = sample_grid(generator, config.num_sample_images, config.seed)
    os.makedirs(os.path.join(config.output_dir, "samples"), exist_ok=True)
    grid.save(os.path.join(config.output_dir, "samples", f"step-{step:06d}.png"))
    if any(tracker.name == "tensorboard" for tracker in accelerator.trackers):
        pixels = np.asarray(grid)
        tracker = accelerator.get_tracker("tensorboard", unwrap=True)
        tracker.add_image("samples", pixels, step, dataformats="HW" if pixels.ndim == 2 else "HWC")


def peak_memory(device: torch.device) -> dict[str, float]:
    """This process's peak memory so far, in MiB: allocated by torch on a CUDA `device`, else the process's
    peak resident set size (RSS), each under a key that says which."""
    if device.type == "cuda":
        return {"peak_memory_cuda_allocated_mib": torch.cuda.max_memory_allocated(device) / 2**20}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, KiB elsewhere
    return {"peak_memory_rss_mib": peak / 2**20 if sys.platform == "darwin" else peak / 2**10}


@torch.no_grad()
def generate(
    generator_model: ModelMixin, num_images: int, batch_size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`num_images` samples in [−1, 1] (and their uniformly drawn class labels) from fixed latents."""
    rng = torch.Generator().manual_seed(seed)
    config, device = generator_model.config, generator_model.device
    latents = torch.randn(num_images, config.latent_dim, generator=rng)
    labels = torch.randint(config.num_classes, (num_images,), generator=rng) if config.num_classes else None
    images = []
    for start in range(0, num_images, batch_size):
        batch_labels = None if labels is None else labels[start : start + batch_size].to(device)
        images.append(generator_model(latents[start : start + batch_size].to(device), batch_labels).float())
    return torch.cat(images), labels


def real_images(
    dataset: ImageDataset, num_images: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`num_images` training images (and labels, when the data set has them) drawn without replacement."""
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=num_images, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    batch = next(iter(loader))
    return batch["images"], batch.get("class_labels")


@torch.no_grad()
def score_matching_error(
    smart: SmartRegularizer, images: torch.Tensor, labels: torch.Tensor | None, batch_size: int, seed: int
) -> float:
    """Mean denoising error E||eps_hat(x_t, t) − eps||² of the frozen score model over SMaRt's t range:
    SMaRt's objective without lambda. Lower: closer to what the score model learned. Noise fixed by `seed`."""
    device = smart.score.alphas_cumprod.device
    rng = torch.Generator(device=device).manual_seed(seed)
    total = 0.0
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size].to(device)
        chunk_labels = None if labels is None else labels[start : start + batch_size].to(device)
        total += smart.score_matching_loss(chunk, chunk_labels, generator=rng)[1].item() * len(chunk)
    return total / len(images)


@torch.no_grad()
def quality_metrics(
    config: GANTrainingConfig, fake: torch.Tensor, real: torch.Tensor
) -> tuple[dict[str, float], dict[str, Any]]:
    """FD, precision and recall of generated images `fake` against training images `real` (both in [−1, 1]),
    and how they were measured (or why not), as metrics.json and the model card record them.

    Only the embedded digits have a feature space here that works offline (the shipped digits classifier,
    FD_digits); for other data nothing is measured and the description says so: a number in features that
    mean nothing on that data would only mislead. FD needs more samples than the 64 feature dimensions,
    precision and recall more than k = 3; what is not measured is noted, never estimated.
    """
    is_digits = config.dataset_name == DIGITS and config.train_data_dir is None
    if not (is_digits and fake.shape[-1] == DIGITS_RESOLUTION):
        return {}, {"note": NO_FEATURES_NOTE}
    extractor = DigitsFeatureExtractor()
    fake_features, real_features = extractor.extract(fake), extractor.extract(real)
    metrics, notes = {}, []
    if min(len(fake), len(real)) > extractor.feature_dim:
        fake_stats, real_stats = (FeatureStatistics.from_features(f) for f in (fake_features, real_features))
        try:
            metrics["fd_digits"] = frechet_distance(fake_stats, real_stats)
        except ValueError as error:  # covariances too ill-conditioned, e.g. of a collapsed generator
            notes.append(f"FD_digits could not be computed: {error}")
    else:
        notes.append(
            f"FD_digits was not measured: it needs more samples than the features' {extractor.feature_dim} "
            f"dimensions (--num_eval_samples {config.num_eval_samples})."
        )
    if min(len(fake), len(real)) > DEFAULT_K:
        metrics |= precision_recall(real_features, fake_features, DEFAULT_K)
    else:
        notes.append(f"Precision and recall need more than k = {DEFAULT_K} samples.")
    evaluation = {
        "feature_extractor": extractor.name,
        "feature_dim": extractor.feature_dim,
        "reference": "training images",
        "num_samples": len(fake),
        "num_reference": len(real),
        "k": DEFAULT_K,
    }
    return metrics, evaluation | ({"note": " ".join(notes)} if notes else {})


def save_scatter(samples: torch.Tensor, dataset: ToyDataset, path: str, title: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    means = dataset.means.numpy()
    ax.scatter(*samples.T.numpy(), s=2, alpha=0.4, label="generated")
    ax.scatter(*means.T, s=20, c="red", marker="x", label="modes")
    limit = float(dataset.means.abs().max()) * 1.4
    ax.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal", title=title)
    ax.legend(loc="upper right", fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def save_loss_curve(history: list[dict], path: str, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history])
    ax.set(
        xlabel="optimizer step", ylabel="denoising loss (mean over logging window)", yscale="log", title=title
    )
    ax.grid(True, alpha=0.3)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def finish_toy(config: GANTrainingConfig, final: ModelMixin, toy: ToyDataset, results: dict) -> dict:
    """Metrics, scatter plot and raw samples of a toy run."""
    eval_latents = torch.randn(
        config.num_eval_samples, config.latent_dim, generator=torch.Generator().manual_seed(config.seed)
    )
    with torch.no_grad():
        samples = final(eval_latents.to(final.device)).float().cpu()
    results = {**toy_metrics(samples, toy, seed=config.seed), **results, "config": to_flat(config)}
    with open(os.path.join(config.output_dir, "metrics.json"), "w") as f:
        json.dump(results, f, indent=2)
    title = (
        f"{config.dataset_name}: {results['modes_covered']}/{results['num_modes']} modes, "
        f"{results['high_quality_percent']:.1f}% HQ"
    )
    save_scatter(samples, toy, os.path.join(config.output_dir, "samples.png"), title)
    np.save(os.path.join(config.output_dir, "samples.npy"), samples.numpy())
    logger.info(f"{title}; outputs in {config.output_dir}")
    return results


def finish_images(
    config: GANTrainingConfig,
    final: ModelMixin,
    dataset: ImageDataset,
    smart: SmartRegularizer,
    results: dict,
    discriminator: ModelMixin | None = None,
) -> dict:
    """Metrics (`quality_metrics` on --num_eval_samples samples among them), sample grid and exported pipeline
    of an image run (with `discriminator`, for the pipeline's refinement, when given); pushes the export with
    --push_to_hub (whose repository `train_gan` created before training)."""
    num = min(config.num_eval_samples, len(dataset))
    fake, fake_labels = generate(final, num, config.train_batch_size, config.seed)
    real, real_labels = real_images(dataset, num, config.seed)
    results["num_train_images"] = len(dataset)
    results["score_matching_error"] = score_matching_error(
        smart, fake, fake_labels, config.train_batch_size, config.seed
    )
    results["score_matching_error_real"] = score_matching_error(
        smart, real, real_labels, config.train_batch_size, config.seed
    )
    quality, evaluation = quality_metrics(config, fake, real)
    if best := results.pop("best_eval", None):  # --eval_steps: the lowest FD during training, for the card
        evaluation["best_during_training"] = best
    results |= {**quality, "evaluation": evaluation}
    options = to_flat(config)
    with open(os.path.join(config.output_dir, "metrics.json"), "w") as f:
        json.dump({**results, "config": options}, f, indent=2)
    samples_path = os.path.join(config.output_dir, "samples.png")
    sample_grid(final, config.num_sample_images, config.seed).save(samples_path)

    export_dir = os.path.join(config.output_dir, "pipeline")
    hub.export_pipeline(
        final,
        export_dir,
        discriminator_model=discriminator,
        score_model=config.score,
        dataset=config.data_source,
        metrics=results,
        evaluation=evaluation,
        training_config=options,
        repo_id=config.hub_model_id,
        license=config.hub_license,
        num_samples=config.num_sample_images,
        seed=config.seed,
        overwrite=True,
    )
    logger.info(
        f"Exported the pipeline to {export_dir}; samples in {samples_path}, metrics in "
        f"{os.path.join(config.output_dir, 'metrics.json')}"
    )
    if config.push_to_hub:
        url = hub.push_to_hub(export_dir, config.hub_model_id, private=config.hub_private_repo)
        logger.info(f"Pushed {export_dir} to {url}")
    return results
