"""Train a GAN generator with SMaRt (score matching regularity), under `accelerate launch`.

    accelerate launch training/train_smart_gan.py --dataset_name grid25 --score analytic --output_dir outputs/grid25

The frozen score function is the exact score of the toy mixture (`--score analytic`) or a pretrained noise
predictor (a folder written by `training/train_score_model.py`, or a diffusers Hub id).
"""

import argparse
import json
import logging
import math
import os
import time

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from accelerate.logging import get_logger  # noqa: E402
from accelerate.utils import ProjectConfiguration, set_seed  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from smart_hf.losses import ADVERSARIAL_LOSSES, GANLoss  # noqa: E402
from smart_hf.models.toy_mlp import ToyDiscriminator, ToyGenerator  # noqa: E402
from smart_hf.scores import load_score_model  # noqa: E402
from smart_hf.smart import GRADIENT_MODES, SmartRegularizer  # noqa: E402
from smart_hf.toy2d import TOY_DATASETS, load_toy_dataset, toy_metrics  # noqa: E402

logger = get_logger(__name__, log_level="INFO")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data and output")
    data.add_argument("--dataset_name", default="grid25", help=f"Toy data set: one of {sorted(TOY_DATASETS)}.")
    data.add_argument("--output_dir", default="outputs/smart-gan")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--num_eval_samples", type=int, default=2500, help="Samples for the final metrics and plot.")

    score = parser.add_argument_group("score model")
    score.add_argument(
        "--score",
        default="analytic",
        help="'analytic' (exact score of the toy mixture) or a path / Hub id of a pretrained noise predictor.",
    )

    model = parser.add_argument_group("models")
    model.add_argument("--latent_dim", type=int, default=8)
    model.add_argument("--hidden_dim", type=int, default=256)
    model.add_argument("--num_layers", type=int, default=3)

    training = parser.add_argument_group("training")
    training.add_argument("--max_train_steps", type=int, default=4000, help="Generator steps.")
    training.add_argument("--train_batch_size", type=int, default=256)
    training.add_argument("--d_steps_per_g_step", type=int, default=1)
    training.add_argument("--loss", default="non_saturating", choices=ADVERSARIAL_LOSSES)
    training.add_argument("--r1_gamma", type=float, default=0.0, help="R1 penalty weight (0 = off).")
    training.add_argument("--r1_interval", type=int, default=4, help="Lazy R1: apply every N discriminator steps.")
    training.add_argument("--g_learning_rate", type=float, default=1e-4, help="Generator learning rate (TTUR).")
    training.add_argument("--d_learning_rate", type=float, default=3e-4, help="Discriminator learning rate (TTUR).")
    training.add_argument("--adam_beta1", type=float, default=0.0)
    training.add_argument("--adam_beta2", type=float, default=0.9)
    training.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16"])
    training.add_argument("--logging_steps", type=int, default=100)

    smart = parser.add_argument_group("SMaRt regularizer")
    smart.add_argument("--smart_weight", type=float, default=0.1, help="lambda; 0 trains the plain GAN.")
    smart.add_argument("--smart_t_min", type=int, default=25)
    smart.add_argument("--smart_t_max", type=int, default=35)
    smart.add_argument("--smart_interval", type=int, default=8, help="Lazy: apply every N generator steps.")
    smart.add_argument("--smart_warmup_start", type=int, default=0, help="Generator step where lambda starts to rise.")
    smart.add_argument("--smart_warmup_steps", type=int, default=0, help="Linear lambda warm-up length.")
    smart.add_argument("--smart_gradient", default="full", choices=GRADIENT_MODES)
    smart.add_argument("--smart_scale_by_interval", action="store_true", help="Multiply lambda by the interval.")
    return parser.parse_args(argv)


def build_score(args: argparse.Namespace, dataset):
    if args.score == "analytic":
        return dataset.analytic_score()
    if not os.path.exists(args.score) and args.score.count("/") != 1:
        raise ValueError(f"--score {args.score!r}: no such folder, and not a Hub id; use 'analytic' or a path.")
    return load_score_model(args.score)


