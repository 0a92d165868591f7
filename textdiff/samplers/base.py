"""The contract every sampler follows (after diffusers' schedulers).

A sampler owns the reverse-step math of one algorithm and nothing else: it never calls the model. The decoding
loop asks it for `timesteps`, evaluates the denoiser at each, and hands the prediction of x0 to `step`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from ..schedules import NoiseSchedule
from ..time_warping import TimeWarping
from ..utils import randn_like


@dataclass
class SamplerOutput:
    """One reverse step.

    Attributes:
        prev_sample: (B, L, d) the latent at the next (less noisy) timestep.
        mean: (B, L, d) the deterministic part of the step, so that prev_sample = mean + std · ε.
        std: σ of the step's noise (0.0 for a deterministic step). Classifier guidance uses (mean, std) as the
            Gaussian p(x_s | x_t) of its fluency term.
    """

    prev_sample: torch.Tensor
    mean: torch.Tensor
    std: float


class Sampler(ABC):
    """A reverse process over a subsequence of the training timesteps.

    Args:
        schedule: The forward process the model was trained on (T steps).
    """

    # Whether `step` is a pure function of its arguments (no state carried from one step to the next), so that a
    # loop of steps can be traced into one compiled graph (`textdiff.compilation.CompiledForward.loop`).
    unrollable: bool = True

    def __init__(self, schedule: NoiseSchedule) -> None:
        self.schedule = schedule
        self.timesteps = torch.arange(schedule.num_steps - 1, -1, -1)

    def set_timesteps(
        self, num_inference_steps: int, min_timestep: int = 0, warping: TimeWarping | None = None
    ) -> None:
        """Choose `num_inference_steps` training timesteps from T−1 down to `min_timestep` (a model trained only
        from its `min_timestep` up is decoded on the steps it was trained on): evenly spaced (respacing), or, for a
        model trained with time warping, F⁻¹ of evenly spaced levels (`TimeWarping.timesteps`)."""
        total = self.schedule.num_steps
        if not 0 <= min_timestep < total:
            raise ValueError(f"min_timestep must be in [0, {total}), got {min_timestep}.")
        if not 1 <= num_inference_steps <= total - min_timestep:
            raise ValueError(
                f"num_inference_steps must be between 1 and the {total - min_timestep} training steps from "
                f"{min_timestep} to {total - 1}, got {num_inference_steps}."
            )
        if warping is not None:
            if (warping.num_steps, warping.min_timestep) != (total, min_timestep):
                raise ValueError(
                    f"The time warping covers [{warping.min_timestep}, {warping.num_steps}), the sampler "
                    f"[{min_timestep}, {total}); pass the warping of the model the sampler decodes."
                )
            self.timesteps = warping.timesteps(num_inference_steps)  # descending
            return
        spaced = torch.linspace(min_timestep, total - 1, num_inference_steps, dtype=torch.float64).round().long()
        self.timesteps = spaced.flip(0)  # descending: T−1, …, 0

    def previous_timestep(self, t: int) -> int:
        """The timestep after t in `timesteps` (−1 after the last, meaning the clean data)."""
        table = self.__dict__.get("_previous_of")  # (timesteps, {t: the timestep after it}), made once per table
        if table is None or table[0] is not self.timesteps:
            steps = self.timesteps.tolist()
            table = self._previous_of = (self.timesteps, dict(zip(steps, steps[1:] + [-1])))
        previous = table[1].get(int(t))
        if previous is None:
            raise ValueError(f"Timestep {t} is not in this sampler's timesteps; call set_timesteps first.")
        return previous

    def alpha_bar(self, t: int) -> float:
        """ᾱ_t, with ᾱ_{−1} = 1 (from a Python copy of the table, made once: no tensor read per step)."""
        table = self.__dict__.get("_alpha_bars")
        if table is None or table[0] is not self.schedule:
            table = self._alpha_bars = (self.schedule, self.schedule.alphas_cumprod.tolist())
        return 1.0 if t < 0 else table[1][t]

    @staticmethod
    def epsilon(sample: torch.Tensor, generator: torch.Generator | None, noise: torch.Tensor | None) -> torch.Tensor:
        """A step's ε (B, L, d): the `noise` it was given, else one drawn from `generator` like `sample`."""
        return randn_like(sample, generator) if noise is None else noise

    def draws_noise(self, t: int) -> bool:
        """Whether the step from t draws an ε (the steps that do, in order, are what `step(noise=...)` takes)."""
        return self.previous_timestep(t) >= 0

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """Sample q(x_t | x0) = √ᾱ_t x0 + √(1 − ᾱ_t) ε. x0, noise: (B, L, d); t: int or (B,)."""
        t = torch.as_tensor(t).long().expand(x0.shape[0])
        return self.schedule.q_sample(x0, t, noise)

    @abstractmethod
    def step(
        self,
        pred_x0: torch.Tensor,
        t: int,
        sample: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        """Move `sample` = x_t (B, L, d) to the previous timestep, given the model's x0 prediction (B, L, d). A step
        that `draws_noise` takes its ε (B, L, d) as `noise`, else draws it from `generator`."""
