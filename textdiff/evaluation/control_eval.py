"""Control evaluation on Diffusion-LM's target files (its Table 2): control success and lm-score per suite, for
guided decoding and for the unguided model, with the cost of guidance.

    textdiff eval --model runs/e2e-cpu-long/model --teacher runs/ar-cpu-long/model \
        --control-targets pos --num-targets 100

Suites (`SUITES`), by target file: `target_attribute.json` → semantic content (`FieldValue`),
`target_pos.json` → parts of speech (`PartsOfSpeech`), `target_spans.json` → syntax spans (`Spans`),
`target_compose_pos_attr.json` → both POS and semantic content at once, `target_tree.json` (textdiff's: full
parses of E2E test sentences by the span oracle) → syntax trees (`Spans` over every constituent, `Length` of the
tree's words; suite `tree-pos` asks for its preterminals too, `PartsOfSpeech` by the POS classifier),
`target_spans_remade.json` (textdiff's: the span targets redrawn from the span oracle's parses of the
same sentences, `span_parser.remade_span_targets`) → syntax spans; `length` (no file) → `Length` targets
taken from the word counts of the POS targets' sentences. Success is measured with the oracles of
`textdiff.evaluation.oracles` and `.span_parser` through the `evaluate` modules in textdiff/evaluation/metrics;
the lm-score is the teacher's perplexity of the samples. The unguided row decodes the same number of texts with
the same seed and scores them against the same targets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from textdiff.decoding_config import DecodingConfig
from textdiff.evaluation.controls import ControlTarget, read_control_targets
from textdiff.guidance import FieldValue, Length, Mentions, PartsOfSpeech, Spans
from textdiff.resources import bundled


@dataclass(frozen=True)
class ControlPart:
    """One kind of target a suite asks for: the control that asks for it, the classifier task that control
    needs (None: none), and how success is scored (an evaluate module of textdiff/evaluation/metrics)."""

    classifier: str | None
    control: Callable[[ControlTarget, list[str] | None], list]  # (target, span classifier's labels) -> controls
    metric: str
    result: str  # the metric's result key
    references: Callable[[ControlTarget], Any]
    describe: Callable[[ControlTarget], str]
    independent: dict[str, Any] | None = None  # the metric's arguments for an oracle that labelled no training data


def _spans_control(target: ControlTarget, span_labels: list[str] | None) -> list:
    """Spans whose label the span classifier does not know (NML, absent from the GUM-trained oracle) are not
    asked for; they still count in the success rate."""
    spans = Spans(target.spans).spans
    if span_labels is not None:
        spans = [s for s in spans if s[2] in span_labels]
    return [Spans(spans)] if spans else []


def _tree_control(target: ControlTarget, span_labels: list[str] | None) -> list:
    """A tree fixes its sentence's length (its leaves), so the tree is asked for as every constituent (`Spans`) of a
    sentence of exactly that many words (`Length`): the whole-sentence span alone leaves the length to the
    classifier's gradient, and every constituent of a sentence of another length is misplaced."""
    return [*_spans_control(target, span_labels), Length(target.length)]


def _span_references(target: ControlTarget) -> list[dict]:
    """A target's spans as the span metrics (control_spans, control_tree) take them."""
    return [{"start": a, "end": b, "label": label} for a, b, label in target.spans]


PARTS = {
    "semantic": ControlPart(
        "field_value",
        lambda t, span_labels: [FieldValue(*t.attribute)],
        "control_semantic",
        "semantic_accuracy",
        lambda t: t.attribute[1],
        lambda t: f"{t.attribute[0]} = {t.attribute[1]}",
    ),
    "pos": ControlPart(
        "pos",
        lambda t, span_labels: [PartsOfSpeech(t.pos)],
        "control_pos",
        "pos_accuracy",
        lambda t: t.pos,
        lambda t: " ".join(t.pos),
        independent={"oracle": "independent"},
    ),
    "spans": ControlPart(
        "spans",
        _spans_control,
        "control_spans",
        "span_accuracy",
        _span_references,
        lambda t: " ".join(f"{label}[{a},{b}]" for a, b, label in t.spans),
        independent={"oracle": "independent"},
    ),
    "tree": ControlPart(  # the span classifier over every constituent of the target tree, at the tree's length
        "spans",
        _tree_control,
        "control_tree",
        "tree_f1",
        _span_references,
        lambda t: f"the parse of {' '.join(t.words)!r}" if t.words else f"{len(t.spans)} constituents",
        independent={"oracle": "independent"},
    ),
    "length": ControlPart(
        None,
        lambda t, span_labels: [Length(t.length)],
        "control_length",
        "length_accuracy",
        lambda t: t.length,
        lambda t: f"{t.length} words",
    ),
}


