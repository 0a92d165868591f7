"""Where a decoding step's time goes at batch 1, against what its arithmetic needs on this CPU.

One thread. The CPU's matmul rate is measured on a large fp32 matmul; the FLOPs of a whole `generate` call are
counted by torch's `FlopCounterMode` (every matmul and attention of the denoiser and of rounding); the denoiser's
forward is timed by hooks. Per step:

    time per step      = wall time of generate / steps
    arithmetic         = FLOPs per step / matmul rate        (what the step would take at the matmul rate)
    overhead           = time per step − arithmetic           (Python, dispatch, small-kernel inefficiency)
    forward            = the denoiser's forward (hooks), the rest is the loop's own (sampler, processors, rounding)

With --compile the decoding runs through compiled graphs (`torch_compile=True`; up to 16 steps the whole loop is one
graph), the FLOPs are counted on the same decoding run eagerly, and the forward is not timed apart (a hook inside a
compiled graph would split it).

    python bench/step_overhead.py --model runs/e2e-tiny/model --steps 200 --decoders renoise:soft [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from decoding_ablation import parse_decoder  # bench/ is on the path when a bench runs as a script
from torch.utils.flop_counter import FlopCounterMode

import textdiff


def matmul_rate(size: int = 1024, repeats: int = 10) -> float:
    """FLOP/s of a (size × size) @ (size × size) fp32 matmul, best of `repeats`."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--decoders", nargs="+", type=parse_decoder, default=[parse_decoder("renoise:soft")])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="decode through compiled graphs (torch_compile=True)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = textdiff.load_pretrained(args.model)
    rate = matmul_rate()
    print(f"one thread; matmul rate {rate / 1e9:.1f} GFLOP/s (1024² fp32); batch {args.batch}, {args.steps} steps")

    forward_seconds: list[float] = []
    started: list[float] = []
    if not args.compile:
        model.register_forward_pre_hook(lambda *_: started.append(time.perf_counter()))
        model.register_forward_hook(lambda *_: forward_seconds.append(time.perf_counter() - started.pop()))

    for decoder in args.decoders:

        def decode(decoder=decoder, compiled=args.compile):
            settings = {name: value for name, value in decoder.settings().items() if value not in (1.0, False)}
            settings["clamp"] = decoder.clamp  # (the others only when set, so an older tree can run it too)
            if compiled:
                settings["torch_compile"] = True
            return model.generate(num_return_sequences=args.batch, num_inference_steps=args.steps, seed=args.seed,
                                  **settings)  # fmt: skip

        with torch.inference_mode():
            ids = decode()  # warm-up
            with FlopCounterMode(display=False) as counter:
                decode(compiled=False)
            flops = counter.get_total_flops() / args.steps
            walls, forwards = [], []
            for _ in range(args.repeats):
                forward_seconds.clear()
                start = time.perf_counter()
                decode()
                walls.append((time.perf_counter() - start) / args.steps)
                forwards.append(sum(forward_seconds) / args.steps)
        per_step, forward = statistics.median(walls), statistics.median(forwards)
        arithmetic = flops / rate
        parts = "" if args.compile else f" = forward {forward * 1e3:.3f} ms + loop {(per_step - forward) * 1e3:.3f} ms"
        print(
            f"{decoder}{', compiled' if args.compile else ''}: {ids.shape[1]} positions; per step "
            f"{per_step * 1e3:.3f} ms{parts}; {flops / 1e6:.1f} MFLOP per step = {arithmetic * 1e3:.3f} ms "
            f"at the matmul rate; overhead {(per_step - arithmetic) * 1e3:.3f} ms "
            f"({per_step / arithmetic:.1f}× the arithmetic)"
        )


if __name__ == "__main__":
    main()
