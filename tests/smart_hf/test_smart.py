from dataclasses import fields

import pytest
import torch
import torch.nn.functional as F

from smart_hf.models.toy_mlp import MLPNoisePredictor
from smart_hf.scores import GaussianMixtureScore, ModelScore
from smart_hf.smart import SmartConfig, SmartRegularizer

# A one-step schedule with a_t = 0.8, s_t = 0.6 keeps hand computations short.
ONE_STEP_SCHEDULE = torch.tensor([0.64])


def point_mass_score(center):
    """Exact score of a point mass: eps_hat(x_t) = (x_t − a·center) / s, linear in x_t."""
    return GaussianMixtureScore(torch.tensor([center]), std=0.0, alphas_cumprod=ONE_STEP_SCHEDULE)


def regularizer(score, **kwargs):
    return SmartRegularizer(score, **{"weight": 0.1, "t_min": 0, "t_max": 0, "interval": 1, **kwargs})


def test_loss_equals_hand_computed_value():
    # eps_hat − eps = a·(x0 − center)/s whatever the noise, so the loss is lambda·mean((a/s)²·(x0 − c)²).
    smart = regularizer(point_mass_score([0.0, 0.0]))
    x0 = torch.tensor([[1.0, 2.0]])
    expected = 0.1 * (0.8 / 0.6) ** 2 * (1.0 + 4.0) / 2
    assert smart(x0, step=0).loss.item() == pytest.approx(expected, rel=1e-5)


def test_loss_matches_closed_form_expectation_for_a_gaussian():
    # For data N(mu, std²) and fixed x0: E||eps_hat − eps||² = (s·a/v)²(x0 − mu)² + (a²·std²/v)²,
    # with v = a²·std² + s².
    std, x0 = 0.5, 1.5
    score = GaussianMixtureScore(torch.tensor([[0.0]]), std=std, alphas_cumprod=ONE_STEP_SCHEDULE)
    smart = regularizer(score, weight=1.0)
    a, s = 0.8, 0.6
    v = a**2 * std**2 + s**2
    expected = (s * a / v) ** 2 * x0**2 + (a**2 * std**2 / v) ** 2
    samples = torch.full((200_000, 1), x0)
    measured = smart(samples, step=0, generator=torch.Generator().manual_seed(0)).loss.item()
    assert measured == pytest.approx(expected, rel=0.01)


def test_generator_gets_gradients_and_the_score_model_none():
    score = ModelScore(
        MLPNoisePredictor(hidden_dim=32, num_layers=2), __import__("diffusers").DDPMScheduler(), (2,)
    )
    before = [p.clone() for p in score.parameters()]
    generator = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(list(generator.parameters()) + list(score.parameters()), lr=0.1)
    smart = SmartRegularizer(score, weight=1.0, interval=1)
    smart(generator(torch.randn(8, 4)), step=0).loss.backward()
    optimizer.step()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.parameters())
    assert all(p.grad is None for p in score.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, score.parameters(), strict=True))


def test_sds_gradient_equals_full_gradient_for_a_linear_score():
    score = point_mass_score([0.3, -0.2])
    x0 = torch.randn(16, 2)
    gradients = {}
    for mode in ("full", "sds"):
        x = x0.clone().requires_grad_(True)
        smart = regularizer(score, gradient_mode=mode)
        smart(x, step=0, generator=torch.Generator().manual_seed(1)).loss.backward()
        gradients[mode] = x.grad
    torch.testing.assert_close(gradients["sds"], gradients["full"])
    assert gradients["full"].abs().sum() > 0


def test_zero_loss_is_reached_at_the_analytic_optimum_in_1d():
    score = GaussianMixtureScore(torch.tensor([[0.7]]), std=0.0, alphas_cumprod=ONE_STEP_SCHEDULE)
    smart = regularizer(score, weight=1.0)
    theta = torch.zeros(1, requires_grad=True)  # a "generator" that outputs one learnable point
    optimizer = torch.optim.SGD([theta], lr=0.1)
    for step in range(200):
        optimizer.zero_grad()
        smart(theta.expand(32, 1), step=step).loss.backward()
        optimizer.step()
    assert theta.item() == pytest.approx(0.7, abs=1e-4)
    assert smart(torch.full((32, 1), 0.7), step=0).loss.item() == pytest.approx(0.0, abs=1e-10)


