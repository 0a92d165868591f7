"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
Models", Alg. 2) with x0 ("data") prediction: a second-order multistep solver of the diffusion ODE in
λ = log(α/σ), where α_t = √ᾱ_t and σ_t = √(1 − ᾱ_t).

Step from t to s (h = λ_s − λ_t), with D the x0 estimate:
    first step:   D = x̂0_t
    later steps:  D = (1 + 1/(2r)) · x̂0_t − 1/(2r) · x̂0_{t'},   r = h' / h,  h' = λ_t − λ_{t'} (t' = the step before)
    x_s = (σ_s / σ_t) · x_t − α_s · (e^{−h} − 1) · D
The final step (to clean data, σ_s = 0) returns x̂0_t ("lower order final"). Deterministic: no generator used.
"""

from __future__ import annotations

import math

import torch

from ..schedules import NoiseSchedule
from ..time_warping import TimeWarping
from .base import Sampler, SamplerOutput


class DPMSolverSampler(Sampler):
    """DPM-Solver++(2M), x0 prediction."""

    unrollable = False  # each step reads the one before it (self._previous)

    def __init__(self, schedule: NoiseSchedule) -> None:
        super().__init__(schedule)
        self._previous: tuple[float, torch.Tensor] | None = None  # (λ_t', x̂0_t') of the step before

    def draws_noise(self, t: int) -> bool:
        return False

    def set_timesteps(
        self, num_inference_steps: int, min_timestep: int = 0, warping: TimeWarping | None = None
    ) -> None:
        super().set_timesteps(num_inference_steps, min_timestep, warping)
        self._previous = None

    def _lambda(self, t: int) -> float:
        alpha_bar = self.alpha_bar(t)
        return 0.5 * math.log(alpha_bar / (1 - alpha_bar))

    def step(
        self,
        pred_x0: torch.Tensor,
        t: int,
        sample: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        t = int(t)
        if t == int(self.timesteps[0]):
            self._previous = None  # a new trajectory
        prev = self.previous_timestep(t)
        if prev < 0:
            self._previous = None
            return SamplerOutput(prev_sample=pred_x0, mean=pred_x0, std=0.0)
        lambda_t, lambda_s = self._lambda(t), self._lambda(prev)
        alpha_s = math.sqrt(self.alpha_bar(prev))
        sigma_t, sigma_s = math.sqrt(1 - self.alpha_bar(t)), math.sqrt(1 - self.alpha_bar(prev))
        h = lambda_s - lambda_t

        # 1. The x0 estimate: first order on the first step, a linear extrapolation in λ afterwards.
        estimate = pred_x0
        if self._previous is not None:
            lambda_before, pred_before = self._previous
            r = (lambda_t - lambda_before) / h
            estimate = (1 + 1 / (2 * r)) * pred_x0 - (1 / (2 * r)) * pred_before
        self._previous = (lambda_t, pred_x0)

        # 2. The exponential-integrator update.
        prev_sample = (sigma_s / sigma_t) * sample - alpha_s * math.expm1(-h) * estimate
        return SamplerOutput(prev_sample=prev_sample, mean=prev_sample, std=0.0)
