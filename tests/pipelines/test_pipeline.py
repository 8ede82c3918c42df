"""SmartOneStepPipeline: outputs, reproducibility, truncation, dtypes, devices, eval mode, its docstring
example and input errors. diffusers' generic pipeline checks are in test_diffusers_checks.py."""

import ast
import inspect
import re
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import ImagePipelineOutput

import smart_hf
from smart_hf.models import DCGANGenerator, ResNetDiscriminator, ResNetGenerator, ToyGenerator
from smart_hf.pipelines import SmartOneStepPipeline
from tests.helpers_without_smart_hf import run_without_smart_hf

REPO = Path(__file__).resolve().parents[2]
TINY = {"latent_dim": 8, "resolution": 8, "base_channels": 4, "max_channel_multiplier": 2}


def make_pipeline(num_classes=None, out_channels=3, generator_class=ResNetGenerator) -> SmartOneStepPipeline:
    torch.manual_seed(0)
    gan = generator_class(out_channels=out_channels, num_classes=num_classes, **TINY).eval()
    if num_classes:  # conditional norms start as the identity (zero class terms): give labels an effect
        unconditional = {name for name, _ in generator_class(**TINY).named_parameters()}
        with torch.no_grad():
            for name, parameter in gan.named_parameters():
                if name not in unconditional:
                    parameter.normal_(0, 0.3, generator=seeded(1))
    return SmartOneStepPipeline(gan=gan)


@pytest.fixture(scope="module")
def pipe():
    return make_pipeline()


@pytest.fixture(scope="module")
def conditional_pipe():
    return make_pipeline(num_classes=3)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("out_channels, mode", [(3, "RGB"), (1, "L")])
def test_pil_output(out_channels, mode):
    output = make_pipeline(out_channels=out_channels)(batch_size=2, generator=seeded())
    assert isinstance(output, ImagePipelineOutput)
    assert len(output.images) == 2
    assert all(isinstance(image, PIL.Image.Image) for image in output.images)
    assert {(image.size, image.mode) for image in output.images} == {((8, 8), mode)}


def test_np_and_pt_outputs_agree(pipe):
    array = pipe(batch_size=3, generator=seeded(), output_type="np").images
    tensor = pipe(batch_size=3, generator=seeded(), output_type="pt").images
    assert array.shape == (3, 8, 8, 3) and array.dtype == np.float32
    assert tensor.shape == (3, 3, 8, 8) and tensor.dtype == torch.float32
    assert 0.0 <= array.min() and array.max() <= 1.0
    np.testing.assert_allclose(tensor.permute(0, 2, 3, 1).numpy(), array)


def test_output_matches_generator(pipe):
    latents = torch.randn(2, 8)
    expected = pipe.gan(latents) / 2 + 0.5
    torch.testing.assert_close(
        pipe(batch_size=2, latents=latents, output_type="pt").images, expected.clamp(0, 1)
    )


def test_return_dict_false(pipe):
    (images,) = pipe(generator=seeded(), output_type="np", return_dict=False)
    assert images.shape == (1, 8, 8, 3)


def test_reproducible_for_a_seed(pipe):
    first = pipe(batch_size=4, generator=seeded(1), output_type="np").images
    np.testing.assert_array_equal(first, pipe(batch_size=4, generator=seeded(1), output_type="np").images)
    assert not np.array_equal(first, pipe(batch_size=4, generator=seeded(2), output_type="np").images)


def test_list_of_generators_seeds_each_image(conditional_pipe):
    both = conditional_pipe(batch_size=2, generator=[seeded(5), seeded(6)], output_type="np").images
    second = conditional_pipe(batch_size=1, generator=seeded(6), output_type="np").images
    np.testing.assert_allclose(both[1:], second, atol=1e-6)  # kernels may round differently per batch size


def test_truncation_scales_latents(pipe):
    latents = torch.randn(2, 8)
    truncated = pipe(batch_size=2, latents=latents, truncation=0.5, output_type="np").images
    scaled = pipe(batch_size=2, latents=0.5 * latents, output_type="np").images
    np.testing.assert_array_equal(truncated, scaled)


def test_random_class_labels_are_reproducible_uniform_and_give_each_image_its_class(conditional_pipe):
    labels = conditional_pipe.prepare_class_labels(None, 16, seeded(3), torch.device("cpu"))
    assert torch.equal(labels, torch.randint(3, (16,), generator=seeded(3)))
    many = conditional_pipe.prepare_class_labels(None, 3000, seeded(0), torch.device("cpu"))
    assert torch.equal(torch.bincount(many, minlength=3) > 900, torch.ones(3, dtype=torch.bool))
    per_image = conditional_pipe.prepare_class_labels(None, 2, [seeded(5), seeded(6)], torch.device("cpu"))
    assert per_image.tolist() == [torch.randint(3, (1,), generator=seeded(s)).item() for s in (5, 6)]
    # A seeded call draws the latents, then the labels, from its generator; the labels change the images.
    rng = seeded(3)
    latents, chosen = torch.randn(4, 8, generator=rng), torch.randint(3, (4,), generator=rng)
    drawn = conditional_pipe(batch_size=4, generator=seeded(3), output_type="np").images
    for given, same in ((chosen, True), ((chosen + 1) % 3, False)):
        images = conditional_pipe(batch_size=4, latents=latents, class_labels=given, output_type="np").images
        assert [np.array_equal(a, b) for a, b in zip(images, drawn, strict=True)] == [same] * 4
    assert torch.equal(
        labels, conditional_pipe.prepare_class_labels(None, 16, seeded(3), torch.device("cpu"))
    )
    first = conditional_pipe(batch_size=4, generator=seeded(3), output_type="np").images
    np.testing.assert_array_equal(
        first, conditional_pipe(batch_size=4, generator=seeded(3), output_type="np").images
    )


