"""The `textdiff` command. Thin: each subcommand parses its flags and calls the library (lazily, so that
`textdiff generate` does not import DeepSpeed).

textdiff train --config configs/e2e-tiny.yaml [--deepspeed configs/deepspeed/zero2.json] [--resume]
textdiff train --config e2e-tiny                  # a bundled config by name, from any directory
textdiff generate --model runs/e2e-tiny/model --num-samples 10 --steps 200 --seed 0
textdiff train-teacher --config configs/e2e-tiny.yaml --tokenizer runs/e2e-tiny/model
textdiff train-classifier --model runs/e2e-tiny/model --task pos
textdiff distill --config configs/e2e-tiny-distill.yaml   # a few-step student of runs/e2e-tiny/model
textdiff eval --model runs/e2e-tiny/model --teacher runs/e2e-tiny-teacher/model --num-samples 200
"""

from __future__ import annotations

import argparse
import logging
import math
import sys

from textdiff.utils import OneLineErrors

# What the command prints for its user (samples, tables, paths) goes through this logger; `main` sends it to stdout.
console = logging.getLogger("textdiff.cli")


def _route_output_to_stdout() -> None:
    """Send the command's output to the current stdout, plainly, once per invocation."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    console.handlers = [handler]
    console.setLevel(logging.INFO)
    console.propagate = False
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Loading weights: 100%": noise between a command and its output


def _generate(args: argparse.Namespace) -> int:
    model, tokenizer = _load(args.model, args.device)
    known = {"input_ids": _prompt_ids(tokenizer, args.prompt)}
    if args.infill:
        if args.prompt:
            raise ValueError("Pass either --prompt or --infill, not both.")
        import torch

        from textdiff.tokenization import encode_infill

        ids, mask = encode_infill(tokenizer, args.infill, args.max_length or model.config.max_position_embeddings)
        known = {"input_ids": torch.tensor([ids]), "infill_mask": torch.tensor([mask])}
    controls = _controls(args, tokenizer)
    guidance = _guidance_settings(args)
    for start in range(0, args.num_samples, args.batch_size):  # memory bounded by the batch, not the request
        size = min(args.batch_size, args.num_samples - start)
        output = model.generate(
            num_return_sequences=size,
            max_length=None if args.infill else args.max_length,
            controls=controls,
            **guidance,
            num_inference_steps=args.steps,
            sampler=args.sampler,
            clamp=args.clamp,
            x0_temperature=args.x0_temperature,
            seed=args.seed + start,
            return_dict_in_generate=True,
            **known,
        )
        if args.show_steps and start == 0:  # the first batch's denoising, then every text
            _animate(output, tokenizer, size)
        for text in tokenizer.batch_decode(output.sequences, skip_special_tokens=True):
            console.info(text)
    return 0


def _guidance_settings(args: argparse.Namespace) -> dict:
    """The guidance settings given on the command line (the others default as in `generate`)."""
    names = ("guidance_scale", "guidance_steps", "guidance_step_size", "fluency_weight", "guidance_start", "cfg_scale")
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _edit(args: argparse.Namespace) -> int:
    """`textdiff edit` and `textdiff correct`: noise the text part of the way and denoise it back."""
    import torch

    model, tokenizer = _load(args.model, args.device)
    ids = tokenizer([args.text] * args.num_samples, return_tensors="pt")["input_ids"]  # (N, P)
    if tokenizer.unk_token_id is not None and (ids == tokenizer.unk_token_id).any():
        console.info("Note: words outside the model's vocabulary are read as [UNK] and will be rewritten.")
    keep_mask = None
    if getattr(args, "keep", None):
        try:
            keep = [int(i) for i in args.keep.split(",")]
        except ValueError:
            raise ValueError(f"--keep takes word indices such as 0,1, got {args.keep!r}.") from None
        if not all(0 <= i < ids.shape[1] for i in keep):
            raise ValueError(f"--keep indices must be between 0 and {ids.shape[1] - 1} (the text's words).")
        keep_mask = torch.zeros(ids.shape, dtype=torch.bool)
        keep_mask[:, keep] = True
    if args.command == "correct":  # keep the words the model reads confidently; re-noise only the others
        from textdiff.editing import confident_words

        keep_mask = confident_words(model, ids, args.keep_threshold, torch.Generator().manual_seed(args.seed))
    controls = _controls(args, tokenizer) if args.command == "edit" else None
    output = model.edit(
        ids,
        args.strength,
        keep_mask=keep_mask,
        controls=controls,
        **_guidance_settings(args),
        num_inference_steps=args.steps,
        sampler=args.sampler,
        clamp=args.clamp,
        x0_temperature=args.x0_temperature,
        seed=args.seed,
        return_dict_in_generate=True,
    )
    if args.show_steps:
        _animate(output, tokenizer, args.num_samples)
    for text in tokenizer.batch_decode(output.sequences, skip_special_tokens=True):
        console.info(text)
    return 0


def _controls(args: argparse.Namespace, tokenizer) -> list | None:
    """The controls given as flags (--field, --mention, --pos, --span, --length) and/or a JSON file (--controls)."""
    import json
    from pathlib import Path

    from textdiff.guidance.controls import controls_from_dict

    spec: dict = {}
    if args.controls:
        path = Path(args.controls)
        if not path.is_file():
            raise ValueError(f"--controls {path} does not exist.")
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"--controls {path} is not valid JSON: {error}") from None
    for item in args.field or []:
        field, sep, value = item.partition("=")
        if not sep or not field or not value:
            raise ValueError(f"--field takes FIELD=VALUE (e.g. food=Italian), got {item!r}.")
        spec.setdefault("field_value", {})[field] = value
    if args.mention is not None:
        spec["mentions"] = args.mention
    if args.pos:
        spec["pos"] = args.pos.split()
    for item in args.span or []:
        parts = item.split(",")
        if len(parts) != 3 or not parts[0].strip().isdigit() or not parts[1].strip().isdigit():
            raise ValueError(f"--span takes START,END,LABEL (e.g. 0,2,NP), got {item!r}.")
        spec.setdefault("spans", []).append([int(parts[0]), int(parts[1]), parts[2].strip()])
    if args.length is not None:
        spec["length"] = args.length
    return controls_from_dict(spec, tokenizer) or None


def _load(directory: str, device: str | None):
    import torch

    from textdiff.loading import load_pretrained

    if device:
        try:
            kind = torch.device(device).type
        except RuntimeError:
            raise ValueError(f"--device {device!r} is not a device; use e.g. cpu, cuda or cuda:1.") from None
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"--device {device}: this torch ({torch.__version__}) sees no CUDA GPU; leave --device out."
            )
    model, tokenizer = load_pretrained(directory)
    if device:
        model.to(torch.device(device))
    return model, tokenizer


def _prompt_ids(tokenizer, prompt: str | None):
    """[START] + the prompt's ids, or None."""
    if not prompt:
        return None
    import torch

    from textdiff.tokenization import encode_prompt

    return torch.tensor([encode_prompt(tokenizer, prompt)])


