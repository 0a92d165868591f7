"""Distinct-n (Li et al. 2016): the share of unique n-grams among all n-grams of a set of generated texts."""

import datasets
import evaluate

_DESCRIPTION = "dist-n = |unique n-grams| / |n-grams| over all predictions (whitespace tokens), for n = 1 … max_n."
_CITATION = "Li, Galley, Brockett, Gao, Dolan (2016). A Diversity-Promoting Objective Function for Neural Conversation Models. NAACL."
_KWARGS = """
Args:
    predictions: list of generated texts.
    max_n: largest n (default 3).
Returns:
    {"dist-1": float, "dist-2": float, ...}; 0.0 for an n with no n-grams.
Example:
    >>> metric = evaluate.load("eval/metrics/distinct_n")
    >>> metric.compute(predictions=["a b a b"], max_n=2)
    {'dist-1': 0.5, 'dist-2': 0.6666666666666666}
"""


class DistinctN(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions: list[str], max_n: int = 3) -> dict[str, float]:
        scores = {}
        for n in range(1, max_n + 1):
            ngrams = [
                tuple(words[i : i + n])
                for text in predictions
                for words in [text.split()]
                for i in range(len(words) - n + 1)
            ]
            scores[f"dist-{n}"] = len(set(ngrams)) / len(ngrams) if ngrams else 0.0
        return scores
