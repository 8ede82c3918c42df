"""ALS and CAS schedulers and their pipeline: consistency of CAS's noise level, moments of a sampled mixture,
the VP → VE conversion, the diffusers API and errors on bad input."""

import json
import math
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

from smart_hf.pipelines import AnnealedSamplingPipeline
from smart_hf.pipelines.annealed_sampling.pipeline import annealed_sample
from smart_hf.schedulers import AnnealedLangevinScheduler, ConsistentAnnealedSamplingScheduler
from smart_hf.scores import GaussianMixtureScore, default_alphas_cumprod

DIGITS_UNET = Path(__file__).resolve().parents[2] / "src/smart_hf/assets/score_models/digits-unet"
SCHEDULERS = [AnnealedLangevinScheduler, ConsistentAnnealedSamplingScheduler]


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def model_sigmas():
    alphas_cumprod = default_alphas_cumprod().double()
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt()


@pytest.mark.parametrize("eta", [0.3, 0.8, 1.0, 1.4])
def test_cas_keeps_the_noise_level_on_the_ladder(eta):
    """Point mass at x0, exact score: after the step at level i the sample is x0 + sigma_{i+1}·z exactly."""
    x0, num_samples = 0.7, 20_000
    score = GaussianMixtureScore(torch.tensor([[x0]]), std=0.0)
    scheduler = ConsistentAnnealedSamplingScheduler(
        sigma_max=20.0, sigma_min=0.05, step_size=eta * 0.05**2, timestep_mapping="nearest"
    )
    scheduler.set_timesteps(40)
    sigmas = scheduler.sigmas.double()
    generator = seeded()
    x = x0 + sigmas[0].item() * torch.randn(num_samples, 1, generator=generator)
    measured = []
    for t in scheduler.timesteps:
        eps = score(scheduler.scale_model_input(x, t), t.expand(num_samples))
        x = scheduler.step(eps, t, x, generator=generator).prev_sample
        measured.append((x - x0).std().item())
    # After the last level no noise is added: the score step leaves (1 − eta)·sigma_L.
    expected = torch.cat([sigmas[1:], (1 - scheduler.eta) * sigmas[-1:]])
    np.testing.assert_allclose(measured[:-1], expected[:-1].numpy(), rtol=0.03)
    assert measured[-1] == pytest.approx(abs(expected[-1].item()), rel=0.03, abs=1e-6)


def test_als_does_not_keep_the_noise_level():
    """The same check for ALS (the paper's motivation for CAS): its noise drifts off the ladder."""
    score = GaussianMixtureScore(torch.tensor([[0.0]]), std=0.0)
    scheduler = AnnealedLangevinScheduler(sigma_max=20.0, sigma_min=0.05, timestep_mapping="nearest")
    x = annealed_sample(score, scheduler, (20_000, 1), num_inference_steps=10, generator=seeded())
    assert x.std().item() > 1.5 * scheduler.sigmas[-1].item()


