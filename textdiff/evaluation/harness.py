"""The evaluation harness: one report comparing a diffusion model, the autoregressive baseline and the human
references of the test split.

For each of the three text sources it reports the teacher perplexity ("lm-score" of Diffusion-LM), dist-1/2/3,
self-BLEU, and BLEU / ROUGE-L against E2E references; for the two models, their NLL on held-out text (an upper
bound for the diffusion model, exact for the AR model). Output: a JSON report and a markdown table.

    textdiff eval --model runs/e2e-tiny/model --teacher runs/e2e-tiny-teacher/model --num-samples 200
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from textdiff.resources import metric_path

logger = logging.getLogger("textdiff.eval")


def load_metric(name: str):
    """One of textdiff's `evaluate` metric modules (textdiff/evaluation/metrics/NAME), loaded by its path."""
    import evaluate

    return evaluate.load(metric_path(name))


@dataclass
class TextReport:
    """Metrics of one source of text."""

    source: str
    num_texts: int
    teacher_perplexity: float
    dist_1: float
    dist_2: float
    dist_3: float
    self_bleu: float
    bleu: float
    rouge_l: float
    mean_length: float
    nll_nats_per_token: float | None = None  # held-out NLL (bound for diffusion); None for humans
    nll_stderr: float | None = None
    seconds: float | None = None  # time to produce the texts
    examples: list[str] = field(default_factory=list)


def diversity_and_overlap(texts: list[str], references: list[str], seed: int = 0) -> dict[str, float]:
    """dist-n, self-BLEU, and BLEU / ROUGE-L of each text against a shared pool of references."""
    distinct = load_metric("distinct_n").compute(predictions=texts, max_n=3)
    self_bleu = load_metric("self_bleu").compute(predictions=texts)["self_bleu"]
    shared = [references] * len(texts)
    bleu = load_metric("bleu").compute(predictions=texts, references=shared)["bleu"]
    rouge = load_metric("rouge_l").compute(predictions=texts, references=shared)["rouge_l"]
    return {
        "dist_1": distinct["dist-1"],
        "dist_2": distinct["dist-2"],
        "dist_3": distinct["dist-3"],
        "self_bleu": self_bleu,
        "bleu": bleu,
        "rouge_l": rouge,
    }


