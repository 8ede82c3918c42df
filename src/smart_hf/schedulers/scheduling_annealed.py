"""Annealed samplers on a ladder of noise levels, as diffusers schedulers for noise-prediction models.

From Jolicoeur-Martineau et al., "Adversarial score matching and improved sampling for image generation"
(ICLR 2021), on a decreasing ladder sigma_1 > ... > sigma_L:

- `AnnealedLangevinScheduler` (ALS, the NCSN baseline): `steps_per_level` Langevin steps per level,
  x ← x + alpha_i·score_i(x) + sqrt(2·alpha_i)·z with alpha_i = step_size·(sigma_i / sigma_L)².
- `ConsistentAnnealedSamplingScheduler` (CAS): one step per level, x ← x + eta·sigma_i²·score_i(x) with
  eta = step_size / sigma_L², then, except at the last level, x ← x + beta_i·sigma_{i+1}·z with
  gamma_i = sigma_{i+1} / sigma_i and beta_i = sqrt(1 − ((1 − eta) / gamma_i)²). The score step keeps a
  fraction 1 − eta of the noise (exactly so for a point mass), the fresh noise tops it up to std sigma_{i+1}:
  the sample's noise level follows the ladder whatever the step size, which ALS's does not.
- `use_eds` (both): the Expected Denoised Sample, one more evaluation at sigma_L that returns Tweedie's
  estimate x + sigma_L²·score_L(x) instead of the noisy sample.

The ladder is variance-exploding (VE), y = x0 + sigma·eps, while the models are variance-preserving (VP)
noise predictors trained on x_t = a_t·x0 + s_t·eps. The two describe the same sample: x_t = a_t·y with
sigma_t = s_t / a_t, and score(y) = −eps_hat(a_t·y, t) / sigma_t. The scheduler's `sample` is y:
`scale_model_input` returns the model's input a_t·y (as in `EulerDiscreteScheduler`), the initial sample is
`init_noise_sigma`·z = sigma_1·z, and the last sample lives in data space.

Each level is mapped to a timestep of the model (`timestep_mapping`):

- "interpolate" (default): the fractional timestep at which log sigma_t, linearly interpolated between the
  model's integer timesteps, equals log sigma_i. The ladder stays exactly geometric; the network is evaluated
  at non-integer timesteps, which `UNet2DModel` and `MLPNoisePredictor` accept (their timestep embeddings are
  continuous functions).
- "nearest": the integer timestep with the nearest log sigma_t, and the level becomes that sigma_t, so the
  network always sees a noise level it was trained at. The ladder is then only close to geometric: near t = 0
  the model's levels are sparse (sigma_0 = 0.010, sigma_1 = 0.015 for the DDPM linear schedule), so
  neighbouring levels may coincide. Score functions that take only integer timesteps (`GaussianMixtureScore`)
  need this mapping.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDPMScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

TIMESTEP_MAPPINGS = ("interpolate", "nearest")


@dataclass
class AnnealedSchedulerOutput(BaseOutput):
    """`prev_sample`: the sample after the step; `pred_original_sample`: Tweedie's denoised estimate
    x + sigma²·score(x) at the step's level."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class AnnealedScoreScheduler(SchedulerMixin, ConfigMixin):
    """The ladder, the VP → VE conversion and the EDS step shared by ALS and CAS.

    Subclasses register their config, call `_setup()` and implement `default_step_size` and `_update` (one
    step at one level).
    """

    _compatibles = ["DDPMScheduler", "DDIMScheduler"]
    order = 1

    def _setup(self) -> None:
        config = self.config
        if config.prediction_type != "epsilon":
            raise ValueError(
                f"{type(self).__name__} turns noise predictions into scores, so it needs prediction_type="
                f"'epsilon', got {config.prediction_type!r}. Train the model with --prediction_type epsilon."
            )
        if config.timestep_mapping not in TIMESTEP_MAPPINGS:
            raise ValueError(
                f"timestep_mapping must be one of {TIMESTEP_MAPPINGS}, got {config.timestep_mapping!r}."
            )
        if config.step_size is not None and not config.step_size > 0:
            raise ValueError(f"step_size must be > 0 (or None for the default), got {config.step_size}.")
        alphas_cumprod = DDPMScheduler(
            num_train_timesteps=config.num_train_timesteps,
            beta_start=config.beta_start,
            beta_end=config.beta_end,
            beta_schedule=config.beta_schedule,
            trained_betas=config.trained_betas,
        ).alphas_cumprod.double()
        self.alphas_cumprod = alphas_cumprod.float()
        # sigma_t = s_t / a_t of every training timestep, increasing with t.
        self.model_sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()
        self.sigma_max = float(self.model_sigmas[-1] if config.sigma_max is None else config.sigma_max)
        self.sigma_min = float(self.model_sigmas[0] if config.sigma_min is None else config.sigma_min)
        self._check_ladder(torch.tensor([self.sigma_max, self.sigma_min], dtype=torch.float64))

        self.num_inference_steps: int | None = None
        self.sigmas: torch.Tensor | None = None
        self.timesteps: torch.Tensor | None = None
        self.step_size: float | None = None
        self._ladder: list[float] = []
        self._levels: list[int] = []
        self._step_index = 0

    @property
    def steps_per_level(self) -> int:
        """Network evaluations per level."""
        return 1

    @property
    def init_noise_sigma(self) -> float:
        """Std of the initial Gaussian sample: the first level of the ladder."""
        return self._ladder[0] if self._ladder else self.sigma_max

    def _check_ladder(self, sigmas: torch.Tensor) -> None:
        if sigmas.ndim != 1 or len(sigmas) < 2:
            raise ValueError(f"A sigma ladder needs at least 2 levels, got {sigmas.tolist()}.")
        if not torch.all(sigmas[1:] < sigmas[:-1]):
            raise ValueError(
                "The sigma ladder must be strictly decreasing (sigma_max > ... > sigma_min), got "
                f"{[round(s, 6) for s in sigmas.tolist()]}."
            )
        low, high = self.model_sigmas[0].item(), self.model_sigmas[-1].item()
        # 0.1% of slack, so that round values such as sigma_min = 0.01 (0.0100005 for DDPM) are accepted.
        if sigmas[-1] < low * (1 - 1e-3) or sigmas[0] > high * (1 + 1e-3):
            raise ValueError(
                f"The sigma ladder ({sigmas[0]:.4g} down to {sigmas[-1]:.4g}) leaves the score model's noise "
                f"range [{low:.4g}, {high:.4g}] (sigma_t = sqrt((1 − alphā_t) / alphā_t) over its "
                f"{len(self.model_sigmas)} timesteps); choose levels inside it."
            )

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        sigmas: list[float] | torch.Tensor | None = None,
    ) -> None:
        """Build the ladder: `num_inference_steps` geometric levels from sigma_max to sigma_min, or `sigmas`.

        `timesteps` then holds one model timestep per network evaluation (`steps_per_level` per level, plus
        one for EDS); `sigmas` holds the levels.
        """
        if (num_inference_steps is None) == (sigmas is None):
            raise ValueError(
                "Pass either `num_inference_steps` (the number of levels of a geometric ladder from "
                "sigma_max to sigma_min) or `sigmas` (the levels), not both."
            )
        if sigmas is None:
            if num_inference_steps < 2:
                raise ValueError(f"A sigma ladder needs at least 2 levels, got {num_inference_steps}.")
            ladder = torch.linspace(
                math.log(self.sigma_max), math.log(self.sigma_min), num_inference_steps, dtype=torch.float64
            ).exp()
        else:
            ladder = torch.as_tensor(sigmas, dtype=torch.float64).cpu()
        self._check_ladder(ladder)
        ladder = ladder.clamp(self.model_sigmas[0], self.model_sigmas[-1])

        log_model_sigmas = self.model_sigmas.log()
        if self.config.timestep_mapping == "interpolate":
            positions = np.arange(len(log_model_sigmas), dtype=np.float64)
            level_timesteps = torch.from_numpy(
                np.interp(ladder.log().numpy(), log_model_sigmas.numpy(), positions)
            ).float()
        else:
            level_timesteps = (ladder.log()[:, None] - log_model_sigmas[None]).abs().argmin(dim=1)
            ladder = self.model_sigmas[level_timesteps]

        step_size = self.default_step_size(ladder) if self.config.step_size is None else self.config.step_size
        self._check_step_size(ladder, step_size)

        levels = torch.arange(len(ladder)).repeat_interleave(self.steps_per_level)
        if self.config.use_eds:
            levels = torch.cat([levels, levels[-1:]])
        self.num_inference_steps = len(ladder)
        self.sigmas = ladder.float()
        self.timesteps = level_timesteps[levels].to(device)
        self.step_size = step_size
        self._ladder = ladder.tolist()
        self._levels = levels.tolist()
        self._step_index = 0

    def default_step_size(self, ladder: torch.Tensor) -> float:
        """The step size used when the config has none."""
        raise NotImplementedError

    def _check_step_size(self, ladder: torch.Tensor, step_size: float) -> None:
        """Raise a `ValueError` when `step_size` is invalid for `ladder`; here any positive value is."""

    def _current_level(self, method: str) -> int:
        if not self._levels:
            raise ValueError(f"Call `set_timesteps` before `{method}`.")
        if self._step_index >= len(self._levels):
            raise ValueError(
                f"All {len(self._levels)} steps have been taken; call `set_timesteps` to sample again."
            )
        return self._levels[self._step_index]

    def scale_model_input(
        self, sample: torch.Tensor, timestep: float | torch.Tensor | None = None
    ) -> torch.Tensor:
        """The network's input a_t·y = y / sqrt(1 + sigma²) for the VE sample y at the current level."""
        sigma = self._ladder[self._current_level("scale_model_input")]
        return sample / math.sqrt(1 + sigma**2)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> AnnealedSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """One update of the VE sample from the network's noise prediction at `timestep`.

        Call it once per entry of `timesteps`, in order (ALS repeats each level's timestep).
        """
        level = self._current_level("step")
        expected = self.timesteps[self._step_index]
        if float(timestep) != float(expected):
            raise ValueError(
                f"Step {self._step_index} of {len(self._levels)} is at timestep {float(expected):.4f}, got "
                f"{float(timestep):.4f}: call `step` once per entry of `timesteps`, in order."
            )
        sigma = self._ladder[level]
        eps = model_output.to(sample.dtype)
        denoised = sample - sigma * eps  # y + sigma²·score(y), score(y) = −eps / sigma
        is_eds_step = self.config.use_eds and self._step_index == len(self._levels) - 1
        prev_sample = denoised if is_eds_step else self._update(sample, eps, level, generator)
        self._step_index += 1
        if not return_dict:
            return prev_sample, denoised
        return AnnealedSchedulerOutput(prev_sample=prev_sample, pred_original_sample=denoised)

    def _update(
        self, sample: torch.Tensor, eps: torch.Tensor, level: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        raise NotImplementedError

    def _noise(self, sample: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)

    def __len__(self) -> int:
        return self.config.num_train_timesteps


class ConsistentAnnealedSamplingScheduler(AnnealedScoreScheduler):
    """Consistent Annealed Sampling (CAS): one score step per level and exactly the noise that brings the
    sample to the next level.

    Args:
        num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas:
            The VP schedule the model was trained with, as in `DDPMScheduler` (so `from_config` of a
            `DDPMPipeline`'s scheduler gives it).
        prediction_type (`str`): must be "epsilon".
        sigma_max, sigma_min (`float`, *optional*):
            Ends of the geometric ladder; default: the model's noise range (sigma_t at t = T − 1 and t = 0).
        step_size (`float`, *optional*):
            The paper's epsilon; eta = step_size / sigma_L² is the fraction of the noise each step removes.
            Valid when sigma_L²·(1 − gamma) < step_size < sigma_L²·(1 + gamma), gamma the ladder's ratio
            sigma_{i+1} / sigma_i (its smallest, for a ladder that is not geometric). Default
            sigma_L²·(1 − gamma²), which makes each step the reverse-diffusion (ancestral) step between the
            two levels; the paper's CIFAR-10 setting (eta = 0.056 at gamma = 0.964) is close to it (0.071).
        use_eds (`bool`): end with the Expected Denoised Sample (one more network evaluation).
        timestep_mapping (`str`): "interpolate" or "nearest" (see the module docstring).
    """

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: np.ndarray | list[float] | None = None,
        prediction_type: str = "epsilon",
        sigma_max: float | None = None,
        sigma_min: float | None = None,
        step_size: float | None = None,
        use_eds: bool = False,
        timestep_mapping: str = "interpolate",
    ):
        self._setup()

    @property
    def eta(self) -> float:
        """step_size / sigma_L²: the fraction of the noise one score step removes."""
        return self.step_size / self._ladder[-1] ** 2

    def default_step_size(self, ladder: torch.Tensor) -> float:
        """sigma_L²·(1 − gamma²): a CAS step is then the reverse-diffusion (ancestral) step from sigma_i to
        sigma_{i+1}, x + (sigma_i² − sigma_{i+1}²)·score + sigma_{i+1}·sqrt(1 − gamma²)·z."""
        gamma = (ladder[1:] / ladder[:-1]).min().item()
        return ladder[-1].item() ** 2 * (1 - gamma**2)

    def _check_step_size(self, ladder: torch.Tensor, step_size: float) -> None:
        gamma = (ladder[1:] / ladder[:-1]).min().item()
        sigma_last = ladder[-1].item()
        low, high = sigma_last**2 * (1 - gamma), sigma_last**2 * (1 + gamma)
        if not low < step_size < high:
            raise ValueError(
                f"CAS needs sigma_L²·(1 − gamma) < step_size < sigma_L²·(1 + gamma), here ({low:.4g}, "
                f"{high:.4g}) with sigma_L = {sigma_last:.4g} and gamma = {gamma:.4g} (the ladder's smallest "
                f"sigma_(i+1) / sigma_i); got step_size = {step_size:.4g}. Outside that interval the noise "
                "to add is not real. A ladder with more levels (gamma closer to 1) admits smaller steps."
            )

    def _update(
        self, sample: torch.Tensor, eps: torch.Tensor, level: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        sigma, eta = self._ladder[level], self.eta
        sample = sample - eta * sigma * eps  # x + eta·sigma²·score
        if level == len(self._ladder) - 1:
            return sample
        sigma_next = self._ladder[level + 1]
        beta = math.sqrt(max(0.0, 1 - ((1 - eta) * sigma / sigma_next) ** 2))
        return sample + beta * sigma_next * self._noise(sample, generator)


class AnnealedLangevinScheduler(AnnealedScoreScheduler):
    """Annealed Langevin sampling (ALS, NCSN): `steps_per_level` Langevin steps at each level, with step
    alpha_i = step_size·(sigma_i / sigma_L)².

    Args:
        steps_per_level (`int`): Langevin steps at each level (NCSNv2 on CIFAR-10: 5).
        step_size (`float`, *optional*):
            The paper's epsilon, the step at the last level. Default 0.062·sigma_L², the ratio of NCSNv2's
            CIFAR-10 setting (6.2e-6 at sigma_L = 0.01).
        Other arguments: as for `ConsistentAnnealedSamplingScheduler`.
    """

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: np.ndarray | list[float] | None = None,
        prediction_type: str = "epsilon",
        sigma_max: float | None = None,
        sigma_min: float | None = None,
        step_size: float | None = None,
        steps_per_level: int = 5,
        use_eds: bool = False,
        timestep_mapping: str = "interpolate",
    ):
        if steps_per_level < 1:
            raise ValueError(f"steps_per_level must be >= 1, got {steps_per_level}.")
        self._setup()

    @property
    def steps_per_level(self) -> int:
        return self.config.steps_per_level

    def default_step_size(self, ladder: torch.Tensor) -> float:
        """0.062·sigma_L²: NCSNv2's CIFAR-10 setting, 6.2e-6 at sigma_L = 0.01."""
        return 0.062 * ladder[-1].item() ** 2

    def _update(
        self, sample: torch.Tensor, eps: torch.Tensor, level: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        sigma = self._ladder[level]
        alpha = self.step_size * (sigma / self._ladder[-1]) ** 2
        return sample - (alpha / sigma) * eps + math.sqrt(2 * alpha) * self._noise(sample, generator)
