"""One process vs two processes under the `deepspeed` launcher with ZeRO stages 1, 2 and 3, at the same global
batch: 1 process accumulates 2 micro batches, 2 processes take 1 each, and every micro batch draws the same noise
(the seed is a function of its position in the global batch). Prints, per stage, the largest per-step difference
of the logged loss and of the exported EMA weights, then consolidates the ZeRO-3 checkpoint with zero_to_fp32 into
a HF export and loads it. Also checks that /dev/shm is left clean.

    python bench/zero_equivalence.py --steps 40
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = """
model: {{embedding_dim: 16, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 2, dropout: 0.0}}
diffusion: {{schedule: sqrt, num_steps: 2000}}
data: {{dataset: data/e2e, seq_len: 40}}
training:
  output_dir: {output}
  max_steps: {steps}
  micro_batch_size: 16
  gradient_accumulation_steps: {accumulation}
  learning_rate: 1.0e-3
  warmup_steps: 10
  ema_decay: 0.99
  log_every: 1
  eval_every: 0
  checkpoint_every: 0
  num_samples: 0
  threads: 1
"""


def train(workdir: Path, name: str, steps: int, processes: int, stage: int) -> Path:
    from textdiff.training.distributed import free_port

    config = workdir / f"{name}.yaml"
    config.write_text(CONFIG.format(output=workdir / name, steps=steps, accumulation=2 // processes))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    script = ["train/diffusion.py", "--config", str(config), "--deepspeed", f"configs/deepspeed/zero{stage}.json"]
    command = (
        [sys.executable, *script]
        if processes == 1
        else ["deepspeed", "--num_gpus", "2", "--master_port", str(free_port()), *script]
    )
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
    return workdir / name


def losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows if "loss" in row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    from safetensors.torch import load_file

    import textdiff
    from textdiff.training.export import export

    shm_before = set(Path("/dev/shm").glob("deepspeed_allreduce_buffer_*"))
    workdir = Path(tempfile.mkdtemp(prefix="zero-equivalence-"))
    single = train(workdir, "single", args.steps, processes=1, stage=0)
    reference, reference_weights = losses(single), load_file(single / "model" / "model.safetensors")
    print(
        f"1 process, ZeRO-0, 2 accumulated micro batches of 16; {args.steps} steps; loss at the end "
        f"{reference[args.steps]:.4f}\n"
    )
    print("| run | max abs Δ loss over steps | mean abs Δ loss | max abs Δ EMA weights |")
    print("|---|---|---|---|")
    for stage in (1, 2, 3):
        run = train(workdir, f"zero{stage}", args.steps, processes=2, stage=stage)
        curve, weights = losses(run), load_file(run / "model" / "model.safetensors")
        deltas = [abs(curve[s] - reference[s]) for s in reference]
        weight_delta = max((weights[k] - reference_weights[k]).abs().max().item() for k in weights)
        print(
            f"| 2 processes, ZeRO-{stage} | {max(deltas):.2e} | {sum(deltas) / len(deltas):.2e} | {weight_delta:.2e} |"
        )

    checkpoint = sorted((workdir / "zero3" / "checkpoints").glob("step*"))[-1]
    exported = export(checkpoint, workdir / "zero3-raw", weights="raw")
    model, tokenizer = textdiff.load_pretrained(str(exported))
    text = tokenizer.batch_decode(model.generate(num_inference_steps=20, seed=0), skip_special_tokens=True)[0]
    print(f"\nZeRO-3 checkpoint {checkpoint.name} consolidated with zero_to_fp32, exported, loaded; a sample: {text!r}")
    left = set(Path("/dev/shm").glob("deepspeed_allreduce_buffer_*")) - shm_before
    print(f"/dev/shm after the runs: {'clean' if not left else sorted(p.name for p in left)}")
    shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
