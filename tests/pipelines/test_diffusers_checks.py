"""diffusers' generic pipeline checks, written for SmartOneStepPipeline: an unconditional and a
class-conditional generator, each with the optional discriminator (exercised through `refine_steps`, so that
every round trip checks both models' weights and buffers by the images they make).

The checks are those of diffusers' `PipelineTesterMixin`, `PipelineLatentTesterMixin`,
`PipelineFromPipeTesterMixin` and push-to-Hub tests (tests/pipelines/test_pipelines_common.py):

    diffusers check                                      here
    test_save_load_local                                 test_save_load_local,
                                                           test_saved_folder_without_smart_hf
    test_save_load_optional_components                   test_save_load_optional_components
    test_save_load_float16, test_dtype_alias             test_from_pretrained_dtype
    test_dtype_dict                                      test_from_pretrained_dtype_dict
    test_serialization_with_variants,                    test_save_load_fp16_variant
      test_loading_with_variants
    test_loading_with_incorrect_variants_raises_error    test_missing_variant_raises_diffusers_error
    test_pipeline_with_accelerator_device_map            test_from_pretrained_device_map
    (use_safetensors; safetensors only)                  test_safetensors_only
    test_to_device, test_to_dtype                        test_to_device, test_to_dtype
    test_float16_inference                               test_to_dtype
    test_dict_tuple_outputs_equivalent                   test_dict_tuple_outputs_equivalent
    test_inference_batch_single_identical                test_generator_list_seeds_each_image
    test_inference_batch_consistent                      test_batch_consistent
    test_pt_np_pil_outputs_equivalent                    test_pt_np_pil_outputs_equivalent
    (latents, in the required call parameters)           test_latents_replace_the_generator_draw
    test_pipeline_call_signature                         test_call_signature
    test_components_function                             test_components_function
    test_from_pipe_consistent_config / _forward_pass     test_from_pipe
    test_model_cpu_offload_forward_pass,                 test_model_cpu_offload
      test_cpu_offload_forward_pass_twice
    test_sequential_cpu_offload_forward_pass             test_sequential_cpu_offload (CUDA only)
    PipelinePushToHubTester                              test_push_to_hub (Hub patched)

Not applicable, and why:
- Prompts (test_encode_prompt_works_in_isolation, test_num_images_per_prompt, test_cfg, IP-adapter mixins): no
  text encoder, no guidance; `batch_size` is the number of images. For the same reason
  test_pipeline_call_signature's `num_images_per_prompt` does not apply.
- Schedulers and steps (test_karras_schedulers_shape, the `num_inference_steps` call parameter,
  test_progress_bar, test_callback_inputs, test_callback_cfg): one forward pass, no denoising loop, so no
  scheduler, no progress bar and no step to call back from.
- Attention and denoiser features (test_attention_slicing_forward_pass, xformers, fused QKV, FreeU, the
  PAB / FasterCache / FirstBlockCache / TaylorSeer / MagCache mixins, layerwise casting and group offloading,
  which the mixin leaves off unless a pipeline has a transformer/UNet denoiser): the GANs have no attention
  and no denoiser.
- VAE and image inputs (test_vae_slicing, test_vae_tiling, test_pt_np_pil_inputs_equivalent,
  test_latents_input, test_multi_vae): no VAE and no image input; `latents=` is the generator's input.
- test_from_pipe_* against StableDiffusionPipeline: no component in common; `from_pipe` is checked within the
  class, and refused from another pipeline that lacks the generator.
- test_StableDiffusionMixin_component, DDUF (removed in diffusers 0.42): not this kind of pipeline.
- `safe_serialization=False` (used by several of diffusers' save/load checks): refused, as the folder ships
  safetensors only; checked in test_safetensors_only.
- Loading logs (test_save_load_local's "Loaded <component>" lines): a detail of diffusers' own loader.

Accelerators: on a machine without CUDA, model CPU offload runs with the CPU as the execution device (the
hooks run and the models end on the CPU, but nothing moves), `device_map` and `to()` are checked with "cpu",
and test_sequential_cpu_offload is skipped: accelerate cannot run sequential offload with the CPU as the
execution device (it fails moving parameters back to the meta device; diffusers' own DDPMPipeline fails the
same way). With CUDA, the same tests also run on the accelerator.

Loading through diffusers' remote code (`trust_remote_code=True`) runs in a subprocess without smart_hf, so
that the loaded code is the folder's own, and nothing is written to the user's Hugging Face cache.
"""

