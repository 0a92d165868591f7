"""The speed–quality frontier of parallel decoding, measured in one run on one machine.

For each sampler and step count: tokens/s of `generate` for a batch of sequences (all positions decoded in
parallel), and the teacher perplexity and dist-2 of the samples; the same for the equal-size autoregressive
baseline decoding token by token with HF `generate` and its KV cache. Prints a markdown table and the speed
ratio of each diffusion setting to the AR baseline (measured in this run; this machine is noisy, so compare
ratios, not absolute figures across runs).

    python bench/frontier.py --model runs/e2e-cpu-long/model --teacher runs/ar-cpu-long/model
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

import textdiff  # noqa: F401  (registers the Auto classes)
from textdiff.evaluation.fluency import sample_autoregressive, teacher_score
from textdiff.evaluation.harness import load_metric


def timed(function, repeats: int):
    """Best wall-clock time of `repeats` calls (after one warm-up call), and the last result."""
    result = function()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--teacher", required=True, help="AR model: the baseline and the perplexity teacher")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 16, 32, 64, 200])
    parser.add_argument("--samplers", nargs="+", default=["ddpm", "ddim", "dpm-solver++"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = AutoModel.from_pretrained(args.model).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    teacher = AutoModelForCausalLM.from_pretrained(args.teacher).eval()
    length = model.config.max_position_embeddings
    dist = load_metric("distinct_n")
    print(
        f"torch threads: {torch.get_num_threads()}; batch {args.batch} × {length} positions; "
        f"diffusion {model.num_parameters() / 1e6:.2f}M parameters, AR {teacher.num_parameters() / 1e6:.2f}M"
    )

    rows = []
    ar_seconds, ar_texts = timed(
        lambda: sample_autoregressive(teacher, tokenizer, args.batch, seed=args.seed), args.repeats
    )

    def real_tokens(texts: list[str]) -> int:
        """Tokens of the texts as written: words + [END] (padding after [END] is not counted)."""
        return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)

    rows.append(("AR baseline (KV cache)", "—", real_tokens(ar_texts) / ar_seconds, ar_texts))
    for sampler in args.samplers:
        for steps in args.steps:
            seconds, ids = timed(
                lambda: model.generate(
                    num_return_sequences=args.batch, num_inference_steps=steps, sampler=sampler, seed=args.seed
                ),
                args.repeats,
            )
            texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
            rows.append((sampler, steps, real_tokens(texts) / seconds, texts))

    print("\n| decoder | steps | tokens/s | × AR | teacher PPL | dist-2 | mean words |")
    print("|---|---|---|---|---|---|---|")
    ar_rate = rows[0][2]
    for name, steps, rate, texts in rows:
        ppl = teacher_score(texts, teacher, tokenizer).perplexity
        d2 = dist.compute(predictions=texts, max_n=2)["dist-2"]
        words = sum(len(t.split()) for t in texts) / len(texts)
        print(f"| {name} | {steps} | {rate:,.0f} | {rate / ar_rate:.2f} | {ppl:.2f} | {d2:.3f} | {words:.1f} |")
    print(
        f"\ntokens/s: tokens of the finished texts (words + [END]) per second of `generate`, for both; diffusion "
        f"decodes all {length} positions of each sequence whatever the text's length."
    )


if __name__ == "__main__":
    main()