def test_given_class_labels_become_one_long_label_per_image(conditional_pipe):
    cpu = torch.device("cpu")
    single = conditional_pipe.prepare_class_labels(2, 3, None, cpu)
    assert single.dtype == torch.long and single.tolist() == [2, 2, 2]
    given = conditional_pipe.prepare_class_labels(torch.tensor([0, 2], dtype=torch.int32), 2, None, cpu)
    assert given.dtype == torch.long and given.tolist() == [0, 2]
    torch.manual_seed(4)
    drawn = conditional_pipe.prepare_class_labels(None, 5, None, cpu)  # torch's global random state
    torch.manual_seed(4)
    assert torch.equal(drawn, torch.randint(3, (5,)))


def test_class_labels_select_the_class():
    conditional_pipe = make_pipeline(num_classes=3)
    for parameter in conditional_pipe.gan.parameters():  # give the zero-initialised class terms an effect
        parameter.data.normal_(0, 0.3, generator=seeded(0))
    latents = torch.randn(3, 8)
    single = conditional_pipe(batch_size=3, latents=latents, class_labels=2, output_type="np").images
    listed = conditional_pipe(batch_size=3, latents=latents, class_labels=[2, 2, 2], output_type="np").images
    tensor = conditional_pipe(
        batch_size=3, latents=latents, class_labels=torch.tensor([0, 1, 2]), output_type="np"
    )
    np.testing.assert_array_equal(single, listed)
    np.testing.assert_array_equal(single[2], tensor.images[2])
    assert not np.array_equal(single[0], tensor.images[0])


def test_half_precision_on_cpu():
    pipe = make_pipeline(num_classes=3, generator_class=DCGANGenerator)
    reference = pipe(batch_size=2, generator=seeded(), output_type="np").images
    pipe.to(torch.float16)
    assert pipe.gan.dtype == torch.float16
    try:
        half = pipe(batch_size=2, generator=seeded(), output_type="np").images
    except RuntimeError as error:  # some CPU builds lack float16 kernels
        pytest.skip(f"float16 is not supported on this CPU: {error}")
    assert half.dtype == np.float32
    np.testing.assert_allclose(half, reference, atol=2e-2)  # same latents and labels, float16 rounding


def test_models_run_in_eval_mode_and_keep_their_mode():
    """Models still in training mode (e.g. shared with a training loop) run in eval mode: BatchNorm uses its
    running statistics, so an image does not depend on the rest of its batch, and no buffer changes (nor
    spectral norm's power-iteration vectors); each model is back in training mode after the call."""
    torch.manual_seed(0)
    gan = ResNetGenerator(num_classes=3, **TINY).train()
    discriminator = ResNetDiscriminator(
        num_classes=3, resolution=8, base_channels=4, max_channel_multiplier=2
    ).train()
    pipe = SmartOneStepPipeline(gan=gan, discriminator=discriminator)
    buffers = {
        (role, name): buffer.clone()
        for role, model in pipe.components.items()
        for name, buffer in model.named_buffers()
    }
    latents, labels = torch.randn(4, 8), [0, 1, 2, 0]
    kwargs = {"refine_steps": 2, "output_type": "np"}
    batch = pipe(batch_size=4, latents=latents, class_labels=labels, **kwargs).images
    single = pipe(batch_size=1, latents=latents[:1], class_labels=labels[:1], **kwargs).images
    np.testing.assert_allclose(batch[:1], single, atol=1e-6)
    assert gan.training and discriminator.training
    for (role, name), buffer in buffers.items():
        assert torch.equal(dict(pipe.components[role].named_buffers())[name], buffer), (role, name)
    evaluated = SmartOneStepPipeline(gan=gan.eval(), discriminator=discriminator.eval())
    np.testing.assert_array_equal(
        evaluated(batch_size=4, latents=latents, class_labels=labels, **kwargs).images, batch
    )
    with torch.no_grad():  # what the call would give in training mode: images that depend on the batch
        gan.train()
        in_batch, alone = gan(latents, torch.tensor(labels))[:1], gan(latents[:1], torch.tensor(labels[:1]))
    assert not torch.allclose(in_batch, alone, atol=1e-3)


