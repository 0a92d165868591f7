"""Length control success (Diffusion-LM, §7.1): the share of generated texts with exactly the target number of
(whitespace) words."""

import datasets
import evaluate

_KWARGS = """
Args:
    predictions: list of generated texts.
    references: list of target lengths in words.
Returns:
    {"length_accuracy": share of exact matches}
Example:
    >>> evaluate.load("eval/metrics/control_length").compute(predictions=["a b c", "a"], references=[3, 2])
    {'length_accuracy': 0.5}
"""


class ControlLength(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Exact-length success rate.",
            citation="Li et al. (2022). Diffusion-LM Improves Controllable Text Generation. NeurIPS.",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions: list[str], references: list[int]) -> dict[str, float]:
        hits = [len(text.split()) == int(length) for text, length in zip(predictions, references)]
        return {"length_accuracy": sum(hits) / len(hits) if hits else 0.0}
