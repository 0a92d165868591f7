"""Train a classifier on noisy latents for classifier-guided control (Diffusion-LM §5.2, App. B), top to bottom.

The diffusion model is frozen: its word embeddings map each training sentence to x0 = EMB(w), a timestep
t ~ U{−1, …, T−1} is drawn (−1 = clean), x_t ~ q(x_t | x0), and the classifier learns p(c | x_t, t). Labels come
from the corpus itself:

    field_value   the E2E meaning representation of each sentence ("name[The Vaults], food[English], …")
    pos           the oracle tagger's 12 universal tags on the sentence (evaluation/oracles.py), + START/END/PAD
    spans         the span oracle's constituents (evaluation/span_parser.py), + as many random non-constituents

The classifier is saved with `save_pretrained` beside the model (<model>/classifiers/<task>/, with eval.json:
held-out accuracy at several noise levels), where `generate(controls=...)` finds it.

    textdiff train-classifier --model runs/e2e-cpu-long/model --task pos --minutes 10

The classifiers are small (≈ 0.12 M parameters at the default 64 × 2 layers) and train in minutes on one CPU
core. They train through the loop every textdiff model trains with (`TrainingLoop`: DeepSpeed's engine with the
bundled ZeRO-0 config, AdamW with warm-up and linear decay, checkpoints, metrics.jsonl, --resume, SIGTERM);
the run's files sit beside the saved classifier.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from textdiff.data import BatchOrder, load_corpus
from textdiff.e2e import parse_mr
from textdiff.guidance import IGNORE, TASKS, LatentClassifier, LatentClassifierConfig, classifier_path
from textdiff.guidance.controls import FRAME_LABELS
from textdiff.loading import load_pretrained
from textdiff.resources import bundled
from textdiff.schedules import NoiseSchedule
from textdiff.training.config import TrainingSection
from textdiff.training.distributed import cleanup_distributed, setup_distributed
from textdiff.training.engine import build_deepspeed_config
from textdiff.training.loop import TrainingLoop
from textdiff.utils import OneLineErrors, randn_like

logger = logging.getLogger("textdiff.train")

UNIVERSAL_TAGS = ("ADJ", "ADP", "ADV", "CONJ", "DET", "NOUN", "NUM", "PRT", "PRON", "VERB", ".", "X")
SPANS_PER_SENTENCE = 12  # at most this many constituents per sentence, and as many non-constituents


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    parser = OneLineErrors(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the diffusion model's directory")
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--data", default=None, help="corpus (local folder or datasets hub id; default: bundled E2E)")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--mr-column", default="mr", help="meaning representations, for --task field_value")
    parser.add_argument("--max-sentences", type=int, default=None, help="use only this many training sentences")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--minutes", type=float, default=None, help="stop after this much training time")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--output", default=None, help="default: MODEL/classifiers/TASK")
    parser.add_argument("--init-from", default=None, help="continue training a saved classifier of the same task")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def frame(ids: list[int], length: int, bos: int, eos: int, pad: int) -> list[int]:
    return [bos, *ids, eos] + [pad] * (length - len(ids) - 2)


# Labels per task. Each returns (settings, rows): the classifier's label set (`fields` or `labels`) and one target
# row per sentence for `LatentClassifier.log_prob`. Given `settings` (the training split's), those are kept and
# anything outside them is IGNOREd.


def field_value_rows(mrs: list[str], settings: dict | None = None) -> tuple[dict, list[torch.Tensor]]:
    """Per sentence, (F,) value indices of its meaning representation: 0 = field absent, i + 1 = values[i]."""
    parsed = [parse_mr(mr) for mr in mrs]
    if settings is None:
        fields: dict[str, set[str]] = {}
        for record in parsed:
            for field, value in record.items():
                fields.setdefault(field, set()).add(value)
        settings = {"fields": {field: sorted(values) for field, values in sorted(fields.items())}}
    ordered = settings["fields"]

    def index(record: dict[str, str], field: str) -> int:
        if field not in record:
            return 0
        return ordered[field].index(record[field]) + 1 if record[field] in ordered[field] else IGNORE

    return settings, [torch.tensor([index(r, f) for f in ordered]) for r in parsed]


def pos_rows(texts: list[str], length: int) -> tuple[dict, list[torch.Tensor]]:
    """Per sentence, (L,) tags of START, the oracle's universal tag of each word, END, then PAD."""
    from textdiff.evaluation.oracles import PosOracle

    oracle, labels = PosOracle(), [*FRAME_LABELS, *UNIVERSAL_TAGS]
    rows = []
    for text in tqdm(texts, desc="Tagging with the oracle"):
        tags = ["START", *oracle.tag(text.split()), "END"]
        rows.append(torch.tensor([labels.index(t) for t in tags + ["PAD"] * (length - len(tags))]))
    return {"labels": labels}, rows


