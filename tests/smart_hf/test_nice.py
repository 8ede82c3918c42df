"""NICE: feature noise through hooks, the adaptive beta, the consistency loss, state, and GANLoss phases."""

import pytest
import torch

from smart_hf.losses import GANLoss
from smart_hf.models import DCGANDiscriminator, ResNetDiscriminator, ToyDiscriminator, ToyGenerator
from smart_hf.nice import NICERegularizer, default_noise_modules

TINY = {"in_channels": 1, "resolution": 32, "base_channels": 4, "max_channel_multiplier": 2}


def toy_discriminator() -> ToyDiscriminator:
    torch.manual_seed(0)
    return ToyDiscriminator(hidden_dim=16, num_layers=3)


@pytest.mark.parametrize(
    "discriminator, expected",
    [
        (DCGANDiscriminator(**TINY), ["downsample.1", "downsample.2"]),
        (ResNetDiscriminator(**TINY), ["blocks.1", "blocks.2"]),
        (DCGANDiscriminator(**{**TINY, "resolution": 8}), ["downsample.0"]),  # at least one stage
        (ToyDiscriminator(hidden_dim=16, num_layers=3), ["net.3", "net.5"]),  # the LeakyReLUs
    ],
    ids=["dcgan", "resnet", "dcgan-8x8", "toy"],
)
def test_default_modules_are_the_later_half_of_the_stages(discriminator, expected):
    assert default_noise_modules(discriminator) == expected


def test_zero_beta_leaves_d_unchanged_and_gives_zero_consistency():
    discriminator, x = toy_discriminator(), torch.randn(16, 2)
    clean = discriminator(x)
    nice = NICERegularizer(discriminator, beta=0.0)
    with nice.noise():
        first, second = discriminator(x), discriminator(x)
    torch.testing.assert_close(first, clean, rtol=0, atol=0)
    assert nice.consistency_loss(first, second).item() == 0


def test_noise_gives_different_passes_and_a_positive_consistency_loss():
    discriminator, x = toy_discriminator(), torch.randn(16, 2)
    clean = discriminator(x)
    nice = NICERegularizer(discriminator, beta=0.5)
    with nice.noise():
        first, second = discriminator(x), discriminator(x)
    assert not torch.equal(first, second) and not torch.equal(first, clean)
    expected = (first - second).pow(2).mean()
    torch.testing.assert_close(nice.consistency_loss(first, second), expected)
    torch.testing.assert_close(discriminator(x), clean, rtol=0, atol=0)  # no noise outside `noise()`


def test_hooks_are_removable():
    discriminator, x = toy_discriminator(), torch.randn(16, 2)
    clean = discriminator(x)
    nice = NICERegularizer(discriminator, beta=1.0)
    nice.remove()
    with nice.noise():
        torch.testing.assert_close(discriminator(x), clean, rtol=0, atol=0)
    assert not any(module._forward_hooks for module in discriminator.modules())


def test_gradient_flows_through_the_noisy_features():
    discriminator = toy_discriminator()
    x = torch.randn(16, 2, requires_grad=True)
    nice = NICERegularizer(discriminator, beta=0.5)
    with nice.noise():
        loss = nice.consistency_loss(discriminator(x), discriminator(x)) + discriminator(x).mean()
    loss.backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in discriminator.parameters())


def test_beta_adapts_in_the_right_direction():
    nice = NICERegularizer(toy_discriminator(), target=0.6, beta_max=1.0, ada_kimg=0.1, interval=2)
    step = 1.0 * 2 * 25 / (0.1 * 1000)  # beta_max · samples in the interval / (ada_kimg · 1000) = 0.5
    confident = torch.ones(25)  # r = 1 > target: D overfits, more noise
    assert nice.update(confident) == {"nice_beta": 0.0}  # adapts only every `interval` calls
    assert nice.update(confident) == {"nice_beta": step, "nice_r": 1.0}
    nice.update(confident), nice.update(confident)
    nice.update(confident), nice.update(confident)
    assert nice.beta == 1.0  # clipped at beta_max
    unsure = torch.tensor([1.0, -1.0] * 12 + [1.0])  # r = 0.04 < target: less noise
    nice.update(unsure), nice.update(unsure)
    assert nice.beta == pytest.approx(1.0 - step)
    for _ in range(6):
        nice.update(-confident)
    assert nice.beta == 0.0  # clipped at 0


