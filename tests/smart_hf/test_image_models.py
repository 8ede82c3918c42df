"""DCGAN and ResNet generators and discriminators: shapes, conditioning, timesteps, errors, save/load."""

import ast
import copy
import inspect
import sys

import pytest
import torch

from smart_hf.losses import r1_penalty
from smart_hf.models import (
    DCGANDiscriminator,
    DCGANGenerator,
    ResNetDiscriminator,
    ResNetGenerator,
    dcgan,
    resnet_gan,
)

ARCHITECTURES = [(DCGANGenerator, DCGANDiscriminator), (ResNetGenerator, ResNetDiscriminator)]
ARCHITECTURE_IDS = ["dcgan", "resnet"]
TINY = {"base_channels": 4, "max_channel_multiplier": 2}


@pytest.fixture(params=ARCHITECTURES, ids=ARCHITECTURE_IDS)
def architecture(request):
    return request.param


@pytest.mark.parametrize("resolution", [8, 16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_range(architecture, resolution, channels):
    generator_class, discriminator_class = architecture
    generator = generator_class(latent_dim=8, out_channels=channels, resolution=resolution, **TINY)
    discriminator = discriminator_class(in_channels=channels, resolution=resolution, **TINY)
    images = generator(torch.randn(3, 8) * 10)  # large latents push tanh towards ±1
    assert images.shape == (3, channels, resolution, resolution)
    assert images.abs().max() <= 1.0
    assert discriminator(images).shape == (3,)


def test_generator_exposes_pipeline_config(architecture):
    generator = architecture[0](latent_dim=8, out_channels=1, resolution=16, num_classes=5, **TINY)
    config = generator.config
    assert (config.latent_dim, config.out_channels, config.resolution, config.num_classes) == (8, 1, 16, 5)
    assert architecture[0](**TINY).config.num_classes is None


def test_class_conditioning_changes_outputs(architecture):
    torch.manual_seed(0)
    generator_class, discriminator_class = architecture
    generator = generator_class(latent_dim=8, resolution=8, num_classes=4, **TINY).eval()
    discriminator = discriminator_class(resolution=8, num_classes=4, **TINY).eval()
    # Class terms start at zero in the ResNet's conditional BatchNorm; make them matter.
    for parameter in generator.parameters():
        parameter.data.normal_(0, 0.3)
    latents = torch.randn(2, 8)
    images_a = generator(latents, torch.tensor([0, 1]))
    images_b = generator(latents, torch.tensor([2, 3]))
    assert not torch.allclose(images_a, images_b)
    assert not torch.allclose(
        discriminator(images_a, torch.tensor([0, 1])), discriminator(images_a, torch.tensor([2, 3]))
    )


def test_class_label_errors(architecture):
    generator_class, discriminator_class = architecture
    conditional = generator_class(latent_dim=8, resolution=8, num_classes=3, **TINY)
    unconditional = generator_class(latent_dim=8, resolution=8, **TINY)
    with pytest.raises(ValueError, match="class-conditional"):
        conditional(torch.randn(2, 8))
    with pytest.raises(ValueError, match="unconditional"):
        unconditional(torch.randn(2, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        conditional(torch.randn(2, 8), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer"):
        conditional(torch.randn(2, 8), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="unconditional"):
        discriminator_class(resolution=8, **TINY)(torch.randn(2, 3, 8, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="class-conditional"):
        discriminator_class(resolution=8, num_classes=3, **TINY)(torch.randn(2, 3, 8, 8))


def test_input_shape_errors(architecture):
    generator_class, discriminator_class = architecture
    with pytest.raises(ValueError, match=r"latents must have shape \(batch_size, 8\)"):
        generator_class(latent_dim=8, resolution=8, **TINY)(torch.randn(2, 7))
    with pytest.raises(ValueError, match=r"images must have shape \(batch_size, 3, 8, 8\)"):
        discriminator_class(resolution=8, **TINY)(torch.randn(2, 3, 16, 16))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"resolution": 12}, "power of two"),
        ({"resolution": 4}, "power of two"),
        ({"out_channels": 2}, "1 .* or 3"),
    ],
)
def test_generator_config_errors(architecture, kwargs, match):
    with pytest.raises(ValueError, match=match):
        architecture[0](**{**TINY, **kwargs})


def test_discriminator_config_errors(architecture):
    with pytest.raises(ValueError, match="num_timesteps"):
        architecture[1](num_timesteps=-1, **TINY)
    with pytest.raises(ValueError, match="1 .* or 3"):
        architecture[1](in_channels=4, **TINY)


def test_discriminator_timesteps(architecture):
    torch.manual_seed(0)
    discriminator_class = architecture[1]
    discriminator = discriminator_class(resolution=8, num_timesteps=10, **TINY).eval()
    images = torch.randn(2, 3, 8, 8)
    without = discriminator(images)
    with_tensor = discriminator(images, timesteps=torch.tensor([3, 3]))
    assert with_tensor.shape == (2,)
    assert torch.equal(discriminator(images, timesteps=3), with_tensor)  # a scalar applies to every image
    assert not torch.allclose(without, with_tensor)
    assert not torch.allclose(with_tensor, discriminator(images, timesteps=torch.tensor([7, 7])))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        discriminator(images, timesteps=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="integer"):
        discriminator(images, timesteps=torch.tensor([0.5, 0.5]))


def test_discriminator_without_timestep_support_refuses_timesteps(architecture):
    discriminator = architecture[1](resolution=8, **TINY)
    with pytest.raises(ValueError, match="without a timestep input.*num_timesteps > 0"):
        discriminator(torch.randn(2, 3, 8, 8), timesteps=torch.tensor([1, 2]))


def test_conditional_discriminator_with_timesteps_and_r1(architecture):
    """Spectral norm supports the double backward of the R1 penalty."""
    discriminator = architecture[1](resolution=8, num_classes=3, num_timesteps=5, **TINY)
    images = torch.randn(2, 3, 8, 8, requires_grad=True)
    logits = discriminator(images, torch.tensor([0, 2]), torch.tensor([1, 4]))
    penalty = r1_penalty(logits, images)
    penalty.backward()
    weights = [p for name, p in discriminator.named_parameters() if "weight" in name]
    assert weights and all(p.grad is not None for p in weights)


def test_discriminator_uses_spectral_norm(architecture):
    discriminator = architecture[1](resolution=8, num_classes=3, num_timesteps=5, **TINY)
    parametrized = [m for m in discriminator.modules() if hasattr(m, "parametrizations")]
    weighted = [
        m
        for m in discriminator.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear | torch.nn.Embedding)
    ]
    assert parametrized and len(parametrized) == len(weighted)


def test_save_load_roundtrip(architecture, tmp_path):
    torch.manual_seed(0)
    generator_class, discriminator_class = architecture
    generator = generator_class(latent_dim=8, resolution=8, num_classes=3, **TINY).eval()
    discriminator = discriminator_class(resolution=8, num_classes=3, num_timesteps=4, **TINY).eval()
    generator.save_pretrained(tmp_path / "g")
    discriminator.save_pretrained(tmp_path / "d")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    latents, labels = torch.randn(2, 8), torch.tensor([0, 2])
    images = generator(latents, labels)
    loaded_generator = generator_class.from_pretrained(tmp_path / "g")
    loaded_discriminator = discriminator_class.from_pretrained(tmp_path / "d")
    assert not loaded_generator.training
    assert torch.equal(loaded_generator(latents, labels), images)
    assert torch.allclose(loaded_discriminator(images, labels, 2), discriminator(images, labels, 2))


def test_half_precision_forward(architecture):
    generator_class, discriminator_class = architecture
    generator = generator_class(latent_dim=8, resolution=8, **TINY).eval().half()
    discriminator = discriminator_class(resolution=8, num_timesteps=3, **TINY).eval().half()
    try:
        images = generator(torch.randn(2, 8, dtype=torch.float16))
    except RuntimeError as error:  # some CPU builds lack float16 kernels
        pytest.skip(f"float16 is not supported on this CPU: {error}")
    assert images.dtype == torch.float16
    assert discriminator(images, timesteps=1).dtype == torch.float16


@pytest.mark.parametrize("module", [dcgan, resnet_gan])
def test_model_files_are_self_contained(module):
    """The files are copied verbatim into Hub exports, where smart_hf is not installed."""
    tree = ast.parse(inspect.getsource(module))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    third_party = {name.split(".")[0] for name in imported} - set(sys.stdlib_module_names)
    assert third_party <= {"torch", "diffusers"}


def _checkpointing_pair(model_class, **kwargs):
    plain = model_class(**TINY, **kwargs).train()
    with torch.no_grad():  # as after some training: spectral norm's singular vectors no longer converged
        for parameter in plain.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    checkpointed = copy.deepcopy(plain)
    checkpointed.enable_gradient_checkpointing()
    return plain, checkpointed


def _training_step(model, inputs):
    """Forward, backward; returns the output, the gradients, the buffers (BatchNorm statistics, spectral
    norm's singular vectors) and how often the first block ran."""
    stages = getattr(model, "blocks", None) or getattr(model, "upsample", None) or model.downsample
    first_block = next(iter(stages))
    calls, forward = [], first_block.forward
    first_block.forward = lambda *args: calls.append(1) or forward(*args)  # hooks do not see recomputation
    output = model(*inputs)
    output.float().square().mean().backward()
    del first_block.forward
    gradients = {name: p.grad.clone() for name, p in model.named_parameters()}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    return output.detach(), gradients, buffers, len(calls)


@pytest.mark.usefixtures("one_thread")  # the same float sums in both passes
@pytest.mark.parametrize("role", ["generator", "discriminator"])
@pytest.mark.parametrize("num_classes", [None, 3])
def test_gradient_checkpointing_recomputes_blocks_and_changes_no_value(architecture, role, num_classes):
    generator_class, discriminator_class = architecture
    labels = None if num_classes is None else torch.tensor([0, 2, 1, 2])
    if role == "generator":
        plain, checkpointed = _checkpointing_pair(
            generator_class, latent_dim=8, resolution=16, num_classes=num_classes
        )
        inputs = (torch.randn(4, 8), labels)
    else:
        plain, checkpointed = _checkpointing_pair(
            discriminator_class, in_channels=3, resolution=16, num_classes=num_classes, num_timesteps=5
        )
        inputs = (torch.randn(4, 3, 16, 16, requires_grad=True), labels, torch.tensor([0, 1, 4, 2]))
    expected, expected_gradients, expected_buffers, plain_calls = _training_step(plain, inputs)
    output, gradients, buffers, calls = _training_step(checkpointed, inputs)

    assert (plain_calls, calls) == (1, 2)  # recomputed in the backward pass
    torch.testing.assert_close(output, expected, rtol=0, atol=0)
    for name, gradient in expected_gradients.items():
        torch.testing.assert_close(gradients[name], gradient, rtol=1e-5, atol=1e-7, msg=name)
    assert buffers.keys() == expected_buffers.keys() and len(buffers) > 0
    for name, buffer in expected_buffers.items():  # BatchNorm and spectral norm updated once, not twice
        torch.testing.assert_close(buffers[name], buffer, rtol=0, atol=0, msg=name)
