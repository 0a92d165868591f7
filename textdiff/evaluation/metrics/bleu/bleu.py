"""Corpus BLEU-4 (Papineni et al. 2002) with several references per prediction, on whitespace tokens,
through NLTK's implementation (method-1 smoothing, so short corpora do not score 0)."""

import datasets
import evaluate
from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

_KWARGS = """
Args:
    predictions: list of generated texts.
    references: list of lists of reference texts (one list per prediction).
    max_order: n-gram order (default 4).
Returns:
    {"bleu": float in [0, 1]}
Example:
    >>> evaluate.load("eval/metrics/bleu").compute(predictions=["the cat sat on the mat"],
    ...                                            references=[["the cat sat on the mat"]])
    {'bleu': 1.0}
"""


class Bleu(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Corpus BLEU with multiple references (NLTK, whitespace tokens).",
            citation="Papineni, Roukos, Ward, Zhu (2002). BLEU: a Method for Automatic Evaluation of Machine Translation. ACL.",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
            ),
        )

    def _compute(self, predictions: list[str], references: list[list[str]], max_order: int = 4) -> dict[str, float]:
        weights = tuple([1.0 / max_order] * max_order)
        score = corpus_bleu(
            [[ref.split() for ref in refs] for refs in references],
            [pred.split() for pred in predictions],
            weights=weights,
            smoothing_function=SmoothingFunction().method1,
        )
        return {"bleu": float(score)}
