"""SMaRt's variants: lambda decay, per-sample weighting by D, and distribution matching against a learned
score of the generator's own samples (`smart_hf.fake_score`), with its own training phase and checkpoints."""

from types import SimpleNamespace

import pytest
import torch
from diffusers import UNet2DModel
from torch import nn

from smart_hf.fake_score import NORMALIZER_FLOOR, DistributionMatching
from smart_hf.losses import GANLoss
from smart_hf.models.toy_mlp import MLPNoisePredictor, ToyDiscriminator, ToyGenerator
from smart_hf.scores import GaussianMixtureScore
from smart_hf.smart import SmartRegularizer
from smart_hf.training.config import parse_gan_args
from smart_hf.training.gan import train_gan
from tests.helpers import TINY_GAN, save_image_folder, save_tiny_score

# A one-step schedule with a_t = 0.8, s_t = 0.6 keeps hand computations short.
ONE_STEP_SCHEDULE = torch.tensor([0.64])
A, S = 0.8, 0.6


def point_mass_score(center):
    """Exact score of a point mass: eps_hat(x_t) = (x_t − a·center) / s, so eps_hat − eps = a·(x0 − c)/s."""
    return GaussianMixtureScore(torch.tensor([center]), std=0.0, alphas_cumprod=ONE_STEP_SCHEDULE)


class PointMassNoisePredictor(nn.Module):
    """A stand-in fake score model: the noise prediction of a point mass at `center`."""

    def __init__(self, center):
        super().__init__()
        self.center = torch.tensor(center)

    def forward(self, x_t, timesteps):
        return SimpleNamespace(sample=(x_t - A * self.center) / S)


def x0_gradient(loss_of, x0):
    x0 = x0.clone().requires_grad_(True)
    loss_of(x0).backward()
    return x0.grad


def test_lambda_decays_linearly_to_zero_after_the_warm_up():
    smart = SmartRegularizer(
        point_mass_score([0.0, 0.0]),
        weight=0.4,
        t_min=0,
        t_max=0,
        warmup_start=10,
        warmup_steps=10,
        decay_start=30,
        decay_steps=20,
    )
    weights = [smart.weight_at(step) for step in (5, 15, 20, 30, 40, 50, 60)]
    assert weights == pytest.approx([0.0, 0.2, 0.4, 0.4, 0.2, 0.0, 0.0])
    assert not smart.is_active(50)


def test_discriminator_sample_weights_are_the_fake_probability_normalised_to_mean_one():
    smart = SmartRegularizer(point_mass_score([0.0]), t_min=0, t_max=0, sample_weighting="discriminator")
    logits = torch.tensor([0.0, 2.0, -2.0])
    fake_probability = torch.tensor([0.5, 1 / (1 + torch.e**2), 1 / (1 + torch.e**-2)])
    expected = fake_probability / fake_probability.mean()
    assert torch.allclose(smart.sample_weights(logits), expected)
    plain = SmartRegularizer(point_mass_score([0.0]), t_min=0, t_max=0)
    assert plain.sample_weights(logits) is None


@pytest.mark.parametrize("gradient_mode", ["sds", "full"])
def test_sample_weights_scale_each_samples_gradient(gradient_mode):
    # For a point mass at c, both forms give the gradient lambda · w_i · 2(a/s)²(x0 − c) / numel on x0_i
    # (the full form because eps_hat is linear in x_t with slope 1/s).
    smart = SmartRegularizer(
        point_mass_score([1.0, -1.0]), weight=0.3, t_min=0, t_max=0, interval=1, gradient_mode=gradient_mode
    )
    x0 = torch.tensor([[2.0, 0.5], [0.0, -3.0], [1.5, 1.0]])
    weights = torch.tensor([0.5, 2.0, 0.5])
    gradient = x0_gradient(lambda x: smart(x, step=0, sample_weights=weights).loss, x0)
    expected = 0.3 * weights[:, None] * 2 * (A / S) ** 2 * (x0 - torch.tensor([1.0, -1.0])) / x0.numel()
    assert torch.allclose(gradient, expected, rtol=1e-5)


