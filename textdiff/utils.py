"""Small helpers shared across textdiff: noise from a generator, integer checks, the hub probe, whole-or-nothing
file writes, and argparse with one-line errors."""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

import torch


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gaussian noise of x's shape, dtype and device, drawn from `generator` (global RNG if None).

    The noise is drawn on the generator's device and moved, so a CPU generator gives the same numbers whether
    the model runs on CPU or GPU.
    """
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all: a temporary beside it, flushed to disk, then renamed over it."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def is_integer(value) -> bool:
    """An int that is not a bool (True is an int in Python, never a count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub can be reached (False at once when HF_HUB_OFFLINE / HF_DATASETS_OFFLINE=1)."""
    if os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


class OneLineErrors(argparse.ArgumentParser):
    """argparse, with a bad flag reported as one line naming it ("textdiff generate: error: argument --steps:
    must be > 0, got '0'"), without the usage block (`--help` shows that)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")
