"""Train a noise-prediction score model (a diffusers UNet, or an MLP for the toy sets), under `accelerate
launch`; the result serves as `--score` in training/train_smart_gan.py.

    accelerate launch training/train_score_model.py --dataset_name digits --use_ema --output_dir digits-unet

`--help` lists every option. The run configuration is `smart_hf.training.config.ScoreModelTrainingConfig`, the
loop `smart_hf.training.score_model.train_score_model`.
"""

from smart_hf.training.config import parse_score_model_args
from smart_hf.training.score_model import train_score_model

if __name__ == "__main__":
    train_score_model(parse_score_model_args())
