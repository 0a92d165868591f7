"""Error correction by partial noising, measured in one run: E2E test sentences corrupted at known rates, then
repaired with `model.edit` at several strengths; word error rate against the original and teacher perplexity,
before and after.

Corruption: each word independently, with probability `rate`, gets one of four errors chosen uniformly: swapped
with the next word, deleted, replaced by a random vocabulary word, or replaced by [UNK]. Variants: the whole
sentence edited, or only its low-confidence words ("confident kept": words the model gives probability ≥ 0.5 from
the text noised to the lowest trained level are kept fixed).

    python bench/correction.py --model runs/e2e-tiny/model --teacher runs/teacher/model
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

KINDS = ("swap", "delete", "substitute", "unk")


def corrupt(words: list[str], rate: float, vocabulary: list[str], unk: str, rng: random.Random) -> list[str]:
    """The sentence with each word, with probability `rate`, swapped, deleted, substituted or made [UNK]."""
    out, i = [], 0
    while i < len(words):
        if rng.random() >= rate:
            out.append(words[i])
            i += 1
            continue
        kind = rng.choice(KINDS)
        if kind == "swap" and i + 1 < len(words):
            out += [words[i + 1], words[i]]
            i += 2
            continue
        if kind == "substitute":
            out.append(rng.choice(vocabulary))
        elif kind == "unk" or kind == "swap":  # a swap of the last word becomes [UNK]
            out.append(unk)
        i += 1  # "delete" appends nothing
    return out or words[:1]


def word_errors(hypothesis: list[str], reference: list[str]) -> int:
    """Word-level Levenshtein distance."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def wer(hypotheses: list[str], references: list[str]) -> float:
    errors = sum(word_errors(h.split(), r.split()) for h, r in zip(hypotheses, references))
    return errors / sum(len(r.split()) for r in references)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--teacher", required=True, help="AR teacher directory (same vocabulary)")
    parser.add_argument("--num-sentences", type=int, default=200)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.2])
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="JSON of every row with ten examples")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM

    import textdiff
    from textdiff.data import load_corpus
    from textdiff.editing import confident_words
    from textdiff.evaluation.fluency import teacher_score
    from textdiff.resources import bundled

    model, tokenizer = textdiff.load_pretrained(args.model)
    teacher = AutoModelForCausalLM.from_pretrained(args.teacher).eval()
    test = load_corpus(str(bundled("data/e2e")), "test")["text"]
    order = random.Random(args.seed).sample(range(len(test)), len(test))
    originals = [test[i] for i in order if len(test[i].split()) + 2 <= model.config.max_position_embeddings]
    originals = originals[: args.num_sentences]
    vocabulary = sorted(w for w in tokenizer.get_vocab() if not (w.startswith("[") and w.endswith("]")))

    def ppl(texts: list[str]) -> float:
        return teacher_score(texts, teacher, tokenizer).perplexity

    rows = []
    human = ppl(originals)
    for rate in args.rates:
        rng = random.Random(args.seed)
        corrupted = [" ".join(corrupt(t.split(), rate, vocabulary, tokenizer.unk_token, rng)) for t in originals]
        ids = tokenizer(corrupted, padding=True, return_tensors="pt")["input_ids"]
        before = {"wer": wer(corrupted, originals), "ppl": ppl(corrupted)}
        keep = confident_words(model, ids, 0.5, torch.Generator().manual_seed(args.seed))
        for strength in args.strengths:
            for variant, keep_mask in (("whole sentence", None), ("confident kept", keep)):
                out = model.edit(ids, strength, keep_mask=keep_mask, seed=args.seed)
                fixed = tokenizer.batch_decode(out, skip_special_tokens=True)
                row = {
                    "rate": rate,
                    "strength": strength,
                    "variant": variant,
                    "wer_before": before["wer"],
                    "wer_after": wer(fixed, originals),
                    "ppl_before": before["ppl"],
                    "ppl_after": ppl(fixed),
                    "examples": list(zip(originals[:10], corrupted[:10], fixed[:10])),
                }
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "examples"}), flush=True)

    print(f"\nmodel {args.model}; teacher {args.teacher}; {len(originals)} test sentences; originals' PPL {human:.2f}")
    print("| corruption rate | strength | edited | WER before → after | teacher PPL before → after |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['rate']:.2f} | {r['strength']:.2f} | {r['variant']} | {r['wer_before']:.3f} → {r['wer_after']:.3f} "
            f"| {r['ppl_before']:.1f} → {r['ppl_after']:.1f} |"
        )
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"human_ppl": human, "rows": rows}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