def test_lazy_interval_and_warmup_schedule():
    smart = SmartRegularizer(
        point_mass_score([0.0, 0.0]),
        weight=0.2,
        t_min=0,
        t_max=0,
        interval=4,
        warmup_start=100,
        warmup_steps=200,
    )
    assert smart.weight_at(50) == 0.0 and not smart.is_active(52)
    assert smart.weight_at(200) == pytest.approx(0.1)
    assert smart.weight_at(10_000) == pytest.approx(0.2)
    assert smart.is_active(400) and not smart.is_active(401)
    assert smart(torch.ones(2, 2), step=401).loss.item() == 0.0


def test_scale_by_interval_multiplies_the_active_term():
    score = point_mass_score([0.0, 0.0])
    x = torch.ones(2, 2)
    plain = SmartRegularizer(score, weight=0.1, t_min=0, t_max=0, interval=8)(x, step=0).loss
    scaled = SmartRegularizer(score, weight=0.1, t_min=0, t_max=0, interval=8, scale_by_interval=True)(
        x, step=0
    ).loss
    assert scaled.item() == pytest.approx(8 * plain.item())


@pytest.mark.parametrize("gradient_mode", ["full", "sds"])
def test_noise_draws_average_the_term_over_draws_per_sample(gradient_mode):
    """K draws per sample are the plain term on the batch repeated K times (the same random draws), and their
    gradient is less noisy than one draw's."""
    score = GaussianMixtureScore(
        torch.tensor([[0.0, 0.0], [2.0, 2.0]]), std=0.3, alphas_cumprod=ONE_STEP_SCHEDULE
    )
    x0 = torch.tensor([[0.5, 1.0], [1.5, -0.5], [1.0, 1.0]])
    drawn = regularizer(score, gradient_mode=gradient_mode, noise_draws=4)
    plain = regularizer(score, gradient_mode=gradient_mode)
    losses = [
        smart.score_matching_loss(x, generator=torch.Generator().manual_seed(3))
        for smart, x in ((drawn, x0), (plain, x0.repeat(4, 1)))
    ]
    assert torch.allclose(losses[0][0], losses[1][0]) and torch.allclose(losses[0][1], losses[1][1])

    def gradient_spread(smart):
        gradients = []
        for seed in range(50):
            x = x0.clone().requires_grad_(True)
            smart(x, step=0, generator=torch.Generator().manual_seed(seed)).loss.backward()
            gradients.append(x.grad)
        return torch.stack(gradients).std(0).mean()

    assert gradient_spread(
        regularizer(score, gradient_mode=gradient_mode, noise_draws=16)
    ) < 0.5 * gradient_spread(plain)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"weight": -1.0}, "must be >= 0"),
        ({"interval": 0}, "interval must be >= 1"),
        ({"t_min": 10, "t_max": 2000}, "outside the score model's schedule"),
        ({"gradient_mode": "exact"}, "Unknown SMaRt gradient mode"),
        ({"noise_draws": 0}, "at least one noise draw per sample, got 0"),
        ({"batch_shrink": 0}, "batch shrink must be >= 1"),
        ({"warmup_steps": -1}, "warm-up steps and start must be >= 0"),
        ({"warmup_start": -1}, "warm-up steps and start must be >= 0"),
        ({"decay_steps": -1}, "decay steps and start must be >= 0"),
        ({"decay_start": -1}, "decay steps and start must be >= 0"),
        ({"sample_weighting": "critic"}, "Unknown SMaRt sample weighting 'critic'"),
        ({"weight": float("nan")}, "must be >= 0"),
        ({"t_min": 5, "t_max": 4}, "outside the score model's schedule"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SmartRegularizer(GaussianMixtureScore(torch.zeros(1, 2), std=0.1), **kwargs)


class ClassPointMassScore(GaussianMixtureScore):
    """A point mass per class: eps_hat(x_t, t, c) = (x_t − a·center_c) / s, so labels change the value."""

    def __init__(self, centers):
        super().__init__(torch.tensor(centers), std=0.0, alphas_cumprod=ONE_STEP_SCHEDULE)
        self.num_classes = len(centers)

    def predict_noise(self, x_t, timesteps, class_labels=None):
        a_t, s_t = self.signal_and_noise_scales(timesteps, x_t.ndim)
        return (x_t - a_t * self.means[class_labels]) / s_t


# The plain term of a point mass at 0 on x0 = [1, 2]: (a/s)²·mean(x0²).
UNIT_TERM = (0.8 / 0.6) ** 2 * (1.0 + 4.0) / 2


def test_loss_is_scaled_by_the_warmup_and_decay_weight_of_its_step():
    smart = regularizer(
        point_mass_score([0.0, 0.0]),
        weight=0.2,
        warmup_start=100,
        warmup_steps=200,
        decay_start=1000,
        decay_steps=400,
    )
    x0 = torch.tensor([[1.0, 2.0]])
    for step, weight in [
        (99, 0.0),
        (100, 0.0),
        (200, 0.1),
        (400, 0.2),
        (1000, 0.2),
        (1100, 0.15),
        (2000, 0.0),
    ]:
        assert smart.weight_at(step) == pytest.approx(weight)
        assert smart(x0, step=step).loss.item() == pytest.approx(weight * UNIT_TERM, rel=1e-5)


def test_one_step_warmup_and_decay_and_a_warmup_start_without_ramp():
    smart = regularizer(point_mass_score([0.0]), weight=0.5, warmup_start=10, warmup_steps=1)
    assert [smart.weight_at(step) for step in (9, 10, 11)] == [0.0, 0.0, 0.5]
    smart = regularizer(point_mass_score([0.0]), weight=0.5, warmup_start=10)
    assert [smart.weight_at(step) for step in (9, 10)] == [0.0, 0.5]
    smart = regularizer(point_mass_score([0.0]), weight=0.5, decay_start=10, decay_steps=1)
    assert [smart.weight_at(step) for step in (9, 10, 11, 12)] == [0.5, 0.5, 0.0, 0.0]


def test_scale_by_interval_multiplies_the_hand_computed_term_by_the_interval():
    x0 = torch.tensor([[1.0, 2.0]])
    smart = regularizer(point_mass_score([0.0, 0.0]), interval=8, scale_by_interval=True)
    assert smart(x0, step=16).loss.item() == pytest.approx(8 * 0.1 * UNIT_TERM, rel=1e-5)
    assert smart(x0, step=17).loss.item() == 0.0
    plain = regularizer(point_mass_score([0.0, 0.0]), interval=8)
    assert plain(x0, step=16).loss.item() == pytest.approx(0.1 * UNIT_TERM, rel=1e-5)


def test_inactive_steps_return_float32_zeros():
    output = regularizer(point_mass_score([0.0]), interval=2)(torch.ones(2, 1, dtype=torch.float64), step=1)
    assert output.loss.dtype == output.score_matching_loss.dtype == torch.float32
    assert output.loss.item() == output.score_matching_loss.item() == 0.0


def test_sample_weights_are_the_normalised_fake_probabilities():
    smart = regularizer(point_mass_score([0.0]), sample_weighting="discriminator")
    logits = torch.tensor([0.0, 2.0, -1.0])
    p = torch.sigmoid(-logits)
    torch.testing.assert_close(smart.sample_weights(logits), p / p.mean())
    assert regularizer(point_mass_score([0.0])).sample_weights(logits) is None


@pytest.mark.parametrize("gradient_mode", ["full", "sds"])
def test_weighted_term_weights_each_samples_hand_computed_error(gradient_mode):
    # Point mass at 0: the per-sample plain term is (a/s)²·mean(x0²); sds' surrogate is 2·(a/s)²× that.
    smart = regularizer(point_mass_score([0.0, 0.0]), weight=1.0, gradient_mode=gradient_mode)
    x0 = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    weights = torch.tensor(
        [0.5, 1.5], dtype=torch.float64
    )  # weights of another dtype: the loss stays float32
    per_sample = (0.8 / 0.6) ** 2 * torch.tensor([2.5, 0.5], dtype=torch.float64)
    scale = 1.0 if gradient_mode == "full" else 2 * (0.8 / 0.6) ** 2
    output = smart(x0, step=0, sample_weights=weights)
    assert output.loss.dtype == torch.float32
    assert output.loss.item() == pytest.approx(scale * (weights * per_sample).mean().item(), rel=1e-5)
    assert output.score_matching_loss.item() == pytest.approx(per_sample.mean().item(), rel=1e-5)
    unweighted = smart(x0, step=0)
    assert unweighted.loss.item() == pytest.approx(scale * per_sample.mean().item(), rel=1e-5)


def test_batch_shrink_takes_the_first_samples_with_their_labels_and_weights():
    score = ClassPointMassScore([[0.0], [1.0]])
    smart = regularizer(score, weight=1.0, batch_shrink=2)
    x0 = torch.tensor([[2.0], [3.0], [100.0], [-50.0]])
    labels = torch.tensor([1, 0, 0, 1])
    weights = torch.tensor([2.0, 0.5, 9.0, 9.0])
    # Kept: (2 − 1)² with weight 2 and (3 − 0)² with weight 0.5.
    expected = (0.8 / 0.6) ** 2 * (2.0 * 1.0 + 0.5 * 9.0) / 2
    assert smart(x0, 0, labels, sample_weights=weights).loss.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="leaves no sample of a batch of 1"):
        smart(x0[:1], 0, labels[:1])


