"""Control evaluation on Diffusion-LM's target files (its Table 2): control success and lm-score per task, for
guided decoding and for the unguided model, with the cost of guidance.

    textdiff eval --model runs/e2e-cpu-long/model --teacher runs/ar-cpu-long/model \
        --control-targets data/control_targets/target_pos.json --num-targets 100

Tasks, by target file: `target_attribute.json` → semantic content (`FieldValue`), `target_pos.json` → parts of
speech (`PartsOfSpeech`), `target_spans.json` → syntax spans (`Spans`), `target_compose_pos_attr.json` → both
POS and semantic content at once; `length` (no file) → `Length` targets taken from the word counts of the POS
targets' sentences. Success is measured with the oracles of `textdiff.evaluation.oracles` and `.span_parser`
through the `evaluate` modules in textdiff/evaluation/metrics; the lm-score is the teacher's perplexity of the samples. The unguided
row decodes the same number of texts with the same seed and scores them against the same targets.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from textdiff.decoding_config import DecodingConfig
from textdiff.evaluation.controls import ControlTarget, read_control_targets
from textdiff.resources import bundled

# Diffusion-LM, Table 2 (E2E): control success (%) and lm-score.
PAPER = {
    "semantic": (81.2, 2.55),
    "pos": (90.0, 5.16),
    "spans": (93.8, 2.53),
    "length": (99.9, 2.16),
}
# Fluency weights λ per task, chosen on the first 40 targets of each file at 100 steps (docs/RESULTS.md has the
# sweep; the paper's were semantic 0.01, POS 1e-4, spans 0.1, on its own loss scale). Length has no classifier.
FLUENCY_WEIGHT = {"semantic": 1e-3, "pos": 0.1, "spans": 1e-4, "compose": 0.01, "length": 0.0}


def task_of(targets_path: str) -> str:
    """The task a Diffusion-LM target file (or "length") evaluates."""
    name = Path(targets_path).name
    tasks = {
        "target_attribute.json": "semantic",
        "target_pos.json": "pos",
        "target_spans.json": "spans",
        "target_compose_pos_attr.json": "compose",
        "length": "length",
    }
    if name not in tasks:
        raise ValueError(f"Unknown control target file {targets_path!r}; use one of {sorted(tasks)} (or 'length').")
    return tasks[name]


def controls_for(target: ControlTarget, task: str, span_labels: list[str] | None = None) -> list:
    """The `textdiff.guidance` controls that ask for one target. With `span_labels` (the span classifier's), spans
    whose label it does not know (NML, absent from the GUM-trained oracle) are not asked for; they still count
    in the success rate."""
    from textdiff.guidance import FieldValue, Length, PartsOfSpeech, Spans

    if task == "semantic":
        return [FieldValue(*target.attribute)]
    if task == "pos":
        return [PartsOfSpeech(target.pos)]
    if task == "spans":
        spans = Spans(target.spans).spans
        if span_labels is not None:
            spans = [s for s in spans if s[2] in span_labels]
        return [Spans(spans)] if spans else []
    if task == "length":
        return [Length(target.length)]
    return [PartsOfSpeech(target.pos), FieldValue(*target.attribute)]


def success(task: str, texts: list[str], targets: list[ControlTarget]) -> dict[str, float]:
    """Control success of texts against their targets, through the evaluate modules (fractions in [0, 1])."""
    from textdiff.evaluation.harness import load_metric

    scores = {}
    if task in ("semantic", "compose"):
        values = [t.attribute[1] for t in targets]
        scores["semantic"] = load_metric("control_semantic").compute(predictions=texts, references=values)[
            "semantic_accuracy"
        ]
    if task in ("pos", "compose"):
        scores["pos"] = load_metric("control_pos").compute(predictions=texts, references=[t.pos for t in targets])[
            "pos_accuracy"
        ]
    if task == "spans":
        references = [[{"start": a, "end": b, "label": label} for a, b, label in t.spans] for t in targets]
        scores["spans"] = load_metric("control_spans").compute(predictions=texts, references=references)[
            "span_accuracy"
        ]
    if task == "length":
        scores["length"] = load_metric("control_length").compute(
            predictions=texts, references=[t.length for t in targets]
        )["length_accuracy"]
    return scores


@dataclass
class ControlRow:
    """One decoding route on one task."""

    route: str  # "classifier guidance", "unguided", ...
    success: dict[str, float]
    lm_score: float  # teacher perplexity of the texts
    seconds: float  # decoding time for all texts
    num_texts: int
    examples: list[tuple[str, str]]  # (target, text)


def length_targets(pos_file: Path) -> list[ControlTarget]:
    """Length targets: the word counts of the POS targets' sentences."""
    return [ControlTarget(length=t.length) for t in read_control_targets(pos_file)]


def fits(target: ControlTarget, max_words: int) -> bool:
    """Whether a model that writes at most `max_words` words can meet the target at all."""
    longest = max([target.length or 0] + [end + 1 for _, end, _ in target.spans or []])
    return longest <= max_words


def describe(target: ControlTarget, task: str) -> str:
    if task == "semantic":
        return f"{target.attribute[0]} = {target.attribute[1]}"
    if task == "pos":
        return " ".join(target.pos)
    if task == "spans":
        return " ".join(f"{label}[{a},{b}]" for a, b, label in target.spans)
    if task == "length":
        return f"{target.length} words"
    return f"{target.attribute[0]} = {target.attribute[1]}; " + " ".join(target.pos)


def decode(model, tokenizer, rows: list[list] | None, batch: int, num: int, steps: int, seed: int, **guidance):
    """Texts for `num` rows (controls per row, or None for unguided), in batches; returns (texts, seconds)."""
    texts, seconds = [], 0.0
    for start in range(0, num, batch):
        size = min(batch, num - start)
        controls = rows[start : start + size] if rows is not None else None
        began = time.perf_counter()
        ids = model.generate(
            num_return_sequences=size, num_inference_steps=steps, seed=seed + start, controls=controls, **guidance
        )
        seconds += time.perf_counter() - began
        texts += tokenizer.batch_decode(ids, skip_special_tokens=True)
    return texts, seconds


def run_control_evaluation(
    model_dir: str,
    teacher_dir: str,
    targets_path: str,
    *,
    num_targets: int | None = None,
    num_inference_steps: int = 200,
    batch_size: int = 50,
    guidance_scale: float | None = None,
    guidance_steps: int | None = None,
    guidance_step_size: float | None = None,
    fluency_weight: float | None = None,
    cfg_scale: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate guided decoding on one target file against the unguided model (see the module docstring).

    The guidance settings left as None are `textdiff.DecodingConfig`'s, except λ (fluency_weight): the paper's
    value for the task (FLUENCY_WEIGHT)."""
    from textdiff.evaluation.fluency import load_causal_lm, teacher_score
    from textdiff.loading import load_pretrained

    task = task_of(targets_path)
    model, tokenizer = load_pretrained(model_dir)
    teacher = load_causal_lm(teacher_dir, "--teacher")
    if task == "length":
        pos_file = bundled("data/control_targets/target_pos.json")
        targets = length_targets(pos_file)
    else:
        targets = read_control_targets(targets_path)
    targets = targets[:num_targets] if num_targets else targets
    max_words = model.config.max_position_embeddings - 2  # START and END take two positions
    too_long = sum(not fits(t, max_words) for t in targets)
    targets = [t for t in targets if fits(t, max_words)]
    # The classifiers the guided route needs, loaded once (field values go to the model itself under CFG).
    from textdiff.guidance import load_classifiers

    needed = {"semantic": {"field_value"}, "pos": {"pos"}, "spans": {"spans"}, "compose": {"pos", "field_value"}}
    tasks = needed.get(task, set()) - ({"field_value"} if cfg_scale is not None else set())
    classifiers = load_classifiers(model_dir, tasks)
    span_labels = classifiers["spans"].config.labels if "spans" in classifiers else None
    rows = [controls_for(t, task, span_labels) for t in targets]
    decoding = DecodingConfig.resolve(
        guidance_scale=guidance_scale,
        guidance_steps=guidance_steps,
        guidance_step_size=guidance_step_size,
        fluency_weight=FLUENCY_WEIGHT[task] if fluency_weight is None else fluency_weight,
        cfg_scale=cfg_scale,
    )
    settings = {
        "classifiers": classifiers,
        "cfg_scale": decoding.cfg_scale,
        "guidance_scale": decoding.guidance_scale,
        "guidance_steps": decoding.guidance_steps,
        "guidance_step_size": decoding.guidance_step_size,
        "fluency_weight": decoding.fluency_weight,
    }

    guided = "classifier guidance"
    if task == "length":
        guided = "length (END fixed)"
    elif cfg_scale is not None:
        guided = f"classifier-free guidance (s = {cfg_scale:g})" + (
            " + classifier guidance" if task == "compose" else ""
        )
    report_rows = []
    for route, controls, kwargs in [
        (guided, rows, settings),
        ("unguided", None, {}),
    ]:
        texts, seconds = decode(
            model, tokenizer, controls, batch_size, len(targets), num_inference_steps, seed, **kwargs
        )
        report_rows.append(
            ControlRow(
                route=route,
                success=success(task, texts, targets),
                lm_score=teacher_score(texts, teacher, tokenizer).perplexity,
                seconds=seconds,
                num_texts=len(texts),
                examples=[(describe(t, task), text) for t, text in zip(targets[:5], texts[:5])],
            )
        )
    return {
        "task": task,
        "targets": str(targets_path),
        "model": model_dir,
        "teacher": teacher_dir,
        "settings": {
            "num_inference_steps": num_inference_steps,
            "seed": seed,
            "num_targets": len(targets),
            **{name: value for name, value in settings.items() if name != "classifiers"},
        },
        "targets_left_out": too_long,  # longer than the model's max_position_embeddings − 2 words
        "paper": PAPER.get(task),
        "guided_cost": report_rows[0].seconds / report_rows[1].seconds,
        "rows": [asdict(r) for r in report_rows],
    }


def control_markdown(report: dict[str, Any]) -> str:
    """The control report as a markdown table."""
    lines = [
        f"Task: {report['task']} ({report['settings']['num_targets']} targets, {report['targets_left_out']} left out "
        f"as longer than the model can write; {report['settings']['num_inference_steps']} steps); guided decoding "
        f"costs {report['guided_cost']:.2f}× unguided.",
        "",
        "| route | control success (%) | lm-score (teacher PPL) | seconds |",
        "|---|---|---|---|",
    ]
    for row in report["rows"]:
        scores = ", ".join(f"{name} {100 * value:.1f}" for name, value in row["success"].items())
        lines.append(f"| {row['route']} | {scores} | {row['lm_score']:.2f} | {row['seconds']:.1f} |")
    if report["paper"]:
        lines.append(f"| Diffusion-LM (paper, Table 2) | {report['paper'][0]} | {report['paper'][1]} | — |")
    return "\n".join(lines)