@pytest.mark.parametrize("scheduler_class", SCHEDULERS)
def test_eds_of_a_point_mass_is_the_point(scheduler_class):
    score = GaussianMixtureScore(torch.tensor([[0.7, -0.2]]), std=0.0)
    scheduler = scheduler_class(sigma_max=5.0, use_eds=True, timestep_mapping="nearest")
    x = annealed_sample(score, scheduler, (64, 2), num_inference_steps=5, generator=seeded())
    torch.testing.assert_close(x, torch.tensor([[0.7, -0.2]]).expand(64, 2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("use_eds", [False, True])
def test_cas_recovers_the_moments_of_a_1d_mixture(use_eds):
    means, weights, std = torch.tensor([[-2.0], [1.5]]), torch.tensor([0.3, 0.7]), 0.3
    score = GaussianMixtureScore(means, std=std, weights=weights)
    scheduler = ConsistentAnnealedSamplingScheduler(
        sigma_max=10.0, sigma_min=0.05, use_eds=use_eds, timestep_mapping="nearest"
    )
    x = annealed_sample(score, scheduler, (4000, 1), num_inference_steps=100, generator=seeded())[:, 0]
    mean = (weights * means[:, 0]).sum().item()
    variance = (weights * (std**2 + means[:, 0] ** 2)).sum().item() - mean**2
    assert x.mean().item() == pytest.approx(mean, abs=0.1)  # standard error 0.026
    assert x.var().item() == pytest.approx(variance, rel=0.06)
    assert (x < -0.25).float().mean().item() == pytest.approx(0.3, abs=0.025)  # standard error 0.007
    near_a_mode = (x[:, None] - means[:, 0]).abs().min(dim=1).values < 4 * std
    assert near_a_mode.float().mean().item() > 0.99


def test_geometric_ladder_and_interpolated_timesteps():
    scheduler = ConsistentAnnealedSamplingScheduler(sigma_max=50.0, sigma_min=0.02, use_eds=True)
    scheduler.set_timesteps(12)
    sigmas = scheduler.sigmas.double()
    assert sigmas[0].item() == pytest.approx(50.0) and sigmas[-1].item() == pytest.approx(0.02)
    ratios = sigmas[1:] / sigmas[:-1]
    torch.testing.assert_close(ratios, ratios.mean().expand(11), rtol=1e-5, atol=0)
    assert scheduler.timesteps.is_floating_point() and len(scheduler.timesteps) == 13  # 12 levels + EDS
    # The timestep of each level is where the model's sigma_t, interpolated in log space, equals the level.
    model = model_sigmas()
    for sigma, t in zip(sigmas[:-1], scheduler.timesteps[:-2], strict=True):
        low = int(t)
        fraction = t.item() - low
        interpolated = math.exp((1 - fraction) * model[low].log() + fraction * model[low + 1].log())
        assert interpolated == pytest.approx(sigma.item(), rel=1e-5)
    assert scheduler.init_noise_sigma == pytest.approx(50.0)


def test_nearest_mapping_snaps_the_ladder_to_the_model_levels():
    scheduler = ConsistentAnnealedSamplingScheduler(timestep_mapping="nearest")
    scheduler.set_timesteps(20)
    assert scheduler.timesteps.dtype == torch.int64
    torch.testing.assert_close(scheduler.sigmas, model_sigmas()[scheduler.timesteps].float())
    assert scheduler.timesteps[0] == 999 and scheduler.timesteps[-1] == 0  # the default ladder: all of it


def test_als_evaluates_each_level_steps_per_level_times():
    scheduler = AnnealedLangevinScheduler(sigma_max=10.0, steps_per_level=3, use_eds=True)
    scheduler.set_timesteps(4)
    timesteps = scheduler.timesteps
    assert len(timesteps) == 4 * 3 + 1
    torch.testing.assert_close(timesteps[:12], timesteps[::3][:4].repeat_interleave(3))
    assert timesteps[-1] == timesteps[-2]
    assert scheduler.step_size == pytest.approx(0.062 * scheduler.sigmas[-1].item() ** 2)


def test_model_input_is_the_vp_sample():
    """The network sees a_t·y, and step() turns eps into the VE score: one EDS step returns y − sigma·eps."""
    scheduler = ConsistentAnnealedSamplingScheduler(sigma_max=4.0, sigma_min=1.0, use_eds=True)
    scheduler.set_timesteps(2)
    y = torch.randn(3, 2)
    for index, t in enumerate(scheduler.timesteps[:-1]):
        sigma = scheduler.sigmas[index].item()
        torch.testing.assert_close(scheduler.scale_model_input(y, t), y / math.sqrt(1 + sigma**2))
        y = scheduler.step(torch.zeros_like(y), t, y, generator=seeded()).prev_sample
    eps = torch.randn(3, 2)
    output = scheduler.step(eps, scheduler.timesteps[-1], y)
    torch.testing.assert_close(output.prev_sample, y - 1.0 * eps)
    torch.testing.assert_close(output.pred_original_sample, output.prev_sample)


@pytest.mark.parametrize("scheduler_class", SCHEDULERS)
def test_config_round_trip_and_from_ddpm_config(tmp_path, scheduler_class):
    ddpm = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="epsilon")
    scheduler = scheduler_class.from_config(ddpm.config)
    torch.testing.assert_close(scheduler.alphas_cumprod, ddpm.alphas_cumprod)
    scheduler = scheduler_class(sigma_max=8.0, step_size=1e-5, use_eds=True)
    scheduler.save_pretrained(tmp_path)
    loaded = scheduler_class.from_pretrained(tmp_path)
    assert {k: v for k, v in loaded.config.items() if not k.startswith("_")} == {
        k: v for k, v in scheduler.config.items() if not k.startswith("_")
    }


def test_pipeline_on_the_shipped_digits_unet():
    scheduler = ConsistentAnnealedSamplingScheduler.from_pretrained(
        DIGITS_UNET, subfolder="scheduler", sigma_max=10.0, use_eds=True
    )
    pipeline = AnnealedSamplingPipeline.from_pretrained(DIGITS_UNET, scheduler=scheduler)
    pipeline.set_progress_bar_config(disable=True)
    images = pipeline(batch_size=2, num_inference_steps=4, generator=seeded()).images
    assert [(image.size, image.mode) for image in images] == [((8, 8), "L")] * 2
    array = pipeline(batch_size=2, num_inference_steps=4, generator=seeded(), output_type="np").images
    tensor = pipeline(batch_size=2, num_inference_steps=4, generator=seeded(), output_type="pt").images
    assert array.shape == (2, 8, 8, 1) and tensor.shape == (2, 1, 8, 8)
    np.testing.assert_allclose(tensor.permute(0, 2, 3, 1).numpy(), array)
    np.testing.assert_array_equal(
        np.asarray(images[0]),
        np.asarray(PIL.Image.fromarray((array[0, ..., 0] * 255).round().astype("uint8"))),
    )
    assert len(pipeline.scheduler.timesteps) == 5


def test_pipeline_save_and_load_keeps_the_scheduler(tmp_path):
    scheduler = AnnealedLangevinScheduler.from_pretrained(DIGITS_UNET, subfolder="scheduler", sigma_max=10.0)
    AnnealedSamplingPipeline.from_pretrained(DIGITS_UNET, scheduler=scheduler).save_pretrained(tmp_path)
    loaded = AnnealedSamplingPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.scheduler, AnnealedLangevinScheduler)
    assert loaded.scheduler.config.sigma_max == 10.0


