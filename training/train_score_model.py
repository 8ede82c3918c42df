"""Train a noise-prediction score model by denoising score matching, under `accelerate launch`.

    accelerate launch training/train_score_model.py --dataset_name grid25 --output_dir scores/grid25

The result is a folder with `score_model/` (the network) and `scheduler/` (its `DDPMScheduler`), loadable with
`smart_hf.load_score_model` and usable as `--score` in `training/train_smart_gan.py`.
"""

import argparse
import json
import logging
import os

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from smart_hf.models.toy_mlp import MLPNoisePredictor
from smart_hf.toy2d import TOY_DATASETS, load_toy_dataset

logger = get_logger(__name__, log_level="INFO")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_name", default="grid25", help=f"Toy data set: one of {sorted(TOY_DATASETS)}.")
    parser.add_argument("--output_dir", default="outputs/score-model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden_dim", type=int, default=256)
    parser.add_argument("--num_layers", type=int, default=4)
    parser.add_argument("--num_train_timesteps", type=int, default=1000)
    parser.add_argument("--max_train_steps", type=int, default=6000)
    parser.add_argument("--train_batch_size", type=int, default=1024)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--use_ema", action="store_true", help="Save an exponential moving average of the weights.")
    parser.add_argument("--ema_max_decay", type=float, default=0.999)
    parser.add_argument("--logging_steps", type=int, default=100)
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    accelerator = Accelerator()
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    set_seed(args.seed)

    dataset = load_toy_dataset(args.dataset_name)
    scheduler = DDPMScheduler(num_train_timesteps=args.num_train_timesteps, beta_schedule="linear")
    model = MLPNoisePredictor(data_dim=dataset.means.shape[1], hidden_dim=args.hidden_dim, num_layers=args.num_layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.max_train_steps)
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    ema = EMAModel(accelerator.unwrap_model(model).parameters(), decay=args.ema_max_decay) if args.use_ema else None
    if ema is not None:
        ema.to(accelerator.device)

    data_rng = torch.Generator().manual_seed(args.seed + accelerator.process_index)
    history = []
    progress = tqdm(range(args.max_train_steps), disable=not accelerator.is_local_main_process, desc="steps")
    for step in progress:
        clean = dataset.sample(args.train_batch_size, generator=data_rng).to(accelerator.device)
        noise = torch.randn_like(clean)
        timesteps = torch.randint(0, args.num_train_timesteps, (clean.shape[0],), device=clean.device)
        noisy = scheduler.add_noise(clean, noise, timesteps)
        loss = F.mse_loss(model(noisy, timesteps).sample, noise)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        lr_scheduler.step()
        if ema is not None:
            ema.step(accelerator.unwrap_model(model).parameters())
        if step % args.logging_steps == 0:
            history.append({"step": step, "loss": loss.item()})
            progress.set_postfix(loss=f"{loss.item():.4f}")

    if accelerator.is_main_process:
        trained = accelerator.unwrap_model(model)
        if ema is not None:
            ema.copy_to(trained.parameters())
        trained.save_pretrained(os.path.join(args.output_dir, "score_model"))
        scheduler.save_pretrained(os.path.join(args.output_dir, "scheduler"))
        with open(os.path.join(args.output_dir, "training_history.json"), "w") as f:
            json.dump({"config": vars(args), "history": history}, f, indent=2)
        logger.info(f"Saved the score model to {args.output_dir}")
    accelerator.end_training()


if __name__ == "__main__":
    main(parse_args())
