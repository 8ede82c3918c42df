"""Hub-facing pipelines, installed as `smart_hf.pipelines` (see `package-dir` in pyproject.toml).

Each `<name>/pipeline.py` is also copied verbatim to the root of exported Hub folders, where diffusers runs it
without smart_hf, so it imports only torch, diffusers, numpy, PIL and the standard library.
"""

from .smart_one_step.pipeline import SmartOneStepPipeline

__all__ = ["SmartOneStepPipeline"]