def test_call_docstring_example_runs(tmp_path):
    """The example of `__call__`'s docstring runs as written (its folder replaced by a saved pipeline) where
    smart_hf cannot be imported."""
    docstring = SmartOneStepPipeline.__call__.__doc__
    example = re.search(r"Examples:\s*```py\n(.*?)```", docstring, re.DOTALL)
    assert example, "no `Examples:` block (diffusers' EXAMPLE_DOC_STRING convention)"
    code = "\n".join(
        line.strip()[4:] for line in example.group(1).splitlines() if line.strip().startswith(">>>")
    )
    assert '"path/to/smart-gan"' in code
    make_pipeline().save_pretrained(tmp_path / "export")
    run_without_smart_hf(
        code.replace('"path/to/smart-gan"', "sys.argv[1]"), str(tmp_path / "export"), tmp_path=tmp_path
    )
    with PIL.Image.open(tmp_path / "sample.png") as image:
        assert image.size == (8, 8)


def test_to_device(pipe):
    assert pipe.to("cpu") is pipe
    assert pipe._execution_device == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_latents():
    pipe = make_pipeline(num_classes=3)
    cpu = pipe(batch_size=2, generator=seeded(), output_type="np").images
    pipe.to("cuda")
    assert pipe(batch_size=2, generator=seeded(), output_type="pt").images.device.type == "cuda"
    np.testing.assert_allclose(
        pipe(batch_size=2, generator=seeded(), output_type="np").images, cpu, atol=1e-4
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "batch_size` must be an integer >= 1"),
        ({"batch_size": 2.0}, "batch_size` must be an integer >= 1"),
        (
            {"batch_size": 2, "latents": torch.randn(3, 8)},
            r"latents` must have shape .* \(2, 8\), got \(3, 8\)",
        ),
        ({"latents": torch.randn(1, 9)}, r"latents` must have shape"),
        ({"output_type": "latent"}, "output_type` must be one of"),
        ({"truncation": 0.0}, "truncation` must be a number > 0"),
        ({"truncation": float("nan")}, "truncation` must be a number > 0"),
        ({"batch_size": 2, "generator": [torch.Generator()]}, "list of 1 generators for batch_size=2"),
        ({"class_labels": 0}, "unconditional"),
    ],
)
def test_bad_inputs(pipe, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipe(**kwargs)


@pytest.mark.parametrize(
    "class_labels, match",
    [
        (3, r"in \[0, 2\]"),
        ([0, -1], r"in \[0, 2\]"),
        ([0, 1, 2], "3 class labels for batch_size=2"),
        ([0.5, 1.0], "integer"),
        ([[0], [1]], "integer"),
        ([True, False], "integer"),
        (torch.tensor([0, 3]), r"in \[0, 2\] for this generator, got \[0, 3\]"),
    ],
)
def test_bad_class_labels(conditional_pipe, class_labels, match):
    with pytest.raises(ValueError, match=match):
        conditional_pipe(batch_size=2, class_labels=class_labels)
    with pytest.raises(ValueError, match=match):  # also when called without the pipeline's input checks
        conditional_pipe.prepare_class_labels(class_labels, 2, None, torch.device("cpu"))


def test_class_label_errors_say_what_to_pass(pipe, conditional_pipe):
    with pytest.raises(ValueError, match=r"\(num_classes=None\); do not pass `class_labels`\.$"):
        pipe.prepare_class_labels(1, 2, None, torch.device("cpu"))
    with pytest.raises(ValueError, match="pass one label for all images or one per image.$"):
        conditional_pipe.prepare_class_labels([0, 1, 2], 2, None, torch.device("cpu"))
    assert pipe.prepare_class_labels(None, 2, seeded(0), torch.device("cpu")) is None


def test_refuses_a_generator_that_is_not_an_image_generator():
    with pytest.raises(ValueError, match=r"not an image generator .* lacks \['out_channels', 'resolution'"):
        SmartOneStepPipeline(gan=ToyGenerator())


def test_pipeline_file_imports_only_what_the_hub_has():
    """pipeline.py runs as remote code without smart_hf: diffusers, what diffusers depends on (torch,
    huggingface_hub, numpy, PIL) and the stdlib only."""
    tree = ast.parse(Path(inspect.getsourcefile(SmartOneStepPipeline)).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    allowed = {"torch", "diffusers", "huggingface_hub", "numpy", "PIL", *sys.stdlib_module_names}
    assert {name.split(".")[0] for name in imported} <= allowed


def test_library_exposes_the_hub_pipeline_file_itself():
    if not Path(smart_hf.__file__).resolve().is_relative_to(REPO):
        pytest.skip("smart_hf is not installed from this checkout")
    source = Path(inspect.getsourcefile(SmartOneStepPipeline)).resolve()
    assert source == REPO / "pipelines" / "smart_one_step" / "pipeline.py"


def test_pyproject_lists_every_package():
    """pyproject.toml lists packages explicitly (for the pipelines/ mapping): a new package must be added."""
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = {
        "smart_hf": REPO / "src" / "smart_hf",
        **{k: REPO / v for k, v in setuptools["package-dir"].items() if k},
    }
    found = set()
    for name, root in roots.items():
        for init in root.rglob("__init__.py"):
            found.add(".".join([name, *init.parent.relative_to(root).parts]))
    assert found == set(setuptools["packages"])
