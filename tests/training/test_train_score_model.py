import json

import pytest
import torch
from diffusers import DDPMPipeline, UNet2DModel
from safetensors.torch import load_file

from smart_hf.scores import load_score_model
from smart_hf.training.config import parse_score_model_args
from smart_hf.training.score_model import train_score_model

TINY_UNET = "--block_out_channels 8 16 --train_batch_size 8 --num_inference_steps 2".split()
TINY_MLP = "--dataset_name grid25 --hidden_dim 8 --num_layers 1 --train_batch_size 16".split()


def run(output_dir, *flags):
    args = parse_score_model_args(["--output_dir", str(output_dir), "--logging_steps", "1", *flags])
    return train_score_model(args)


def weights(folder):
    return load_file(folder / "diffusion_pytorch_model.safetensors")


def checkpoints(folder):
    return sorted(path.name for path in folder.glob("checkpoint-*"))


def test_image_run_saves_a_ddpm_pipeline_that_loads_everywhere(tmp_path):
    results = run(tmp_path, *TINY_UNET, *"--max_train_steps 3 --use_ema --num_sample_images 4".split())
    assert results["global_step"] == 3
    pipeline = DDPMPipeline.from_pretrained(tmp_path)
    images = pipeline(batch_size=2, num_inference_steps=2, output_type="np").images
    assert images.shape == (2, 8, 8, 1)
    score = load_score_model(str(tmp_path))
    assert score.sample_shape == (1, 8, 8) and score.num_classes is None
    saved = json.loads((tmp_path / "training_history.json").read_text())
    assert [h["step"] for h in saved["history"]] == [1, 2, 3] and saved["config"]["dataset_name"] == "digits"
    assert (tmp_path / "training_curve.png").stat().st_size > 1000
    assert (tmp_path / "samples.png").exists()


def test_class_conditional_v_prediction_run_with_gradient_accumulation(tmp_path):
    flags = "--max_train_steps 2 --gradient_accumulation_steps 2 --class_conditional"
    flags += " --prediction_type v_prediction --num_sample_images 2 --logger tensorboard"
    results = run(tmp_path, *TINY_UNET, *flags.split())
    assert results["global_step"] == 2
    assert UNet2DModel.from_pretrained(tmp_path, subfolder="unet").config.num_class_embeds == 10
    score = load_score_model(str(tmp_path))
    assert score.num_classes == 10 and score.prediction_type == "v_prediction"
    assert any((tmp_path / "logs").iterdir())


def test_resume_from_latest_continues_the_step_count_and_the_ema(tmp_path):
    flags = [*TINY_UNET, *"--use_ema --checkpointing_steps 2 --checkpoints_total_limit 2".split()]
    flags += ["--num_sample_images", "0"]
    run(tmp_path, *flags, "--max_train_steps", "4")
    assert checkpoints(tmp_path) == ["checkpoint-2", "checkpoint-4"]

    # Resuming at the end trains nothing: the saved model is exactly the checkpoint's EMA.
    results = run(tmp_path, *flags, "--max_train_steps", "4", "--resume_from_checkpoint", "latest")
    assert results["global_step"] == 4
    ema, final = weights(tmp_path / "checkpoint-4" / "unet_ema"), weights(tmp_path / "unet")
    assert all(torch.equal(ema[name], final[name]) for name in ema)

    run(tmp_path, *flags, "--max_train_steps", "6", "--resume_from_checkpoint", "latest")
    assert checkpoints(tmp_path) == ["checkpoint-4", "checkpoint-6"]
    ema_config = json.loads((tmp_path / "checkpoint-6" / "unet_ema" / "config.json").read_text())
    assert ema_config["optimization_step"] == 6  # restored at 4, then two more updates
    history = json.loads((tmp_path / "training_history.json").read_text())["history"]
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5, 6]


def test_toy_run_resumes_exactly(tmp_path):
    flags = [*TINY_MLP, *"--use_ema --checkpointing_steps 3 --max_train_steps 6".split()]
    run(tmp_path / "straight", *flags)
    run(tmp_path / "resumed", *flags, "--resume_from_checkpoint", str(tmp_path / "straight" / "checkpoint-3"))
    straight = weights(tmp_path / "straight" / "score_model")
    resumed = weights(tmp_path / "resumed" / "score_model")
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)
    assert load_score_model(str(tmp_path / "resumed")).sample_shape == (2,)
    assert (tmp_path / "resumed" / "scheduler" / "scheduler_config.json").exists()


@pytest.mark.parametrize(
    "flags, error, message",
    [
        ("--resolution 7", ValueError, "--resolution 7 must be divisible by 2"),
        ("--norm_num_groups 3", ValueError, "--norm_num_groups 3 must divide"),
        ("--train_data_dir no/such/folder --resolution 8", FileNotFoundError, "does not exist"),
        ("--resume_from_checkpoint checkpoint-7", ValueError, "no such checkpoint folder"),
    ],
)
def test_bad_inputs_fail_before_training(tmp_path, flags, error, message):
    with pytest.raises(error, match=message):
        run(tmp_path, *TINY_UNET, "--max_train_steps", "1", *flags.split())
    assert not (tmp_path / "unet").exists()