def span_rows(texts: list[str], rng: random.Random, settings: dict | None = None) -> tuple[dict, list[torch.Tensor]]:
    """Per sentence, (2S, 3) rows (start, end, label) at latent positions: up to S of the span oracle's
    constituents and as many random non-constituents (label 0, NONE); unused rows are IGNORE."""
    from textdiff.evaluation.span_parser import SpanOracle

    oracle = SpanOracle()
    parses = [oracle.parse(text.split()) for text in tqdm(texts, desc="Parsing with the span oracle")]
    if settings is None:
        settings = {"labels": ["NONE", *sorted({label for parse in parses for _, _, label in parse})]}
    labels = settings["labels"]
    rows = []
    for text, parse in zip(texts, parses):
        n = len(text.split())
        gold = rng.sample(sorted(parse), min(len(parse), SPANS_PER_SENTENCE))
        others = [(i, j) for i in range(n) for j in range(i, n) if not any((i, j) == g[:2] for g in parse)]
        negatives = rng.sample(others, min(len(others), SPANS_PER_SENTENCE))
        row = torch.full((2 * SPANS_PER_SENTENCE, 3), IGNORE)
        row[:, :2] = 1
        spans = [(i + 1, j + 1, labels.index(label) if label in labels else IGNORE) for i, j, label in gold]
        spans += [(i + 1, j + 1, 0) for i, j in negatives]
        if spans:
            row[: len(spans)] = torch.tensor(spans)
        rows.append(row)
    return settings, rows


# How each classifier task's training targets are made from the corpus: (texts, MRs, L, rng, settings) ->
# (settings, rows). The keys are the tasks of textdiff.guidance.tasks.CLASSIFIER_TASKS.
LABELLERS = {
    "field_value": lambda texts, mrs, length, rng, settings: field_value_rows(mrs, settings),
    "pos": lambda texts, mrs, length, rng, settings: pos_rows(texts, length),
    "spans": lambda texts, mrs, length, rng, settings: span_rows(texts, rng, settings),
}


def label_rows(task, texts, mrs, length: int, rng: random.Random, settings: dict | None = None):
    return LABELLERS[task](texts, mrs, length, rng, settings)


def encode(split, tokenizer, task, args, length, rng, settings=None):
    """Framed ids (N, L) and target rows for one split; sentences that do not fit L, or whose words the tokenizer
    splits (labels are per word), are left out."""
    texts, mrs, ids = [], [], []
    for row in split:
        words = row[args.text_column].split()
        encoded = tokenizer(row[args.text_column], add_special_tokens=False, verbose=False)["input_ids"]
        if task != "field_value" and len(encoded) != len(words):
            raise ValueError(
                "Classifier labels are per word, but the model's tokenizer splits words into pieces; train the "
                "diffusion model with tokenizer.kind: word to use POS and span controls."
            )
        if len(encoded) + 2 > length:
            continue
        texts.append(row[args.text_column])
        mrs.append(row.get(args.mr_column))
        ids.append(frame(encoded, length, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id))
    if task == "field_value" and any(mr is None for mr in mrs):
        raise ValueError(f"--task field_value needs a meaning-representation column {args.mr_column!r} in the data.")
    settings, targets = label_rows(task, texts, mrs, length, rng, settings)
    return settings, torch.tensor(ids), torch.stack(targets)


def noisy_latents(model, schedule: NoiseSchedule, ids: torch.Tensor, t: torch.Tensor, generator) -> torch.Tensor:
    """x_t ~ q(x_t | EMB(w)) for ids (B, L) at timesteps t (B,), where t = −1 is the clean EMB(w): (B, L, d)."""
    x0 = model.embed(ids)
    if (t < 0).all():  # all clean: no noise drawn
        return x0
    noisy = schedule.q_sample(x0, t.clamp(min=0), randn_like(x0, generator))
    return torch.where((t < 0)[:, None, None], x0, noisy)


def accuracy(classifier, model, ids, targets, timestep: int, schedule: NoiseSchedule, generator) -> float:
    """Share of counted target entries the classifier gets right from x_t at one timestep."""
    with torch.no_grad():
        t = torch.full((ids.shape[0],), timestep, dtype=torch.long, device=ids.device)
        x_t = noisy_latents(model, schedule, ids, t, generator)
        logits, labels = classifier.logits_and_labels(x_t, t, targets)
        keep = labels != IGNORE
        return float(((logits.argmax(-1) == labels) & keep).sum() / keep.sum())


