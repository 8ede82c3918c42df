"""Hub-facing pipelines, installed as `smart_hf.pipelines` (see `package-dir` in pyproject.toml).

Each pipeline lives in `<name>/pipeline.py`. `smart_one_step/pipeline.py` is also copied verbatim to the root
of exported Hub folders, where diffusers runs it without smart_hf, so it imports only torch, diffusers, numpy,
PIL and the standard library. `annealed_sampling/pipeline.py` samples with smart_hf's schedulers, so it
imports smart_hf and is not exported.
"""

from .annealed_sampling.pipeline import AnnealedSamplingPipeline
from .smart_one_step.pipeline import SmartOneStepPipeline

__all__ = ["AnnealedSamplingPipeline", "SmartOneStepPipeline"]
