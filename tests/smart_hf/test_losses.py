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


def make_loss(**kwargs):
    generator, discriminator = (
        torch.nn.Linear(4, 2),
        torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Flatten(0)),
    )
    return GANLoss(generator, discriminator, **kwargs), generator, discriminator


def test_lazy_r1_runs_only_on_its_interval_and_is_scaled_by_it():
    loss, _, _ = make_loss(r1_gamma=1.0, r1_interval=4)
    real, z = torch.randn(8, 2), torch.randn(8, 4)
    assert "r1_penalty" in loss.discriminator_phase(real, z, step=8).logs
    assert "r1_penalty" not in loss.discriminator_phase(real, z, step=9).logs


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
