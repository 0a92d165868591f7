"""Predict-and-renoise sampling: each step keeps only the model's x0 prediction and noises it afresh to the next
level ("naive sampling", Bansal et al. 2022, "Cold Diffusion", Alg. 1; the member of the DDIM family with the
largest step variance, σ_t² = 1 − ᾱ_s):

    x_s = √ᾱ_s · x̂0 + √(1 − ᾱ_s) · z,   z ~ N(0, I),   s = the previous respaced timestep.

Unlike DDPM's posterior q(x_s | x_t, x̂0), the next latent does not carry x_t's noise forward, so a word the
model was unsure of at step t is re-decided at step s from the whole sentence's new prediction, the way
mask-predict decoders re-decide their least certain tokens. On a model that classifies x0 (x̂0 = softmax(logits)·E)
it writes far more fluent text than DDPM at the same steps (docs/RESULTS.md, issue 11).
Notation: alpha_bar_prev -> ᾱ_s (1 after the last step, where the step returns x̂0).
"""

from __future__ import annotations

import math

import torch

from .base import Sampler, SamplerOutput


class RenoiseSampler(Sampler):
    """x_s ~ q(x_s | x̂0): forget x_t except through the model's prediction of x0."""

    def step(
        self,
        pred_x0: torch.Tensor,
        t: int,
        sample: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        prev = self.previous_timestep(int(t))
        if prev < 0:
            return SamplerOutput(prev_sample=pred_x0, mean=pred_x0, std=0.0)
        alpha_bar_prev = self.alpha_bar(prev)
        mean = math.sqrt(alpha_bar_prev) * pred_x0
        std = math.sqrt(1.0 - alpha_bar_prev)
        return SamplerOutput(prev_sample=mean + std * self.epsilon(sample, generator, noise), mean=mean, std=std)
