"""Noise schedules of the forward process q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I), as pure functions of t.

- "sqrt": Diffusion-LM (Li et al. 2022, §4.1), ᾱ(τ) = 1 − √(τ + s) with s = 1e-4. Noise rises fast over the
  first steps, which the paper found important for text: a small amount of Gaussian noise barely changes the
  nearest word.
- "cosine": Nichol & Dhariwal 2021, ᾱ(τ) = cos²((τ + 0.008) / 1.008 · π/2).
- "linear": Ho et al. 2020, β from 1e-4 to 0.02 (scaled by 1000 / T).

Every schedule is returned as its discrete betas β_0 … β_{T−1}; `NoiseSchedule` derives the rest.
Notation: alphas_cumprod[t] -> ᾱ_t, betas[t] -> β_t.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

MAX_BETA = 0.999


def betas_from_alpha_bar(alpha_bar: Callable[[float], float], num_steps: int) -> torch.Tensor:
    """β_i = 1 − ᾱ((i+1)/T) / ᾱ(i/T), clipped at 0.999 (improved-diffusion's `betas_for_alpha_bar`)."""
    betas = [min(1.0 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), MAX_BETA) for i in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float64)


def sqrt_betas(num_steps: int, offset: float = 1e-4) -> torch.Tensor:
    """Diffusion-LM's schedule: ᾱ(τ) = 1 − √(τ + s)."""
    return betas_from_alpha_bar(lambda tau: 1.0 - math.sqrt(tau + offset), num_steps)


def cosine_betas(num_steps: int, offset: float = 0.008) -> torch.Tensor:
    """Improved DDPM's schedule: ᾱ(τ) = cos²((τ + s) / (1 + s) · π/2)."""
    return betas_from_alpha_bar(lambda tau: math.cos((tau + offset) / (1 + offset) * math.pi / 2) ** 2, num_steps)


def linear_betas(num_steps: int) -> torch.Tensor:
    """DDPM's schedule: β linear from 1e-4 to 0.02, rescaled so that T steps add the same total noise as 1000."""
    scale = 1000 / num_steps
    return torch.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=torch.float64)


SCHEDULE_FUNCTIONS: dict[str, Callable[[int], torch.Tensor]] = {
    "sqrt": sqrt_betas,
    "cosine": cosine_betas,
    "linear": linear_betas,
}
SCHEDULES = tuple(SCHEDULE_FUNCTIONS)  # the registry's names, for configs and errors


@functools.lru_cache(maxsize=8)
def _betas(name: str, num_steps: int) -> torch.Tensor:
    """β of a named schedule, computed once per process (its Python loop over T steps costs ≈ 1 ms per call, a
    twentieth of an 8-step decoding at batch 1)."""
    return SCHEDULE_FUNCTIONS[name](num_steps)


@dataclass(frozen=True)
class NoiseSchedule:
    """The discrete forward process, with the quantities every sampler and loss needs (float64, shape (T,)).

    Attributes:
        betas: β_t.
        alphas_cumprod: ᾱ_t = Π_{s ≤ t} (1 − β_s).
    """

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor

    @classmethod
    def from_name(cls, name: str, num_steps: int) -> NoiseSchedule:
        if name not in SCHEDULE_FUNCTIONS:
            raise ValueError(f"Unknown noise schedule {name!r}; choose one of {sorted(SCHEDULE_FUNCTIONS)}.")
        if num_steps < 1:
            raise ValueError(f"num_diffusion_steps must be at least 1, got {num_steps}.")
        betas = _betas(name, num_steps).clone()  # a copy: a caller may change its tables in place
        return cls(betas=betas, alphas_cumprod=torch.cumprod(1.0 - betas, dim=0))

    def to(self, device: torch.device | str) -> NoiseSchedule:
        """The same schedule with its tables on `device` (so that gathering at t never copies them)."""
        return NoiseSchedule(betas=self.betas.to(device), alphas_cumprod=self.alphas_cumprod.to(device))

    @property
    def num_steps(self) -> int:
        return self.betas.shape[0]

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t · x0 + √(1 − ᾱ_t) · ε.

        Args:
            x0: (B, L, D) clean latents.
            t: (B,) integer timesteps in [0, T).
            noise: (B, L, D) standard Gaussian ε.
        """
        alpha_bar = self.gather(self.alphas_cumprod, t, x0)
        return alpha_bar.sqrt() * x0 + (1.0 - alpha_bar).sqrt() * noise

    @staticmethod
    def gather(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t] as a (B, 1, 1) tensor of `like`'s dtype and device, ready to broadcast over (B, L, D)."""
        out = values.to(like.device)[t.to(like.device)].to(like.dtype)
        return out.view(-1, *([1] * (like.dim() - 1)))
