import pytest
import torch
import torch.nn.functional as F

from smart_hf.losses import GANLoss, discriminator_adversarial_loss, generator_adversarial_loss, r1_penalty
from smart_hf.scores import GaussianMixtureScore
from smart_hf.smart import SmartRegularizer

REAL, FAKE = torch.tensor([2.0, -0.5]), torch.tensor([0.5, -1.0])


@pytest.mark.parametrize(
    "kind, g_expected, d_expected",
    [
        ("non_saturating", F.softplus(-FAKE).mean(), F.softplus(-REAL).mean() + F.softplus(FAKE).mean()),
        ("hinge", -FAKE.mean(), F.relu(1 - REAL).mean() + F.relu(1 + FAKE).mean()),
        ("lsgan", 0.5 * ((FAKE - 1) ** 2).mean(), 0.5 * ((REAL - 1) ** 2).mean() + 0.5 * (FAKE**2).mean()),
    ],
)
def test_adversarial_losses(kind, g_expected, d_expected):
    torch.testing.assert_close(generator_adversarial_loss(kind, FAKE), g_expected)
    torch.testing.assert_close(discriminator_adversarial_loss(kind, REAL, FAKE), d_expected)


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="Unknown adversarial loss 'wgan'"):
        generator_adversarial_loss("wgan", FAKE)


def test_r1_penalty_of_a_linear_discriminator_is_its_squared_weight_norm():
    w = torch.tensor([3.0, 4.0])
    x = torch.randn(5, 2, requires_grad=True)
    assert r1_penalty(x @ w, x).item() == pytest.approx(25.0)


def test_r1_penalty_trains_the_discriminator_by_its_gradient():
    # d||w||²/dw = 2w: the penalty keeps the input gradient's graph (create_graph) to reach D's weights.
    w = torch.tensor([3.0, 4.0], requires_grad=True)
    x = torch.randn(5, 2, requires_grad=True)
    r1_penalty(x @ w, x).backward()
    torch.testing.assert_close(w.grad, torch.tensor([6.0, 8.0]))


def make_loss(**kwargs):
    generator, discriminator = (
        torch.nn.Linear(4, 2),
        torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Flatten(0)),
    )
    return GANLoss(generator, discriminator, **kwargs), generator, discriminator


def test_lazy_r1_runs_only_on_its_interval_and_is_scaled_by_it():
    # D is linear: its input gradient is its weight w on every sample, R1 = ||w||², added as ½·γ·interval·R1.
    loss, _, discriminator = make_loss(r1_gamma=0.3, r1_interval=4)
    real, z = torch.randn(8, 2), torch.randn(8, 4)
    squared_norm = discriminator[0].weight.pow(2).sum().item()
    active, inactive = loss.discriminator_phase(real, z, step=8), loss.discriminator_phase(real, z, step=9)
    assert active.logs["r1_penalty"] == pytest.approx(squared_norm)
    assert active.total.item() == pytest.approx(active.logs["loss_D"] + 0.5 * 0.3 * 4 * squared_norm)
    assert "r1_penalty" not in inactive.logs
    assert inactive.total.item() == pytest.approx(inactive.logs["loss_D"])
    unregularized = make_loss(r1_gamma=0.0, r1_interval=1)[0].discriminator_phase(real, z, step=0)
    assert "r1_penalty" not in unregularized.logs


def test_r1_interval_defaults_to_stylegan2s_16():
    loss, _, discriminator = make_loss(r1_gamma=0.3)
    real, z = torch.randn(8, 2), torch.randn(8, 4)
    squared_norm = discriminator[0].weight.pow(2).sum().item()
    applied = {
        step: "r1_penalty" in loss.discriminator_phase(real, z, step=step).logs for step in (0, 8, 16, 17, 32)
    }
    assert applied == {0: True, 8: False, 16: True, 17: False, 32: True}
    active = loss.discriminator_phase(real, z, step=16)
    assert active.total.item() == pytest.approx(active.logs["loss_D"] + 0.5 * 0.3 * 16 * squared_norm)