import copy
import inspect
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from accelerate.hooks import CpuOffload
from diffusers import DDPMPipeline, ImagePipelineOutput
from diffusers.utils import hub_utils
from huggingface_hub import ModelCard

from smart_hf.models import ResNetDiscriminator, ResNetGenerator
from smart_hf.pipelines import SmartOneStepPipeline
from smart_hf.pipelines.smart_one_step import pipeline as pipeline_module
from tests.helpers_without_smart_hf import run_without_smart_hf

DIGITS_UNET = Path(__file__).resolve().parents[2] / "src/smart_hf/assets/score_models/digits-unet"
TINY = {"resolution": 8, "base_channels": 4, "max_channel_multiplier": 2}
LATENT_DIM = 8
CUDA = torch.cuda.is_available()
DEVICES = ["cpu", *(["cuda"] if CUDA else [])]
OFFLOAD_DEVICE = "cuda" if CUDA else "cpu"
MODEL_FILES = {"config.json", "diffusion_pytorch_model.safetensors", "resnet_gan.py"}


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights and BatchNorm statistics, so that every parameter and buffer shows in the images (the
    class terms of a fresh ResNetGenerator are zero, its running statistics 0 and 1)."""
    generator = seeded(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.3, generator=generator)
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.3, generator=generator)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0, generator=generator)
    return model.eval()


@pytest.fixture(params=[None, 3], ids=["unconditional", "class-conditional"])
def components(request) -> dict[str, torch.nn.Module]:
    num_classes = request.param
    return {
        "gan": randomised(ResNetGenerator(latent_dim=LATENT_DIM, num_classes=num_classes, **TINY), 1),
        "discriminator": randomised(ResNetDiscriminator(num_classes=num_classes, **TINY), 2),
    }


@pytest.fixture
def pipe(components) -> SmartOneStepPipeline:
    return SmartOneStepPipeline(**components)


def call_inputs(seed: int = 0, **overrides) -> dict:
    """The call every check makes: a seeded batch of 2, refined by the discriminator; class labels, for a
    class-conditional generator, drawn from the generator."""
    return {"batch_size": 2, "generator": seeded(seed), "refine_steps": 2, "output_type": "np", **overrides}


def images(pipeline, **overrides) -> np.ndarray:
    return pipeline(**call_inputs(**overrides)).images


def files_in(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def assert_loaded_images(actual: np.ndarray, expected: np.ndarray, err_msg: str = "") -> None:
    """Images of a loaded pipeline: equal up to float rounding. Its weights are equal (checked apart), but
    memory-mapped from the safetensors file at another alignment, which changes how vectorised kernels sum
    (differences of about 1e-6)."""
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4, err_msg=err_msg)


def assert_same_weights(loaded: torch.nn.Module, original: torch.nn.Module, dtype=None) -> None:
    expected = original.state_dict()
    for name, tensor in loaded.state_dict().items():
        reference = (
            expected[name] if dtype is None or not tensor.is_floating_point() else expected[name].to(dtype)
        )
        assert torch.equal(tensor, reference), name


def test_save_load_local(pipe, tmp_path):
    expected = images(pipe)
    folder = tmp_path / "saved"
    pipe.save_pretrained(folder)
    assert files_in(folder) == {
        "model_index.json",
        "pipeline.py",
        *(f"{name}/{file}" for name in ("gan", "discriminator") for file in MODEL_FILES),
    }
    model_index = json.loads((folder / "model_index.json").read_text())
    assert model_index["_class_name"] == ["pipeline", "SmartOneStepPipeline"]
    assert model_index["gan"] == ["resnet_gan", "ResNetGenerator"]
    assert model_index["discriminator"] == ["resnet_gan", "ResNetDiscriminator"]
    assert model_index["_smart_hf_library"] == {
        "gan": ["smart_hf.models.resnet_gan", "ResNetGenerator"],
        "discriminator": ["smart_hf.models.resnet_gan", "ResNetDiscriminator"],
    }
    assert (folder / "pipeline.py").read_bytes() == Path(pipeline_module.__file__).read_bytes()

    loaded = SmartOneStepPipeline.from_pretrained(folder)
    assert type(loaded.gan) is ResNetGenerator and type(loaded.discriminator) is ResNetDiscriminator
    assert not loaded.gan.training and not loaded.discriminator.training
    assert loaded.name_or_path == str(folder)
    assert_same_weights(loaded.gan, pipe.gan)
    assert_same_weights(loaded.discriminator, pipe.discriminator)
    assert_loaded_images(images(loaded), expected)
    copied = SmartOneStepPipeline.from_pretrained(folder, disable_mmap=True)  # weights in aligned memory
    np.testing.assert_array_equal(images(copied), expected)
    # Saved again, the loaded pipeline writes the same files, without the path it was loaded from.
    loaded.save_pretrained(tmp_path / "again")
    assert files_in(tmp_path / "again") == files_in(folder)
    for name in files_in(folder):
        assert (tmp_path / "again" / name).read_bytes() == (folder / name).read_bytes(), name


# Runs in a fresh interpreter with every import of smart_hf refused: the folders written by save_pretrained
# load through diffusers' remote code (plain, fp16 variant in float16, device_map), a missing variant raises
# diffusers' error, and a pipeline loaded that way saves a folder that loads again.
WITHOUT_SMART_HF = """
    import json, os, sys
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline

    plain, fp16, resaved, out = sys.argv[1:5]
    refine = int(sys.argv[5])

    def images(pipe):
        generator = torch.Generator().manual_seed(0)
        return pipe(batch_size=2, generator=generator, refine_steps=refine, output_type="np").images

    pipe = DiffusionPipeline.from_pretrained(plain, trust_remote_code=True)
    assert type(pipe).__module__ == "diffusers_modules.local.pipeline", type(pipe).__module__
    assert not pipe.gan.training
    np.save(os.path.join(out, "plain.npy"), images(pipe))

    pipe.save_pretrained(resaved)
    again = DiffusionPipeline.from_pretrained(resaved, trust_remote_code=True)
    np.save(os.path.join(out, "resaved.npy"), images(again))

    on_cpu = DiffusionPipeline.from_pretrained(plain, trust_remote_code=True, device_map="cpu")
    np.save(os.path.join(out, "device_map.npy"), images(on_cpu))

    half = DiffusionPipeline.from_pretrained(
        fp16, trust_remote_code=True, variant="fp16", dtype=torch.float16
    )
    dtypes = sorted({str(model.dtype) for model in half.components.values() if model is not None})
    try:
        DiffusionPipeline.from_pretrained(plain, trust_remote_code=True, variant="fp16")
        missing_variant = None
    except ValueError as error:
        missing_variant = str(error)
    assert not any(name.startswith("smart_hf") for name in sys.modules)
    print(json.dumps({"half_dtypes": dtypes, "missing_variant": missing_variant}))
    """


def test_saved_folder_without_smart_hf(pipe, tmp_path):
    """What `save_pretrained` writes loads where only diffusers is installed: `trust_remote_code=True` runs
    the folder's pipeline.py and model files."""
    expected = images(pipe)
    plain, fp16, resaved, out = (tmp_path / name for name in ("plain", "fp16", "resaved", "out"))
    out.mkdir()
    pipe.save_pretrained(plain)
    half = {name: copy.deepcopy(model).to(torch.float16) for name, model in pipe.components.items()}
    SmartOneStepPipeline(**half).save_pretrained(fp16, variant="fp16")
    result = run_without_smart_hf(
        WITHOUT_SMART_HF, *map(str, (plain, fp16, resaved, out)), "2", tmp_path=tmp_path
    )
    report = json.loads(result.stdout.splitlines()[-1])
    for name in ("plain", "resaved", "device_map"):
        assert_loaded_images(np.load(out / f"{name}.npy"), expected, err_msg=name)
    assert report["half_dtypes"] == ["torch.float16"]
    assert "You are trying to load the model files of the `variant=fp16`" in report["missing_variant"]
    # Saved by a pipeline loaded without smart_hf: the same files, but no smart_hf classes to record.
    assert files_in(resaved) == files_in(plain)
    assert "_smart_hf_library" not in json.loads((resaved / "model_index.json").read_text())
    with pytest.raises(ValueError, match="saved without smart_hf"):
        SmartOneStepPipeline.from_pretrained(resaved)


