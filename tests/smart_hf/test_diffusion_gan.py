import json

import pytest
import torch

from smart_hf.diffusion_gan import DiffusionAugment
from smart_hf.losses import GANLoss
from smart_hf.models import DCGANDiscriminator, ToyDiscriminator


def feed(augment, real_sign: float, times: int = 4, batch: int = 8):
    """`times` discriminator steps whose real logits all have sign `real_sign`."""
    logs = {}
    for _ in range(times):
        logs = augment.update(torch.full((batch,), real_sign), torch.zeros(batch))
    return logs


def test_t_rises_when_d_is_too_sure_of_real_data_and_falls_otherwise():
    augment = DiffusionAugment(t_min=5, t_max=105, d_target=0.6, ada_kimg=0.32)  # p moves 0.1 per 32 reals
    assert (augment.num_steps, augment.p) == (5, 0.0)
    logs = feed(augment, 1.0, times=3)
    assert augment.num_steps == 5 and "diffusion_r_d" not in logs  # adapts every 4 minibatches only
    logs = feed(augment, 1.0, times=1)
    assert augment.p == pytest.approx(0.1) and augment.num_steps == 15
    assert logs == {"diffusion_T": 15.0, "diffusion_p": pytest.approx(0.1), "diffusion_r_d": 1.0}
    feed(augment, 1.0)
    assert augment.num_steps == 25
    feed(augment, -1.0)
    assert augment.num_steps == 15 and augment.p == pytest.approx(0.1)
    for _ in range(5):
        feed(augment, -1.0)
    assert (augment.num_steps, augment.p) == (5, 0.0)  # clipped at T_min


def test_adaptation_reads_only_its_interval_holds_p_at_the_target_and_clips_p_at_one():
    augment = DiffusionAugment(t_min=5, t_max=105, d_target=0.5, ada_kimg=0.32)
    assert feed(augment, 1.0, times=3) == {"diffusion_T": 5.0, "diffusion_p": 0.0}  # between adaptations
    assert augment.state_dict()["minibatches"] == 3 and augment.state_dict()["sign_sum"] == 24.0
    feed(augment, 1.0, times=1)
    logs = feed(augment, -1.0)  # the next interval's r_d counts its own minibatches only
    assert logs["diffusion_r_d"] == -1.0 and augment.p == pytest.approx(0.0)
    augment.p = 0.5
    augment.adjust(0.5, 1000.0)  # r_d exactly at the target: p stays
    assert augment.p == 0.5
    augment.adjust(1.0, 10_000.0)
    assert (augment.p, augment.num_steps) == (1.0, 105)


def test_adaptation_uses_the_reduced_statistics_of_all_processes():
    augment = DiffusionAugment(t_min=5, t_max=105, ada_kimg=0.32, all_reduce=lambda stats: stats * 2)
    feed(augment, 1.0)
    assert augment.p == pytest.approx(0.2)  # twice the samples: twice the step


def test_zero_timesteps_leave_inputs_unchanged_and_others_add_scaled_noise():
    augment = DiffusionAugment(t_min=50, t_max=50, sigma=0.05)
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(augment.diffuse(x, torch.zeros(4, dtype=torch.long)), x)
    torch.manual_seed(1)
    diffused = augment.diffuse(x, torch.full((4,), 50))
    torch.manual_seed(1)
    noise = torch.randn_like(x)
    alpha_bar = augment.alphas_cumprod[50]
    torch.testing.assert_close(diffused, alpha_bar.sqrt() * x + (1 - alpha_bar).sqrt() * 0.05 * noise)


@pytest.mark.parametrize("shape", [(6, 3, 8, 8), (6, 2)])
def test_augmentation_is_differentiable_for_images_and_points(shape):
    augment = DiffusionAugment(t_min=10, t_max=10)
    x = torch.randn(shape, requires_grad=True)
    y, kwargs = augment(x)
    assert y.shape == x.shape and kwargs["timesteps"].shape == (6,)
    y.sum().backward()
    expected = augment.alphas_cumprod[kwargs["timesteps"]].sqrt().reshape(-1, *[1] * (len(shape) - 1))
    torch.testing.assert_close(x.grad, expected.expand(shape))


@pytest.mark.parametrize("sampling", ["priority", "uniform"])
def test_t_list_is_half_zeros_and_half_in_one_to_t(sampling):
    augment = DiffusionAugment(t_min=20, t_max=20, sampling=sampling, num_slots=4000)
    t_list = augment.t_list
    assert (t_list == 0).sum() == 2000
    drawn = t_list[t_list > 0]
    assert len(drawn) == 2000 and drawn.min() >= 1 and drawn.max() <= 20
    # priority: p(t) ∝ t has mean (2T + 1)/3 = 13.67; uniform: (T + 1)/2 = 10.5
    expected = 41 / 3 if sampling == "priority" else 10.5
    assert drawn.float().mean().item() == pytest.approx(expected, abs=0.4)
    _, kwargs = augment(torch.zeros(1000, 2))
    assert 0.4 < (kwargs["timesteps"] == 0).float().mean() < 0.6


