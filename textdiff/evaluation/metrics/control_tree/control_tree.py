"""Syntax-tree control success (Diffusion-LM, §7.1, "parse tree"): the labelled F1 between the oracle's parse of
the generated text and the target tree, averaged over texts. The oracle is textdiff's span parser trained on GUM
(textdiff/evaluation/span_parser.py), the parser that made the target trees (data/control_targets/target_tree.json)."""

import evaluate

from textdiff.evaluation.span_parser import span_metric_features

_KWARGS = """
Args:
    predictions: list of generated texts (whitespace-tokenised).
    references: list of target trees, each the list of its constituents [start, end, label] (word indices, inclusive
        end; unary chains by their top label).
    oracle: "project" (default): the span oracle that scores syntax controls (and parsed the span classifier's
        data); "independent": the second one, which parsed none of it (span_parser.independent_span_oracle);
        "faithful": the first adapted to the paper's span targets (span_parser.faithful_span_oracle).
Returns:
    {"tree_f1": mean over texts of the labelled F1 of the oracle parse against the target constituents}
"""


class ControlTree(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Mean labelled F1 between the oracle parse of each generated text and its target tree.",
            citation="Li et al. (2022). Diffusion-LM Improves Controllable Text Generation. NeurIPS.",
            inputs_description=_KWARGS,
            features=span_metric_features(),
        )

    def _compute(self, predictions: list[str], references: list, oracle: str = "project") -> dict[str, float]:
        from textdiff.evaluation.span_parser import span_oracle_named, span_set, tree_f1

        oracle = span_oracle_named(oracle, "control_tree")
        scores = [tree_f1(span_set(tree), oracle.parse(text.split())) for text, tree in zip(predictions, references)]
        return {"tree_f1": sum(scores) / len(scores) if scores else 0.0}