def test_save_load_optional_components(pipe, components, tmp_path):
    pipe.discriminator = None
    expected = images(pipe, refine_steps=0)
    pipe.save_pretrained(tmp_path)
    assert not (tmp_path / "discriminator").exists()
    assert "discriminator" not in json.loads((tmp_path / "model_index.json").read_text())
    loaded = SmartOneStepPipeline.from_pretrained(tmp_path)
    assert loaded.discriminator is None
    assert_loaded_images(images(loaded, refine_steps=0), expected)
    # A saved optional component is left out when passed as None, and used when passed.
    SmartOneStepPipeline(**components).save_pretrained(tmp_path / "with")
    assert SmartOneStepPipeline.from_pretrained(tmp_path / "with", discriminator=None).discriminator is None
    loaded = SmartOneStepPipeline.from_pretrained(tmp_path, discriminator=components["discriminator"])
    assert loaded.discriminator is components["discriminator"]


def test_safetensors_only(pipe, tmp_path):
    with pytest.raises(ValueError, match="safetensors weights only"):
        pipe.save_pretrained(tmp_path / "pickles", safe_serialization=False)
    assert not (tmp_path / "pickles").exists()
    pipe.save_pretrained(tmp_path)
    assert all(name.endswith((".json", ".py", ".safetensors")) for name in files_in(tmp_path))
    loaded = SmartOneStepPipeline.from_pretrained(tmp_path, use_safetensors=True)
    assert_loaded_images(images(loaded), images(pipe))
    with pytest.raises(
        ValueError, match="safetensors weights only; `use_safetensors=False` would read pickles"
    ):
        SmartOneStepPipeline.from_pretrained(tmp_path, use_safetensors=False)


