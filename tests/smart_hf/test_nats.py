"""NATS: annealed functional-gradient refinement, its nesting in GANLoss, and the pipeline's refinement."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from smart_hf import hub
from smart_hf.losses import GANLoss
from smart_hf.models import DCGANDiscriminator, DCGANGenerator, ToyGenerator
from smart_hf.nats import NATSRefiner, refine_samples
from smart_hf.pipelines import SmartOneStepPipeline
from tests.helpers_without_smart_hf import run_without_smart_hf

CENTER = torch.tensor([1.0, -2.0])
TINY = {"resolution": 8, "base_channels": 4, "max_channel_multiplier": 2}


class QuadraticCritic(nn.Module):
    """D(x) = −||x − c||²: its gradient 2(c − x) points at c. Records its inputs."""

    def __init__(self, center: torch.Tensor = CENTER):
        super().__init__()
        self.center = nn.Parameter(center.clone())
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return -(x - self.center).pow(2).sum(1)


def test_zero_weight_is_the_identity():
    x = torch.randn(8, 2)
    torch.testing.assert_close(refine_samples(QuadraticCritic(), x, 0.25, [0.0, 0.0]), x, rtol=0, atol=0)
    refiner = NATSRefiner(anneal_steps=10, final_weight=0.0)
    assert not refiner.is_active(10)
    torch.testing.assert_close(refiner.refine(QuadraticCritic(), x, step=10), x, rtol=0, atol=0)


def test_refinement_moves_samples_toward_the_critics_optimum():
    x = torch.randn(64, 2) * 3
    refiner = NATSRefiner(num_steps=4, step_size=0.1, anneal="constant", step_decay=0.5)
    refined = refiner.refine(QuadraticCritic(), x, step=0)
    # Each step maps x − c to (1 − 2·eta·w_k)(x − c).
    factor = math.prod(1 - 2 * 0.1 * 0.5**k for k in range(4))
    torch.testing.assert_close(refined - CENTER, factor * (x - CENTER))
    assert ((refined - CENTER).norm(dim=1) < (x - CENTER).norm(dim=1)).all()


def test_a_zero_weight_skips_only_its_own_step():
    x = torch.zeros(4, 2)
    refined = refine_samples(QuadraticCritic(), x, 0.1, [0.0, 1.0])
    torch.testing.assert_close(refined, CENTER + (1 - 2 * 0.1) * (x - CENTER))


def test_refinement_is_clipped_and_gives_d_no_parameter_gradient():
    critic = QuadraticCritic(torch.tensor([5.0, 5.0]))
    refined = refine_samples(critic, torch.zeros(4, 2), 1.0, [1.0], clip=(-1.0, 1.0))
    assert refined.max() == 1.0 and not refined.requires_grad
    assert critic.center.grad is None


def test_the_refiner_clips_to_its_range():
    critic = QuadraticCritic(torch.tensor([5.0, 5.0]))
    refined = NATSRefiner(anneal="constant", step_size=1.0, clip=(-1.0, 1.0)).refine(
        critic, torch.zeros(4, 2), 0
    )
    torch.testing.assert_close(refined, torch.ones(4, 2))


@pytest.mark.parametrize("anneal", ["linear", "cosine"])
def test_annealing_schedule_shape(anneal):
    refiner = NATSRefiner(anneal=anneal, anneal_steps=100, final_weight=0.2, step_decay=0.5, num_steps=3)
    weights = [refiner.weight_at(step) for step in range(0, 201)]
    assert weights[0] == 1.0 and weights[100] == pytest.approx(0.2) and weights[200] == pytest.approx(0.2)
    assert all(a >= b for a, b in zip(weights, weights[1:], strict=False))  # never rises
    assert weights[50] == pytest.approx(0.6)  # half-way between 1 and the final weight, for both shapes
    if anneal == "linear":
        assert weights[25] == pytest.approx(0.8)
    else:  # flat at both ends
        assert weights[25] == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi / 4)))
        assert weights[1] > 0.999
    assert refiner.step_weights(50) == pytest.approx([0.6, 0.3, 0.15])  # decay within one refinement
    assert NATSRefiner(anneal="constant").weight_at(10**6) == 1.0


def test_regression_gradient_is_the_refinement_step():
    fake = torch.randn(8, 2, requires_grad=True)
    refined = fake.detach() + torch.randn(8, 2)
    NATSRefiner(anneal="constant", regression_weight=2.0).regression_loss(fake, refined).backward()
    torch.testing.assert_close(fake.grad, -2.0 * (refined - fake.detach()) / 8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_steps": 0}, "num_steps >= 1"),
        ({"step_size": 0.0}, "step_size must be > 0"),
        ({"anneal": "exp"}, "Unknown NATS annealing 'exp'"),
        ({"anneal": "linear"}, "needs anneal_steps >= 1"),
        ({"anneal_steps": 10, "final_weight": 1.5}, r"final_weight must lie in \[0, 1\]"),
        ({"anneal_steps": 10, "step_decay": 0.0}, r"step_decay must lie in \(0, 1\]"),
        ({"anneal_steps": 10, "regression_weight": -1.0}, "regression_weight must be >= 0"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NATSRefiner(**kwargs)


def test_gan_loss_trains_d_on_refined_fakes_and_g_toward_them():
    torch.manual_seed(0)
    generator, critic = ToyGenerator(hidden_dim=16, num_layers=1), QuadraticCritic()
    refiner = NATSRefiner(num_steps=2, step_size=0.1, anneal_steps=10)
    loss = GANLoss(generator, critic, nats=refiner)
    latents = torch.randn(16, 8)
    with torch.no_grad():
        fake = generator(latents)

    d_terms = loss.discriminator_phase(torch.randn(16, 2), latents, step=7, generator_step=5)
    factor = (1 - 2 * 0.1 * 0.5) ** 2  # a(5) = 0.5 with linear annealing over 10 steps
    torch.testing.assert_close(critic.inputs[-1], CENTER + factor * (fake - CENTER))  # D's fake batch
    assert "loss_nats" not in d_terms.logs

    g_terms = loss.generator_phase(latents, step=5)
    expected = 0.5 * (1 - factor) ** 2 * (fake - CENTER).pow(2).sum(1).mean()
    assert g_terms.logs["loss_nats"] == pytest.approx(expected.item(), rel=1e-5)
    assert g_terms.logs["nats_weight"] == 0.5
    assert "loss_nats" not in loss.generator_phase(latents, step=10).logs  # annealed to 0: plain GAN


class ClassCritic(nn.Module):
    """D(x, y) = −||x − c_y||²: each class has its own optimum."""

    def __init__(self):
        super().__init__()
        self.centers = nn.Parameter(torch.tensor([[1.0, -2.0], [-3.0, 0.5], [0.0, 4.0]]))
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return -(x - self.centers[class_labels]).pow(2).sum(1)


def test_both_phases_refine_toward_the_class_optimum_at_the_generator_step():
    """D's fakes and G's regression target move toward c_y, by the weight of `generator_step`, not `step` (a
    discriminator step past the annealing still refines while the generator step is inside it)."""
    torch.manual_seed(0)
    critic, refiner = ClassCritic(), NATSRefiner(num_steps=1, step_size=0.1, anneal_steps=10)
    generator = lambda z, y: z[:, :2]  # noqa: E731
    loss = GANLoss(generator, critic, nats=refiner)
    latents, labels = torch.randn(12, 4), torch.tensor([0, 1, 2] * 4)
    fake, centers = latents[:, :2], critic.centers.detach()[labels]
    factor = 1 - 2 * 0.1 * 0.5  # a(5) = 0.5

    loss.discriminator_phase(torch.randn(12, 2), latents, step=12, class_labels=labels, generator_step=5)
    torch.testing.assert_close(critic.inputs[-1], centers + factor * (fake - centers))

    g_terms = loss.generator_phase(latents, step=5, class_labels=labels)
    expected = 0.5 * (1 - factor) ** 2 * (fake - centers).pow(2).sum(1).mean()
    assert g_terms.logs["loss_nats"] == pytest.approx(expected.item(), rel=1e-5)

    # Without a generator step (a run with one D step per G step), D's own step sets the weight.
    loss.discriminator_phase(torch.randn(12, 2), latents, step=5, class_labels=labels)
    torch.testing.assert_close(critic.inputs[-1], centers + factor * (fake - centers))


def test_nats_pulls_the_generator_toward_the_critics_optimum_faster():
    """With a fixed critic, the regression adds the refinement step to the adversarial gradient."""

    def distance_after_training(refiner):
        torch.manual_seed(0)
        generator = ToyGenerator(latent_dim=4, hidden_dim=16, num_layers=1)
        loss = GANLoss(generator, QuadraticCritic(), adversarial_loss="hinge", nats=refiner)
        optimizer = torch.optim.SGD(generator.parameters(), lr=0.01)
        latents = torch.randn(64, 4)
        for step in range(20):
            optimizer.zero_grad()
            loss.generator_phase(latents, step).total.backward()
            optimizer.step()
        with torch.no_grad():
            return (generator(latents) - CENTER).norm(dim=1).mean().item()

    plain = distance_after_training(None)
    nats = distance_after_training(NATSRefiner(num_steps=3, step_size=0.25, anneal="constant"))
    assert nats < 0.9 * plain


# --- the pipeline's discriminator-guided refinement ---


def make_pipeline(num_classes=None, with_discriminator=True):
    torch.manual_seed(0)
    gan = DCGANGenerator(latent_dim=8, out_channels=1, num_classes=num_classes, **TINY).eval()
    discriminator = DCGANDiscriminator(in_channels=1, num_classes=num_classes, **TINY).eval()
    return SmartOneStepPipeline(gan=gan, discriminator=discriminator if with_discriminator else None)


def images(pipe, **kwargs):
    return pipe(batch_size=4, generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs).images


@pytest.mark.parametrize("num_classes", [None, 3])
def test_pipeline_refinement_follows_the_discriminator(num_classes):
    pipe = make_pipeline(num_classes)
    plain = images(pipe)
    torch.testing.assert_close(images(pipe, refine_steps=0), plain, rtol=0, atol=0)
    refined = images(pipe, refine_steps=3, refine_step_size=0.5)
    assert not torch.equal(refined, plain) and refined.min() >= 0 and refined.max() <= 1

    # The same steps as the library's refinement with unit weights, clipped to [−1, 1].
    latents = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    labels = None if num_classes is None else torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        start = pipe.gan(latents) if labels is None else pipe.gan(latents, labels)

    def critic(x):
        return pipe.discriminator(x) if labels is None else pipe.discriminator(x, labels)

    expected = refine_samples(critic, start, 0.5, [1.0] * 3, clip=(-1.0, 1.0))
    torch.testing.assert_close(pipe.refine(start, labels, 3, 0.5), expected, rtol=0, atol=0)
    with torch.no_grad():  # a small step raises D's logits
        assert critic(refine_samples(critic, start, 1e-3, [1.0])).mean() > critic(start).mean()


def test_pipeline_refinement_input_errors():
    with pytest.raises(ValueError, match="`refine_steps` > 0 needs a discriminator"):
        images(make_pipeline(with_discriminator=False), refine_steps=2)
    pipe = make_pipeline()
    with pytest.raises(ValueError, match="`refine_steps` must be an integer >= 0"):
        images(pipe, refine_steps=-1)
    with pytest.raises(ValueError, match="`refine_step_size` must be a number > 0"):
        images(pipe, refine_steps=1, refine_step_size=0)
    with pytest.raises(ValueError, match="does not fit the generator"):
        SmartOneStepPipeline(gan=pipe.gan, discriminator=DCGANDiscriminator(in_channels=3, **TINY))


WITHOUT_SMART_HF = """
    import sys
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(sys.argv[1], trust_remote_code=True)
    images = pipe(
        batch_size=4, generator=torch.Generator().manual_seed(0), refine_steps=2, output_type="np"
    ).images
    np.save(sys.argv[2], images)
    print(type(pipe.discriminator).__module__)
    """


def refined_images(pipe: SmartOneStepPipeline) -> np.ndarray:
    return pipe(
        batch_size=4, generator=torch.Generator().manual_seed(0), refine_steps=2, output_type="np"
    ).images


def test_export_with_a_discriminator_ships_its_weights(tmp_path):
    pipe = make_pipeline(num_classes=None)
    folder = hub.export_pipeline(pipe.gan, tmp_path / "export", discriminator_model=pipe.discriminator)
    model_index = hub.validate_export(folder)
    assert model_index["discriminator"] == ["dcgan", "DCGANDiscriminator"]
    listed = json.loads((folder / "smart_hf.json").read_text())["files"]
    assert {"discriminator/dcgan.py", "discriminator/config.json"} <= set(listed)
    assert "refine_steps=5" in (folder / "README.md").read_text()

    loaded = SmartOneStepPipeline.from_pretrained(folder)
    assert type(loaded.discriminator) is DCGANDiscriminator
    for name, tensor in pipe.discriminator.state_dict().items():
        assert torch.equal(loaded.discriminator.state_dict()[name], tensor), name
    np.testing.assert_array_equal(refined_images(loaded), refined_images(pipe))


def test_export_with_a_discriminator_loads_without_smart_hf(tmp_path):
    pipe = make_pipeline(num_classes=None)
    folder = hub.export_pipeline(pipe.gan, tmp_path / "export", discriminator_model=pipe.discriminator)
    reference = refined_images(pipe)
    result = run_without_smart_hf(
        WITHOUT_SMART_HF, str(folder), str(tmp_path / "images.npy"), tmp_path=tmp_path
    )
    assert result.stdout.split() == ["diffusers_modules.local.dcgan"]
    np.testing.assert_allclose(np.load(tmp_path / "images.npy"), reference, atol=1e-6)


def test_exports_without_a_discriminator_load_unchanged(tmp_path):
    pipe = make_pipeline(with_discriminator=False)
    folder = hub.export_pipeline(pipe.gan, tmp_path / "export", num_samples=0)
    assert "discriminator" not in json.loads((folder / "model_index.json").read_text())
    assert SmartOneStepPipeline.from_pretrained(folder).discriminator is None


def test_pipeline_refinement_clips_to_the_image_range_and_runs_in_the_discriminators_dtype():
    pipe = make_pipeline(3)
    start = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    labels = torch.tensor([0, 1, 2, 0])
    refined = pipe.refine(start, labels, 2, 1e4)  # steps far past the range on both sides
    assert refined.min() == -1 and refined.max() == 1 and refined.abs().max() == 1
    other_labels = torch.tensor([1, 2, 0, 1])
    assert not torch.equal(refined, pipe.refine(start, other_labels, 2, 1e4))  # D sees the labels
    pipe.discriminator.to(torch.bfloat16)
    assert pipe.refine(start, labels, 1, 0.5).dtype == torch.bfloat16
