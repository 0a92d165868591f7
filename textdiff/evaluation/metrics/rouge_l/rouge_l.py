"""ROUGE-L (Lin 2004): F-measure of the longest common subsequence of words, best over the references of each
prediction, averaged over predictions (β = 1.2 as in the E2E challenge's script)."""

import datasets
import evaluate

_KWARGS = """
Args:
    predictions: list of generated texts.
    references: list of lists of reference texts.
    beta: weight of recall against precision (default 1.2).
Returns:
    {"rouge_l": float in [0, 1]}
Example:
    >>> evaluate.load("eval/metrics/rouge_l").compute(predictions=["a b c"], references=[["a c"]])
    {'rouge_l': ...}
"""


def lcs_length(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for word in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if word == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(prediction: list[str], reference: list[str], beta: float) -> float:
    lcs = lcs_length(prediction, reference)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(prediction), lcs / len(reference)
    return (1 + beta**2) * precision * recall / (recall + beta**2 * precision)


class RougeL(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Sentence-level ROUGE-L F-measure, best over references, averaged.",
            citation="Lin (2004). ROUGE: A Package for Automatic Evaluation of Summaries. ACL Workshop.",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
            ),
        )

    def _compute(self, predictions: list[str], references: list[list[str]], beta: float = 1.2) -> dict[str, float]:
        scores = [
            max(rouge_l(pred.split(), ref.split(), beta) for ref in refs) if refs else 0.0
            for pred, refs in zip(predictions, references)
        ]
        return {"rouge_l": float(sum(scores) / len(scores)) if scores else 0.0}
