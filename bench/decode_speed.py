"""Decoding speed of this checkout's `generate` against another checkout's, measured in one run on one machine.

Each round times `generate` (best of --repeats calls, after a warm-up) in a fresh process for each checkout in
turn, on the same saved model, batch and step count; rounds alternate the order so that neither side always runs
first. Prints the tokens/s of each side per round and the ratio of the medians (this machine is noisy: compare
the ratio, not absolute figures across runs).

    git worktree add /tmp/before <rev>
    python bench/decode_speed.py --model runs/e2e-tiny/model --other /tmp/before --steps 8 --batch 64
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Run in a child process with PYTHONPATH at one checkout: time that checkout's generate.
TIMER = r"""
import json, sys, time, torch
import textdiff
from transformers import AutoModel
model_dir, batch, steps, repeats, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
model = AutoModel.from_pretrained(model_dir).eval()
def once(seed):
    start = time.perf_counter()
    ids = model.generate(num_return_sequences=batch, num_inference_steps=steps, seed=seed)
    return time.perf_counter() - start, ids
once(0)
best, ids = min(once(seed + 1) for seed in range(repeats))
print(json.dumps({"textdiff": textdiff.__file__, "seconds": best, "tokens_per_s": ids.numel() / best}))
"""


def time_checkout(checkout: Path, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    command = [sys.executable, "-c", TIMER, args.model, str(args.batch), str(args.steps), str(args.repeats)]
    done = subprocess.run(
        [*command, str(args.threads)], env=env, cwd=checkout, capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not result["textdiff"].startswith(str(checkout)):
        raise RuntimeError(f"{checkout} imported textdiff from {result['textdiff']}; is it a textdiff checkout?")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a saved textdiff model directory")
    parser.add_argument("--other", required=True, type=Path, help="the checkout to compare with (e.g. a worktree)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per process (the best counts)")
    parser.add_argument("--rounds", type=int, default=4, help="processes per checkout, alternating")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    args.model = str(Path(args.model).resolve())

    sides = {"this": REPO, "other": args.other.resolve()}
    speeds: dict[str, list[float]] = {name: [] for name in sides}
    print(f"batch {args.batch}, {args.steps} steps, {args.threads} threads, best of {args.repeats} per process")
    for round_ in range(args.rounds):
        order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
        for name in order:
            result = time_checkout(sides[name], args)
            speeds[name].append(result["tokens_per_s"])
            print(f"round {round_ + 1} {name:5s} ({sides[name]}): {result['tokens_per_s']:,.0f} tokens/s")
    this, other = statistics.median(speeds["this"]), statistics.median(speeds["other"])
    print(f"median tokens/s: this {this:,.0f}, other {other:,.0f}; this / other = {this / other:.3f}")


if __name__ == "__main__":
    main()
