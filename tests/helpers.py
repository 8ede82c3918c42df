"""Tiny score models, image folders and flags shared by the training and benchmark tests."""

import numpy as np
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from PIL import Image

# About a second per run: 8×8 images, 8 base channels, batches of 4.
TINY_GAN = (
    "--model_architecture dcgan --g_base_channels 8 --d_base_channels 8 --latent_dim 8 --train_batch_size 4 "
    "--smart_interval 2 --num_eval_samples 8 --num_sample_images 4 --logging_steps 1 --checkpointing_steps 0 "
    "--save_images_steps 0"
).split()


def save_tiny_score(path, channels: int = 1, resolution: int = 8, num_classes: int | None = None) -> str:
    """A randomly initialised `DDPMPipeline` folder (unet/ + scheduler/), as `--score` reads it."""
    unet = UNet2DModel(
        sample_size=resolution,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        num_class_embeds=num_classes,
    )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(path)
    return str(path)


def save_image_folder(root, images_per_class: int = 3, classes: tuple[str, ...] = ("a", "b")) -> str:
    """An image folder of random 8×8 grayscale PNGs, one subfolder per class."""
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for index in range(images_per_class):
            pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    return str(root)
