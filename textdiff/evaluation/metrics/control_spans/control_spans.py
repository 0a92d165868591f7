"""Syntax-span control success (Diffusion-LM, §7.1): the share of target spans (start, end, label) found in the
oracle parse of the generated text. The oracle is textdiff's span parser trained on GUM (eval/span_parser.py,
held-out labelled span F1 in its heldout.json; trained on first use). A unary chain in a target ("S::NP") is
matched by its top label, the one the oracle gives such a span."""

import evaluate

from textdiff.evaluation.span_parser import span_metric_features

_KWARGS = """
Args:
    predictions: list of generated texts (whitespace-tokenised).
    references: list of target span lists, each span [start, end, label] with word indices and an inclusive end.
    oracle: "project" (default): the span oracle that scores syntax controls (and parsed the span classifier's
        data); "independent": the second one, which parsed none of it (span_parser.independent_span_oracle);
        "faithful": the first adapted to the parser that drew Diffusion-LM's span targets, for scoring against the
        paper's file (span_parser.faithful_span_oracle).
Returns:
    {"span_accuracy": found target spans / all target spans}
"""


class ControlSpans(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Share of target constituent spans present in the oracle parse of the generated text.",
            citation="Li et al. (2022). Diffusion-LM Improves Controllable Text Generation. NeurIPS.",
            inputs_description=_KWARGS,
            features=span_metric_features(),
        )

    def _compute(self, predictions: list[str], references: list, oracle: str = "project") -> dict[str, float]:
        from textdiff.evaluation.span_parser import span_oracle_named, top_label

        oracle = span_oracle_named(oracle, "control_spans")
        found = total = 0
        for text, spans in zip(predictions, references):
            parse = oracle.parse(text.split())
            for span in spans:
                total += 1
                found += (span["start"], span["end"], top_label(span["label"])) in parse
        return {"span_accuracy": found / total if total else 0.0}