def matching(fake_center, weighting, weight=0.5):
    return DistributionMatching(
        point_mass_score([1.0, -1.0]),
        PointMassNoisePredictor(fake_center),
        weight=weight,
        t_min=0,
        t_max=0,
        gradient_weighting=weighting,
    )


def test_distribution_matching_gradient_with_smart_weighting():
    # eps_real − eps_fake = a·(c_fake − c_real)/s whatever x0 and the noise: the gradient on every sample is
    # weight · 2(a/s)²(c_fake − c_real) / numel, pushing it from the fake mode toward the real one.
    x0 = torch.tensor([[2.0, 0.5], [0.0, -3.0]])
    gradient = x0_gradient(lambda x: matching([0.0, 1.0], "smart")(x, step=0).loss, x0)
    expected = 0.5 * 2 * (A / S) ** 2 * torch.tensor([-1.0, 2.0]).expand(2, 2) / x0.numel()
    assert torch.allclose(gradient, expected, rtol=1e-5)


def test_distribution_matching_gradient_with_dmd2_normalisation():
    # eps_real − eps = a·(x0 − c_real)/s, so DMD2's gradient is (c_fake − c_real) / mean|x0 − c_real| per
    # sample; a sample on the real mode gets the floor instead of a division by zero.
    x0 = torch.tensor([[2.0, 0.5], [0.0, -3.0], [1.0, -1.0]])
    gradient = x0_gradient(lambda x: matching([0.0, 1.0], "dmd2")(x, step=0).loss, x0)
    difference = torch.tensor([-1.0, 2.0])
    normalizer = torch.tensor([(1.0 + 1.5) / 2, (1.0 + 2.0) / 2, NORMALIZER_FLOOR / (A / S)]) * (A / S)
    expected = 0.5 * (A / S) * difference / normalizer[:, None] / x0.numel()
    assert torch.allclose(gradient, expected, rtol=1e-5)


@pytest.mark.parametrize("weighting", ["smart", "dmd2"])
def test_distribution_matching_vanishes_when_the_fake_score_is_the_real_one(weighting):
    term = matching([1.0, -1.0], weighting)
    gradient = x0_gradient(lambda x: term(x, step=0).loss, torch.tensor([[2.0, 0.5], [0.0, -3.0]]))
    assert gradient.abs().max() < 1e-6  # rounding only


def toy_loss():
    torch.manual_seed(0)
    generator, discriminator = (
        ToyGenerator(latent_dim=2, hidden_dim=8, num_layers=1),
        ToyDiscriminator(2, 8, 1),
    )
    fake_model = MLPNoisePredictor(2, hidden_dim=8, num_layers=1, time_embed_dim=8)
    score = GaussianMixtureScore(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]), std=0.1)
    distribution_matching = DistributionMatching(score, fake_model, weight=1.0, t_min=20, t_max=900)
    loss = GANLoss(generator, discriminator, distribution_matching=distribution_matching)
    return loss, generator, discriminator, fake_model


def test_fake_score_phase_trains_only_the_fake_score_model():
    loss, generator, discriminator, fake_model = toy_loss()
    before = [[p.detach().clone() for p in m.parameters()] for m in (generator, discriminator, fake_model)]
    optimizer = torch.optim.SGD(
        [*generator.parameters(), *discriminator.parameters(), *fake_model.parameters()], lr=0.1
    )
    terms = loss.fake_score_phase(torch.randn(16, 2))
    terms.total.backward()
    assert all(p.grad is None for m in (generator, discriminator) for p in m.parameters())
    optimizer.step()
    after = [list(m.parameters()) for m in (generator, discriminator, fake_model)]
    assert all(torch.equal(b, a) for b, a in zip(before[0] + before[1], after[0] + after[1], strict=True))
    assert any(not torch.equal(b, a) for b, a in zip(before[2], after[2], strict=True))
    assert terms.logs["loss_fake_score"] == pytest.approx(terms.total.item())