def test_pipeline_save_and_load_round_trip(tmp_path):
    """With smart_hf installed, a saved pipeline loads back (a variant, in a dtype) with the same scheduler
    and makes the same images. Its folder names the scheduler by its smart_hf module and ships no code: it is
    not Hub remote code."""
    scheduler = ConsistentAnnealedSamplingScheduler.from_pretrained(
        DIGITS_UNET, subfolder="scheduler", sigma_max=10.0, use_eds=True
    )
    pipeline = AnnealedSamplingPipeline.from_pretrained(DIGITS_UNET, scheduler=scheduler)
    pipeline.set_progress_bar_config(disable=True)
    expected = pipeline(num_inference_steps=2, generator=seeded(), output_type="np").images
    pipeline.save_pretrained(tmp_path, variant="fp16")
    model_index = json.loads((tmp_path / "model_index.json").read_text())
    assert model_index["scheduler"] == [
        "smart_hf.schedulers.scheduling_annealed",
        "ConsistentAnnealedSamplingScheduler",
    ]
    assert not list(tmp_path.rglob("*.py"))
    assert (tmp_path / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()

    loaded = AnnealedSamplingPipeline.from_pretrained(tmp_path, variant="fp16", dtype=torch.float32)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.scheduler) is ConsistentAnnealedSamplingScheduler
    public = [key for key in scheduler.config if not key.startswith("_")]
    assert {key: loaded.scheduler.config[key] for key in public} == {
        key: scheduler.config[key] for key in public
    }
    for name, parameter in loaded.unet.state_dict().items():
        assert torch.equal(parameter, pipeline.unet.state_dict()[name]), name
    images = loaded(num_inference_steps=2, generator=seeded(), output_type="np").images
    np.testing.assert_allclose(images, expected, rtol=0, atol=1e-4)  # memory-mapped weights: float rounding