def main(argv: list[str] | None = None, prog: str | None = None) -> Path:
    args = parse_args(argv, prog)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # before the process group: data and labels
    if args.threads:  # the oracles label the data before the process group sets the threads again
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    output = Path(args.output) if args.output else classifier_path(args.model, args.task)

    # 1. The frozen diffusion model and its schedule.
    model, tokenizer = load_pretrained(args.model)
    model.requires_grad_(False)
    length = model.config.max_position_embeddings
    schedule = NoiseSchedule.from_name(model.config.noise_schedule, model.config.num_diffusion_steps)

    # 2. Labelled data.
    args.data = str(bundled("data/e2e")) if args.data is None else args.data
    train_split = load_corpus(args.data, "train", args.text_column)
    if args.max_sentences:
        train_split = train_split.shuffle(seed=args.seed).select(range(min(args.max_sentences, len(train_split))))
    held_out = load_corpus(args.data, "validation", args.text_column)
    held_out = held_out.select(range(min(500, len(held_out))))
    settings, train_ids, train_targets = encode(train_split, tokenizer, args.task, args, length, rng)
    _, eval_ids, eval_targets = encode(held_out, tokenizer, args.task, args, length, rng, settings)
    logger.info("%d training sentences, %d held out.", len(train_ids), len(eval_ids))

    # 3. The classifier.
    config = LatentClassifierConfig(
        task=args.task,
        embedding_dim=model.config.embedding_dim,
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        max_position_embeddings=length,
        num_diffusion_steps=model.config.num_diffusion_steps,
        **settings,
    )
    if args.init_from:
        classifier = LatentClassifier.from_pretrained(args.init_from, use_safetensors=True).train()
        saved = classifier.config
        if (saved.task, saved.labels, saved.fields) != (config.task, config.labels, config.fields):
            raise ValueError(f"--init-from {args.init_from} is a classifier of other labels; train a new one.")
    else:
        classifier = LatentClassifier(config)

    # 4. Training on x_t ~ q(x_t | EMB(w)), t ~ U{−1 … T−1}, through the shared loop (one process, or one per GPU
    # under the deepspeed launcher).
    dist = setup_distributed(args.threads)
    train_cfg = TrainingSection(
        output_dir=str(output),
        max_steps=args.steps,
        max_minutes=args.minutes,
        micro_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=min(100, args.steps // 10),
        weight_decay=0.01,
        ema_decay=0.0,  # the classifier exports its last weights
        seed=args.seed,
        log_every=10,
        eval_every=0,
        checkpoint_every=0,  # one checkpoint, at the end (or on SIGTERM)
        keep_checkpoints=1,
        threads=args.threads,
    )
    order = BatchOrder(len(train_ids), args.batch_size * dist.world_size, args.seed)
    loop = TrainingLoop.start(
        classifier,
        classifier.parameters(),
        build_deepspeed_config(train_cfg, dist),
        train_cfg,
        dist,
        output,
        order,
        length,
        settings={"classifier": vars(args), "training": dataclasses.asdict(train_cfg)},
        model_config=config,
        resume=args.resume,
    )
    device = loop.engine.device
    model.to(device)
    train_ids, train_targets = train_ids.to(device), train_targets.to(device)
    T = model.config.num_diffusion_steps

    def micro_step(rows: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator(device=device).manual_seed(seed)
        rows = rows.to(device)
        ids, target = train_ids[rows], train_targets[rows]  # (B, L), the task's target rows
        with torch.no_grad():
            t = torch.randint(-1, T, (len(rows),), generator=generator, device=device)
            x_t = noisy_latents(model, schedule, ids, t, generator)
        return {"loss": loop.engine.module.loss(x_t, t, target)}

    started = time.perf_counter()
    steps = loop.run(micro_step, desc=f"train {args.task} classifier")
    classifier = LatentClassifier(config).to(device)
    classifier.load_state_dict(loop.ema.state_dict())
    cleanup_distributed(dist)
    if dist.rank != 0:  # one process evaluates and saves
        return output

    # 5. Held-out accuracy at several noise levels, and the export.
    classifier.eval()
    logged = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    eval_ids, eval_targets = eval_ids.to(device), eval_targets.to(device)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    checkpoints = [-1, 0, T // 20, T // 4, T // 2, T - 1]
    report = {
        "task": args.task,
        "steps": steps,
        "seconds": time.perf_counter() - started,
        "train_sentences": len(train_ids),
        "final_loss": next(line["loss"] for line in reversed(logged) if "loss" in line),
        "held_out_accuracy": {
            str(t): accuracy(classifier, model, eval_ids, eval_targets, t, schedule, generator) for t in checkpoints
        },
    }
    output.mkdir(parents=True, exist_ok=True)
    classifier.save_pretrained(output)
    (output / "eval.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    logger.info("Saved the %s classifier to %s: %s", args.task, output, report["held_out_accuracy"])
    return output


if __name__ == "__main__":
    main()
