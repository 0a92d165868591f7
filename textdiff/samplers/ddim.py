"""DDIM (Song, Meng, Ermon 2021, "Denoising Diffusion Implicit Models", eq. 12) with an x0-predicting model.

    ε̂   = (x_t − √ᾱ_t · x̂0) / √(1 − ᾱ_t)                     (the noise implied by the prediction)
    σ_t = η · √((1 − ᾱ_s) / (1 − ᾱ_t)) · √(1 − ᾱ_t / ᾱ_s)
    x_s = √ᾱ_s · x̂0 + √(1 − ᾱ_s − σ_t²) · ε̂ + σ_t · z

η = 0 is deterministic; η = 1 gives the DDPM posterior variance. s is the previous respaced timestep.
Notation: alpha_bar_t -> ᾱ_t, alpha_bar_prev -> ᾱ_s (1 after the last step, where x_s = x̂0).
"""

from __future__ import annotations

import math

import torch

from ..schedules import NoiseSchedule
from .base import Sampler, SamplerOutput


class DDIMSampler(Sampler):
    """DDIM with stochasticity η (0: deterministic, 1: DDPM's variance).

    Args:
        schedule: The training forward process.
        eta: η ≥ 0.
    """

    def __init__(self, schedule: NoiseSchedule, eta: float = 0.0) -> None:
        if eta < 0:
            raise ValueError(f"DDIM's eta must be non-negative, got {eta}.")
        super().__init__(schedule)
        self.eta = eta

    def variance(self, t: int) -> float:
        """σ_t² of the step from t."""
        alpha_bar_t, alpha_bar_prev = self.alpha_bar(t), self.alpha_bar(self.previous_timestep(t))
        return self.eta**2 * (1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev)

    def draws_noise(self, t: int) -> bool:
        return self.variance(int(t)) > 0

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
        alpha_bar_t, alpha_bar_prev = self.alpha_bar(t), self.alpha_bar(self.previous_timestep(t))

        # 1. The noise implied by x̂0.
        eps = (sample - math.sqrt(alpha_bar_t) * pred_x0) / math.sqrt(1 - alpha_bar_t)

        # 2. Direction to x_s and its noise.
        variance = self.variance(t)
        direction = math.sqrt(max(1 - alpha_bar_prev - variance, 0.0)) * eps
        mean = math.sqrt(alpha_bar_prev) * pred_x0 + direction
        std = math.sqrt(variance) if variance > 0 else 0.0
        prev_sample = mean + std * self.epsilon(sample, generator, noise) if std > 0 else mean
        return SamplerOutput(prev_sample=prev_sample, mean=mean, std=std)
