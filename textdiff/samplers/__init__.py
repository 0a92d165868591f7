"""Reverse-process samplers, one algorithm per class, all with the `Sampler` contract."""

from .base import Sampler, SamplerOutput
from .ddpm import DDPMSampler

SAMPLERS: dict[str, type[Sampler]] = {"ddpm": DDPMSampler}

__all__ = ["SAMPLERS", "DDPMSampler", "Sampler", "SamplerOutput"]
