"""Memory and speed options: SMaRt on the generator step's own fakes, --smart_batch_shrink, --score_dtype,
--channels_last, and torch.compile (--compile_score, --compile_models) with plain weights in what is saved."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from smart_hf.losses import GANLoss
from smart_hf.models import DCGANGenerator
from smart_hf.scores import GaussianMixtureScore
from smart_hf.smart import SmartRegularizer
from smart_hf.training import build
from smart_hf.training.config import parse_gan_args
from smart_hf.training.gan import train_gan
from tests.helpers import TINY_GAN, save_tiny_score

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerator_state")


@pytest.fixture(scope="module")
def score(tmp_path_factory):
    return save_tiny_score(tmp_path_factory.mktemp("score"))


def run(output_dir, score, *flags):
    args = parse_gan_args(
        [*TINY_GAN, "--dataset_name", "digits", "--score", score, "--output_dir", str(output_dir), *flags]
    )
    return train_gan(args)


def point_score():
    return GaussianMixtureScore(torch.zeros(1, 2), std=0.5)


def test_generator_step_runs_the_generator_once_when_smart_is_active():
    """SMaRt takes the fakes of the adversarial term: one generator forward per generator step, not two."""
    calls = []
    linear = torch.nn.Linear(4, 2)

    def generator(latents):
        calls.append(latents)
        return linear(latents)

    smart = SmartRegularizer(point_score(), weight=1.0, t_min=10, t_max=10, interval=1)
    loss = GANLoss(generator, lambda x: x.sum(1, keepdim=True), smart=smart)
    terms = loss.generator_phase(torch.randn(8, 4), step=0)
    assert "loss_smart" in terms.logs and terms.logs["loss_smart"] > 0
    assert len(calls) == 1
    terms.total.backward()  # both terms reach G through that one forward
    assert linear.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("shrink", [2, 4])
def test_batch_shrink_loss_is_the_term_on_the_first_samples(shrink):
    batch, t = 8, 10
    samples = torch.randn(batch, 2, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    score = point_score()
    smart = SmartRegularizer(score, weight=0.5, t_min=t, t_max=t, interval=1, batch_shrink=shrink)
    loss = smart(samples, 0, generator=torch.Generator().manual_seed(2)).loss
    loss.backward()

    # By hand, with the draws SMaRt makes (t, then the noise) from the same seed, on the first batch/shrink.
    kept = batch // shrink
    rng = torch.Generator().manual_seed(2)
    timesteps = torch.randint(t, t + 1, (kept,), generator=rng)
    noise = torch.randn(kept, 2, generator=rng)
    a_t, s_t = score.signal_and_noise_scales(timesteps, 2)
    x0 = samples.detach()[:kept]
    expected = 0.5 * (score(a_t * x0 + s_t * noise, timesteps) - noise).pow(2).mean()
    torch.testing.assert_close(loss, expected)
    assert samples.grad[:kept].abs().sum(1).min() > 0
    assert torch.equal(samples.grad[kept:], torch.zeros_like(samples.grad[kept:]))


def test_batch_shrink_that_leaves_no_sample_is_refused():
    smart = SmartRegularizer(point_score(), weight=1.0, t_min=10, t_max=10, interval=1, batch_shrink=8)
    with pytest.raises(ValueError, match="--smart_batch_shrink 8 leaves no sample of a batch of 4"):
        smart(torch.randn(4, 2), 0)
    with pytest.raises(ValueError, match="batch shrink must be >= 1"):
        SmartRegularizer(point_score(), batch_shrink=0)
    with pytest.raises(ValueError, match="leaves no sample of a batch of 4"):
        parse_gan_args(
            [*TINY_GAN, "--dataset_name", "digits", "--score", "x/y", "--smart_batch_shrink", "8"]
        ).check()


@pytest.fixture
def loaded_scores(monkeypatch):
    """The score models the runs load."""
    loaded = []
    original = build.load_score_model

    def spy(*args, **kwargs):
        loaded.append(original(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(build, "load_score_model", spy)
    return loaded


@pytest.mark.parametrize(
    ("flags", "dtype"),
    [
        ("", torch.float32),
        ("--mixed_precision bf16", torch.bfloat16),  # the compute dtype, as before
        ("--score_dtype bf16", torch.bfloat16),
        ("--mixed_precision bf16 --score_dtype fp32", torch.float32),
    ],
)
def test_score_dtype_sets_the_score_model_weights(tmp_path, score, loaded_scores, flags, dtype):
    results = run(tmp_path, score, "--max_train_steps", "2", *flags.split())
    assert {p.dtype for p in loaded_scores[0].model.parameters()} == {dtype}
    assert results["global_step"] == 2


def test_channels_last_converts_the_models_and_trains(tmp_path, score, loaded_scores, monkeypatch):
    converted = []
    original = build.to_channels_last
    monkeypatch.setattr(
        build, "to_channels_last", lambda *models: converted.extend(models) or original(*models)
    )
    results = run(tmp_path, score, "--max_train_steps", "2", "--channels_last")
    assert results["global_step"] == 2 and len(converted) == 3
    generator, discriminator, unet = converted[0], converted[1], loaded_scores[0].model
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    for model in (generator, discriminator):
        convolutions = [
            m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
        ]
        assert convolutions and all(
            c.weight.is_contiguous(memory_format=torch.channels_last) for c in convolutions
        )


def test_compile_that_does_not_work_here_is_a_clear_error_before_training(tmp_path, score, monkeypatch):
    def broken_compile(model, **kwargs):
        def compiled(*args, **kwargs):
            raise RuntimeError("no C++ compiler found")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.raises(RuntimeError, match="torch.compile does not work here .*no C\\+\\+ compiler found"):
        run(tmp_path, score, "--max_train_steps", "2", "--compile_score")
    assert not (tmp_path / "generator").exists()


def test_compiled_run_saves_plain_generator_weights(tmp_path, score, monkeypatch):
    """G, D and the score run compiled (dynamo with the eager backend: the same wrappers, no C++ build); the
    checkpoint and the export hold the trained weights under the plain modules' names."""
    compiled = []
    original = torch.compile

    def eager_compile(model, **kwargs):
        compiled.append(original(model, backend="eager"))
        return compiled[-1]

    monkeypatch.setattr(torch, "compile", eager_compile)
    run(
        tmp_path,
        score,
        "--max_train_steps", "2", "--compile_models", "--compile_score", "--checkpointing_steps", "2",
    )  # fmt: skip
    modules = [c for c in compiled if isinstance(c, torch._dynamo.eval_frame.OptimizedModule)]
    assert len(modules) == 3  # the score's UNet, G and D
    trained = next(m._orig_mod for m in modules if isinstance(m._orig_mod, DCGANGenerator))
    for folder in (tmp_path / "generator", tmp_path / "checkpoint-2" / "generator"):
        saved = load_file(Path(folder) / "diffusion_pytorch_model.safetensors")
        assert not any("_orig_mod" in key for key in saved)
        plain = DCGANGenerator.from_pretrained(folder)
        assert plain.state_dict().keys() == trained.state_dict().keys()
        for key, value in trained.state_dict().items():
            assert torch.equal(plain.state_dict()[key], value), key


def test_compile_models_with_the_spectral_norm_discriminator_is_refused():
    flags = [*TINY_GAN, "--dataset_name", "digits", "--score", "x/y", "--compile_models"]
    parse_gan_args(flags).check()  # dcgan: fine
    with pytest.raises(ValueError, match="--compile_models fails with the resnet discriminator"):
        parse_gan_args([*flags, "--model_architecture", "resnet"]).check()