def test_pipeline_with_an_explicit_ladder_and_als():
    unet = UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 8), norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    pipeline = AnnealedSamplingPipeline(unet, AnnealedLangevinScheduler(steps_per_level=2))
    pipeline.set_progress_bar_config(disable=True)
    images = pipeline(batch_size=3, sigmas=[5.0, 1.0, 0.1], output_type="pt").images
    assert images.shape == (3, 3, 8, 8) and 0 <= images.min() and images.max() <= 1
    assert len(pipeline.scheduler.timesteps) == 6


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prediction_type": "v_prediction"}, "needs prediction_type='epsilon', got 'v_prediction'"),
        ({"timestep_mapping": "linear"}, r"timestep_mapping must be one of \('interpolate', 'nearest'\)"),
        ({"sigma_max": 0.5, "sigma_min": 1.0}, "must be strictly decreasing"),
        ({"sigma_max": 500.0}, r"leaves the score model's noise range \[0.01, 157.4\]"),
        ({"step_size": -1.0}, "step_size must be > 0"),
    ],
)
@pytest.mark.parametrize("scheduler_class", SCHEDULERS)
def test_bad_scheduler_config(scheduler_class, kwargs, message):
    with pytest.raises(ValueError, match=message):
        scheduler_class(**kwargs)


@pytest.mark.parametrize("sigmas", [[1.0, 2.0, 0.5], [1.0, 1.0, 0.5], [3.0]])
def test_ladder_must_be_strictly_decreasing(sigmas):
    with pytest.raises(ValueError, match="strictly decreasing|at least 2 levels"):
        ConsistentAnnealedSamplingScheduler().set_timesteps(sigmas=sigmas)


@pytest.mark.parametrize("eta", [0.05, 1.95])
def test_cas_step_size_outside_its_valid_interval(eta):
    scheduler = ConsistentAnnealedSamplingScheduler(sigma_max=10.0, sigma_min=0.1, step_size=eta * 0.1**2)
    gamma = (0.1 / 10.0) ** (1 / 9)  # 10 levels
    low, high = 0.01 * (1 - gamma), 0.01 * (1 + gamma)
    with pytest.raises(ValueError, match=rf"here \({low:.4g}, {high:.4g}\) with sigma_L = 0.1"):
        scheduler.set_timesteps(10)
    scheduler.set_timesteps(100)  # a finer ladder admits the smaller step


def test_steps_out_of_order_or_before_set_timesteps():
    scheduler = ConsistentAnnealedSamplingScheduler(sigma_max=10.0)
    x = torch.zeros(2, 1)
    with pytest.raises(ValueError, match="Call `set_timesteps` before `step`"):
        scheduler.step(x, 0, x)
    scheduler.set_timesteps(3)
    with pytest.raises(ValueError, match="call `step` once per entry of `timesteps`, in order"):
        scheduler.step(x, scheduler.timesteps[1], x)
    for t in scheduler.timesteps:
        x = scheduler.step(torch.zeros_like(x), t, x).prev_sample
    with pytest.raises(ValueError, match="All 3 steps have been taken"):
        scheduler.step(x, scheduler.timesteps[-1], x)


def test_score_function_needs_nearest_timesteps_and_its_own_schedule():
    score = GaussianMixtureScore(torch.zeros(1, 1), std=0.1)
    with pytest.raises(ValueError, match="timestep_mapping='nearest'"):
        annealed_sample(score, ConsistentAnnealedSamplingScheduler(), (2, 1), num_inference_steps=3)
    other = ConsistentAnnealedSamplingScheduler(beta_schedule="squaredcos_cap_v2", timestep_mapping="nearest")
    with pytest.raises(ValueError, match="noise schedule differs"):
        annealed_sample(score, other, (2, 1), num_inference_steps=3)


def test_pipeline_refuses_other_schedulers_and_models():
    ddpm = DDPMPipeline.from_pretrained(DIGITS_UNET)
    with pytest.raises(
        ValueError, match="needs an AnnealedLangevinScheduler or a ConsistentAnnealedSampling"
    ):
        AnnealedSamplingPipeline(ddpm.unet, ddpm.scheduler)
    learned_variance = UNet2DModel(
        sample_size=8, in_channels=1, out_channels=2, block_out_channels=(8, 8), norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    with pytest.raises(ValueError, match="maps 1 channels to 2"):
        AnnealedSamplingPipeline(learned_variance, ConsistentAnnealedSamplingScheduler())
    with pytest.raises(ValueError, match="`output_type` must be one of"):
        AnnealedSamplingPipeline(ddpm.unet, ConsistentAnnealedSamplingScheduler())(output_type="latent")
