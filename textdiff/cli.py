"""The `textdiff` command. Thin: each subcommand parses its flags and calls the library, or (lazily) `train/`.

textdiff train --config configs/e2e-tiny.yaml [--deepspeed configs/deepspeed/zero2.json] [--resume]
textdiff generate --model runs/e2e-tiny/model --num-samples 10 --steps 200 --seed 0
textdiff train-teacher --config configs/e2e-tiny.yaml --tokenizer runs/e2e-tiny/model
textdiff eval --model runs/e2e-tiny/model --teacher runs/e2e-tiny-teacher/model --num-samples 200
"""

from __future__ import annotations

import argparse
import sys


def _generate(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoModel, AutoTokenizer

    import textdiff  # noqa: F401  (registers the Auto classes)
    from textdiff.tokenization import check_tokenizer_matches

    model = AutoModel.from_pretrained(args.model)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    check_tokenizer_matches(tokenizer, model.config.vocab_size)
    if args.device:
        model.to(torch.device(args.device))
    ids = model.generate(
        num_return_sequences=args.num_samples,
        max_length=args.max_length,
        num_inference_steps=args.steps,
        sampler=args.sampler,
        clamp=not args.no_clamp,
        seed=args.seed,
    )
    for text in tokenizer.batch_decode(ids, skip_special_tokens=True):
        print(text)
    return 0


def _train(rest: list[str]) -> int:
    from train.diffusion import main as train_main

    train_main(rest)
    return 0


def _train_teacher(rest: list[str]) -> int:
    from train.teacher import main as teacher_main

    teacher_main(rest)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from eval.harness import markdown_table, run_evaluation, write_report

    report = run_evaluation(
        args.model,
        args.teacher,
        baseline_dir=args.baseline,
        num_samples=args.num_samples,
        num_inference_steps=args.steps,
        data=args.data,
        num_references=args.num_references,
        split=args.split,
        nll_sentences=args.nll_sentences,
        nll_timesteps=args.nll_timesteps,
        seed=args.seed,
    )
    output = Path(args.output or Path(args.model) / "eval.json")
    write_report(report, output)
    print(markdown_table(report))
    print(f"\nReport: {output} (JSON) and {output.with_suffix('.md')} (table)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textdiff", description="Text diffusion language models.")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser(
        "train",
        help="train a diffusion LM with DeepSpeed (flags: see `textdiff train --help`)",
        add_help=False,
    )
    commands.add_parser(
        "train-teacher",
        help="train the autoregressive teacher / baseline (GPT-2 architecture) on the same data and vocabulary",
        add_help=False,
    )

    ev = commands.add_parser("eval", help="teacher perplexity, NLL bound, diversity and overlap vs AR and humans")
    ev.add_argument("--model", required=True, help="the diffusion model's directory")
    ev.add_argument("--teacher", required=True, help="a causal LM directory with the same vocabulary")
    ev.add_argument("--baseline", default=None, help="the AR baseline's directory (default: the teacher)")
    ev.add_argument("--num-samples", type=int, default=200)
    ev.add_argument("--steps", type=int, default=200, help="denoising steps of the diffusion samples")
    ev.add_argument("--data", default="data/e2e", help="corpus with the held-out split")
    ev.add_argument("--split", default="test")
    ev.add_argument(
        "--num-references", type=int, default=300, help="references for BLEU / ROUGE-L (disjoint from the human sample)"
    )
    ev.add_argument("--nll-sentences", type=int, default=256, help="held-out sentences for the NLL figures")
    ev.add_argument("--nll-timesteps", type=int, default=100, help="Monte-Carlo strata over t for the bound")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--output", default=None, help="JSON report path (default: MODEL/eval.json)")

    gen = commands.add_parser("generate", help="decode text from noise with a saved model")
    gen.add_argument("--model", required=True, help="directory written by save_pretrained (model + tokenizer)")
    gen.add_argument("--num-samples", type=int, default=10)
    gen.add_argument("--steps", type=int, default=200, help="denoising steps (respaced from the training steps)")
    gen.add_argument("--max-length", type=int, default=None, help="positions to decode (default: the model's)")
    gen.add_argument("--sampler", default="ddpm", choices=["ddpm", "ddim", "dpm-solver++"])
    gen.add_argument("--no-clamp", action="store_true", help="turn off the clamping trick")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--device", default=None, help="e.g. cuda; default: cpu")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        if argv and argv[0] == "train":  # the training scripts own their flags
            return _train(argv[1:])
        if argv and argv[0] == "train-teacher":
            return _train_teacher(argv[1:])
        args = parser.parse_args(argv)
        return _eval(args) if args.command == "eval" else _generate(args)
    except ValueError as error:
        parser.exit(2, f"textdiff {argv[0]}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
