"""DeepSpeed checkpoints with their EMA weights: saved atomically, the newest kept, found again on --resume."""

from __future__ import annotations

import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from textdiff.utils import write_text_atomic

from .distributed import DistInfo, barrier
from .ema import ExponentialMovingAverage


class CheckpointManager:
    """DeepSpeed checkpoints under `directory/stepNNNNNNNN/`, with the EMA weights as ema.safetensors.

    A kill at any moment never leaves a broken checkpoint behind `latest`: the EMA file and DeepSpeed's shards are
    written first, then a `COMPLETE` marker, and only then is `latest` replaced, atomically (write a temporary
    file, fsync, rename). Resuming reads `latest`, or falls back to the newest complete checkpoint.
    """

    def __init__(self, directory: Path, keep: int, dist: DistInfo, model_config=None) -> None:
        self.directory = directory
        self.keep = keep
        self.dist = dist
        self.model_config = model_config  # saved in each checkpoint, so `textdiff export` can rebuild the model

    @staticmethod
    def tag(step: int) -> str:
        return f"step{step:08d}"

    def has(self, step: int) -> bool:
        return (self.directory / self.tag(step) / "COMPLETE").is_file()

    def complete_tags(self) -> list[str]:
        return sorted(p.name for p in self.directory.glob("step*") if (p / "COMPLETE").is_file())

    def save(self, engine, ema: ExponentialMovingAverage, step: int) -> None:
        tag = self.tag(step)
        if self.dist.rank == 0:
            (self.directory / tag).mkdir(parents=True, exist_ok=True)
            save_file(ema.state_dict(), self.directory / tag / "ema.safetensors")
            if self.model_config is not None:
                self.model_config.to_json_file(self.directory / tag / "config.json")
        barrier(self.dist)
        engine.save_checkpoint(str(self.directory), tag=tag, client_state={"step": step}, save_latest=False)
        barrier(self.dist)
        if self.dist.rank == 0:
            (self.directory / tag / "COMPLETE").write_text(f"{step}\n")
            write_text_atomic(self.directory / "latest", tag)
            for old in self.complete_tags()[: -self.keep]:
                shutil.rmtree(self.directory / old, ignore_errors=True)
        barrier(self.dist)

    def ensure(self, engine, ema: ExponentialMovingAverage, step: int) -> None:
        """Save the final state unless the loop just did."""
        if not self.has(step):
            self.save(engine, ema, step)

    def latest_tag(self) -> str | None:
        """The tag `latest` names if that checkpoint is complete, else the newest complete one, else None."""
        latest = self.directory / "latest"
        if latest.is_file():
            tag = latest.read_text().strip()
            if (self.directory / tag / "COMPLETE").is_file():
                return tag
        tags = self.complete_tags()
        return tags[-1] if tags else None

    def load(self, engine, ema: ExponentialMovingAverage) -> int:
        """Load the newest complete checkpoint into the engine and the EMA; return its step."""
        tag = self.latest_tag()
        if tag is None:
            raise ValueError(f"--resume: no complete checkpoint in {self.directory}; start without --resume.")
        path, client_state = engine.load_checkpoint(str(self.directory), tag=tag)
        if path is None:
            raise ValueError(f"--resume: the checkpoint {self.directory / tag} could not be loaded.")
        try:
            ema_state = load_file(self.directory / tag / "ema.safetensors")
        except Exception as error:
            raise ValueError(
                f"--resume: {self.directory / tag / 'ema.safetensors'} is missing, truncated or corrupted ({error}); "
                f"delete {self.directory / tag} to resume from the checkpoint before it."
            ) from None
        ema.load_state_dict(ema_state)
        return int(client_state["step"])