def test_beta_holds_at_the_target_and_consistency_sums_over_each_samples_logits():
    nice = NICERegularizer(toy_discriminator(), target=0.5, beta=0.3, ada_kimg=0.1)
    nice.adjust(0.5, 1000.0)
    assert nice.beta == 0.3
    first, second = torch.zeros(2, 3), torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])  # e.g. patch logits
    assert (
        NICERegularizer(toy_discriminator(), consistency_weight=2.0).consistency_loss(first, second) == 14.0
    )


def test_each_interval_adapts_on_its_own_signs_only():
    nice = NICERegularizer(toy_discriminator(), target=0.5, ada_kimg=100.0, interval=2)
    nice.update(torch.ones(4))
    assert nice.state_dict()["minibatches"] == 1 and nice.state_dict()["sign_sum"] == 4.0
    assert nice.update(torch.ones(4))["nice_r"] == 1.0
    assert nice.update(-torch.ones(4)) == {"nice_beta": nice.beta}  # a new interval: no adjustment yet
    assert nice.update(-torch.ones(4))["nice_r"] == -1.0


def test_modulation_multiplies_the_features_by_one_plus_beta_times_gaussian_noise():
    torch.manual_seed(0)
    layer = torch.nn.Linear(2, 6)
    discriminator = torch.nn.Sequential(layer, torch.nn.Identity())
    nice = NICERegularizer(discriminator, module_names=["0"], beta=1.0)  # beta = 1 modulates too
    x = torch.randn(5, 2)
    with nice.noise():
        torch.manual_seed(1)
        noisy = discriminator(x)
    torch.manual_seed(1)
    features = layer(x)
    torch.testing.assert_close(noisy, features * (1 + 1.0 * torch.randn_like(features)))


def test_modulating_a_module_without_a_tensor_output_names_it():
    class Pair(torch.nn.Module):
        def forward(self, x):
            return x, x

    discriminator = torch.nn.Sequential(Pair())
    nice = NICERegularizer(discriminator, module_names=["0"], beta=0.5)
    with pytest.raises(
        TypeError, match=r"NICE can only modulate tensor outputs; Pair returned <class 'tuple'>"
    ):
        with nice.noise():
            discriminator(torch.ones(2))


def test_adaptation_statistics_are_summed_over_processes():
    reduced = []

    def all_reduce(stats):
        reduced.append(stats.clone())
        return stats * 2  # as if a second process saw the same batches

    nice = NICERegularizer(toy_discriminator(), ada_kimg=1.0, interval=1, all_reduce=all_reduce)
    nice.update(torch.ones(10))
    assert reduced[0].tolist() == [10.0, 10.0]
    assert nice.beta == pytest.approx(20 / 1000)


def test_state_round_trips():
    nice = NICERegularizer(toy_discriminator(), ada_kimg=1.0, interval=3)
    for _ in range(4):  # one adjustment, then one call of an unfinished interval
        nice.update(torch.ones(8))
    state = nice.state_dict()
    restored = NICERegularizer(toy_discriminator(), ada_kimg=1.0, interval=3)
    restored.load_state_dict(state)
    assert restored.state_dict() == state and restored.beta > 0
    for _ in range(2):  # both finish the interval alike
        assert restored.update(torch.ones(8)) == nice.update(torch.ones(8))
    small = NICERegularizer(toy_discriminator(), beta_max=0.001)
    with pytest.raises(ValueError, match="exceeds beta_max=0.001; resume with the run's --nice_beta_max"):
        small.load_state_dict(state)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"module_names": ["net.9"]}, r"unknown: \['net.9'\]"),
        ({"module_names": []}, "one or more submodule names"),
        ({"target": 1.0}, "target must lie in"),
        ({"beta_max": 0.0}, "beta_max must be > 0"),
        ({"beta": 2.0}, r"beta must lie in \[0, beta_max"),
        ({"interval": 0}, "interval must be >= 1"),
        ({"consistency_weight": -1.0}, "consistency_weight must be >= 0"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NICERegularizer(toy_discriminator(), **kwargs)


def test_unknown_discriminator_needs_module_names():
    with pytest.raises(ValueError, match="no default layers for Sequential; pass `module_names`"):
        NICERegularizer(torch.nn.Sequential(torch.nn.Linear(2, 1)))
    NICERegularizer(torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU()), module_names=["1"])


