"""Parts-of-speech control success (Diffusion-LM, §7.1): word-level agreement between the tags an oracle tagger
assigns to the generated words and the target tags, per sentence, averaged. Tags are compared in the 12
universal tags (targets in UD's UPOS are mapped). The oracle is NLTK's perceptron tagger (oracle="project", the
one that labels the POS classifier's data) or a tagger trained on other data (oracle="independent"); see
textdiff/evaluation/oracles.py."""

import datasets
import evaluate

_KWARGS = """
Args:
    predictions: list of generated texts (whitespace-tokenised).
    references: list of target tag sequences (UPOS or universal tags), one per prediction.
    oracle: "project" (default) or "independent".
Returns:
    {"pos_accuracy": mean over sentences of (# positions i with oracle_tag_i == target_tag_i) / len(target)}
Example:
    >>> evaluate.load(textdiff.resources.metric_path("control_pos")).compute(predictions=["The cat sat ."],
    ...                                                   references=[["DET", "NOUN", "VERB", "PUNCT"]])
    {'pos_accuracy': 1.0}
"""


class ControlPos(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Word-level agreement of oracle POS tags of the generated text with the target tags.",
            citation="Li et al. (2022). Diffusion-LM Improves Controllable Text Generation. NeurIPS.",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
            ),
        )

    def _compute(self, predictions: list[str], references: list[list[str]], oracle: str = "project") -> dict:
        from textdiff.evaluation.oracles import UPOS_TO_UNIVERSAL, PosOracle, independent_pos_oracle

        if oracle not in ("project", "independent"):
            raise ValueError(f"control_pos: oracle must be 'project' or 'independent', got {oracle!r}.")
        oracle = PosOracle() if oracle == "project" else independent_pos_oracle()
        scores = []
        for text, target in zip(predictions, references):
            target = [UPOS_TO_UNIVERSAL.get(tag, tag) for tag in target]
            tags = oracle.tag(text.split())
            scores.append(sum(a == b for a, b in zip(tags, target)) / max(len(target), 1))
        return {"pos_accuracy": sum(scores) / len(scores) if scores else 0.0}