def test_save_load_fp16_variant(pipe, components, tmp_path):
    """fp16 weights saved as a variant beside the float32 ones; each loads with its own weights."""
    pipe.save_pretrained(tmp_path)
    half = {name: randomised(copy.deepcopy(model), 3).to(torch.float16) for name, model in components.items()}
    SmartOneStepPipeline(**half).save_pretrained(tmp_path, variant="fp16")
    for name in components:
        assert {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"} <= set(
            files_in(tmp_path / name)
        )
    loaded = SmartOneStepPipeline.from_pretrained(tmp_path, variant="fp16", dtype=torch.float16)
    default = SmartOneStepPipeline.from_pretrained(tmp_path)
    for name in components:
        assert_same_weights(getattr(loaded, name), half[name])
        assert_same_weights(getattr(default, name), components[name])


def test_missing_variant_raises_diffusers_error(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"You are trying to load the model files of the `variant=fp16`"):
        SmartOneStepPipeline.from_pretrained(tmp_path, variant="fp16")


def test_from_pretrained_dtype(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    for kwargs in ({"dtype": torch.float16}, {"torch_dtype": torch.float16}):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = SmartOneStepPipeline.from_pretrained(tmp_path, **kwargs)
        deprecated = [
            w for w in caught if issubclass(w.category, FutureWarning) and "torch_dtype" in str(w.message)
        ]
        assert len(deprecated) == ("torch_dtype" in kwargs)
        for name in ("gan", "discriminator"):
            assert getattr(loaded, name).dtype == torch.float16
            assert_same_weights(getattr(loaded, name), getattr(pipe, name), torch.float16)
    with pytest.raises(ValueError, match="Pass `dtype` only"):
        SmartOneStepPipeline.from_pretrained(tmp_path, dtype=torch.float16, torch_dtype=torch.float16)
    with pytest.raises(ValueError, match="`dtype` must be a torch.dtype"):
        SmartOneStepPipeline.from_pretrained(tmp_path, dtype="float16")


def test_from_pretrained_dtype_dict(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    loaded = SmartOneStepPipeline.from_pretrained(
        tmp_path, dtype={"gan": torch.bfloat16, "default": torch.float16}
    )
    assert (loaded.gan.dtype, loaded.discriminator.dtype) == (torch.bfloat16, torch.float16)
    loaded = SmartOneStepPipeline.from_pretrained(tmp_path, dtype={"discriminator": torch.float16})
    assert (loaded.gan.dtype, loaded.discriminator.dtype) == (torch.float32, torch.float16)


@pytest.mark.parametrize("device", DEVICES)
def test_from_pretrained_device_map(pipe, tmp_path, device):
    expected = images(pipe)
    pipe.save_pretrained(tmp_path)
    loaded = SmartOneStepPipeline.from_pretrained(tmp_path, device_map=device)
    assert loaded.hf_device_map == device
    assert {model.device.type for model in loaded.components.values()} == {device}
    np.testing.assert_allclose(images(loaded), expected, atol=1e-5 if device == "cpu" else 1e-3)
    with pytest.raises(
        ValueError, match="`device_map` must be a device .* 'balanced' strategy is not supported"
    ):
        SmartOneStepPipeline.from_pretrained(tmp_path, device_map="balanced")


def test_from_pretrained_a_hub_id_downloads_configs_and_weights_only(pipe, tmp_path, monkeypatch):
    pipe.save_pretrained(tmp_path)
    calls = []

    def snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(tmp_path)

    monkeypatch.setattr(pipeline_module, "snapshot_download", snapshot_download)
    loaded = SmartOneStepPipeline.from_pretrained("user/smart-gan", revision="v1", local_files_only=True)
    assert calls == [
        (
            "user/smart-gan",
            {
                "allow_patterns": ["model_index.json", "*/*.json", "*/*.safetensors"],
                "revision": "v1",
                "local_files_only": True,
            },
        )
    ]
    assert loaded.name_or_path == "user/smart-gan"
    assert_loaded_images(images(loaded), images(pipe))


@pytest.mark.parametrize("device", DEVICES)
def test_to_device(pipe, device):
    expected = images(pipe)
    assert pipe.to(device) is pipe
    assert {model.device.type for model in pipe.components.values()} == {device}
    assert pipe._execution_device.type == device
    tensor = pipe(**call_inputs(output_type="pt")).images
    assert tensor.device.type == device
    np.testing.assert_allclose(images(pipe), expected, atol=1e-5 if device == "cpu" else 1e-3)


def test_to_dtype(pipe):
    expected = images(pipe)
    pipe.to(dtype=torch.float16)
    assert {model.dtype for model in pipe.components.values()} == {torch.float16}
    try:
        half = images(pipe)
    except RuntimeError as error:  # some CPU builds lack float16 kernels
        pytest.skip(f"float16 is not supported on this CPU: {error}")
    assert half.dtype == np.float32
    np.testing.assert_allclose(half, expected, atol=5e-2)  # same latents and labels, float16 rounding
    pipe.to(torch.float32)
    assert {model.dtype for model in pipe.components.values()} == {torch.float32}


def test_dict_tuple_outputs_equivalent(pipe):
    output = pipe(**call_inputs())
    assert isinstance(output, ImagePipelineOutput)
    as_tuple = pipe(**call_inputs(), return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 1
    np.testing.assert_array_equal(as_tuple[0], output.images)
    np.testing.assert_array_equal(as_tuple[0], output[0])


def test_generator_list_seeds_each_image(pipe):
    """Image i of a batch made with a list of generators is the single image that generator i makes (its
    class label too)."""
    batch = images(pipe, batch_size=3, generator=[seeded(seed) for seed in range(3)])
    assert batch.shape == (3, 8, 8, 3)
    singles = np.concatenate([images(pipe, batch_size=1, generator=seeded(seed)) for seed in range(3)])
    np.testing.assert_allclose(batch, singles, atol=1e-5)  # kernels may round differently per batch size
    assert not np.allclose(batch[0], batch[1])


@pytest.mark.parametrize("output_type", ["pil", "np", "pt"])
def test_batch_consistent(pipe, output_type):
    for batch_size in (1, 2, 3):
        output = pipe(**call_inputs(batch_size=batch_size, output_type=output_type)).images
        assert len(output) == batch_size


def test_pt_np_pil_outputs_equivalent(pipe):
    array = images(pipe)
    tensor = images(pipe, output_type="pt")
    pil = images(pipe, output_type="pil")
    np.testing.assert_array_equal(tensor.permute(0, 2, 3, 1).numpy(), array)
    assert all(isinstance(image, PIL.Image.Image) and image.size == (8, 8) for image in pil)
    np.testing.assert_array_equal(np.stack([np.asarray(image) for image in pil]), (array * 255).round())


def test_latents_replace_the_generator_draw(pipe):
    """`latents=` are exactly what the seeded call draws: the same images, and the latents are not changed."""
    labels = [0, 2] if pipe.num_classes else None
    latents = torch.randn(2, LATENT_DIM, generator=seeded(4))
    passed = latents.clone()
    from_latents = images(pipe, latents=passed, generator=None, class_labels=labels)
    np.testing.assert_array_equal(from_latents, images(pipe, generator=seeded(4), class_labels=labels))
    assert torch.equal(passed, latents)


def test_call_signature():
    parameters = inspect.signature(SmartOneStepPipeline.__call__).parameters
    optional = {name for name, parameter in parameters.items() if parameter.default is not parameter.empty}
    assert {"batch_size", "generator", "latents", "output_type", "return_dict"} <= optional
    assert optional == set(parameters) - {"self"}  # all optional, as in diffusers' unconditional pipelines


def test_components_function(components):
    pipe = SmartOneStepPipeline(**components)
    assert pipe.components == components
    assert set(SmartOneStepPipeline(gan=components["gan"]).components) == {"gan", "discriminator"}


def test_from_pipe(pipe, components):
    expected = images(pipe)
    shared = SmartOneStepPipeline.from_pipe(pipe)
    assert shared.gan is pipe.gan and shared.discriminator is pipe.discriminator  # shared, not copied
    assert dict(shared.config) == dict(pipe.config)
    np.testing.assert_array_equal(images(shared), expected)
    np.testing.assert_array_equal(images(pipe), expected)  # from_pipe leaves the original pipeline as it was
    without = SmartOneStepPipeline.from_pipe(pipe, discriminator=None)
    assert without.discriminator is None and without.gan is pipe.gan
    with pytest.raises(ValueError, match=r"expected \['discriminator', 'gan'\]"):
        SmartOneStepPipeline.from_pipe(DDPMPipeline.from_pretrained(DIGITS_UNET))


def test_model_cpu_offload(pipe):
    expected = images(pipe)
    pipe.enable_model_cpu_offload(device=OFFLOAD_DEVICE)
    assert pipe._execution_device.type == OFFLOAD_DEVICE
    for _ in range(2):  # and a second call after the hooks were reset at the end of the first
        np.testing.assert_allclose(images(pipe), expected, atol=1e-5 if OFFLOAD_DEVICE == "cpu" else 1e-3)
        for name, model in pipe.components.items():
            assert model.device.type == "cpu", name
            assert isinstance(getattr(model, "_hf_hook", None), CpuOffload), name


@pytest.mark.skipif(not CUDA, reason="sequential offload needs an accelerator as the execution device")
def test_sequential_cpu_offload(pipe):
    expected = images(pipe)
    pipe.enable_sequential_cpu_offload(device="cuda")
    np.testing.assert_allclose(images(pipe), expected, atol=1e-3)
    assert {model.device.type for model in pipe.components.values()} == {"meta"}


def test_push_to_hub(pipe, tmp_path, monkeypatch):
    """`pipe.push_to_hub` (and `save_pretrained(push_to_hub=True)`) upload a folder that loads: the files of
    `save_pretrained` and diffusers' model card."""
    uploaded = []

    def upload_folder(repo_id, folder_path, **kwargs):
        destination = tmp_path / "uploaded" / str(len(uploaded))
        shutil.copytree(folder_path, destination)
        uploaded.append((repo_id, destination))

    monkeypatch.setattr(
        hub_utils, "create_repo", lambda repo_id, **kwargs: type("Url", (), {"repo_id": repo_id})
    )
    monkeypatch.setattr(
        hub_utils, "load_or_create_model_card", lambda *args, **kwargs: ModelCard("---\n---\n")
    )
    monkeypatch.setattr(hub_utils, "upload_folder", upload_folder)
    pipe.push_to_hub("user/smart-gan")
    pipe.save_pretrained(tmp_path / "smart-gan", push_to_hub=True)
    pipe.save_pretrained(tmp_path / "saved")
    assert [repo_id for repo_id, _ in uploaded] == ["user/smart-gan", "smart-gan"]
    for _, folder in uploaded:
        assert files_in(folder) == files_in(tmp_path / "saved") | {"README.md"}
        assert ModelCard.load(folder / "README.md").data.library_name == "diffusers"
        assert_loaded_images(images(SmartOneStepPipeline.from_pretrained(folder)), images(pipe))


class LocalGenerator(ResNetGenerator):
    """Defined in this test module, which imports pytest and smart_hf: no remote code can run it."""


def test_save_refuses_models_that_would_not_load_as_remote_code(tmp_path):
    pipe = SmartOneStepPipeline(gan=LocalGenerator(latent_dim=LATENT_DIM, **TINY))
    with pytest.raises(
        ValueError, match=r"test_diffusers_checks.py \(which defines LocalGenerator\) imports"
    ):
        pipe.save_pretrained(tmp_path / "local")
    assert not (tmp_path / "local").exists()