@pytest.mark.parametrize("gradient_mode", ["full", "sds"])
def test_noise_draws_repeat_the_class_labels_and_sample_weights_with_the_samples(gradient_mode):
    score = ClassPointMassScore([[0.0], [1.0]])
    smart = regularizer(score, weight=1.0, noise_draws=3, gradient_mode=gradient_mode)
    x0, labels, weights = torch.tensor([[2.0], [3.0]]), torch.tensor([1, 0]), torch.tensor([0.5, 1.5])
    per_sample = (0.8 / 0.6) ** 2 * torch.tensor([1.0, 9.0])
    scale = 1.0 if gradient_mode == "full" else 2 * (0.8 / 0.6) ** 2
    surrogate, plain = smart.score_matching_loss(x0, labels, sample_weights=weights)
    assert surrogate.item() == pytest.approx(scale * (weights * per_sample).mean().item(), rel=1e-5)
    assert plain.item() == pytest.approx(per_sample.mean().item(), rel=1e-5)


def test_timesteps_are_drawn_from_t_min_to_t_max_inclusive():
    # A two-step schedule: eps_hat − eps = a_t·x0/s_t for a point mass at 0, different for t = 0 and t = 1.
    schedule = torch.tensor([0.64, 0.36])
    score = GaussianMixtureScore(torch.zeros(1, 1), std=0.0, alphas_cumprod=schedule)
    x0 = torch.ones(4000, 1)
    ratios = {t: float(schedule[t] / (1 - schedule[t])) for t in (0, 1)}
    for t_min, t_max, expected in [(0, 0, ratios[0]), (1, 1, ratios[1]), (0, 1, (ratios[0] + ratios[1]) / 2)]:
        smart = SmartRegularizer(score, weight=1.0, t_min=t_min, t_max=t_max, interval=1)
        loss = smart(x0, step=0, generator=torch.Generator().manual_seed(0)).loss.item()
        assert loss == pytest.approx(expected, rel=0.03)


