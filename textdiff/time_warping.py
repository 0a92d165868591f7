"""Time warping (CDCD, Dieleman et al. 2022, §3.4): spend training and decoding on the noise levels where the
model's uncertainty about the words changes.

The denoiser's cross-entropy CE(t) rises from ≈ 0 (little noise: the latent already names its word) to the
entropy of the unigram distribution (pure noise: nothing is left of the word). Both ends teach little. CDCD fits
a monotone function to CE(t) during training, normalises it to a CDF F on [t_min, T), and draws t = F⁻¹(u) for u
spread evenly over the batch: the density of t is ∝ dCE/dt, highest where the task is neither solved nor hopeless.
Decoding walks the same warped timesteps, t_i = F⁻¹(u_i) for evenly spaced u_i.

Here F is piecewise linear over K equal bins of [t_min, T):

    c_k   = exponential moving average of the training cross-entropy of sequences with t in bin k
    m_k   = max(c_0 … c_k)                                        (monotone fit)
    Δ_k   = m_{k+1} − m_{k−1}   (ends clamped)                     (how much CE changes around bin k)
    p_k   = (1 − ε) · Δ_k / ΣΔ + ε / K                             (ε: a share kept uniform, so no level starves)
    F(e_k) = p_0 + … + p_{k−1},   e_k = t_min + k (T − t_min) / K,  linear inside a bin

Until every bin has been seen, and whenever CE has not yet risen anywhere, p is uniform (no warping).
"""

from __future__ import annotations

import torch
from torch import nn


class TimeWarping(nn.Module):
    """The learned distribution of training timesteps, F on [t_min, T), and its inverse.

    Its state (the per-bin cross-entropies and how many sequences each has seen) is a pair of buffers, so it is
    saved with the model, in checkpoints and in `model.safetensors`, and a reloaded model decodes on the same
    warped timesteps.

    Args:
        num_steps: T, the training schedule's number of steps.
        min_timestep: t_min, the smallest timestep trained on.
        num_bins: K.
        decay: EMA decay of each bin's cross-entropy, per batch that has sequences in the bin.
        uniform_share: ε, the share of the density kept uniform over [t_min, T).
    """

    def __init__(
        self,
        num_steps: int,
        min_timestep: int = 0,
        num_bins: int = 64,
        decay: float = 0.99,
        uniform_share: float = 0.1,
    ) -> None:
        super().__init__()
        if not 0 <= min_timestep < num_steps:
            raise ValueError(f"min_timestep must be in [0, num_steps={num_steps}), got {min_timestep}.")
        if num_bins < 1 or num_bins > num_steps - min_timestep:
            raise ValueError(f"num_bins must be between 1 and {num_steps - min_timestep}, got {num_bins}.")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}.")
        if not 0.0 < uniform_share <= 1.0:
            raise ValueError(f"uniform_share must be in (0, 1], got {uniform_share}.")
        self.num_steps, self.min_timestep, self.num_bins = num_steps, min_timestep, num_bins
        self.decay, self.uniform_share = decay, uniform_share
        self.register_buffer("cross_entropy", torch.zeros(num_bins))  # (K,) c_k
        self.register_buffer("counts", torch.zeros(num_bins))  # (K,) sequences seen per bin

    # --- fitting ---------------------------------------------------------------------------------------------

    @property
    def bin_width(self) -> float:
        """(T − t_min) / K timesteps."""
        return (self.num_steps - self.min_timestep) / self.num_bins

    def bins(self, t: torch.Tensor) -> torch.Tensor:
        """The bin of each timestep, (B,) -> (B,) in [0, K)."""
        return ((t.float() - self.min_timestep) / self.bin_width).floor().long().clamp(0, self.num_bins - 1)

    @torch.no_grad()
    def update(self, t: torch.Tensor, cross_entropy: torch.Tensor) -> None:
        """Fold one batch's losses into the fit.

        Args:
            t: (B,) the timesteps the batch was trained at.
            cross_entropy: (B,) each sequence's mean cross-entropy of its clean words at its t.

        Under torch.distributed every rank contributes (an all-reduce), so all ranks keep the same F.
        """
        index = self.bins(t).to(self.counts.device)
        sums = torch.zeros(self.num_bins, device=self.counts.device).index_add_(
            0, index, cross_entropy.detach().float().to(self.counts.device)
        )
        counts = torch.bincount(index, minlength=self.num_bins).float()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            both = torch.stack([sums, counts])
            torch.distributed.all_reduce(both)
            sums, counts = both[0], both[1]
        seen = counts > 0
        means = sums / counts.clamp(min=1)
        first = seen & (self.counts == 0)  # a bin's first batch replaces the initial value
        ema = self.decay * self.cross_entropy.float() + (1 - self.decay) * means
        updated = torch.where(first, means, torch.where(seen, ema, self.cross_entropy.float()))
        self.cross_entropy.copy_(updated.to(self.cross_entropy.dtype))
        self.counts.add_(counts.to(self.counts.dtype))

    def density(self) -> torch.Tensor:
        """p (K,): the share of timesteps drawn from each bin (sums to 1). Computed without reading anything back
        from the device, since the loss calls it on every training step."""
        uniform = torch.full((self.num_bins,), 1.0 / self.num_bins, device=self.counts.device)
        monotone = self.cross_entropy.float().cummax(0).values  # m_k
        ahead = torch.cat([monotone[1:], monotone[-1:]])
        behind = torch.cat([monotone[:1], monotone[:-1]])
        change = ahead - behind  # Δ_k ≥ 0
        fitted = (1 - self.uniform_share) * change / change.sum().clamp(min=1e-12) + self.uniform_share * uniform
        ready = (self.counts > 0).all() & (change.sum() > 0)  # every bin seen, and CE has risen somewhere
        return torch.where(ready, fitted, uniform)

    def cdf(self) -> torch.Tensor:
        """F at the K + 1 bin edges, (K + 1,): 0 at t_min, 1 at T."""
        return torch.cat([torch.zeros(1, device=self.counts.device), self.density().cumsum(0)]).clamp(max=1.0)

    # --- drawing and decoding ----------------------------------------------------------------------------------

    def inverse(self, u: torch.Tensor) -> torch.Tensor:
        """t = F⁻¹(u) as real numbers in [t_min, T]: u (B,) in [0, 1] -> (B,) float."""
        cdf = self.cdf()  # (K + 1,) F(e_k)
        density = cdf[1:] - cdf[:-1]  # (K,)
        u = u.float().to(cdf.device)
        k = (torch.searchsorted(cdf, u, right=True) - 1).clamp(0, self.num_bins - 1)  # (B,) the bin of each u
        within = ((u - cdf[k]) / density[k].clamp(min=1e-12)).clamp(0.0, 1.0)
        return self.min_timestep + (k.float() + within) * self.bin_width

    def sample(self, u: torch.Tensor) -> torch.Tensor:
        """Training timesteps for uniform draws u (B,) in [0, 1): (B,) long in [t_min, T)."""
        return self.inverse(u).long().clamp(self.min_timestep, self.num_steps - 1)

    def timesteps(self, num_inference_steps: int) -> torch.Tensor:
        """Decoding timesteps F⁻¹(u_i) for u_i evenly spaced from 1 to 0, rounded and descending (T − 1 … t_min).

        Where F is steep two u_i can round to one timestep; it is visited once, so at most `num_inference_steps`.
        """
        u = torch.linspace(1.0, 0.0, num_inference_steps, dtype=torch.float64)
        t = self.inverse(u).round().long().clamp(self.min_timestep, self.num_steps - 1).cpu()
        return t.unique().flip(0)