def test_schedule_and_t_list_are_recomputed_when_t_changes():
    augment = DiffusionAugment(t_min=5, t_max=105, ada_kimg=0.32)
    assert len(augment.alphas_cumprod) == 6
    first_schedule = augment.alphas_cumprod
    # betas linear 1e-4 → 2e-2 over the current T: the last alphā is the product over T steps.
    expected = torch.prod(1 - torch.linspace(1e-4, 2e-2, 5, dtype=torch.float64)).float()
    torch.testing.assert_close(first_schedule[-1], expected)
    feed(augment, 1.0)
    assert augment.num_steps == 15 and len(augment.alphas_cumprod) == 16
    assert augment.alphas_cumprod[5] > first_schedule[5]  # a gentler beta ramp over more steps
    assert augment.t_list.max() <= 15 and (augment.t_list > 5).any()


def test_state_round_trips_through_a_checkpoint_file(tmp_path):
    augment = DiffusionAugment(t_min=5, t_max=105, ada_kimg=0.32)
    feed(augment, 1.0, times=6)  # T moved once, and two minibatches of the next interval are pending
    torch.save(augment.state_dict(), tmp_path / "state.pkl")
    restored = DiffusionAugment(t_min=5, t_max=105, ada_kimg=0.32)
    restored.load_state_dict(torch.load(tmp_path / "state.pkl", weights_only=True))
    assert (restored.num_steps, restored.p) == (augment.num_steps, augment.p) == (15, pytest.approx(0.1))
    assert torch.equal(restored.t_list, augment.t_list)
    torch.testing.assert_close(restored.alphas_cumprod, augment.alphas_cumprod)
    assert json.dumps(feed(restored, 1.0, times=2)) == json.dumps(feed(augment, 1.0, times=2))
    with pytest.raises(ValueError, match=r"T=25 lies outside \[t_min, t_max\] = \[5, 20\]"):
        DiffusionAugment(t_min=5, t_max=20).load_state_dict(augment.state_dict())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"t_min": 0}, "1 <= t_min <= t_max"),
        ({"t_min": 50, "t_max": 10}, "1 <= t_min <= t_max"),
        ({"sampling": "linear"}, "Unknown Diffusion-GAN t sampling"),
        ({"d_target": 1.5}, r"d_target must lie in \(-1, 1\)"),
        ({"ada_kimg": 0}, "must be > 0"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DiffusionAugment(**kwargs)


def test_gan_loss_passes_timesteps_to_d_and_adapts_from_real_logits():
    augment = DiffusionAugment(t_min=2, t_max=9, ada_kimg=0.008)
    discriminator = ToyDiscriminator(hidden_dim=8, num_layers=1, num_timesteps=10)
    loss = GANLoss(torch.nn.Linear(4, 2), discriminator, r1_gamma=1.0, r1_interval=1, augmentations=[augment])
    for step in range(4):
        terms = loss.discriminator_phase(torch.randn(8, 2), torch.randn(8, 4), step)
    assert {"diffusion_T", "diffusion_p", "diffusion_r_d", "r1_penalty"} <= terms.logs.keys()
    assert augment.num_steps in (2, 9)  # one large step of p: to T_min or T_max
    terms.total.backward()
    assert discriminator.timestep_embedding.weight.grad.abs().sum() > 0
    assert "loss_G" in loss.generator_phase(torch.randn(8, 4), 0).logs


def test_toy_discriminator_timestep_input_is_optional_and_backward_compatible(tmp_path):
    old = ToyDiscriminator(hidden_dim=8, num_layers=2)
    old.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("num_timesteps")  # as saved before the option existed
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = ToyDiscriminator.from_pretrained(tmp_path)
    x = torch.randn(5, 2)
    assert loaded.config.num_timesteps == 0 and torch.equal(loaded(x), old.eval()(x))
    with pytest.raises(ValueError, match="built without a timestep input"):
        loaded(x, timesteps=torch.zeros(5, dtype=torch.long))

    conditioned = ToyDiscriminator(hidden_dim=8, num_layers=2, num_timesteps=4)
    conditioned.load_state_dict({**old.state_dict(), "timestep_embedding.weight": torch.randn(4, 8)})
    logits = conditioned(x, timesteps=torch.tensor([0, 1, 2, 3, 3]))
    assert logits.shape == (5,) and not torch.equal(logits, old(x))
    with pytest.raises(ValueError, match="integer tensor of shape"):
        conditioned(x, timesteps=torch.zeros(3, dtype=torch.long))


def test_image_discriminator_takes_the_augment_timesteps():
    augment = DiffusionAugment(t_min=3, t_max=3)
    discriminator = DCGANDiscriminator(in_channels=1, resolution=8, num_timesteps=4, base_channels=4)
    images, kwargs = augment(torch.randn(4, 1, 8, 8))
    assert discriminator(images, **kwargs).shape == (4,)


def test_schedule_is_accumulated_in_double_precision_and_diffusion_keeps_the_input_dtype():
    augment = DiffusionAugment(t_min=1000, t_max=1000, beta_start=1e-4, beta_end=2e-2)
    betas = torch.linspace(1e-4, 2e-2, 1000, dtype=torch.float64)
    expected = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])
    torch.testing.assert_close(augment.schedule(1000).double(), expected, rtol=1e-7, atol=1e-12)
    x = torch.randn(4, 2, dtype=torch.bfloat16)
    assert augment.diffuse(x, torch.tensor([0, 10, 500, 1000])).dtype == torch.bfloat16