def test_discriminator_phase_total_and_logs_are_the_adversarial_loss_of_its_logits():
    loss, generator, discriminator = make_loss(adversarial_loss="hinge")
    real, z = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.0, 3.0]]), torch.randn(3, 4)
    with torch.no_grad():
        real_logits, fake_logits = discriminator(real), discriminator(generator(z))
    terms = loss.discriminator_phase(real, z, step=0)
    expected = discriminator_adversarial_loss("hinge", real_logits, fake_logits)
    assert terms.total.item() == pytest.approx(expected.item()) == pytest.approx(terms.logs["loss_D"])
    assert terms.logs["D_real_sign"] == pytest.approx(real_logits.sign().mean().item())


def point_mass_smart(**kwargs):
    # A one-step schedule (a = 0.8, s = 0.6) and a point mass at 0: the term is (a/s)²·mean(x²), exactly.
    score = GaussianMixtureScore(torch.zeros(1, 2), std=0.0, alphas_cumprod=torch.tensor([0.64]))
    return SmartRegularizer(score, **{"t_min": 0, "t_max": 0, **kwargs})


def test_generator_phase_total_is_the_adversarial_loss_plus_the_weighted_smart_term():
    smart = point_mass_smart(weight=0.5, interval=2, warmup_steps=4)
    loss, generator, discriminator = make_loss(smart=smart, adversarial_loss="lsgan")
    z = torch.randn(8, 4)
    with torch.no_grad():
        fake = generator(z)
        adversarial = generator_adversarial_loss("lsgan", discriminator(fake)).item()
    plain = (0.8 / 0.6) ** 2 * fake.pow(2).mean().item()
    active = loss.generator_phase(z, step=2)  # lambda = 0.5 · 2/4 in the warm-up
    assert active.total.item() == pytest.approx(adversarial + 0.25 * plain, rel=1e-5)
    assert active.logs == pytest.approx({"loss_G": adversarial, "loss_smart": plain, "smart_weight": 0.25})
    inactive = loss.generator_phase(z, step=3)
    assert inactive.total.item() == pytest.approx(adversarial) and inactive.logs == pytest.approx(
        {"loss_G": adversarial}
    )


def test_generator_phase_weights_the_smart_term_by_the_discriminators_fake_probability():
    smart = point_mass_smart(weight=1.0, interval=1, sample_weighting="discriminator")
    loss, generator, discriminator = make_loss(smart=smart)
    z = torch.randn(8, 4)
    with torch.no_grad():
        fake = generator(z)
        p = torch.sigmoid(-discriminator(fake))
        adversarial = generator_adversarial_loss("non_saturating", discriminator(fake)).item()
    per_sample = (0.8 / 0.6) ** 2 * fake.pow(2).mean(1)
    expected = adversarial + (p / p.mean() * per_sample).mean().item()
    assert loss.generator_phase(z, step=0).total.item() == pytest.approx(expected, rel=1e-5)