def test_generator_phase_moves_the_generator_but_gives_the_fake_score_no_gradient():
    loss, generator, _, fake_model = toy_loss()
    terms = loss.generator_phase(torch.randn(16, 2), step=0)
    terms.total.backward()
    assert all(p.grad is None for p in fake_model.parameters())
    assert all(p.grad is not None for p in generator.parameters())
    assert terms.logs["fake_score_weight"] == 1.0 and terms.logs["fake_score_gradient_norm"] > 0


def test_generator_phase_adds_the_distribution_matching_term_to_the_adversarial_loss():
    loss, generator, _, _ = toy_loss()
    latents = torch.randn(16, 2)
    torch.manual_seed(3)
    terms = loss.generator_phase(latents, step=0)
    torch.manual_seed(3)  # the same time steps and noise for the term alone
    matching = loss.distribution_matching(generator(latents), 0)
    assert matching.loss.item() > 0
    assert terms.total.item() == pytest.approx(terms.logs["loss_G"] + matching.loss.item())


def test_fake_score_phase_without_distribution_matching_is_refused():
    loss = GANLoss(ToyGenerator(latent_dim=2, hidden_dim=8, num_layers=1), ToyDiscriminator(2, 8, 1))
    with pytest.raises(ValueError) as refused:
        loss.fake_score_phase(torch.randn(4, 2))
    assert str(refused.value) == "fake_score_phase needs a GANLoss built with distribution_matching."


TINY = (
    "--max_train_steps 20 --train_batch_size 32 --hidden_dim 16 --num_layers 1 --num_eval_samples 100 "
    "--logging_steps 5 --fake_score --fake_score_hidden_dim 16 --fake_score_num_layers 1 --smart_interval 1 "
    "--smart_sample_weighting discriminator"
).split()


@pytest.mark.usefixtures("one_thread")
def test_fake_score_checkpoint_resumes_to_the_saved_weights_and_trains_on(tmp_path):
    def run(folder, *flags):
        return train_gan(parse_gan_args([*TINY, "--output_dir", str(folder), *flags]))

    def fake_score_weights(folder):
        return MLPNoisePredictor.from_pretrained(folder / "fake_score").state_dict()

    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    run(whole, "--checkpointing_steps", "10")
    run(resumed, "--checkpointing_steps", "10", "--max_train_steps", "10")
    run(resumed, "--checkpointing_steps", "10", "--resume_from_checkpoint", "latest")
    at_10, whole_20, resumed_20 = (
        fake_score_weights(folder)
        for folder in (whole / "checkpoint-10", whole / "checkpoint-20", resumed / "checkpoint-20")
    )
    assert all(torch.equal(at_10[key], fake_score_weights(resumed / "checkpoint-10")[key]) for key in at_10)
    assert all(torch.equal(whole_20[key], resumed_20[key]) for key in whole_20)  # resumed exactly
    assert any(not torch.equal(at_10[key], whole_20[key]) for key in at_10)  # and it trains


def test_fake_score_options_without_the_switch_are_refused():
    config = parse_gan_args(["--fake_score_weight", "2"])
    with pytest.raises(ValueError, match="--fake_score"):
        config.check()


@pytest.mark.usefixtures("one_thread")
def test_image_run_trains_a_class_conditional_unet_fake_score_and_checkpoints_it(tmp_path):
    score = save_tiny_score(tmp_path / "score", num_classes=2)
    flags = [
        *TINY_GAN,
        *f"--train_data_dir {save_image_folder(tmp_path / 'images')} --class_conditional --score {score} "
        "--max_train_steps 4 --checkpointing_steps 2 --fake_score --fake_score_base_channels 8 "
        "--fake_score_t_max 900".split(),
    ]
    results = train_gan(parse_gan_args([*flags, "--output_dir", str(tmp_path / "run")]))
    assert results["global_step"] == 4 and results["nonfinite_steps"] == 0
    fake_scores = [
        UNet2DModel.from_pretrained(tmp_path / "run" / f"checkpoint-{step}" / "fake_score") for step in (2, 4)
    ]
    assert fake_scores[0].config.num_class_embeds == 2
    weights = [model.state_dict() for model in fake_scores]
    assert any(not torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
