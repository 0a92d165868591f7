"""The prepared GPU run (bench/gpu): its smoke mode runs every stage on this CPU through the same command, so the
script cannot rot between GPU loans; its FLOP counts and the bf16 decoding path are checked on their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from bench.gpu.benchmark import causal_lm_flops_per_token, denoiser_flops_per_token
from tests.conftest import tiny_config
from tests.test_training import REPO
from textdiff import TextDiffusionModel


def test_smoke_mode_runs_every_stage_and_writes_at_most_eight_small_files(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "TEXTDIFF_WHEELS": str(tmp_path / "no-wheels")}
    env["CUDA_VISIBLE_DEVICES"] = ""
    out = tmp_path / "out"
    result = subprocess.run(
        ["bash", "bench/gpu/run.sh", "--output", str(out), "--work", str(tmp_path / "runs"), "--smoke"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(
        [
            "results.json",
            "summary.md",
            "samples.txt",
            "diffusion-metrics.jsonl",
            "ar-metrics.jsonl",
            "loss.svg",
            "log.txt",
        ]
    )
    assert all((out / name).stat().st_size < 16 * 2**20 for name in files)
    results = json.loads((out / "results.json").read_text())
    assert results["environment"]["measured_matmul_tflops"] > 0
    for stage in ("diffusion", "ar"):
        figures = results[stage]["figures"]
        assert "error" not in results[stage]
        assert figures["precision"] == "fp32" and figures["steps"] == 12  # fp32 on CPU, through the same configs
        assert figures["tokens_per_s"] > 0 and 0 < figures["mfu_measured_peak"] < 1
    assert results["diffusion"]["figures"]["held_out_loss"] > 0
    rows = results["decoding"]["rows"]
    assert len(rows) == 2 * (1 + 2 * 2)  # batches 1 and 8 × (AR + 2 samplers × 2 step counts)
    quality = [r for r in rows if r["batch"] == 8]
    assert all(r["teacher_perplexity"] > 1 and 0 <= r["dist_2"] <= 1 for r in quality)
    assert results["decoding"]["human"]["teacher_perplexity"] > 1
    summary = (out / "summary.md").read_text()
    assert result.stdout.rstrip().endswith(summary.rstrip().splitlines()[-1])  # the table is printed last
    assert (
        "| diffusion dpm-solver++ | 4 | 8 |" in summary and "## human references" in (out / "samples.txt").read_text()
    )


def test_flop_counts_match_a_hand_count():
    config = tiny_config()  # H = 32, 2 blocks, d = 16, V = 100, feed-forward 128
    model = TextDiffusionModel(config)
    per_block = 32 * 96 + 32 * 32 + 32 * 128 + 128 * 32
    weights = (16 * 32 + 32 * 32) + 2 * per_block + (32 * 32 + 32 * 16) + 100 * 16
    assert denoiser_flops_per_token(model, 12) == 3 * (2 * weights + 4 * 12 * 32 * 2)

    from transformers import GPT2Config, GPT2LMHeadModel

    gpt = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_positions=12, n_embd=32, n_layer=2, n_head=2))
    per_block = 32 * 96 + 32 * 32 + 32 * 128 + 128 * 32
    assert causal_lm_flops_per_token(gpt, 12) == 3 * (2 * (100 * 32 + 2 * per_block) + 4 * 12 * 32 * 2)


def test_generate_under_bf16_autocast_as_the_gpu_run_decodes(tiny_model):
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for sampler in ("ddpm", "dpm-solver++"):
            ids = tiny_model.generate(num_return_sequences=3, num_inference_steps=4, sampler=sampler, seed=0)
            assert ids.shape == (3, 12) and ids.dtype == torch.long
            assert 0 <= int(ids.min()) and int(ids.max()) < tiny_model.config.vocab_size
