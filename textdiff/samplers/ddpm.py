"""Ancestral sampling (Ho et al. 2020) on a respaced subsequence of timesteps (Nichol & Dhariwal 2021, §4),
as Diffusion-LM decodes. The model predicts x0 directly, so each step samples the forward-process posterior

    q(x_s | x_t, x̂0) = N(μ̃, σ̃² I),   s = the previous timestep in the respaced sequence,
    μ̃ = √ᾱ_s β'_t / (1 − ᾱ_t) · x̂0 + √α'_t (1 − ᾱ_s) / (1 − ᾱ_t) · x_t,
    σ̃² = β'_t (1 − ᾱ_s) / (1 − ᾱ_t),   α'_t = ᾱ_t / ᾱ_s,   β'_t = 1 − α'_t.

Notation: alpha_bar_t -> ᾱ_t, alpha_bar_prev -> ᾱ_s (1 after the last step, where the step returns x̂0).
"""

from __future__ import annotations

import math

import torch

from .base import Sampler, SamplerOutput


class DDPMSampler(Sampler):
    """Ancestral DDPM sampling with the posterior ("fixed small") variance."""

    def variance(self, t: int) -> float:
        """σ̃_t² = β_t (1 − ᾱ_s) / (1 − ᾱ_t), the posterior variance of the step from t (0 for the last step)."""
        alpha_bar_t, alpha_bar_prev = self.alpha_bar(t), self.alpha_bar(self.previous_timestep(t))
        return (1.0 - alpha_bar_t / alpha_bar_prev) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t)

    def draws_noise(self, t: int) -> bool:
        return self.previous_timestep(int(t)) >= 0 and self.variance(int(t)) > 0

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
        prev = self.previous_timestep(t)
        alpha_bar_t, alpha_bar_prev = self.alpha_bar(t), self.alpha_bar(prev)
        alpha_t = alpha_bar_t / alpha_bar_prev
        beta_t = 1.0 - alpha_t

        # 1. Posterior mean μ̃(x_t, x̂0).
        coef_x0 = math.sqrt(alpha_bar_prev) * beta_t / (1.0 - alpha_bar_t)
        coef_xt = math.sqrt(alpha_t) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t)
        mean = coef_x0 * pred_x0 + coef_xt * sample

        # 2. Add σ̃ ε, except on the last step.
        if not self.draws_noise(t):
            return SamplerOutput(prev_sample=mean, mean=mean, std=0.0)
        std = math.sqrt(self.variance(t))
        return SamplerOutput(prev_sample=mean + std * self.epsilon(sample, generator, noise), mean=mean, std=std)