def _animate(output, tokenizer, num_samples: int) -> None:
    """Redraw the samples in place after every step (plain lines every ~10% of the steps when not a terminal)."""
    import shutil
    import time

    from textdiff.visualization import Trajectory, terminal_frames

    color = sys.stdout.isatty()
    width = shutil.get_terminal_size().columns if color else None  # redrawn lines must not wrap
    frames = [terminal_frames(Trajectory.from_output(output, tokenizer, b), color, width) for b in range(num_samples)]
    steps = len(output.timesteps)
    if not color:
        for i in sorted({round(k * (steps - 1) / 10) for k in range(11)}):
            console.info("\n".join(sample[i] for sample in frames) + "\n")
        return
    delay = min(0.05, 6.0 / steps)
    for i in range(steps):
        if i:
            sys.stdout.write(f"\033[{num_samples}F")  # back to the first line of the block
        sys.stdout.write("\n".join("\033[2K" + sample[i] for sample in frames) + "\n")
        sys.stdout.flush()
        time.sleep(delay)
    console.info("")


def _visualize(args: argparse.Namespace) -> int:
    from pathlib import Path

    from textdiff.decoding_config import DecodingConfig
    from textdiff.visualization import Trajectory, trajectory_html, trajectory_svg

    output_path = Path(args.output)
    if output_path.suffix not in (".svg", ".html", ".htm"):  # before any work, and before any folder is made
        raise ValueError(f"--output must end in .svg (heatmap picture) or .html (animated page), got {output_path}.")
    model, tokenizer = _load(args.model, args.device)
    output = model.generate(
        num_return_sequences=1,
        num_inference_steps=args.steps,
        sampler=args.sampler,
        seed=args.seed,
        input_ids=_prompt_ids(tokenizer, args.prompt),
        return_dict_in_generate=True,
    )
    trajectory = Trajectory.from_output(output, tokenizer)
    sampler = DecodingConfig.resolve(getattr(model, "generation_config", None), sampler=args.sampler).sampler
    title = f"{sampler}, {len(output.timesteps)} steps, seed {args.seed}"
    output_path.parent.mkdir(parents=True, exist_ok=True)
    if output_path.suffix == ".svg":
        output_path.write_text(trajectory_svg(trajectory, num_rows=args.rows, title=title), encoding="utf-8")
    elif output_path.suffix in (".html", ".htm"):
        output_path.write_text(trajectory_html(trajectory), encoding="utf-8")
    else:
        raise ValueError(f"--output must end in .svg (heatmap picture) or .html (animated page), got {output_path}.")
    console.info(" ".join(trajectory.words[-1]))
    console.info(f"Wrote {output_path}")
    return 0


