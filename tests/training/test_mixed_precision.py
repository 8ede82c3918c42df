"""Mixed precision: where the precision comes from, the score model under autocast, bf16 SMaRt against fp32,
and fp16 loss scaling through accelerate."""

import json

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from smart_hf.scores import load_score_model
from smart_hf.smart import SmartRegularizer
from smart_hf.training import build
from smart_hf.training.config import parse_gan_args, parse_score_model_args
from smart_hf.training.gan import apply_update, train_gan
from smart_hf.training.score_model import train_score_model
from tests.helpers import TINY_GAN, save_tiny_score

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerator_state")


@pytest.fixture(scope="module")
def score(tmp_path_factory):
    return save_tiny_score(tmp_path_factory.mktemp("score"))


def smart_loss_and_gradient(score_path, dtype, samples, autocast):
    """SMaRt (lambda 1) on `samples` with fixed t and noise: the loss and its gradient w.r.t. the samples."""
    score = load_score_model(score_path, torch_dtype=dtype)
    smart = SmartRegularizer(score, weight=1.0, interval=1)
    samples = samples.clone().requires_grad_(True)
    seen = []
    score.model.conv_in.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    with autocast:
        loss = smart(samples, 0, generator=torch.Generator().manual_seed(0)).loss
    loss.backward()
    return loss.item(), samples.grad, seen


def test_bf16_smart_loss_and_gradient_match_fp32(score):
    """Measured on 20 batches (t in [25, 35] and [1, 999]): the bf16 loss is within 7.2e-4 of fp32 (relative;
    a mean over 1024 squared errors averages bf16's 2^-8 rounding out), the gradient within 2.8% (relative L2
    error: each element passes back through every bf16 convolution; cosine ≥ 0.9996). The tolerances are
    about twice those: far inside the issue's 2% target for the loss, and far below what a wrong term
    (another t or noise draw, a missing factor) makes."""
    samples = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    loss_32, gradient_32, dtypes_32 = smart_loss_and_gradient(
        score, torch.float32, samples, torch.autocast("cpu", enabled=False)
    )
    accelerator = Accelerator(mixed_precision="bf16", cpu=True)
    loss_16, gradient_16, dtypes_16 = smart_loss_and_gradient(
        score, torch.bfloat16, samples, accelerator.autocast()
    )

    assert (dtypes_32, dtypes_16) == ([torch.float32], [torch.bfloat16])
    assert gradient_16.dtype == torch.float32 and loss_16 != loss_32  # bf16 really ran
    assert loss_16 == pytest.approx(loss_32, rel=1.5e-3)
    assert ((gradient_16 - gradient_32).norm() / gradient_32.norm()).item() < 0.05
    assert torch.nn.functional.cosine_similarity(gradient_16.flatten(), gradient_32.flatten(), 0) > 0.999


def record_score_calls(monkeypatch):
    """(autocast on, the UNet's compute dtype, its weights' dtype) of each score-model forward of a run."""
    calls = []

    def load_and_watch(*args, **kwargs):
        score = load_score_model(*args, **kwargs)
        unet = score.model
        unet.conv_in.register_forward_hook(
            lambda module, inputs, output: calls.append(
                (torch.is_autocast_enabled("cpu"), output.dtype, module.weight.dtype)
            )
        )
        return score

    monkeypatch.setattr(build, "load_score_model", load_and_watch)
    return calls


def run_digits(output_dir, score, *flags):
    flags = [*TINY_GAN, "--dataset_name", "digits", "--score", score, "--max_train_steps", "2", *flags]
    results = train_gan(parse_gan_args([*flags, "--output_dir", str(output_dir)]))
    return results, json.loads((output_dir / "metrics.json").read_text())["config"]


def test_precision_of_accelerate_launch_applies_unless_the_flag_is_given(tmp_path, score, monkeypatch):
    """`accelerate launch --mixed_precision bf16` (or its config file) sets ACCELERATE_MIXED_PRECISION:
    without the flag the run trains in bf16, G, D and the SMaRt score model under autocast; the flag, given,
    wins."""
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    calls = record_score_calls(monkeypatch)
    results, config = run_digits(tmp_path / "launched", score)
    assert results["nonfinite_steps"] == 0 and config["mixed_precision"] == "bf16"
    # SMaRt at step 0 (interval 2), in training: autocast, bf16 weights and compute.
    assert calls[0] == (True, torch.bfloat16, torch.bfloat16)

    AcceleratorState._reset_state(reset_partial_state=True)
    calls.clear()
    results, config = run_digits(tmp_path / "flag", score, "--mixed_precision", "no")
    assert config["mixed_precision"] == "no"
    assert calls[0] == (False, torch.float32, torch.float32)


def test_no_precision_anywhere_means_fp32_and_allow_tf32_switches_tf32_on(tmp_path, score, monkeypatch):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    backends = (torch.backends.cuda.matmul, torch.backends.cudnn)
    before = [backend.allow_tf32 for backend in backends]  # process-wide switches, restored below
    try:
        for backend in backends:
            backend.allow_tf32 = False
        assert parse_gan_args([]).mixed_precision is None
        _, config = run_digits(tmp_path, score, "--allow_tf32")
        assert config["mixed_precision"] == "no" and config["allow_tf32"] is True
        assert [backend.allow_tf32 for backend in backends] == [True, True]
    finally:
        for backend, value in zip(backends, before, strict=True):
            backend.allow_tf32 = value


def test_fp16_overflow_is_left_to_accelerates_loss_scale():
    """An fp16 gradient that overflows the loss scale: the step is skipped and the scale halved (accelerate's
    GradScaler), not counted as a non-finite step; the next step applies. Here a CPU GradScaler stands in for
    the one accelerate makes for fp16 on a GPU."""
    accelerator = Accelerator(cpu=True)
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = accelerator.prepare(torch.optim.SGD([weight], lr=0.1))

    assert apply_update(accelerator, optimizer, (weight * 1e35).sum())  # finite loss, scaled gradient inf
    assert torch.equal(weight.detach(), torch.ones(3)) and optimizer.step_was_skipped
    assert accelerator.scaler.get_scale() == 2.0**15
    assert apply_update(accelerator, optimizer, weight.sum())
    assert torch.allclose(weight.detach(), torch.full((3,), 0.9)) and not optimizer.step_was_skipped
    assert not apply_update(accelerator, optimizer, weight.sum() * float("inf"))  # a non-finite loss still is


def test_the_score_model_script_takes_accelerate_launchs_precision_unless_given(tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    tiny_toy = "--dataset_name grid25 --hidden_dim 8 --num_layers 1 --train_batch_size 16 --max_train_steps 2"
    train_score_model(parse_score_model_args([*tiny_toy.split(), "--output_dir", str(tmp_path / "launched")]))
    recorded = json.loads((tmp_path / "launched" / "training_history.json").read_text())["config"]
    assert recorded["mixed_precision"] == "bf16"

    AcceleratorState._reset_state(reset_partial_state=True)
    flags = [*tiny_toy.split(), "--output_dir", str(tmp_path / "flag"), "--mixed_precision", "no"]
    train_score_model(parse_score_model_args(flags))
    recorded = json.loads((tmp_path / "flag" / "training_history.json").read_text())["config"]
    assert recorded["mixed_precision"] == "no"
