"""Training recipes at a fixed budget of optimiser steps, measured in one run on one machine: the paper's recipe,
each part of the new one added alone, and their combination.

Every row trains `train/diffusion.py` on the same base config with the same steps, batch and threads (so the same
compute, give or take the extra output layer of a classifying denoiser), then is scored the same way: the NLL
bound on held-out sentences, and teacher perplexity, dist-2 and mean length of samples at two step counts,
beside the human references under the same teacher.

    python bench/recipe_ablation.py --teacher runs/teacher/model --steps 2000 --output runs/ablation
    python bench/recipe_ablation.py --teacher T --rows paper combined --steps 20 --output /tmp/a   # a quick check
    python bench/recipe_ablation.py --skip-training --rows hour-classify --decoder ddpm:clamp --teacher T --output O
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import torch
from decoding_ablation import parse_decoder  # bench/, beside this script

REPO = Path(__file__).resolve().parents[1]

# Each row: run-config overrides on the base config (configs/e2e-paper-recipe.yaml: the paper's recipe at CPU scale).
CLASSIFY = {"diffusion.prediction_type": "logits", "diffusion.embedding_scale": 4.0}  # √d for d = 16
FLOOR = {"diffusion.min_timestep": 100, "diffusion.stratified_timesteps": True}
SELF_CONDITIONING = {"diffusion.self_conditioning": True, "diffusion.self_conditioning_prob": 0.5}
EMBEDDING_LR = {"training.embedding_lr_scale": 10.0}
COMBINED = {**CLASSIFY, **EMBEDDING_LR, **FLOOR}  # the default after the first round of this issue
BUCKETS = {"data.bucket_by_length": True}
NO_DROPOUT = {"model.dropout": 0.0}
OUTPUT_PRIOR = {"diffusion.output_prior": True}
LR2 = {"training.learning_rate": 2e-3}
TUNED = {**COMBINED, **NO_DROPOUT, **BUCKETS, **LR2}
HOUR_PADDED_STEPS = 9660  # 16,000 × 1,546 / 2,560: the bucketed hour's positions, on padded batches
ROWS: dict[str, tuple[str, dict]] = {  # key: (label, overrides)
    "paper": ("paper's recipe", {}),
    "classify": ("+ x0 by classification (embeddings of norm √d)", CLASSIFY),
    "classify-lr": ("+ classification, embeddings at 10× lr", {**CLASSIFY, **EMBEDDING_LR}),
    "floor": ("+ noise floor t ≥ 100, stratified t", FLOOR),
    "selfcond": ("+ self-conditioning (50 %)", SELF_CONDITIONING),
    "combined": ("classification, 10× embedding lr, noise floor", COMBINED),
    "combined-selfcond": ("combined + self-conditioning", {**COMBINED, **SELF_CONDITIONING}),
    "bucket": ("combined + length buckets", {**COMBINED, **BUCKETS}),
    "nodrop": ("combined + no dropout", {**COMBINED, **NO_DROPOUT}),
    "lr2": ("combined + lr 2e-3", {**COMBINED, **LR2}),
    "nodrop-bucket": ("combined + no dropout + length buckets", {**COMBINED, **NO_DROPOUT, **BUCKETS}),
    "tuned": ("combined + no dropout + length buckets + lr 2e-3", TUNED),
    "tuned-prior": ("tuned + output prior", {**TUNED, **OUTPUT_PRIOR}),
    "tuned-selfcond": ("tuned + self-conditioning", {**TUNED, **SELF_CONDITIONING}),
    "tuned-lr4": ("tuned with lr 4e-3", {**TUNED, "training.learning_rate": 4e-3}),
    "tuned-floor200": ("tuned with the noise floor at t = 200", {**TUNED, "diffusion.min_timestep": 200}),
    "tuned-d32": (
        "tuned with embeddings of d = 32 (norm √32)",
        {**TUNED, "model.embedding_dim": 32, "diffusion.embedding_scale": 32**0.5},
    ),
    "hour": (  # with --steps 16000: configs/e2e-cpu-hour.yaml
        "tuned, 16,000 steps (≈ 60 one-thread minutes)",
        {**TUNED, "training.warmup_steps": 500, "training.ema_decay": 0.9995},
    ),
    # Equal one-thread time (≈ 2,000 steps of the 4 × 128 model, measured per step by bench/…): smaller and
    # shallower models take more steps; and the same model with twice the steps (two processes).
    "tuned-4k": ("tuned, 4,000 steps (2x compute)", {**TUNED, "training.max_steps": 4000}),
    "tuned-l2": (
        "tuned, 2 layers, 3,550 steps (equal time)",
        {**TUNED, "model.num_hidden_layers": 2, "training.max_steps": 3550},
    ),
    "tuned-h96": (
        "tuned, width 96, 2,900 steps (equal time)",
        {**TUNED, "model.hidden_size": 96, "training.max_steps": 2900},
    ),
    "tuned-b32": (
        "tuned, batch 32, 4,000 steps (equal time)",
        {**TUNED, "training.micro_batch_size": 32, "training.max_steps": 4000},
    ),
    "tuned-h64": (
        "tuned, width 64, 4,170 steps (equal time)",
        {**TUNED, "model.hidden_size": 64, "training.max_steps": 4170},
    ),
    "tuned-h64-b32": (
        "tuned, width 64, batch 32, 7,290 steps (equal time)",
        {**TUNED, "model.hidden_size": 64, "training.micro_batch_size": 32, "training.max_steps": 7290},
    ),
    "tuned-h48": (
        "tuned, width 48, 4,890 steps (equal time)",
        {**TUNED, "model.hidden_size": 48, "training.max_steps": 4890},
    ),
    "tuned-h64-l6": (
        "tuned, width 64, 6 layers, 2,770 steps (equal time)",
        {**TUNED, "model.hidden_size": 64, "model.num_hidden_layers": 6, "training.max_steps": 2770},
    ),
    "tuned-h64-lr4": (
        "tuned, width 64, lr 4e-3, 4,170 steps (equal time)",
        {**TUNED, "model.hidden_size": 64, "training.learning_rate": 4e-3, "training.max_steps": 4170},
    ),
    "tuned-h64-b16": (
        "tuned, width 64, batch 16, 12,200 steps (equal time)",
        {**TUNED, "model.hidden_size": 64, "training.micro_batch_size": 16, "training.max_steps": 12200},
    ),
    "tuned-h64-l6-b32": (
        "tuned, width 64, 6 layers, batch 32, 5,700 steps (equal time)",
        {
            **TUNED,
            "model.hidden_size": 64,
            "model.num_hidden_layers": 6,
            "training.micro_batch_size": 32,
            "training.max_steps": 5700,
        },
    ),
    "tuned-h64-b32-lr4": (
        "tuned, width 64, batch 32, lr 4e-3, 7,290 steps (equal time)",
        {
            **TUNED,
            "model.hidden_size": 64,
            "training.micro_batch_size": 32,
            "training.learning_rate": 4e-3,
            "training.max_steps": 7290,
        },
    ),
    "tuned-h64-lr8": (
        "tuned, width 64, lr 8e-3, 4,170 steps (equal time)",
        {**TUNED, "model.hidden_size": 64, "training.learning_rate": 8e-3, "training.max_steps": 4170},
    ),
    "tuned-h64-lr4-selfcond": (
        "tuned, width 64, lr 4e-3, self-conditioning, 3,560 steps (equal time)",
        {
            **TUNED,
            **SELF_CONDITIONING,
            "model.hidden_size": 64,
            "training.learning_rate": 4e-3,
            "training.max_steps": 3560,
        },
    ),
    "default": (  # configs/e2e-tiny.yaml, the README's main job (fits its five minutes on the dev machine)
        "the new default: width 64, lr 4e-3, 3,200 steps",
        {**TUNED, "model.hidden_size": 64, "training.learning_rate": 4e-3, "training.max_steps": 3200},
    ),
    # 60 one-thread minutes: each part alone on the paper's recipe at the compute of configs/e2e-cpu-hour.yaml
    # (16,000 steps of bucketed batches, ≈ 1,546 positions each): a row that computes on all 2,560 positions of a
    # padded batch gets 16,000 × 1,546 / 2,560 ≈ 9,660 steps; the bucketed row gets the 16,000.
    "hour-paper": ("paper's recipe (9,660 steps: the compute of the bucketed hour)", {"training.max_steps": HOUR_PADDED_STEPS}),
    "hour-classify": (
        "+ x0 by classification, embeddings of norm √d at 10× lr (9,660 steps)",
        {**CLASSIFY, **EMBEDDING_LR, "training.max_steps": HOUR_PADDED_STEPS},
    ),
    "hour-floor": ("+ noise floor t ≥ 100, stratified t (9,660 steps)", {**FLOOR, "training.max_steps": HOUR_PADDED_STEPS}),
    "hour-bucket": ("+ length buckets (16,000 steps)", {**BUCKETS, "training.max_steps": 16000}),
    "hour-optim": (
        "+ no dropout, lr 2e-3 (9,660 steps)",
        {**NO_DROPOUT, **LR2, "training.max_steps": HOUR_PADDED_STEPS},
    ),
    "hour-selfcond": (  # its no-grad forward on half the batches costs ≈ 1/6 more per step: 9,660 / (7/6) ≈ 8,280
        "+ self-conditioning, 50 % (8,280 steps)",
        {**SELF_CONDITIONING, "training.max_steps": 8280},
    ),
    "tuned-warp": ("tuned + time warping (CDCD)", {**TUNED, "diffusion.time_warping": True}),
    "tuned-prior-selfcond": (
        "tuned + output prior + self-conditioning",
        {**TUNED, **OUTPUT_PRIOR, **SELF_CONDITIONING},
    ),
}


def train(key: str, args: argparse.Namespace) -> Path:
    """Train one row in its own process (its output in OUTPUT/KEY/train.log); return its export directory."""
    out = args.output / key
    out.mkdir(parents=True, exist_ok=True)
    log = out / "train.log"
    settings = {
        "training.max_steps": args.steps,
        "training.max_minutes": None,
        "training.threads": args.threads,
        "training.output_dir": str(out),
        "training.num_samples": 0,
        "training.checkpoint_every": 0,
        **ROWS[key][1],  # a row may fix its own steps (equal time for a faster model)
    }
    command = [sys.executable, "train/diffusion.py", "--config", args.config]
    for name, value in settings.items():
        command += ["--set", f"{name}={'null' if value is None else json.dumps(value)}"]
    with log.open("w") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        subprocess.run(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, check=True)
    return out


def evaluate(model_dir: Path, teacher, held_out: list[str], args) -> dict:
    """The bound on held-out sentences; teacher perplexity, dist-2 and mean words at each step count."""
    import textdiff
    from textdiff.evaluation.fluency import teacher_score
    from textdiff.evaluation.harness import load_metric
    from textdiff.evaluation.likelihood import likelihood_bound
    from textdiff.data import frame_sequences

    model, tokenizer = textdiff.load_pretrained(str(model_dir))
    framed = frame_sequences(
        _as_dataset(held_out), tokenizer, model.config.max_position_embeddings, text_column="text"
    )[:]["input_ids"]
    bound = likelihood_bound(
        model,
        framed,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        num_timesteps=args.nll_timesteps,
        progress=False,
    )
    row = {"nll_bound": bound.nats_per_token, "nll_stderr": bound.stderr, "parameters": model.num_parameters(),
           "decoder": "saved" if args.decoder is None else str(args.decoder)}
    distinct = load_metric("distinct_n")
    decoding = {} if args.decoder is None else args.decoder.settings()  # None: the model's saved decoding
    for steps in args.sample_steps:
        started = time.perf_counter()
        ids = model.generate(num_return_sequences=args.num_samples, num_inference_steps=steps, seed=0, **decoding)
        texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
        row[f"decode_s_{steps}"] = time.perf_counter() - started
        row[f"ppl_{steps}"] = teacher_score(texts, teacher, tokenizer).perplexity
        row[f"dist2_{steps}"] = distinct.compute(predictions=texts, max_n=2)["dist-2"]
        row[f"words_{steps}"] = sum(len(t.split()) for t in texts) / len(texts)
        row[f"samples_{steps}"] = texts[:10]
    metrics = [json.loads(line) for line in (model_dir.parent / "metrics.jsonl").read_text().splitlines()]
    row["train_s"] = max(r.get("elapsed_s", 0) for r in metrics)
    row["train_steps"] = max(r.get("step", 0) for r in metrics)
    return row


def _as_dataset(texts: list[str]):
    import datasets

    return datasets.Dataset.from_dict({"text": texts})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", help="AR teacher directory (same vocabulary); needed unless --train-only")
    parser.add_argument("--config", default="configs/e2e-paper-recipe.yaml", help="the base run config")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps of every row")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--num-samples", type=int, default=200)
    parser.add_argument("--sample-steps", type=int, nargs="+", default=[16, 200])
    parser.add_argument("--nll-sentences", type=int, default=256)
    parser.add_argument("--nll-timesteps", type=int, default=50)
    parser.add_argument("--decoder", type=parse_decoder, default=None, help="decode every row this way, e.g. "
                        "ddpm:clamp (the paper's) or renoise:soft:0.5 (as bench/decoding_ablation.py writes them); "
                        "default: each model's saved decoding")
    parser.add_argument("--skip-training", action="store_true", help="evaluate rows already trained in --output")
    parser.add_argument("--train-only", action="store_true", help="train the rows, evaluate later (--skip-training)")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)

    if args.train_only:
        for key in args.rows:
            train(key, args)
        return
    if not args.teacher:
        parser.error("--teacher is needed to evaluate (or pass --train-only)")

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from textdiff.evaluation.fluency import teacher_score
    from textdiff.data import load_corpus

    teacher = AutoModelForCausalLM.from_pretrained(args.teacher).eval()
    test = load_corpus("data/e2e", "test")["text"]
    order = random.Random(0).sample(range(len(test)), len(test))
    human = [test[i] for i in order[: args.num_samples]]  # disjoint from the sentences of the bound
    held_out = [test[i] for i in order[args.num_samples : args.num_samples + args.nll_sentences]]
    path = args.output / "results.json"  # rows evaluated by earlier calls are kept (and reprinted)
    results = json.loads(path.read_text()) if path.is_file() else {}
    results.pop("human_perplexity", None)
    for key in args.rows:
        if not args.skip_training:
            train(key, args)
        results[key] = evaluate(args.output / key / "model", teacher, held_out, args)
        path.write_text(json.dumps(results, indent=2))
        print(f"{key}: {json.dumps({k: v for k, v in results[key].items() if not k.startswith('samples')})}")

    human_ppl = teacher_score(human, teacher, AutoTokenizer.from_pretrained(args.teacher)).perplexity
    s1, s2 = args.sample_steps[0], args.sample_steps[-1]
    print(
        f"\n{args.threads} thread(s) per run; teacher {args.teacher}; human references (test, "
        f"{len(human)}): teacher perplexity {human_ppl:.2f}\n"
    )
    print(
        f"| recipe | NLL bound (nats/token) | PPL {s1} steps (× human) | PPL {s2} steps (× human) | dist-2 {s2} | "
        f"words {s2} | steps | train s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for key, r in sorted(results.items(), key=lambda item: list(ROWS).index(item[0])):
        print(
            f"| {ROWS[key][0]} | {r['nll_bound']:.3f} ± {1.96 * r['nll_stderr']:.3f} | {r[f'ppl_{s1}']:.2f} "
            f"({r[f'ppl_{s1}'] / human_ppl:.2f}) | {r[f'ppl_{s2}']:.2f} ({r[f'ppl_{s2}'] / human_ppl:.2f}) | "
            f"{r[f'dist2_{s2}']:.3f} | {r[f'words_{s2}']:.1f} | {r['train_steps']} | {r['train_s']:.0f} |"
        )
    results["human_perplexity"] = human_ppl
    path.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