def _train(rest: list[str]) -> int:
    from textdiff.training.diffusion import main as train_main

    train_main(rest, prog="textdiff train")
    return 0


def _train_teacher(rest: list[str]) -> int:
    from textdiff.training.teacher import main as teacher_main

    teacher_main(rest, prog="textdiff train-teacher")
    return 0


def _distill(rest: list[str]) -> int:
    from textdiff.training.distill import main as distill_main

    console.info(f"Exported the student to {distill_main(rest, prog='textdiff distill')}")
    return 0


def _train_classifier(rest: list[str]) -> int:
    from textdiff.training.classifier import main as classifier_main

    console.info(f"Saved to {classifier_main(rest, prog='textdiff train-classifier')}")
    return 0


def _export(rest: list[str]) -> int:
    from textdiff.training.export import main as export_main

    console.info(f"Exported to {export_main(rest, prog='textdiff export')}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    """`textdiff serve`: the page and its API (the `serve` extra: FastAPI and uvicorn)."""
    try:
        from textdiff.serving import DecodeService, ServerLimits, saved_classifiers, serve
    except ImportError as error:
        raise ValueError(
            f'textdiff serve needs the serve extra ({error.name} is missing): pip install "textdiff[serve]".'
        ) from None
    if args.port > 65535:
        raise ValueError(f"--port must be at most 65535, got {args.port}.")
    model, tokenizer = _load(args.model, args.device)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    limits = ServerLimits(max_steps=args.max_steps, max_samples=args.max_samples, max_queue=args.max_queue)
    serve(DecodeService(model, tokenizer, saved_classifiers(args.model, args.device), limits), args.host, args.port)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from textdiff.evaluation.harness import markdown_table, run_evaluation, write_report

    if args.control_targets:
        return _eval_control(args)

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
    console.info(markdown_table(report))
    console.info(f"\nReport: {output} (JSON) and {output.with_suffix('.md')} (table)")
    return 0


def _eval_control(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from textdiff.evaluation.control_eval import control_markdown, run_control_evaluation

    report = run_control_evaluation(
        args.model,
        args.teacher,
        args.control_targets,
        num_targets=args.num_targets,
        num_inference_steps=args.steps,
        batch_size=args.batch_size,
        guidance_scale=args.guidance_scale,
        guidance_steps=args.guidance_steps,
        guidance_step_size=args.guidance_step_size,
        fluency_weight=args.fluency_weight,
        guidance_start=args.guidance_start,
        cfg_scale=args.cfg_scale,
        semantic_route=args.semantic_route,
        x0_temperature=args.x0_temperature,
        seed=args.seed,
    )
    output = Path(args.output or Path(args.model) / f"control-{report['suite']}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    output.with_suffix(".md").write_text(control_markdown(report) + "\n", encoding="utf-8")
    console.info(control_markdown(report))
    for target, text in report["rows"][0]["examples"]:
        console.info(f"  {target}\n    -> {text}")
    console.info(f"\nReport: {output} (JSON) and {output.with_suffix('.md')} (table)")
    return 0


def _number(kind: type, low: float | None = None, strict: bool = False):
    """An argparse type: a finite `kind` (int or float) above `low` (strictly if `strict`), else one clear line."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if low is not None and (value <= low if strict else value < low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low:g}, got {text!r}")
        return value

    return parse


