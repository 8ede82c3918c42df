"""Train a one-step GAN generator with SMaRt (score matching regularity), under `accelerate launch`.

    accelerate launch training/train_smart_gan.py --config training/configs/digits.yaml --output_dir out/dg
    accelerate launch --multi_gpu --num_processes 8 training/train_smart_gan.py --config <preset> ...

`--help` lists every option. The run configuration is `smart_hf.training.config.GANTrainingConfig`, the loop
`smart_hf.training.gan.train_gan`: both importable from tests, benchmarks and notebooks.
"""

from smart_hf.training.config import parse_gan_args
from smart_hf.training.gan import train_gan

if __name__ == "__main__":
    train_gan(parse_gan_args())
