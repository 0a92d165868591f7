"""Training survives kill -9 at random points, and stops cleanly on a non-finite loss."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.test_training import REPO, TINY_RUN, run
from train.common import CheckpointManager, DistInfo


def test_latest_falls_back_to_the_newest_complete_checkpoint(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2, dist=DistInfo(0, 1, 0, False))
    assert manager.latest_tag() is None
    for step, complete in ((4, True), (8, True), (12, False)):
        (tmp_path / manager.tag(step)).mkdir()
        if complete:
            (tmp_path / manager.tag(step) / "COMPLETE").write_text(str(step))
    (tmp_path / "latest").write_text(manager.tag(12))  # names a checkpoint that a kill left half-written
    assert manager.latest_tag() == "step00000008"
    (tmp_path / "latest").write_text(manager.tag(4))
    assert manager.latest_tag() == "step00000004"


def _config(tmp_path: Path, corpus: Path, name: str, **training) -> Path:
    text = TINY_RUN.format(corpus=corpus, output=tmp_path / name)
    text = text.replace("max_steps: 6", "max_steps: 400").replace("checkpoint_every: 3", "checkpoint_every: 20")
    for key, value in training.items():
        text = text.replace(f"  {key}: ", f"  {key}: {value}  # was ", 1)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def _env() -> dict[str, str]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def test_kill_at_random_points_then_resume_reproduces_the_uninterrupted_run(tmp_path, module_corpus):
    straight = _config(tmp_path, module_corpus, "straight")
    run([sys.executable, "train/diffusion.py", "--config", str(straight)])

    killed = _config(tmp_path, module_corpus, "killed")
    metrics = tmp_path / "killed" / "metrics.jsonl"
    rng = random.Random(int(os.environ.get("TEXTDIFF_KILL_SEED", "0")))
    kills, reached = 0, 0
    for attempt in range(3):
        resume = (tmp_path / "killed" / "checkpoints" / "latest").is_file()
        command = [sys.executable, "train/diffusion.py", "--config", str(killed)] + (["--resume"] if resume else [])
        process = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if attempt < 2:  # kill the first two runs at a random point of their progress, then let one finish
            target = rng.randint(reached + 15, 380)
            deadline = time.monotonic() + 300
            while process.poll() is None and time.monotonic() < deadline:
                lines = metrics.read_text().splitlines() if metrics.is_file() else []
                if lines and json.loads(lines[-1]).get("step", 0) >= target:
                    os.kill(process.pid, signal.SIGKILL)
                    kills += 1
                    break
                time.sleep(0.02)
            process.wait()
            reached = target
            continue
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr.decode()[-3000:]
    assert kills == 2
    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "model" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, module_corpus):
    config = _config(tmp_path, module_corpus, "nan", learning_rate="1.0e+30", warmup_steps=0)
    config.write_text(config.read_text().replace("checkpoint_every: 20", "checkpoint_every: 1"))
    result = subprocess.run(
        [sys.executable, "-m", "textdiff.cli", "train", "--config", str(config)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "NaN or infinite" in result.stderr and "--resume" in result.stderr
    manager = CheckpointManager(tmp_path / "nan" / "checkpoints", keep=2, dist=DistInfo(0, 1, 0, False))
    last = manager.latest_tag()
    assert last is not None and not (tmp_path / "nan" / "model").exists()
    ema = load_file(tmp_path / "nan" / "checkpoints" / last / "ema.safetensors")
    assert all(torch.isfinite(t).all() for t in ema.values())
