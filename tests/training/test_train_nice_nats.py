"""train_smart_gan.py with --nice, --nats and TTUR settings: short runs, resume, exports, refusals."""

from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from smart_hf import hub
from smart_hf.pipelines import SmartOneStepPipeline
from smart_hf.training.config import parse_gan_args
from smart_hf.training.gan import train_gan
from tests.helpers import TINY_GAN, save_tiny_score

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"
TOY = (
    "--max_train_steps 20 --train_batch_size 32 --hidden_dim 16 --num_layers 1 --num_eval_samples 100 "
    "--logging_steps 5 --smart_interval 4"
).split()
# beta rises on almost every adjustment (r > −0.99) by 0.128 (4 steps × 32 samples / 1,000), unsaturated.
NICE = "--nice --nice_target -0.99 --nice_ada_kimg 1".split()


pytestmark = pytest.mark.usefixtures("one_thread")


def run(output_dir, *flags, base=TOY):
    return train_gan(parse_gan_args([*base, "--output_dir", str(output_dir), *flags]))


def scalars(output_dir) -> set[str]:
    events = EventAccumulator(str(next((Path(output_dir) / "logs").rglob("events.out.tfevents.*"))))
    events.Reload()
    return set(events.Tags()["scalars"])


def nice_state(checkpoint) -> dict:
    """NICE's state in a toy checkpoint: the second object checkpointed (after the batches)."""
    return torch.load(Path(checkpoint) / "custom_checkpoint_1.pkl", weights_only=True)


def test_toy_run_with_nice_logs_beta_and_consistency(tmp_path):
    results = run(tmp_path, *NICE, "--logger", "tensorboard")
    assert results["nonfinite_steps"] == 0 and results["num_modes"] == 25
    assert {"nice_beta", "nice_r", "loss_nice_consistency"} <= scalars(tmp_path)


def test_nice_state_resumes_exactly(tmp_path):
    flags = [*NICE, "--checkpointing_steps", "10"]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    run(whole, *flags)
    run(resumed, *flags, "--max_train_steps", "10")
    run(resumed, *flags, "--resume_from_checkpoint", "latest")
    first, second = nice_state(whole / "checkpoint-20"), nice_state(resumed / "checkpoint-20")
    assert first == second
    assert nice_state(whole / "checkpoint-10")["beta"] < first["beta"] < 1  # still adapting, not clipped


def test_toy_run_with_nats_logs_the_annealed_regression(tmp_path):
    results = run(tmp_path, "--nats", "--nats_steps", "2", "--logger", "tensorboard")
    assert results["nonfinite_steps"] == 0
    assert {"loss_nats", "nats_weight"} <= scalars(tmp_path)
    assert results["config"]["nats_anneal_steps"] == 20  # defaults to the run's length


def test_digits_run_with_nice_and_nats_exports_the_discriminator(tmp_path):
    score = save_tiny_score(tmp_path / "score")
    flags = f"--dataset_name digits --score {score} --max_train_steps 3 --nats --nats_steps 2 --nice"
    results = run(tmp_path / "run", *flags.split(), base=TINY_GAN)
    assert results["global_step"] == 3 and results["nonfinite_steps"] == 0
    export = tmp_path / "run" / "pipeline"
    assert hub.validate_export(export)["discriminator"] == ["dcgan", "DCGANDiscriminator"]
    pipe = SmartOneStepPipeline.from_pretrained(export)
    refined = pipe(batch_size=2, refine_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert refined.images.shape == (2, 1, 8, 8)


def test_separate_adam_betas_reach_the_optimizers(tmp_path):
    run(tmp_path, "--max_train_steps", "2", "--checkpointing_steps", "2", "--d_adam_betas", "0.5", "0.99")
    groups = [
        torch.load(tmp_path / "checkpoint-2" / name, weights_only=True)["param_groups"][0]
        for name in ("optimizer.bin", "optimizer_1.bin")
    ]
    assert [tuple(group["betas"]) for group in groups] == [(0.0, 0.9), (0.5, 0.99)]  # G, then D
    assert [group["lr"] for group in groups] == [1e-4, 3e-4]


def test_ttur_preset_overlays_another_preset_and_flags_override_it():
    digits, ttur = str(CONFIGS / "digits.yaml"), str(CONFIGS / "ttur.yaml")
    args = parse_gan_args(["--config", digits, "--config", ttur])
    assert args.dataset_name == "digits" and args.smart.weight == 0.7  # from digits.yaml
    assert (args.g_learning_rate, args.d_learning_rate) == (1e-4, 3e-4)  # from ttur.yaml, which comes later
    assert args.g_adam_betas == args.d_adam_betas == [0.0, 0.9]
    args = parse_gan_args(["--config", ttur, "--d_adam_betas", "0.5", "0.99"])
    assert (args.g_adam_betas, args.d_adam_betas) == ([0.0, 0.9], [0.5, 0.99])
    # The shared flags still set both optimizers, unless a network's own betas are given.
    args = parse_gan_args(["--adam_beta1", "0.5", "--g_adam_betas", "0.0", "0.99"])
    assert (args.g_adam_betas, args.d_adam_betas) == ([0.0, 0.99], [0.5, 0.9])


@pytest.mark.parametrize(
    "flags, message",
    [
        ("--nice_target 0.5", "--nice_target only act with --nice: add --nice"),
        ("--nats_steps 3 --nats_anneal cosine", "--nats_anneal --nats_steps only act with --nats"),
        ("--nice --nice_beta_max 0", "beta_max must be > 0"),
        ("--nice --nice_target 1", r"target must lie in \(-1, 1\)"),
        ("--nats --nats_steps 0", "num_steps >= 1"),
        ("--nats --nats_step_decay 2", r"step_decay must lie in \(0, 1\]"),
        ("--nats --nats_anneal constant --nats_final_weight 0.5", "constant keeps the weight at 1"),
        ("--g_adam_betas 1.0 0.9", "--g_adam_betas must be >= 0 and < 1, got 1.0"),
    ],
)
def test_bad_settings_fail_before_training(tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        run(tmp_path, *flags.split())
    assert not (tmp_path / "generator").exists()
