"""Samplers on one trained model, measured in one run: for every (sampler, clamping) pair and step count, the same
number of samples from the same seeds, judged by one AR teacher beside the human references.

Columns: teacher perplexity (and its ratio to the human references'), dist-2, self-BLEU (lower: more varied), the
share of distinct samples, mean words, and decoding seconds. The human references are the test sentences that
bench/recipe_ablation.py judges (the same shuffle), so the two benches' ratios share a denominator.

    python bench/decoding_ablation.py --model runs/e2e-tiny/model --teacher runs/teacher/model \
        --decoders ddpm:clamp renoise:soft renoise:soft:0.5 --steps 16 200

A decoder is SAMPLER:clamp or SAMPLER:soft, and optionally :TAU, the x̂0 temperature (`x0_temperature`).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import NamedTuple

import torch


class Decoder(NamedTuple):
    sampler: str
    clamp: bool
    x0_temperature: float = 1.0
    bucket_lengths: bool = False

    def __str__(self) -> str:
        tau = f", τ {self.x0_temperature:g}" if self.x0_temperature != 1.0 else ""
        bucket = ", length buckets" if self.bucket_lengths else ""
        return f"{self.sampler} {'clamped' if self.clamp else 'soft'}{tau}{bucket}"

    def settings(self) -> dict:
        """The `generate` arguments of this decoder."""
        return {"sampler": self.sampler, "clamp": self.clamp, "x0_temperature": self.x0_temperature,
                "bucket_lengths": self.bucket_lengths}  # fmt: skip


def parse_decoder(text: str) -> Decoder:
    """'SAMPLER:clamp' or 'SAMPLER:soft' (x̂0 not clamped), then optionally ':TAU' (the x̂0 temperature) and
    ':bucket' (decode the batch in length buckets) -> a Decoder."""
    from textdiff.samplers import SAMPLERS

    name, mode, *rest = text.split(":")
    bucket = bool(rest) and rest[-1] == "bucket"
    rest = rest[:-1] if bucket else rest
    message = f"expected SAMPLER:clamp|soft[:TAU][:bucket] with SAMPLER in {sorted(SAMPLERS)}, got {text!r}"
    if name not in SAMPLERS or mode not in ("clamp", "soft") or len(rest) > 1:
        raise argparse.ArgumentTypeError(message)
    try:
        temperature = float(rest[0]) if rest else 1.0
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None
    return Decoder(name, mode == "clamp", temperature, bucket)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--teacher", required=True, help="AR teacher directory (same vocabulary)")
    parser.add_argument("--decoders", nargs="+", type=parse_decoder,
                        default=[parse_decoder("ddpm:clamp"), parse_decoder("renoise:soft")])  # fmt: skip
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 200])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--num-samples", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None, help="JSON of every row (and its first ten samples)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    import textdiff
    from textdiff.data import load_corpus
    from textdiff.evaluation.fluency import teacher_score
    from textdiff.evaluation.harness import load_metric
    from textdiff.resources import bundled

    model, tokenizer = textdiff.load_pretrained(args.model)
    teacher = AutoModelForCausalLM.from_pretrained(args.teacher).eval()
    teacher_tokenizer = AutoTokenizer.from_pretrained(args.teacher)
    distinct, self_bleu = load_metric("distinct_n"), load_metric("self_bleu")

    def judge(texts: list[str]) -> dict:
        return {
            "ppl": teacher_score(texts, teacher, teacher_tokenizer).perplexity,
            "dist2": distinct.compute(predictions=texts, max_n=2)["dist-2"],
            "self_bleu": self_bleu.compute(predictions=texts)["self_bleu"],
            "distinct_share": len(set(texts)) / len(texts),
            "words": sum(len(t.split()) for t in texts) / len(texts),
        }

    test = load_corpus(str(bundled("data/e2e")), "test")["text"]
    order = random.Random(0).sample(range(len(test)), len(test))
    human = judge([test[i] for i in order[: args.num_samples]])
    rows = []
    for steps in args.steps:
        for decoder in args.decoders:
            for seed in args.seeds:
                started = time.perf_counter()
                ids = model.generate(
                    num_return_sequences=args.num_samples,
                    num_inference_steps=steps,
                    **decoder.settings(),
                    seed=seed,
                )
                seconds = time.perf_counter() - started
                texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
                row = {"decoder": str(decoder), **decoder.settings(), "steps": steps, "seed": seed, "decode_s": seconds}
                row.update(judge(texts), samples=texts[:10])
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "samples"}), flush=True)

    print(f"\nmodel {args.model}; teacher {args.teacher}; {args.num_samples} samples per row; {args.threads} thread(s)")
    print("| decoder | steps | seed | teacher PPL (× human) | dist-2 | self-BLEU | distinct | words | decode s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['decoder']} | {r['steps']} | {r['seed']} | {r['ppl']:.2f} ({r['ppl'] / human['ppl']:.2f}×) | "
            f"{r['dist2']:.3f} | {r['self_bleu']:.3f} | {r['distinct_share']:.2f} | {r['words']:.1f} | "
            f"{r['decode_s']:.1f} |"
        )
    print(
        f"| human references (test, {args.num_samples}) | — | — | {human['ppl']:.2f} | {human['dist2']:.3f} | "
        f"{human['self_bleu']:.3f} | {human['distinct_share']:.2f} | {human['words']:.1f} | — |"
    )
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"human": human, "rows": rows}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