@dataclass(frozen=True)
class ControlSuite:
    """One row of Diffusion-LM's Table 2: a target file, the parts each target asks for (in the order their
    controls are given), the fluency weight λ of its guidance, and the paper's (success %, lm-score)."""

    name: str
    target_file: str  # in data/control_targets; "length" is derived from the POS targets' sentences
    parts: tuple[str, ...]
    fluency_weight: float
    paper: tuple[float, float] | None = None
    also_scored_by: tuple[str, ...] = ()  # further oracles that score every part (the paper's span file: "faithful")

    def classifier_tasks(self) -> set[str]:
        return {PARTS[part].classifier for part in self.parts if PARTS[part].classifier}

    def controls(self, target: ControlTarget, span_labels: list[str] | None = None) -> list:
        return [control for part in self.parts for control in PARTS[part].control(target, span_labels)]

    def describe(self, target: ControlTarget) -> str:
        return "; ".join(PARTS[part].describe(target) for part in sorted(self.parts, key=_SCORE_ORDER.index))


# Fluency weights λ, chosen on the first 40 targets of each file at 100 steps (docs/RESULTS.md has the sweep; the
# paper's were semantic 0.01, POS 1e-4, spans 0.1, on its own loss scale); the paper's Table 2 (E2E) figures.
# Length has no classifier.
SUITES = {
    suite.name: suite
    for suite in (
        ControlSuite("semantic", "target_attribute.json", ("semantic",), 1e-3, (81.2, 2.55)),
        ControlSuite("pos", "target_pos.json", ("pos",), 0.1, (90.0, 5.16)),
        ControlSuite("spans", "target_spans.json", ("spans",), 1e-4, (93.8, 2.53), ("faithful",)),
        ControlSuite("spans-remade", "target_spans_remade.json", ("spans",), 1e-4, (93.8, 2.53)),
        ControlSuite("tree", "target_tree.json", ("tree",), 1e-4, (86.0, 3.71)),
        ControlSuite("tree-pos", "target_tree.json", ("tree", "pos"), 1e-4, (86.0, 3.71)),
        ControlSuite("compose", "target_compose_pos_attr.json", ("pos", "semantic"), 0.01),
        ControlSuite("length", "length", ("length",), 0.0, (99.9, 2.16)),
    )
}
_SCORE_ORDER = ["semantic", "pos", "spans", "tree", "length"]  # the order of scores and descriptions in reports


def suite_of(targets_path: str) -> str:
    """The suite a Diffusion-LM target file evaluates; a suite's name (e.g. "pos", "length") names itself."""
    if targets_path in SUITES:
        return targets_path
    name = Path(targets_path).name
    by_file: dict[str, str] = {}
    for suite in SUITES.values():  # a file read by two suites (target_tree.json) names the first
        by_file.setdefault(suite.target_file, suite.name)
    if name not in by_file:
        files = sorted(f for f in by_file if f != "length")
        raise ValueError(
            f"Unknown control target file {targets_path!r}; use one of {files}, or a suite's name {sorted(SUITES)} "
            "for its bundled file."
        )
    return by_file[name]


def controls_for(target: ControlTarget, suite: str, span_labels: list[str] | None = None) -> list:
    """The `textdiff.guidance` controls that ask for one target of a suite."""
    return SUITES[suite].controls(target, span_labels)


def success(suite: str, texts: list[str], targets: list[ControlTarget], independent: bool = True) -> dict[str, float]:
    """Control success of texts against their targets, per part, through the evaluate modules (in [0, 1]); a part
    with an independent oracle is also scored by it, as "<part> (independent)"; the paper's span targets also by the
    oracle adapted to the parser that drew them, as "spans (faithful)" (`span_parser.faithful_span_oracle`)."""
    from textdiff.evaluation.harness import load_metric

    scores = {}
    for name in sorted(SUITES[suite].parts, key=_SCORE_ORDER.index):
        part = PARTS[name]
        references = [part.references(t) for t in targets]
        metric = load_metric(part.metric)
        scores[name] = metric.compute(predictions=texts, references=references)[part.result]
        if independent and part.independent is not None:
            result = metric.compute(predictions=texts, references=references, **part.independent)[part.result]
            scores[f"{name} (independent)"] = result
        for oracle in SUITES[suite].also_scored_by if independent else ():
            result = metric.compute(predictions=texts, references=references, oracle=oracle)[part.result]
            scores[f"{name} ({oracle})"] = result
    return scores


@dataclass
class ControlRow:
    """One decoding route on one suite."""

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


SEMANTIC_ROUTES = ("classifier", "words")


