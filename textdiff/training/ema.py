"""The exponential moving average of the weights that a run exports."""

from __future__ import annotations

import contextlib

import torch


class ExponentialMovingAverage:
    """EMA of the weights, θ̄ ← d·θ̄ + (1 − d)·θ with the warm-up d = min(decay, (1 + n) / (10 + n)), kept in fp32.

    Under ZeRO-3 the partitioned parameters are gathered for each update. The model's persistent buffers (state
    that is fitted, not trained: e.g. the time warping's statistics) are not averaged: `state_dict` gives their
    current values beside the averaged weights, so that it loads into a fresh model as a whole.
    """

    def __init__(self, engine, decay: float) -> None:
        self.decay = decay
        self.zero3 = engine.zero_optimization_stage() == 3
        with self._gathered(engine):
            self.shadow = {name: p.detach().float().clone() for name, p in engine.module.named_parameters()}
        persistent = engine.module.state_dict().keys()
        self.buffers = {name: b for name, b in engine.module.named_buffers() if name in persistent}  # live views

    def _gathered(self, engine):
        if not self.zero3:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None)

    @torch.no_grad()
    def update(self, engine, num_updates: int) -> None:
        decay = min(self.decay, (1 + num_updates) / (10 + num_updates))
        with self._gathered(engine):
            params = [param.detach().float() for param in engine.module.parameters()]
            torch._foreach_lerp_(list(self.shadow.values()), params, 1.0 - decay)  # one kernel, not one per tensor

    def state_dict(self) -> dict[str, torch.Tensor]:
        tensors = {**self.shadow, **self.buffers}
        return {name: tensor.detach().float().cpu().contiguous() for name, tensor in tensors.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load the averaged weights (the buffers in `state` are the engine checkpoint's to restore)."""
        state = {name: tensor for name, tensor in state.items() if name not in self.buffers}
        if state.keys() != self.shadow.keys():
            raise ValueError("The checkpoint's EMA weights do not match this model; resume with the same config.")
        for name, tensor in state.items():
            self.shadow[name].copy_(tensor)
