"""Semantic-content control success (Diffusion-LM, §7.1): the share of generated texts in which the target
field's value appears (as a contiguous sequence of whitespace words)."""

import datasets
import evaluate

_KWARGS = """
Args:
    predictions: list of generated texts.
    references: list of target values, e.g. "Italian" or "The Vaults" (the field name is not needed).
Returns:
    {"semantic_accuracy": share of texts containing their value}
Example:
    >>> evaluate.load("eval/metrics/control_semantic").compute(predictions=["The Vaults is a pub ."],
    ...                                                        references=["The Vaults"])
    {'semantic_accuracy': 1.0}
"""


def contains(words: list[str], value: list[str]) -> bool:
    return any(words[i : i + len(value)] == value for i in range(len(words) - len(value) + 1))


class ControlSemantic(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Whether the target field value appears in the generated text.",
            citation="Li et al. (2022). Diffusion-LM Improves Controllable Text Generation. NeurIPS.",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        hits = [contains(text.split(), value.split()) for text, value in zip(predictions, references)]
        return {"semantic_accuracy": sum(hits) / len(hits) if hits else 0.0}