def test_defaults_and_from_config_match_the_smart_config():
    score = GaussianMixtureScore(torch.zeros(1, 2), std=0.1)
    defaults = SmartRegularizer(score)
    config = SmartConfig(weight=0.3, t_min=2, t_max=9, interval=3, warmup_start=5, warmup_steps=7)
    config.decay_start, config.decay_steps, config.scale_by_interval = 11, 13, True
    config.gradient_mode, config.noise_draws, config.batch_shrink = "sds", 2, 4
    config.sample_weighting = "discriminator"
    built = SmartRegularizer.from_config(score, config)
    for field in fields(SmartConfig):
        assert getattr(defaults, field.name) == field.default, field.name
        assert getattr(built, field.name) == getattr(config, field.name), field.name


def test_batch_shrink_without_labels_or_weights_keeps_the_first_samples():
    smart = regularizer(point_mass_score([0.0]), weight=1.0, batch_shrink=2)
    x0 = torch.tensor([[1.0], [3.0], [100.0]])  # keeps 3 // 2 = 1 sample
    assert smart(x0, step=0).loss.item() == pytest.approx((0.8 / 0.6) ** 2 * 1.0, rel=1e-5)


def test_the_loss_replays_the_timestep_and_noise_draws_of_its_generator():
    # Two timesteps and a spread-out mixture: the value depends on the timesteps and the noise drawn.
    schedule = torch.tensor([0.9, 0.5])
    score = GaussianMixtureScore(torch.tensor([[0.5, -0.5], [-1.0, 1.0]]), std=0.3, alphas_cumprod=schedule)
    x0 = torch.randn(64, 2, dtype=torch.float64)
    rng = torch.Generator().manual_seed(7)
    timesteps = torch.randint(0, 2, (64,), generator=rng)
    noise = torch.randn((64, 2), dtype=torch.float64, generator=rng)
    x_t = score.add_noise(x0, noise, timesteps)
    expected = F.mse_loss(score(x_t, timesteps).float(), noise.float())
    for draws in (1, 2):
        smart = SmartRegularizer(score, weight=1.0, t_min=0, t_max=1, interval=1, noise_draws=draws)
        output = smart(x0 if draws == 1 else x0[:32], step=0, generator=torch.Generator().manual_seed(7))
        if draws == 1:
            assert output.loss.item() == pytest.approx(expected.item(), rel=1e-6)
        else:  # 2 draws of 32 samples: the same draws as 64 samples, the first 32 of them twice
            x_t = score.add_noise(x0[:32].repeat(2, 1), noise, timesteps)
            repeated = F.mse_loss(score(x_t, timesteps).float(), noise.float())
            assert output.loss.item() == pytest.approx(repeated.item(), rel=1e-6)
