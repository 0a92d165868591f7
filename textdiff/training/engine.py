"""The DeepSpeed config a run trains under (precision, batch, optimiser), and the record of what it resolved to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..resources import bundled
from .config import TrainingSection
from .distributed import DistInfo


def resolve_precision(precision: str, on_gpu: bool) -> str:
    """training.precision as run: "auto" is bf16 on GPUs and fp32 on CPU (fp16 is unsupported there, bf16 slow)."""
    if precision == "auto":
        return "bf16" if on_gpu else "fp32"
    return precision


def build_deepspeed_config(
    train_cfg: TrainingSection, dist: DistInfo, lr_scales: tuple[float, ...] = (1.0,)
) -> dict[str, Any]:
    """The DeepSpeed JSON, completed from the run config (the single source of batch size, learning rate,
    schedule and precision): micro batch, accumulation, AdamW (torch's fused kernel on GPUs), warm-up then linear
    decay to 0, and bf16 or fp32 as training.precision resolves.

    `lr_scales`: one factor on training.learning_rate for each parameter group the script will pass to
    `deepspeed.initialize`, in order (the schedule sets every group's learning rate at each step)."""
    path = Path(train_cfg.deepspeed_config or bundled("configs/deepspeed/zero0.json"))
    if not path.is_file():
        raise ValueError(f"DeepSpeed config {path} does not exist; use one of configs/deepspeed/zero{{0,1,2,3}}.json.")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"DeepSpeed config {path} is not valid JSON: {error}") from None
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "bf16", "fp16"):
        if key in config:
            raise ValueError(
                f"{path} sets {key!r}; batch sizes and precision come from the run config's training section."
            )
    config["train_micro_batch_size_per_gpu"] = train_cfg.micro_batch_size
    config["gradient_accumulation_steps"] = train_cfg.gradient_accumulation_steps
    optimizer = config.setdefault("optimizer", {"type": "AdamW", "params": {"torch_adam": True}})
    params = optimizer.setdefault("params", {})
    params.update(lr=train_cfg.learning_rate, weight_decay=train_cfg.weight_decay)
    if dist.on_gpu and params.get("torch_adam"):
        params.setdefault("fused", True)  # one kernel for the whole update instead of a few per tensor
    config["scheduler"] = {
        "type": "WarmupDecayLR",
        "params": {
            "warmup_min_lr": 0.0,
            "warmup_max_lr": [train_cfg.learning_rate * scale for scale in lr_scales],  # one per group
            "warmup_num_steps": max(1, train_cfg.warmup_steps),  # DeepSpeed rejects 0; one step is no warm-up
            "warmup_type": "linear",
            "total_num_steps": train_cfg.max_steps,
        },
    }
    config["bf16"] = {"enabled": resolve_precision(train_cfg.precision, dist.on_gpu) == "bf16"}
    config.setdefault("steps_per_print", 10**9)
    return config


def save_run_config(output_dir: Path, settings: dict[str, Any], ds_config: dict[str, Any], dist: DistInfo) -> None:
    """run_config.json: the run's settings as given (a run config's `to_dict()`, or a script's flags), and what they
    resolved to on this machine (precision, device, batch)."""
    if dist.rank != 0:
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    resolved = {
        "precision": "bf16" if ds_config["bf16"]["enabled"] else "fp32",
        "device": "cuda" if dist.on_gpu else "cpu",
        "world_size": dist.world_size,
        "global_batch": ds_config["train_micro_batch_size_per_gpu"]
        * ds_config["gradient_accumulation_steps"]
        * dist.world_size,
        "torch": torch.__version__,
    }
    (output_dir / "run_config.json").write_text(json.dumps({**settings, "resolved": resolved}, indent=2))