def save_scatter(samples: torch.Tensor, dataset, path: str, title: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    means = dataset.means.numpy()
    ax.scatter(*samples.T.numpy(), s=2, alpha=0.4, label="generated")
    ax.scatter(*means.T, s=20, c="red", marker="x", label="modes")
    limit = float(dataset.means.abs().max()) * 1.4
    ax.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal", title=title)
    ax.legend(loc="upper right", fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(args: argparse.Namespace) -> dict:
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        project_config=ProjectConfiguration(project_dir=args.output_dir),
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    set_seed(args.seed)

    # Data and the frozen score function; every bad input is refused here, before training.
    dataset = load_toy_dataset(args.dataset_name)
    score = build_score(args, dataset).to(accelerator.device)
    data_dim = dataset.means.shape[1]
    score.check_compatible((data_dim,))
    smart = None
    if args.smart_weight > 0:
        smart = SmartRegularizer(
            score,
            weight=args.smart_weight,
            t_min=args.smart_t_min,
            t_max=args.smart_t_max,
            interval=args.smart_interval,
            warmup_steps=args.smart_warmup_steps,
            warmup_start=args.smart_warmup_start,
            gradient_mode=args.smart_gradient,
            scale_by_interval=args.smart_scale_by_interval,
        )
    elif args.smart_weight < 0:
        raise ValueError(f"--smart_weight must be >= 0, got {args.smart_weight}.")

    generator = ToyGenerator(args.latent_dim, data_dim, args.hidden_dim, args.num_layers)
    discriminator = ToyDiscriminator(data_dim, args.hidden_dim, args.num_layers)
    betas = (args.adam_beta1, args.adam_beta2)
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=args.g_learning_rate, betas=betas)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=args.d_learning_rate, betas=betas)
    generator, discriminator, optimizer_g, optimizer_d = accelerator.prepare(
        generator, discriminator, optimizer_g, optimizer_d
    )
    gan_loss = GANLoss(generator, discriminator, args.loss, args.r1_gamma, args.r1_interval, smart)

    data_rng = torch.Generator().manual_seed(args.seed + accelerator.process_index)
    batch = args.train_batch_size

    def latents() -> torch.Tensor:
        return torch.randn(batch, args.latent_dim, device=accelerator.device)

    logger.info(f"Training on {args.dataset_name} for {args.max_train_steps} generator steps, SMaRt={smart is not None}")
    progress = tqdm(range(args.max_train_steps), disable=not accelerator.is_local_main_process, desc="steps")
    start_time = time.time()
    d_step = 0
    for step in progress:
        for _ in range(args.d_steps_per_g_step):
            real = dataset.sample(batch, generator=data_rng).to(accelerator.device)
            d_terms = gan_loss.discriminator_phase(real, latents(), d_step)
            optimizer_d.zero_grad(set_to_none=True)
            accelerator.backward(d_terms.total)
            optimizer_d.step()
            d_step += 1

        discriminator.requires_grad_(False)
        g_terms = gan_loss.generator_phase(latents(), step)
        optimizer_g.zero_grad(set_to_none=True)
        accelerator.backward(g_terms.total)
        optimizer_g.step()
        discriminator.requires_grad_(True)

        logs = {**d_terms.logs, **g_terms.logs}
        if not all(math.isfinite(v) for v in logs.values()):
            raise RuntimeError(f"Non-finite loss at step {step}: {logs}. Lower the learning rates or lambda.")
        if step % args.logging_steps == 0:
            progress.set_postfix({k: f"{v:.3g}" for k, v in logs.items()})

    train_seconds = time.time() - start_time
    results: dict = {}
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
        unwrapped = accelerator.unwrap_model(generator)
        unwrapped.save_pretrained(os.path.join(args.output_dir, "generator"))
        with torch.no_grad():
            eval_latents = torch.randn(
                args.num_eval_samples, args.latent_dim, generator=torch.Generator().manual_seed(args.seed)
            )
            samples = unwrapped(eval_latents.to(accelerator.device)).float().cpu()
        results = {**toy_metrics(samples, dataset, seed=args.seed), "train_seconds": train_seconds}
        results["config"] = vars(args)
        with open(os.path.join(args.output_dir, "metrics.json"), "w") as f:
            json.dump(results, f, indent=2)
        title = (
            f"{args.dataset_name}: {results['modes_covered']}/{results['num_modes']} modes, "
            f"{results['high_quality_percent']:.1f}% HQ"
        )
        save_scatter(samples, dataset, os.path.join(args.output_dir, "samples.png"), title)
        np.save(os.path.join(args.output_dir, "samples.npy"), samples.numpy())
        logger.info(f"{title}; outputs in {args.output_dir}")
    accelerator.end_training()
    return results


if __name__ == "__main__":
    main(parse_args())