class Recorder:
    """A conditional model: records its calls and adds a per-class offset, so labels change its output."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __call__(self, x, class_labels=None, **kwargs):
        self.calls.append((x, class_labels, kwargs))
        out = self.model(x)
        return (
            out
            if class_labels is None
            else out + class_labels.to(out.dtype).reshape(-1, *[1] * (out.ndim - 1))
        )


class Shift:
    """An augmentation that adds `offset` and passes `name` to D."""

    def __init__(self, offset, name):
        self.offset, self.name, self.updates = offset, name, []

    def __call__(self, x):
        return x + self.offset, {self.name: self.offset}

    def update(self, real_logits, fake_logits):
        self.updates.append((real_logits, fake_logits))
        return {f"{self.name}_updated": float(len(self.updates))}


def test_class_labels_and_augmentations_reach_both_models_and_r1_uses_the_clean_real_input():
    generator, discriminator = Recorder(torch.nn.Linear(4, 2)), Recorder(torch.nn.Linear(2, 1))
    first, second = Shift(1.0, "a"), Shift(10.0, "b")
    loss = GANLoss(generator, discriminator, r1_gamma=1.0, r1_interval=1, augmentations=[first, second])
    real, z, labels = torch.randn(3, 2), torch.randn(3, 4), torch.tensor([0, 1, 2])
    terms = loss.discriminator_phase(real, z, step=0, class_labels=labels)

    assert torch.equal(generator.calls[0][1], labels)
    (real_in, real_labels, real_kwargs), (fake_in, fake_labels, fake_kwargs) = discriminator.calls
    torch.testing.assert_close(real_in, real + 11.0)
    assert real_kwargs == fake_kwargs == {"a": 1.0, "b": 10.0}
    assert torch.equal(real_labels, labels) and torch.equal(fake_labels, labels)
    with torch.no_grad():
        torch.testing.assert_close(fake_in, generator.model(z) + labels[:, None] + 11.0)
    assert terms.logs["a_updated"] == terms.logs["b_updated"] == 1.0
    # Every augmentation adapts on the real and the fake logits of this phase.
    with torch.no_grad():
        real_logits = discriminator.model(real + 11.0) + labels[:, None]
        fake_logits = discriminator.model(fake_in) + labels[:, None]
    for augmentation in (first, second):
        torch.testing.assert_close(augmentation.updates[0][0], real_logits)
        torch.testing.assert_close(augmentation.updates[0][1], fake_logits)
    # R1 is taken with respect to the clean real input (the shifts do not change the gradient: D's weight).
    assert terms.logs["r1_penalty"] == pytest.approx(discriminator.model.weight.pow(2).sum().item())

    generator.calls.clear()
    discriminator.calls.clear()
    loss.generator_phase(z, step=0, class_labels=labels)
    assert torch.equal(generator.calls[0][1], labels) and torch.equal(discriminator.calls[0][1], labels)
    loss.generator_phase(z, step=0)
    assert generator.calls[1][1] is None and discriminator.calls[1][1] is None


def test_bad_gan_loss_settings_are_refused():
    with pytest.raises(ValueError, match="r1_gamma must be >= 0, got -1"):
        make_loss(r1_gamma=-1.0)
    with pytest.raises(ValueError, match="r1_interval must be >= 1, got 0"):
        make_loss(r1_interval=0)
    with pytest.raises(ValueError, match="Unknown adversarial loss 'wgan'"):
        make_loss(adversarial_loss="wgan")
    with pytest.raises(ValueError, match="fake_score_phase needs a GANLoss built with distribution_matching"):
        make_loss()[0].fake_score_phase(torch.randn(2, 4))


def test_generator_phase_adds_smart_only_on_active_steps():
    smart = SmartRegularizer(GaussianMixtureScore(torch.zeros(1, 2), std=0.1), weight=0.5, interval=2)
    loss, generator, _ = make_loss(smart=smart)
    z = torch.randn(8, 4)
    active, inactive = loss.generator_phase(z, step=2), loss.generator_phase(z, step=3)
    assert "loss_smart" in active.logs and "loss_smart" not in inactive.logs
    assert active.total.item() > inactive.total.item()


def test_discriminator_phase_does_not_train_the_generator():
    loss, generator, _ = make_loss()
    loss.discriminator_phase(torch.randn(8, 2), torch.randn(8, 4), step=0).total.backward()
    assert all(p.grad is None for p in generator.parameters())


def test_generator_phase_gives_smart_the_class_labels():
    class ClassPointMass(GaussianMixtureScore):  # eps_hat = (x_t − a·center_c) / s: labels change the term
        def predict_noise(self, x_t, timesteps, class_labels=None):
            a_t, s_t = self.signal_and_noise_scales(timesteps, x_t.ndim)
            return (x_t - a_t * self.means[class_labels]) / s_t

    score = ClassPointMass(
        torch.tensor([[0.0, 0.0], [3.0, 3.0]]), std=0.0, alphas_cumprod=torch.tensor([0.64])
    )
    smart = SmartRegularizer(score, weight=1.0, t_min=0, t_max=0, interval=1)
    generator, discriminator = Recorder(torch.nn.Linear(4, 2)), Recorder(torch.nn.Linear(2, 1))
    loss = GANLoss(generator, discriminator, smart=smart)
    z, labels = torch.randn(4, 4), torch.tensor([1, 0, 1, 1])
    terms = loss.generator_phase(z, step=0, class_labels=labels)
    with torch.no_grad():
        fake = generator.model(z) + labels[:, None]
    expected = (0.8 / 0.6) ** 2 * (fake - score.means[labels]).pow(2).mean().item()
    assert terms.logs["loss_smart"] == pytest.approx(expected, rel=1e-5)