def run_evaluation(
    model_dir: str,
    teacher_dir: str,
    *,
    baseline_dir: str | None = None,
    num_samples: int = 200,
    num_inference_steps: int = 200,
    data: str | None = None,
    split: str = "test",
    text_column: str = "text",
    num_references: int = 300,
    nll_sentences: int = 256,
    nll_timesteps: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate and return the report (see the module docstring); data None: the bundled E2E corpus."""
    from transformers import AutoTokenizer

    import textdiff  # noqa: F401  (registers the Auto classes)
    from textdiff.data import frame_sequences, load_corpus
    from textdiff.resources import bundled

    data = str(bundled("data/e2e")) if data is None else data
    from textdiff.evaluation.fluency import load_causal_lm, sample_autoregressive, score_framed, teacher_score
    from textdiff.evaluation.likelihood import likelihood_bound
    from textdiff.loading import load_pretrained

    model, tokenizer = load_pretrained(model_dir)
    teacher = load_causal_lm(teacher_dir, "--teacher")
    teacher_tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    baseline = load_causal_lm(baseline_dir, "--baseline") if baseline_dir else teacher
    if teacher_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ValueError(
            f"The teacher in {teacher_dir} uses another vocabulary than the model in {model_dir}; train it with "
            f"`textdiff train-teacher --tokenizer {model_dir}` so perplexities are comparable."
        )

    corpus = load_corpus(data, split, text_column)
    order = random.Random(seed).sample(range(len(corpus)), len(corpus))
    if len(order) < num_samples + num_references:
        raise ValueError(
            f"The {split} split has {len(order)} sentences; it needs num_samples + num_references = "
            f"{num_samples + num_references}, disjoint, to score the human references fairly."
        )
    human = [corpus[i][text_column] for i in order[:num_samples]]  # never among their own references
    references = [corpus[i][text_column] for i in order[num_samples : num_samples + num_references]]

    # 1. Texts from the three sources.
    started = time.perf_counter()
    ids = model.generate(num_return_sequences=num_samples, num_inference_steps=num_inference_steps, seed=seed)
    diffusion_texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    diffusion_seconds = time.perf_counter() - started
    started = time.perf_counter()
    ar_texts = sample_autoregressive(baseline, tokenizer, num_samples, seed=seed)
    ar_seconds = time.perf_counter() - started

    # 2. Held-out NLL: the diffusion bound and the AR model's exact NLL on the same sentences.
    held_out = corpus.select(sorted(order[: min(nll_sentences, len(order))]))  # a random subset, not the first MRs
    framed = frame_sequences(held_out, tokenizer, model.config.max_position_embeddings, text_column=text_column)
    framed_ids = framed[:]["input_ids"]
    bound = likelihood_bound(
        model,
        framed_ids,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        num_timesteps=nll_timesteps,
        seed=seed,
    )
    ar_nll = score_framed(
        [row[row != tokenizer.pad_token_id].tolist() for row in framed_ids], baseline, tokenizer.pad_token_id
    )

    # 3. The table.
    reports = []
    for source, texts, nll, stderr, seconds in [
        (
            f"diffusion ({num_inference_steps} steps)",
            diffusion_texts,
            bound.nats_per_token,
            bound.stderr,
            diffusion_seconds,
        ),
        ("autoregressive baseline", ar_texts, ar_nll.nats_per_token, None, ar_seconds),
        (f"human references ({split})", human, None, None, None),
    ]:
        scores = diversity_and_overlap(texts, references)
        reports.append(
            TextReport(
                source=source,
                num_texts=len(texts),
                teacher_perplexity=teacher_score(texts, teacher, tokenizer).perplexity,
                mean_length=sum(len(t.split()) for t in texts) / len(texts),
                nll_nats_per_token=nll,
                nll_stderr=stderr,
                seconds=seconds,
                examples=texts[:5],
                **scores,
            )
        )
    return {
        "model": model_dir,
        "teacher": teacher_dir,
        "baseline": baseline_dir or teacher_dir,
        "data": {"source": data, "split": split, "references": len(references), "nll_sentences": bound.num_sentences},
        "likelihood_bound": asdict(bound),
        "settings": {
            "num_samples": num_samples,
            "num_inference_steps": num_inference_steps,
            "seed": seed,
            "nll_timesteps": nll_timesteps,
        },
        "parameters": {
            "diffusion": model.num_parameters(),
            "baseline": baseline.num_parameters(),
            "teacher": teacher.num_parameters(),
        },
        "rows": [asdict(r) for r in reports],
    }


def markdown_table(report: dict[str, Any]) -> str:
    """The report's rows as a markdown table."""
    header = (
        "| text | teacher PPL ↓ | held-out NLL (nats/token) | dist-1 | dist-2 | dist-3 | self-BLEU ↓ | BLEU | "
        "ROUGE-L | mean words |"
    )
    lines = [header, "|" + "---|" * 10]
    for row in report["rows"]:
        nll = "—"
        if row["nll_nats_per_token"] is not None:
            nll = f"{row['nll_nats_per_token']:.3f}"
            nll += f" ± {1.96 * row['nll_stderr']:.3f} (bound)" if row["nll_stderr"] is not None else " (exact)"
            nll += f", PPL {math.exp(row['nll_nats_per_token']):.2f}"
        lines.append(
            f"| {row['source']} | {row['teacher_perplexity']:.2f} | {nll} | {row['dist_1']:.3f} | {row['dist_2']:.3f} "
            f"| {row['dist_3']:.3f} | {row['self_bleu']:.3f} | {row['bleu']:.3f} | {row['rouge_l']:.3f} "
            f"| {row['mean_length']:.1f} |"
        )
    return "\n".join(lines)


def write_report(report: dict[str, Any], output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    output.with_suffix(".md").write_text(markdown_table(report) + "\n", encoding="utf-8")
