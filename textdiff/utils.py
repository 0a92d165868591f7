"""Small helpers shared by the loss, the samplers and the decoding loop."""

from __future__ import annotations

import torch


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gaussian noise of x's shape, dtype and device, drawn from `generator` (global RNG if None).

    The noise is drawn on the generator's device and moved, so a CPU generator gives the same numbers whether
    the model runs on CPU or GPU.
    """
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
