"""Self-BLEU (Zhu et al. 2018, Texygen): the mean BLEU-4 of each generated text against all the others as
references. High self-BLEU means the samples repeat each other (low diversity)."""

import datasets
import evaluate
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

_KWARGS = """
Args:
    predictions: list of at least 2 generated texts.
    max_order: n-gram order (default 4).
Returns:
    {"self_bleu": float in [0, 1]}
Example:
    >>> evaluate.load("eval/metrics/self_bleu").compute(predictions=["a b c d", "a b c d"])
    {'self_bleu': 1.0}
"""


class SelfBleu(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Mean sentence BLEU of each prediction against the other predictions.",
            citation="Zhu et al. (2018). Texygen: A Benchmarking Platform for Text Generation Models. SIGIR.",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions: list[str], max_order: int = 4) -> dict[str, float]:
        if len(predictions) < 2:
            raise ValueError("self-BLEU needs at least 2 predictions.")
        tokens = [text.split() for text in predictions]
        weights = tuple([1.0 / max_order] * max_order)
        smoothing = SmoothingFunction().method1
        scores = [
            sentence_bleu(tokens[:i] + tokens[i + 1 :], hypothesis, weights=weights, smoothing_function=smoothing)
            for i, hypothesis in enumerate(tokens)
        ]
        return {"self_bleu": float(sum(scores) / len(scores))}