COUNT, NON_NEGATIVE = _number(int, 0, strict=True), _number(int, 0)
SCALE, POSITIVE = _number(float, 0.0), _number(float, 0.0, strict=True)


# `textdiff correct`'s defaults: re-noise the words the model gives < 0.5 at t_min, to strength 0.3 (the lowest
# teacher perplexity without raising the word error rate in bench/correction.py; docs/RESULTS.md, issue 16).
CORRECTION_STRENGTH, CORRECTION_THRESHOLD = 0.3, 0.5


def _add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    from textdiff.samplers import SAMPLERS

    parser.add_argument(
        "--steps",
        type=COUNT,
        default=None,
        help="denoising steps, respaced from the training steps (default: the model's saved setting, or 200)",
    )
    parser.add_argument(
        "--sampler",
        default=None,
        choices=sorted(SAMPLERS),
        help="default: the model's saved setting, or ddpm",
    )
    parser.add_argument(
        "--clamp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="snap x̂0 to the nearest word embedding at every step (default: the model's saved setting, or on)",
    )
    parser.add_argument(
        "--x0-temperature",
        type=POSITIVE,
        default=None,
        help="τ of the soft x̂0 = softmax(logits/τ)·E of a model that classifies words; 0.5 helps at few steps",
    )
    parser.add_argument("--seed", type=NON_NEGATIVE, default=0)
    parser.add_argument("--device", default=None, help="e.g. cuda; default: cpu")
    parser.add_argument("--show-steps", action="store_true", help="animate the text emerging from noise")


def _add_control_arguments(parser: argparse.ArgumentParser) -> None:
    control = parser.add_argument_group("controls (classifier guidance; classifiers from `textdiff train-classifier`)")
    control.add_argument("--field", action="append", help="semantic content FIELD=VALUE, e.g. food=Italian")
    control.add_argument(
        "--mention",
        default=None,
        help='words the text should contain, e.g. "The Eagle" (guided by the denoiser itself)',
    )
    control.add_argument("--pos", default=None, help='parts of speech, one per word: "PROPN AUX DET NOUN PUNCT"')
    control.add_argument("--span", action="append", help="a constituent START,END,LABEL (word indices), e.g. 0,1,NP")
    control.add_argument("--length", type=COUNT, default=None, help="exact number of words")
    control.add_argument("--controls", default=None, help='JSON file: {"field_value": {...}, "pos": [...], ...}')
    control.add_argument("--guidance-scale", type=SCALE, default=None, help="weight w of log p(control)")
    control.add_argument("--guidance-steps", type=NON_NEGATIVE, default=None, help="K Adagrad steps per denoising step")
    control.add_argument("--guidance-step-size", type=POSITIVE, default=None, help="Adagrad step size")
    control.add_argument("--fluency-weight", type=SCALE, default=None, help="λ of the fluency term")
    control.add_argument("--guidance-start", type=SCALE, default=None, help="share of the first steps left unguided")
    control.add_argument(
        "--cfg-scale", type=_number(float), default=None, help="field values by classifier-free guidance"
    )


def build_parser() -> argparse.ArgumentParser:
    from textdiff.samplers import SAMPLERS

    parser = OneLineErrors(prog="textdiff", description="Text diffusion language models.")
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

    commands.add_parser(
        "train-classifier",
        help="train a classifier on noisy latents (field_value, pos, spans) for guided generation",
        add_help=False,
    )
    commands.add_parser(
        "distill",
        help="distil a model's many-step decoding into a few-step student (flags: see `textdiff distill --help`)",
        add_help=False,
    )
    commands.add_parser(
        "export",
        help="a checkpoint (EMA or zero_to_fp32-consolidated raw weights) as a HF model directory",
        add_help=False,
    )
    ev = commands.add_parser("eval", help="teacher perplexity, NLL bound, diversity and overlap vs AR and humans")
    ev.add_argument("--model", required=True, help="the diffusion model's directory")
    ev.add_argument("--teacher", required=True, help="a causal LM directory with the same vocabulary")
    ev.add_argument("--baseline", default=None, help="the AR baseline's directory (default: the teacher)")
    ev.add_argument("--num-samples", type=COUNT, default=200)
    ev.add_argument("--steps", type=COUNT, default=200, help="denoising steps of the diffusion samples")
    ev.add_argument("--data", default=None, help="corpus with the held-out split (default: the bundled E2E)")
    ev.add_argument("--split", default="test")
    ev.add_argument(
        "--num-references",
        type=COUNT,
        default=300,
        help="references for BLEU / ROUGE-L (disjoint from the human sample)",
    )
    ev.add_argument("--nll-sentences", type=COUNT, default=256, help="held-out sentences for the NLL figures")
    ev.add_argument("--nll-timesteps", type=COUNT, default=100, help="Monte-Carlo strata over t for the bound")
    ev.add_argument("--seed", type=NON_NEGATIVE, default=0)
    ev.add_argument("--output", default=None, help="JSON report path (default: MODEL/eval.json)")
    ev.add_argument(
        "--control-targets",
        default=None,
        help="evaluate control instead: a Diffusion-LM target file (data/control_targets/target_*.json), or a "
        "suite's name for its bundled file: semantic, pos, spans, spans-remade, tree, tree-pos, compose, length",
    )
    ev.add_argument("--num-targets", type=COUNT, default=None, help="use only the first N control targets")
    ev.add_argument("--batch-size", type=COUNT, default=50, help="sequences decoded at once (control evaluation)")
    ev.add_argument("--guidance-scale", type=SCALE, default=None, help="w (default: DecodingConfig's)")
    ev.add_argument("--guidance-steps", type=NON_NEGATIVE, default=None, help="K (default: DecodingConfig's)")
    ev.add_argument("--guidance-step-size", type=POSITIVE, default=None, help="η (default: DecodingConfig's)")
    ev.add_argument("--fluency-weight", type=SCALE, default=None, help="λ (default: the paper's value for the task)")
    ev.add_argument("--guidance-start", type=SCALE, default=None, help="share of the first steps left unguided")
    ev.add_argument("--cfg-scale", type=_number(float), default=None, help="field values by classifier-free guidance")
    ev.add_argument(
        "--x0-temperature", type=POSITIVE, default=None, help="τ of the soft x̂0 (control evaluation; default: saved)"
    )
    ev.add_argument(
        "--semantic-route",
        choices=("classifier", "words"),
        default="classifier",
        help="field values through their trained classifier, or through the denoiser's own word distribution",
    )

    gen = commands.add_parser("generate", help="decode text from noise with a saved model")
    gen.add_argument("--model", required=True, help="directory written by save_pretrained (model + tokenizer)")
    gen.add_argument("--num-samples", type=COUNT, default=10)
    gen.add_argument("--batch-size", type=COUNT, default=64, help="sequences decoded at once (memory grows with it)")
    gen.add_argument("--max-length", type=COUNT, default=None, help="positions to decode (default: the model's)")
    _add_decoding_arguments(gen)
    gen.add_argument("--prompt", default=None, help="text to continue (kept fixed; the rest is denoised)")
    gen.add_argument(
        "--infill", default=None, help='text with blanks: "The Eagle is a <mask> <mask> near Burger King ."'
    )
    _add_control_arguments(gen)

    edit = commands.add_parser("edit", help="rewrite a text by noising it part of the way and denoising it back")
    edit.add_argument("--model", required=True, help="directory written by save_pretrained (model + tokenizer)")
    edit.add_argument("--text", required=True, help='the text to edit, e.g. "The Eagle serves Italian food ."')
    edit.add_argument("--strength", type=_number(float, 0.0), required=True, help="0 (unchanged) … 1 (rewritten)")
    edit.add_argument("--keep", default=None, help="word indices to keep exactly, e.g. 0,1")
    edit.add_argument("--num-samples", type=COUNT, default=1, help="edits of the same text (different seeds)")
    _add_decoding_arguments(edit)
    _add_control_arguments(edit)

    correct = commands.add_parser("correct", help="repair a text: re-noise the words the model doubts, denoise them")
    correct.add_argument("--model", required=True, help="directory written by save_pretrained (model + tokenizer)")
    correct.add_argument("--text", required=True, help='the text to repair, e.g. "The Eagle is a a pub near the ."')
    correct.add_argument(
        "--strength", type=_number(float, 0.0), default=CORRECTION_STRENGTH, help="how far to noise the text"
    )
    correct.add_argument(
        "--keep-threshold",
        type=_number(float, 0.0),
        default=CORRECTION_THRESHOLD,
        help="keep the words the model itself gives at least this probability (above 1: re-noise every word)",
    )
    correct.add_argument("--num-samples", type=COUNT, default=1, help="corrections of the same text")
    _add_decoding_arguments(correct)

    vis = commands.add_parser("visualize", help="draw a decoding trajectory: SVG heatmap or animated HTML page")
    vis.add_argument("--model", required=True)
    vis.add_argument("--output", required=True, help="trajectory.svg or trajectory.html")
    vis.add_argument("--steps", type=COUNT, default=None)
    vis.add_argument("--sampler", default=None, choices=sorted(SAMPLERS))
    vis.add_argument("--seed", type=NON_NEGATIVE, default=0)
    vis.add_argument("--prompt", default=None)
    vis.add_argument("--rows", type=COUNT, default=16, help="steps shown in the SVG heatmap")
    vis.add_argument("--device", default=None)

    serve = commands.add_parser("serve", help="a web page: set the controls, press generate, watch the words settle")
    serve.add_argument("--model", required=True, help="directory written by save_pretrained (model + tokenizer)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    serve.add_argument("--port", type=_number(int, 1), default=7860)
    serve.add_argument("--max-steps", type=COUNT, default=1000, help="most denoising steps a request may ask for")
    serve.add_argument("--max-samples", type=COUNT, default=8, help="most texts per request")
    serve.add_argument("--max-queue", type=COUNT, default=64, help="most requests waiting at once (then 503)")
    serve.add_argument(
        "--threads", type=COUNT, default=None, help="torch's CPU threads for decoding (default: torch's)"
    )
    serve.add_argument("--device", default=None, help="e.g. cuda; default: cpu")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _route_output_to_stdout()
    parser = build_parser()
    try:
        if argv and argv[0] == "train":  # the training scripts own their flags
            return _train(argv[1:])
        if argv and argv[0] == "train-teacher":
            return _train_teacher(argv[1:])
        if argv and argv[0] == "train-classifier":
            return _train_classifier(argv[1:])
        if argv and argv[0] == "export":
            return _export(argv[1:])
        if argv and argv[0] == "distill":
            return _distill(argv[1:])
        args = parser.parse_args(argv)
        commands = {
            "eval": _eval,
            "visualize": _visualize,
            "generate": _generate,
            "edit": _edit,
            "correct": _edit,
            "serve": _serve,
        }
        return commands[args.command](args)
    except (ValueError, FloatingPointError) as error:
        parser.exit(2, f"textdiff {argv[0]}: error: {' '.join(str(error).split())}\n")


if __name__ == "__main__":
    sys.exit(main())
