"""Samplers for score models as diffusers schedulers: annealed Langevin and consistent annealed sampling."""

from smart_hf.schedulers.scheduling_annealed import (
    AnnealedLangevinScheduler,
    AnnealedSchedulerOutput,
    AnnealedScoreScheduler,
    ConsistentAnnealedSamplingScheduler,
)

__all__ = [
    "AnnealedLangevinScheduler",
    "AnnealedSchedulerOutput",
    "AnnealedScoreScheduler",
    "ConsistentAnnealedSamplingScheduler",
]
