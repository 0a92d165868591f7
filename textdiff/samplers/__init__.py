"""Reverse-process samplers, one algorithm per class, all with the `Sampler` contract."""

from .base import Sampler, SamplerOutput
from .ddim import DDIMSampler
from .ddpm import DDPMSampler
from .dpm_solver import DPMSolverSampler
from .renoise import RenoiseSampler

SAMPLERS: dict[str, type[Sampler]] = {
    "ddpm": DDPMSampler,
    "ddim": DDIMSampler,
    "dpm-solver++": DPMSolverSampler,
    "renoise": RenoiseSampler,
}

__all__ = ["SAMPLERS", "DDIMSampler", "DDPMSampler", "DPMSolverSampler", "RenoiseSampler", "Sampler", "SamplerOutput"]