def test_gan_loss_adds_noise_and_consistency_in_the_discriminator_phase_only():
    torch.manual_seed(0)
    generator, discriminator = ToyGenerator(hidden_dim=16, num_layers=1), toy_discriminator()
    nice = NICERegularizer(discriminator, beta=0.5, interval=1)
    loss = GANLoss(generator, discriminator, nice=nice)
    real, latents = torch.randn(16, 2), torch.randn(16, 8)

    d_terms = loss.discriminator_phase(real, latents, step=0)
    assert d_terms.logs["loss_nice_consistency"] > 0
    assert {"nice_beta", "nice_r"} <= d_terms.logs.keys()
    d_terms.total.backward()

    # The generator phase sees the clean D: the same latents give exactly the same loss twice.
    first = loss.generator_phase(latents, step=0).total
    torch.testing.assert_close(loss.generator_phase(latents, step=0).total, first, rtol=0, atol=0)


def test_gan_loss_skips_the_consistency_pass_while_beta_is_zero():
    torch.manual_seed(0)
    discriminator = toy_discriminator()
    calls = []
    discriminator.register_forward_hook(lambda *args: calls.append(1))
    nice = NICERegularizer(discriminator, beta=0.0)
    loss = GANLoss(ToyGenerator(hidden_dim=16, num_layers=1), discriminator, nice=nice)
    terms = loss.discriminator_phase(torch.randn(8, 2), torch.randn(8, 8), step=0)
    assert len(calls) == 2 and "loss_nice_consistency" not in terms.logs and terms.logs["nice_beta"] == 0


class ConditionalCritic(torch.nn.Module):
    """D(x, y) = out(hidden(x)) + e[y]: a non-zero class term in every logit; NICE modulates `hidden`."""

    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU())
        self.out = torch.nn.Linear(8, 1)
        self.class_embedding = torch.nn.Embedding(3, 1)

    def forward(self, x: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.out(self.hidden(x))
        return logits if class_labels is None else logits + self.class_embedding(class_labels)


def test_discriminator_phase_total_is_the_adversarial_loss_plus_the_consistency_of_two_labelled_passes():
    """By hand, with the same noise draws: total = adv(r1, f1) + c(r1, r2) + c(f1, f2), every pass with the
    labels (the class term cancels in a consistency only when both passes have it)."""
    torch.manual_seed(0)
    critic = ConditionalCritic()
    nice = NICERegularizer(critic, module_names=["hidden"], beta=0.5, interval=1000, consistency_weight=2.0)
    loss = GANLoss(lambda z, y: 0.5 * z[:, :2], critic, nice=nice)
    real, latents, labels = torch.randn(16, 2), torch.randn(16, 4), torch.tensor([0, 1, 2, 1] * 4)

    torch.manual_seed(1)
    terms = loss.discriminator_phase(real, latents, step=1, class_labels=labels)

    torch.manual_seed(1)
    fake = 0.5 * latents[:, :2]
    with nice.noise():
        real_1, fake_1 = critic(real, labels), critic(fake, labels)
        real_2, fake_2 = critic(real, labels), critic(fake, labels)
    consistency = 2.0 * ((real_1 - real_2).pow(2).sum(1).mean() + (fake_1 - fake_2).pow(2).sum(1).mean())
    adversarial = torch.nn.functional.softplus(-real_1).mean() + torch.nn.functional.softplus(fake_1).mean()
    assert consistency > 0
    assert terms.logs["loss_nice_consistency"] == pytest.approx(consistency.item(), rel=1e-6)
    torch.testing.assert_close(terms.total, adversarial + consistency)
    assert terms.logs["nice_beta"] == 0.5  # no adjustment before `interval` steps