def _as_mentions(control, tokenizer):
    """A `FieldValue` as a `Mentions` of its value's words (the "words" route); other controls as they are."""
    return Mentions.from_text(control.value, tokenizer) if isinstance(control, FieldValue) else control


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
    guidance_start: float | None = None,
    cfg_scale: float | None = None,
    semantic_route: str = "classifier",
    x0_temperature: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate guided decoding on one target file against the unguided model (see the module docstring).

    The guidance settings left as None are `textdiff.DecodingConfig`'s, except λ (fluency_weight): the paper's
    value for the suite (`SUITES`). `semantic_route` says how field values are asked for: "classifier" (a
    `FieldValue` control and its trained field-value classifier) or "words" (a `Mentions` control of the value's
    words, scored by the denoiser's own word distribution, no classifier). `x0_temperature` (None: the model's
    saved setting) applies to the guided and the unguided rows alike."""
    if semantic_route not in SEMANTIC_ROUTES:
        raise ValueError(f"semantic_route must be one of {SEMANTIC_ROUTES}, got {semantic_route!r}.")
    from textdiff.evaluation.fluency import load_causal_lm, teacher_score
    from textdiff.loading import load_pretrained

    suite = SUITES[suite_of(targets_path)]
    model, tokenizer = load_pretrained(model_dir)
    teacher = load_causal_lm(teacher_dir, "--teacher")
    if suite.name == "length":
        targets = length_targets(bundled("data/control_targets/target_pos.json"))
    elif targets_path in SUITES:  # a suite's name: its bundled target file
        targets = read_control_targets(bundled(f"data/control_targets/{suite.target_file}"))
    else:
        targets = read_control_targets(targets_path)
    targets = targets[:num_targets] if num_targets else targets
    max_words = model.config.max_position_embeddings - 2  # START and END take two positions
    too_long = sum(not fits(t, max_words) for t in targets)
    targets = [t for t in targets if fits(t, max_words)]
    # The classifiers the guided route needs, loaded once (field values go to the model itself under CFG).
    from textdiff.guidance import load_classifiers

    by_model = cfg_scale is not None or semantic_route == "words"  # field values need no classifier then
    tasks = suite.classifier_tasks() - ({"field_value"} if by_model else set())
    classifiers = load_classifiers(model_dir, tasks)
    span_labels = classifiers["spans"].config.labels if "spans" in classifiers else None
    rows = [suite.controls(t, span_labels) for t in targets]
    if semantic_route == "words":
        rows = [[_as_mentions(c, tokenizer) for c in row] for row in rows]
    decoding = DecodingConfig.resolve(
        guidance_scale=guidance_scale,
        guidance_steps=guidance_steps,
        guidance_step_size=guidance_step_size,
        fluency_weight=suite.fluency_weight if fluency_weight is None else fluency_weight,
        guidance_start=guidance_start,
        cfg_scale=cfg_scale,
    )
    settings = {
        "classifiers": classifiers,
        "cfg_scale": decoding.cfg_scale,
        "guidance_scale": decoding.guidance_scale,
        "guidance_steps": decoding.guidance_steps,
        "guidance_step_size": decoding.guidance_step_size,
        "fluency_weight": decoding.fluency_weight,
        "guidance_start": decoding.guidance_start,
    }

    guided = "classifier guidance"
    if semantic_route == "words" and "semantic" in suite.parts:
        guided = "denoiser word guidance" + (" + classifier guidance" if suite.name == "compose" else "")
    if suite.name == "length":
        guided = "length (END fixed)"
    elif cfg_scale is not None:
        guided = f"classifier-free guidance (s = {cfg_scale:g})" + (
            " + classifier guidance" if suite.name == "compose" else ""
        )
    report_rows = []
    shared = {} if x0_temperature is None else {"x0_temperature": x0_temperature}
    for route, controls, kwargs in [
        (guided, rows, settings),
        ("unguided", None, {}),
    ]:
        texts, seconds = decode(
            model, tokenizer, controls, batch_size, len(targets), num_inference_steps, seed, **kwargs, **shared
        )
        report_rows.append(
            ControlRow(
                route=route,
                success=success(suite.name, texts, targets),
                lm_score=teacher_score(texts, teacher, tokenizer).perplexity,
                seconds=seconds,
                num_texts=len(texts),
                examples=[(suite.describe(t), text) for t, text in zip(targets[:5], texts[:5])],
            )
        )
    return {
        "suite": suite.name,
        "targets": str(targets_path),
        "model": model_dir,
        "teacher": teacher_dir,
        "settings": {
            "num_inference_steps": num_inference_steps,
            "seed": seed,
            "semantic_route": semantic_route,
            "x0_temperature": x0_temperature,
            "num_targets": len(targets),
            **{name: value for name, value in settings.items() if name != "classifiers"},
        },
        "targets_left_out": too_long,  # longer than the model's max_position_embeddings − 2 words
        "paper": suite.paper,
        "guided_cost": report_rows[0].seconds / report_rows[1].seconds,
        "rows": [asdict(r) for r in report_rows],
    }


def control_markdown(report: dict[str, Any]) -> str:
    """The control report as a markdown table."""
    lines = [
        f"Suite: {report['suite']} ({report['settings']['num_targets']} targets, {report['targets_left_out']} left out "
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
