"""Training survives kill -9 at random points, and stops cleanly on a non-finite loss."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.test_training import REPO, TINY_RUN, run
from textdiff.training.checkpoints import CheckpointManager
from textdiff.training.distributed import DistInfo


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


@pytest.fixture(scope="module")
def straight_export(tmp_path_factory, module_corpus) -> Path:
    """The uninterrupted 400-step run's exported weights, which every interrupted run must reproduce."""
    tmp = tmp_path_factory.mktemp("straight")
    run([sys.executable, "train/diffusion.py", "--config", str(_config(tmp, module_corpus, "straight"))])
    return tmp / "straight" / "model" / "model.safetensors"


def _assert_same_weights(path: Path, reference: Path) -> None:
    a, b = load_file(reference), load_file(path)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)


def _wait_for_step(process: subprocess.Popen, metrics: Path, target: int) -> bool:
    """Poll the metrics log until it reaches `target` (True) or the process ends (False)."""
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        lines = metrics.read_text().splitlines() if metrics.is_file() else []
        if lines and json.loads(lines[-1]).get("step", 0) >= target:
            return True
        time.sleep(0.02)
    return False


def test_kill_at_random_points_then_resume_reproduces_the_uninterrupted_run(tmp_path, module_corpus, straight_export):
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
            if _wait_for_step(process, metrics, target):
                os.kill(process.pid, signal.SIGKILL)
                kills += 1
            process.wait()
            reached = target
            continue
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr.decode()[-3000:]
    assert kills == 2
    _assert_same_weights(tmp_path / "killed" / "model" / "model.safetensors", straight_export)
    logged = [json.loads(line) for line in metrics.read_text().splitlines()]
    steps = [line["step"] for line in logged if "loss" in line]
    assert steps == sorted(set(steps)), "after the resumes every step has one metrics line, in order"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_preemption_checkpoints_the_current_step_and_resume_continues_exactly(
    tmp_path, module_corpus, straight_export, signum
):
    """SIGTERM (a cluster's preemption) or SIGINT (Ctrl-C) mid-run: the step in flight finishes, a complete
    checkpoint of it is written, the run says where and how to resume and exits 128 + signum; --resume then
    reproduces the uninterrupted run."""
    config = _config(tmp_path, module_corpus, "preempted")  # checkpoint_every 20: the signal lands between them
    command = [sys.executable, "-m", "textdiff.cli", "train", "--config", str(config)]
    process = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _wait_for_step(process, tmp_path / "preempted" / "metrics.jsonl", 133)
    os.kill(process.pid, signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr[-3000:]
    output = stdout + stderr
    match = re.search(r"Stopped by (SIG\w+) after step (\d+); the checkpoint (\S+) is complete", output)
    assert match, output[-3000:]
    assert match.group(1) == signal.Signals(signum).name
    step = int(match.group(2))
    assert 133 <= step < 400 and step % 20 != 0, "the checkpoint is of the step in flight, not a scheduled one"
    assert "--resume" in output
    manager = CheckpointManager(tmp_path / "preempted" / "checkpoints", keep=2, dist=DistInfo(0, 1, 0, False))
    assert manager.latest_tag() == manager.tag(step) and Path(match.group(3)).name == manager.tag(step)
    assert not (tmp_path / "preempted" / "model").exists()

    run([*command, "--resume"])
    _assert_same_weights(tmp_path / "preempted" / "model" / "model.safetensors", straight_export)


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
