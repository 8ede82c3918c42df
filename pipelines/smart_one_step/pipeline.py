"""`SmartOneStepPipeline`: images from a GAN generator in one forward pass, no denoising loop.

This file is the single source of truth for the pipeline: smart_hf installs it as
`smart_hf.pipelines.smart_one_step.pipeline`, and `smart_hf.hub.export_pipeline` copies it verbatim to the
root of exported folders, where `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` runs it
without smart_hf. It therefore imports only torch, diffusers and the standard library.
"""

import importlib
import inspect
import math
import os

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.image_processor import VaeImageProcessor
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils.torch_utils import randn_tensor

OUTPUT_TYPES = ("pil", "np", "pt")
GENERATOR_CONFIG_FIELDS = ("latent_dim", "out_channels", "resolution", "num_classes")
DISCRIMINATOR_CONFIG_FIELDS = ("in_channels", "resolution", "num_classes")
# Keyword arguments of `SmartOneStepPipeline.from_pretrained`, besides components passed by name.
_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision")
_MODEL_KWARGS = (*_HUB_KWARGS, "torch_dtype", "variant", "low_cpu_mem_usage")


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
                Makes generation deterministic; a list gives one generator per image.
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

        Returns:
            [`ImagePipelineOutput`] or `tuple`: the images, as `output.images` or the tuple's first element.

        Latents are drawn in float32 and then cast to the generator's dtype, so a float16 pipeline sees the
        same latents as a float32 one for the same seed.
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

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs
    ) -> "SmartOneStepPipeline":
        r"""
        Load a smart_hf export (a local folder or a Hub id) with this class, without running code from it.

        `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` imports the copies of the pipeline
        and model code that the export ships. Called on this class, the pipeline is this class and each
        component is built by the smart_hf class that `model_index.json` records under `_smart_hf_library`,
        so this path needs the smart_hf library. Only safetensors weights are read. Unlike diffusers, which
        ignores unknown config keys with a warning, a component config with keys its class does not take is
        refused: a typo such as `num_class` would otherwise silently build a different model.

        Keyword arguments: `torch_dtype`, `variant`, `low_cpu_mem_usage`, the Hub arguments (`cache_dir`,
        `force_download`, `proxies`, `local_files_only`, `token`, `revision`), and components by name
        (`gan=...`) to use instead of loading them. `trust_remote_code` is accepted and has no effect here.
        """
        kwargs.pop("trust_remote_code", None)
        component_names = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
        components = {name: kwargs.pop(name) for name in component_names if name in kwargs}
        unexpected = sorted(set(kwargs) - set(_MODEL_KWARGS))
        if unexpected:
            raise ValueError(
                f"Unexpected keyword arguments for {cls.__name__}.from_pretrained: {unexpected}."
            )
        hub_kwargs = {key: value for key, value in kwargs.items() if key in _HUB_KWARGS}
        path = os.fspath(pretrained_model_name_or_path)

        library_classes = cls._library_classes(path, hub_kwargs)
        for name, (module_name, class_name) in library_classes.items():
            if name in components:
                continue
            model_class = cls._import_library_class(module_name, class_name)
            config = model_class.load_config(path, subfolder=name, **hub_kwargs)
            accepted = inspect.signature(model_class.__init__).parameters
            unknown = sorted(key for key in config if not key.startswith("_") and key not in accepted)
            if unknown:
                raise ValueError(
                    f"{name}/config.json in {path} has keys that {class_name} does not take: {unknown}. "
                    "Fix or remove them (diffusers would ignore them and build a different model)."
                )
            components[name] = model_class.from_pretrained(
                path, subfolder=name, use_safetensors=True, **kwargs
            )
        pipeline = cls(**components)
        pipeline.register_to_config(_name_or_path=path)
        return pipeline

    @classmethod
    def _library_classes(cls, path: str, hub_kwargs: dict) -> dict[str, list[str]]:
        """`_smart_hf_library` of the export's model_index.json, once the folder is known to be an export."""
        if os.path.isdir(path) and not os.path.isfile(os.path.join(path, cls.config_name)):
            raise ValueError(
                f"{path} is not a smart_hf export: it has no {cls.config_name}. Export a generator with "
                "`smart_hf.hub.export_pipeline` or `smart-hf export`."
            )
        model_index = cls.load_config(path, **hub_kwargs)
        class_name = model_index.get("_class_name")
        if class_name != ["pipeline", cls.__name__]:
            raise ValueError(
                f"{path} is not a {cls.__name__} export: its {cls.config_name} names {class_name!r}, "
                f"expected {['pipeline', cls.__name__]} (`save_pretrained` does not write exports; "
                "`smart_hf.hub.export_pipeline` and `smart-hf export` do)."
            )
        library_classes = model_index.get("_smart_hf_library")
        if not isinstance(library_classes, dict) or not library_classes:
            raise ValueError(
                f"{path} has no `_smart_hf_library` entry in {cls.config_name}, so its component classes are "
                "unknown; re-export it with smart_hf, or load it with DiffusionPipeline.from_pretrained(..., "
                "trust_remote_code=True)."
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
