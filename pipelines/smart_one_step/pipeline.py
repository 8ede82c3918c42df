"""`SmartOneStepPipeline`: images from a GAN generator in one forward pass, no denoising loop.

This file is the single source of truth for the pipeline: smart_hf installs it as
`smart_hf.pipelines.smart_one_step.pipeline`, and `SmartOneStepPipeline.save_pretrained` (which
`smart_hf.hub.export_pipeline` calls) copies it verbatim to the root of the saved folder, where
`DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` runs it without smart_hf. It therefore
imports only diffusers, the packages diffusers itself depends on and the standard library
(`REMOTE_CODE_IMPORTS`).
"""

import ast
import contextlib
import importlib
import inspect
import json
import math
import os
import re
import shutil
import sys
import warnings
from collections.abc import Iterator

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.image_processor import VaeImageProcessor
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import replace_example_docstring
from diffusers.utils.torch_utils import randn_tensor
from huggingface_hub import snapshot_download

OUTPUT_TYPES = ("pil", "np", "pt")
GENERATOR_CONFIG_FIELDS = ("latent_dim", "out_channels", "resolution", "num_classes")
DISCRIMINATOR_CONFIG_FIELDS = ("in_channels", "resolution", "num_classes")
# What a file saved as Hub remote code may import besides the standard library: diffusers and its
# dependencies, which are installed wherever diffusers is.
REMOTE_CODE_IMPORTS = ("diffusers", "huggingface_hub", "numpy", "PIL", "torch")
# Keyword arguments of `SmartOneStepPipeline.from_pretrained`, besides components passed by name.
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision")
_MODEL_KWARGS = ("low_cpu_mem_usage", "disable_mmap")
# What `from_pretrained` fetches of a Hub repository: configs and safetensors weights, never code or pickles.
_HUB_ALLOW_PATTERNS = ["model_index.json", "*/*.json", "*/*.safetensors"]

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from diffusers import DiffusionPipeline

        >>> # A folder written by `save_pretrained` or `smart-hf export`, or the Hub id it was pushed to.
        >>> pipe = DiffusionPipeline.from_pretrained("path/to/smart-gan", trust_remote_code=True)
        >>> images = pipe(batch_size=4, generator=torch.Generator().manual_seed(0)).images
        >>> images[0].save("sample.png")
        ```
"""


class SmartOneStepPipeline(DiffusionPipeline):
    r"""
    Pipeline for one-step image generation with a GAN generator (trained with SMaRt, but any generator with
    the interface below works).

    Args:
        gan ([`ModelMixin`]):
            The generator: `gan(latents)` (or `gan(latents, class_labels)` when class-conditional) maps
            latents of shape `(batch_size, latent_dim)` to images of shape `(batch_size, out_channels,
            resolution, resolution)` in [−1, 1]. Its config must have `latent_dim`, `out_channels`,
            `resolution` and `num_classes` (`None` or 0 for an unconditional generator).
        discriminator ([`ModelMixin`], *optional*):
            A discriminator trained with the generator, `discriminator(images)` (or `discriminator(images,
            class_labels)`) → one logit per image, with config `in_channels`, `resolution` and `num_classes`
            matching the generator's. Only needed for the discriminator-guided refinement (`refine_steps`).
    """

    model_cpu_offload_seq = "gan->discriminator"
    _optional_components = ["discriminator"]

    def __init__(self, gan: ModelMixin, discriminator: ModelMixin | None = None):
        super().__init__()
        config = getattr(gan, "config", {})
        missing = [field for field in GENERATOR_CONFIG_FIELDS if field not in config]
        if missing:
            raise ValueError(
                f"{type(gan).__name__} is not an image generator for {type(self).__name__}: its config lacks "
                f"{missing} (expected {list(GENERATOR_CONFIG_FIELDS)})."
            )
        if discriminator is not None:
            d_config = getattr(discriminator, "config", {})
            expected = {
                "in_channels": config["out_channels"],
                "resolution": config["resolution"],
                "num_classes": config["num_classes"] or 0,
            }
            found = {field: d_config.get(field) for field in DISCRIMINATOR_CONFIG_FIELDS}
            found["num_classes"] = found["num_classes"] or 0
            if found != expected:
                raise ValueError(
                    f"{type(discriminator).__name__} does not fit the generator: its config has {found}, the "
                    f"generator's images need {expected}."
                )
        self.register_modules(gan=gan, discriminator=discriminator)
        self.image_processor = VaeImageProcessor(do_resize=False, do_normalize=True)

    @property
    def num_classes(self) -> int:
        """Number of classes of a class-conditional generator; 0 when unconditional."""
        return self.gan.config.num_classes or 0

    def check_inputs(
        self,
        batch_size: int,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None,
        truncation: float,
        output_type: str,
        refine_steps: int = 0,
        refine_step_size: float = 0.25,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}.")
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(
                f"Got a list of {len(generator)} generators for batch_size={batch_size}; pass one generator "
                "per image, or a single generator."
            )
        expected_shape = (batch_size, self.gan.config.latent_dim)
        if latents is not None and tuple(latents.shape) != expected_shape:
            raise ValueError(
                f"`latents` must have shape (batch_size, latent_dim) = {expected_shape}, "
                f"got {tuple(latents.shape)}."
            )
        if (
            isinstance(truncation, bool)
            or not isinstance(truncation, int | float)
            or not 0 < truncation < math.inf
        ):
            raise ValueError(f"`truncation` must be a number > 0 (1.0 = no truncation), got {truncation!r}.")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        if isinstance(refine_steps, bool) or not isinstance(refine_steps, int) or refine_steps < 0:
            raise ValueError(
                f"`refine_steps` must be an integer >= 0 (0 = no refinement), got {refine_steps!r}."
            )
        if refine_steps and self.discriminator is None:
            raise ValueError(
                "`refine_steps` > 0 needs a discriminator: this pipeline has none (pass `discriminator=` or "
                "load an export that includes one)."
            )
        if (
            isinstance(refine_step_size, bool)
            or not isinstance(refine_step_size, int | float)
            or not 0 < refine_step_size < math.inf
        ):
            raise ValueError(f"`refine_step_size` must be a number > 0, got {refine_step_size!r}.")

    def prepare_class_labels(
        self,
        class_labels: int | list[int] | torch.Tensor | None,
        batch_size: int,
        generator: torch.Generator | list[torch.Generator] | None,
        device: torch.device,
    ) -> torch.Tensor | None:
        """One label per image: `None` for an unconditional generator; a single label is repeated; no labels
        for a class-conditional generator means uniformly random labels drawn from `generator`."""
        num_classes = self.num_classes
        if not num_classes:
            if class_labels is not None:
                raise ValueError(
                    f"This generator is unconditional (num_classes={self.gan.config.num_classes}); "
                    "do not pass `class_labels`."
                )
            return None
        if class_labels is None:
            if isinstance(generator, list):
                labels = [
                    torch.randint(num_classes, (1,), generator=g, device=g.device).cpu() for g in generator
                ]
                return torch.cat(labels).to(device)
            rand_device = generator.device if generator is not None else torch.device("cpu")
            return torch.randint(num_classes, (batch_size,), generator=generator, device=rand_device).to(
                device
            )
        labels = torch.as_tensor(class_labels)
        if labels.is_floating_point() or labels.dtype == torch.bool or labels.ndim > 1:
            raise ValueError(
                f"`class_labels` must be an integer or a list of integers, got {class_labels!r}."
            )
        if labels.ndim == 0:
            labels = labels.expand(batch_size)
        if labels.shape[0] != batch_size:
            raise ValueError(
                f"Got {labels.shape[0]} class labels for batch_size={batch_size}; pass one label for all "
                "images or one per image."
            )
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(
                f"`class_labels` must be in [0, {num_classes - 1}] for this generator, got {labels.tolist()}."
            )
        return labels.to(device=device, dtype=torch.long)

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        batch_size: int = 1,
        class_labels: int | list[int] | torch.Tensor | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        truncation: float = 1.0,
        refine_steps: int = 0,
        refine_step_size: float = 0.25,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        r"""
        Generate images in one forward pass of the generator.

        Args:
            batch_size (`int`, defaults to 1):
                Number of images.
            class_labels (`int`, `list[int]` or `torch.Tensor`, *optional*):
                For a class-conditional generator: one label for all images or one per image, each in
                [0, num_classes). When omitted, labels are drawn uniformly at random from `generator` (after
                the latents), so a seeded call is reproducible. Omit them for an unconditional generator.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*):
                Makes generation deterministic; a list gives one generator per image, so image i of a batch
                equals the image of a single-image call with generator i.
            latents (`torch.Tensor`, *optional*):
                Standard-normal latents, shape `(batch_size, latent_dim)`; drawn from `generator` if omitted.
            truncation (`float`, defaults to 1.0):
                Truncation trick, as a scale: the latents are multiplied by `truncation` before the generator
                (1.0 = none; values below 1 trade diversity for fidelity). Scaling rather than resampling
                |z| > threshold keeps 1.0 the identity and keeps each seed's latent direction, so a seed's
                image changes smoothly with `truncation`. Applies to passed `latents` too.
            refine_steps (`int`, defaults to 0):
                Discriminator-guided refinement (composite functional gradient, as in NATS training): after
                the generator, `refine_steps` steps x ← clip(x + refine_step_size · ∇_x D(x), −1, 1). Needs
                the `discriminator` component; 0 = one forward pass of the generator only.
            refine_step_size (`float`, defaults to 0.25):
                The step size of each refinement step.
            output_type (`str`, defaults to `"pil"`):
                `"pil"` (list of `PIL.Image.Image`), `"np"` (float32 array `(batch_size, H, W, C)` in [0, 1])
                or `"pt"` (float32 tensor `(batch_size, C, H, W)` in [0, 1] on the execution device).
            return_dict (`bool`, defaults to `True`):
                Return an [`ImagePipelineOutput`] rather than a tuple.

        Examples:

        Returns:
            [`ImagePipelineOutput`] or `tuple`: the images, as `output.images` or the tuple's first element.

        The models run in eval mode whatever mode they are in (each is restored after the call), so
        BatchNorm normalises with its running statistics: an image does not depend on the rest of its batch,
        and a call never changes the models' buffers. Latents are drawn in float32 and then cast to the
        generator's dtype, so a float16 pipeline sees the same latents as a float32 one for the same seed.
        """
        self.check_inputs(
            batch_size, generator, latents, truncation, output_type, refine_steps, refine_step_size
        )
        device = self._execution_device
        if latents is None:
            latents = randn_tensor(
                (batch_size, self.gan.config.latent_dim),
                generator=generator,
                device=device,
                dtype=torch.float32,
            )
        labels = self.prepare_class_labels(class_labels, batch_size, generator, device)
        latents = (truncation * latents.to(device=device, dtype=torch.float32)).to(self.gan.dtype)

        with _eval_mode(self.gan, self.discriminator):
            images = self.gan(latents) if labels is None else self.gan(latents, labels)
            if refine_steps:
                images = self.refine(images, labels, refine_steps, refine_step_size)
        images = self.image_processor.postprocess(images.float(), output_type=output_type)
        self.maybe_free_model_hooks()

        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)

    def refine(
        self, images: torch.Tensor, class_labels: torch.Tensor | None, num_steps: int, step_size: float
    ) -> torch.Tensor:
        """`num_steps` steps x ← clip(x + step_size · ∇_x D(x), −1, 1) on images in [−1, 1] (the same steps
        as `smart_hf.nats.refine_samples` with unit weights and clip (−1, 1); repeated here so that this file
        runs without smart_hf)."""
        x = images.detach().to(self.discriminator.dtype)
        for _ in range(num_steps):
            with torch.enable_grad():
                x = x.requires_grad_(True)
                logits = (
                    self.discriminator(x) if class_labels is None else self.discriminator(x, class_labels)
                )
                (gradient,) = torch.autograd.grad(logits.float().sum(), x)
            x = (x + step_size * gradient.to(x.dtype)).detach().clamp(-1, 1)
        return x

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str | None = None,
        push_to_hub: bool = False,
        **kwargs,
    ) -> None:
        r"""
        Save the pipeline as a folder that loads anywhere diffusers is installed.

        diffusers' `save_pretrained` writes each model's config and weights (safetensors only here), and a
        `model_index.json` naming this class and the models' modules, which
        `DiffusionPipeline.from_pretrained` cannot resolve and which nothing loads without smart_hf. So this
        method also copies this file as `pipeline.py` and each model's source file beside its weights, and
        rewrites `model_index.json` to point at them: `{"_class_name": ["pipeline", "SmartOneStepPipeline"],
        "gan": ["<module>", "<Class>"]}`, plus `_smart_hf_library`, the smart_hf class of each component (for
        `SmartOneStepPipeline.from_pretrained`, which runs no code from the folder). The folder loads with
        `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`, also after a Hub push
        (`push_to_hub`, here or as `pipe.push_to_hub(repo_id)`), and a pipeline loaded that way saves a
        complete folder again. A model whose source file imports more than `REMOTE_CODE_IMPORTS` and the
        standard library is refused before anything is written.

        Args:
            save_directory (`str` or `os.PathLike`): The folder to write; created if missing.
            safe_serialization (`bool`, defaults to `True`): Must be `True`: only safetensors are written.
            variant (`str`, *optional*): Weights saved as `diffusion_pytorch_model.<variant>.safetensors`.
            max_shard_size (`int` or `str`, *optional*): Shard weights larger than this.
            push_to_hub (`bool`, defaults to `False`): Then push the folder's files to the Hub with
                `push_to_hub`; `repo_id` (default: the folder's name) and the other keyword arguments go
                there.
        """
        if not safe_serialization:
            raise ValueError(
                f"{type(self).__name__} saves safetensors weights only (`safe_serialization=True`): pickled "
                "weights can run code when loaded."
            )
        models = {name: model for name, model in self.components.items() if model is not None}
        sources = {name: remote_code_source(type(model)) for name, model in models.items()}
        pipeline_source = remote_code_source(type(self))
        super().save_pretrained(save_directory, variant=variant, max_shard_size=max_shard_size)

        index_path = os.path.join(save_directory, self.config_name)
        model_index = _config_without_origin(index_path)
        model_index["_class_name"] = ["pipeline", type(self).__name__]
        library = {}
        for name in [key for key in model_index if not key.startswith("_")]:
            if name not in models:  # an optional component that is None: loads as None when absent
                del model_index[name]
                continue
            model_class, source = type(models[name]), sources[name]
            config_path = os.path.join(save_directory, name, model_class.config_name)
            _write_config(config_path, _config_without_origin(config_path))
            shutil.copyfile(source, os.path.join(save_directory, name, os.path.basename(source)))
            model_index[name] = [os.path.splitext(os.path.basename(source))[0], model_class.__name__]
            if model_class.__module__.startswith("smart_hf."):
                library[name] = [model_class.__module__, model_class.__name__]
        if library:
            model_index["_smart_hf_library"] = library
        _write_config(index_path, model_index)
        shutil.copyfile(pipeline_source, os.path.join(save_directory, "pipeline.py"))

        if push_to_hub:
            repo_id = kwargs.pop("repo_id", os.path.basename(os.path.normpath(save_directory)))
            self.push_to_hub(repo_id, variant=variant, **kwargs)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs
    ) -> "SmartOneStepPipeline":
        r"""
        Load a folder written by `save_pretrained` (a local folder or a Hub id) with this class, without
        running code from it.

        `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` imports the copies of the pipeline
        and model code that the folder ships. Called on this class, the pipeline is this class and each
        component is built by the smart_hf class that `model_index.json` records under `_smart_hf_library`,
        so this path needs the smart_hf library. Only configs and safetensors weights are read (a Hub
        repository's code and other files are not even downloaded). Unlike diffusers, which ignores unknown
        config keys with a warning, a component config with keys its class does not take is refused: a typo
        such as `num_class` would otherwise silently build a different model.

        Keyword arguments, as for `DiffusionPipeline.from_pretrained`:
            dtype (`torch.dtype` or `dict`): The components' dtype, or one per component name with an
                optional `"default"` (float32 for the others). `torch_dtype` is its deprecated spelling.
            variant (`str`): Load `diffusion_pytorch_model.<variant>.safetensors` where a component has it
                (the others load their default weights); a variant that no component has raises a
                `ValueError`.
            device_map (`str` or `torch.device`): The device to load every component on, e.g. `"cuda"`.
                diffusers' `"balanced"` strategy, which spreads a pipeline over several accelerators, is not
                supported: the models of a one-step GAN fit on one.
            use_safetensors (`bool`): `None` or `True`; `False` is refused (it would read pickles).
            low_cpu_mem_usage, disable_mmap: Passed to each model's `from_pretrained`.
            cache_dir, force_download, local_files_only, token, revision: For a Hub id.
            components by name: e.g. `gan=...`, or `discriminator=None` to leave one out.
        `trust_remote_code` is accepted and has no effect here.
        """
        kwargs.pop("trust_remote_code", None)
        component_names, _ = cls._get_signature_keys(cls)
        components = {name: kwargs.pop(name) for name in component_names if name in kwargs}
        dtype = _resolve_dtype(kwargs.pop("dtype", None), kwargs.pop("torch_dtype", None))
        variant = kwargs.pop("variant", None)
        device_map = _check_device_map(kwargs.pop("device_map", None))
        if kwargs.pop("use_safetensors", None) is False:
            raise ValueError(
                f"{cls.__name__} loads safetensors weights only; `use_safetensors=False` would read pickles."
            )
        unexpected = sorted(set(kwargs) - set(_HUB_KWARGS) - set(_MODEL_KWARGS))
        if unexpected:
            raise ValueError(
                f"Unexpected keyword arguments for {cls.__name__}.from_pretrained: {unexpected}."
            )
        hub_kwargs = {key: value for key, value in kwargs.items() if key in _HUB_KWARGS}
        model_kwargs = {key: value for key, value in kwargs.items() if key in _MODEL_KWARGS}
        path = os.fspath(pretrained_model_name_or_path)
        folder = (
            path
            if os.path.isdir(path)
            else snapshot_download(path, allow_patterns=_HUB_ALLOW_PATTERNS, **hub_kwargs)
        )

        library_classes = cls._library_classes(folder)
        variants = _component_variants(folder, library_classes, variant)
        for name, (module_name, class_name) in library_classes.items():
            if name in components:
                continue
            model_class = cls._import_library_class(module_name, class_name)
            config = model_class.load_config(folder, subfolder=name)
            accepted = inspect.signature(model_class.__init__).parameters
            unknown = sorted(key for key in config if not key.startswith("_") and key not in accepted)
            if unknown:
                raise ValueError(
                    f"{name}/config.json in {path} has keys that {class_name} does not take: {unknown}. "
                    "Fix or remove them (diffusers would ignore them and build a different model)."
                )
            if isinstance(dtype, dict):  # as diffusers: a dtype by name, else the default one, else float32
                component_dtype = dtype.get(name, dtype.get("default", torch.float32))
            else:
                component_dtype = dtype
            components[name] = model_class.from_pretrained(
                folder,
                subfolder=name,
                dtype=component_dtype,
                variant=variants.get(name),
                device_map=device_map,
                use_safetensors=True,
                **model_kwargs,
            )
        pipeline = cls(**components)
        pipeline.register_to_config(_name_or_path=path)
        if device_map is not None:
            pipeline.hf_device_map = device_map  # as diffusers records it
        return pipeline

    @classmethod
    def from_pipe(cls, pipeline: DiffusionPipeline, **kwargs) -> "SmartOneStepPipeline":
        """A pipeline sharing `pipeline`'s models (no copy), as `DiffusionPipeline.from_pipe`.

        diffusers carries a model over only when its class is exactly the type annotated in `__init__`
        (`ModelMixin` here, while generators are subclasses of it), so the components are passed by name.
        """
        component_names, _ = cls._get_signature_keys(cls)
        components = {
            name: component
            for name, component in pipeline.components.items()
            if name in component_names and name not in kwargs
        }
        return super().from_pipe(pipeline, **components, **kwargs)

    @classmethod
    def _library_classes(cls, folder: str) -> dict[str, list[str]]:
        """`_smart_hf_library` of the folder's model_index.json, once the folder is known to be one this
        class saved."""
        if not os.path.isfile(os.path.join(folder, cls.config_name)):
            raise ValueError(
                f"{folder} is not a smart_hf export: it has no {cls.config_name}. Save a pipeline with "
                "`save_pretrained`, or export a generator with `smart_hf.hub.export_pipeline` or "
                "`smart-hf export`."
            )
        model_index = cls.load_config(folder)
        class_name = model_index.get("_class_name")
        if class_name != ["pipeline", cls.__name__]:
            raise ValueError(
                f"{folder} is not a {cls.__name__} export: its {cls.config_name} names {class_name!r}, "
                f"expected {['pipeline', cls.__name__]} (as `{cls.__name__}.save_pretrained`, "
                "`smart_hf.hub.export_pipeline` and `smart-hf export` write)."
            )
        library_classes = model_index.get("_smart_hf_library")
        if not isinstance(library_classes, dict) or not library_classes:
            raise ValueError(
                f"{folder} has no `_smart_hf_library` entry in {cls.config_name}, so its component classes "
                "are unknown (it was saved without smart_hf); load it with "
                "DiffusionPipeline.from_pretrained(..., trust_remote_code=True)."
            )
        return library_classes

    @staticmethod
    def _import_library_class(module_name: str, class_name: str) -> type[ModelMixin]:
        if not module_name.startswith("smart_hf."):
            raise ValueError(
                f"Refusing to import {module_name!r}: components must be smart_hf model classes."
            )
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ValueError(
                f"This export's {class_name} comes from {module_name}, which is not importable: install "
                "smart_hf, or load the code shipped in the export with "
                "DiffusionPipeline.from_pretrained(..., trust_remote_code=True)."
            ) from error
        model_class = getattr(module, class_name, None)
        if not (isinstance(model_class, type) and issubclass(model_class, ModelMixin)):
            raise ValueError(f"{module_name} has no model class {class_name!r}.")
        return model_class


@contextlib.contextmanager
def _eval_mode(*models: torch.nn.Module | None) -> Iterator[None]:
    """Run `models` in eval mode, then restore each one's mode: a generator shared with a training loop keeps
    training afterwards, but inside, BatchNorm uses its running statistics and leaves them unchanged."""
    modes = [(model, model.training) for model in models if model is not None]
    for model, _ in modes:
        model.eval()
    try:
        yield
    finally:
        for model, training in modes:
            model.train(training)


def remote_code_source(cls: type) -> str:
    """The file defining `cls`, refused unless it runs as remote code where only diffusers is installed: no
    relative imports, no imports beyond `REMOTE_CODE_IMPORTS` and the standard library (e.g. not smart_hf)."""
    source = inspect.getsourcefile(cls)
    if source is None:
        raise ValueError(f"{cls.__name__} has no source file to save beside its weights.")
    with open(source) as file:
        tree = ast.parse(file.read(), filename=source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise ValueError(
                f"{source} (which defines {cls.__name__}) uses a relative import; files saved as remote code "
                "must be self-contained."
            )
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        names += [node.module] if isinstance(node, ast.ImportFrom) else []
        for name in names:
            top = name.split(".")[0]
            if top not in REMOTE_CODE_IMPORTS and top not in sys.stdlib_module_names:
                raise ValueError(
                    f"{source} (which defines {cls.__name__}) imports {name}; files saved as remote code may "
                    f"import only {', '.join(REMOTE_CODE_IMPORTS)} and the standard library."
                )
    return source


def _config_without_origin(path: str) -> dict:
    """A saved config without `_name_or_path`, which diffusers writes when the pipeline or model was loaded:
    where it was loaded from, a local path that means nothing in the saved folder (or on the Hub)."""
    with open(path) as file:
        config = json.load(file)
    config.pop("_name_or_path", None)
    return config


def _write_config(path: str, config: dict) -> None:
    with open(path, "w") as file:
        file.write(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _resolve_dtype(
    dtype: torch.dtype | dict[str, torch.dtype] | None, torch_dtype: torch.dtype | None
) -> torch.dtype | dict[str, torch.dtype] | None:
    """`dtype`, or the deprecated `torch_dtype` with diffusers' warning; refuses both or a non-dtype."""
    if torch_dtype is not None:
        if dtype is not None:
            raise ValueError("Pass `dtype` only: `torch_dtype` is its deprecated spelling.")
        warnings.warn("`torch_dtype` is deprecated; use `dtype`.", FutureWarning, stacklevel=3)
        dtype = torch_dtype
    values = dtype.values() if isinstance(dtype, dict) else [dtype]
    if not all(value is None or isinstance(value, torch.dtype) for value in values):
        raise ValueError(f"`dtype` must be a torch.dtype or a dict of them by component name, got {dtype!r}.")
    return dtype


def _check_device_map(device_map: str | torch.device | None) -> str | torch.device | None:
    if device_map is None:
        return None
    try:
        torch.device(device_map)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"`device_map` must be a device such as 'cpu' or 'cuda', got {device_map!r} (diffusers' "
            "'balanced' strategy is not supported: the models of a one-step GAN fit on one device)."
        ) from error
    return device_map


def _component_variants(folder: str, library_classes: dict, variant: str | None) -> dict[str, str]:
    """The components whose folder holds `variant` weights (`diffusion_pytorch_model.<variant>.safetensors`
    or its shards); as in diffusers, a variant that none has is an error."""
    if variant is None:
        return {}
    pattern = re.compile(rf"diffusion_pytorch_model\.{re.escape(variant)}[.-].*safetensors")
    variants = {
        name: variant
        for name in library_classes
        if os.path.isdir(os.path.join(folder, name))
        and any(pattern.fullmatch(file) for file in os.listdir(os.path.join(folder, name)))
    }
    if not variants:
        raise ValueError(
            f"You are trying to load the model files of the `variant={variant}`, but no such modeling files "
            f"are available in {folder}."
        )
    return variants
