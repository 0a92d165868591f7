"""Oracles that label text for control evaluation (and, later, classifier training).

Parts of speech: NLTK's averaged-perceptron tagger (bundled in data/pos_oracle, loaded without any download),
its Penn Treebank tags mapped to the 12 universal tags of Petrov, Das and McDonald (2012). Gold UPOS tags (the
17 tags of Universal Dependencies, which Diffusion-LM's POS targets use) are mapped to the same 12, so oracle
output and targets are compared in one tagset.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from textdiff.guidance.controls import UPOS_TO_UNIVERSAL
from textdiff.resources import bundled

POS_DATA = bundled("data/pos_oracle")


class PosOracle:
    """Tag words with the 12 universal tags.

    Args:
        data_dir: Directory with the tagger's weights/tagdict/classes (.json.gz) and en-ptb.map.
    """

    def __init__(self, data_dir: Path = POS_DATA) -> None:
        from nltk.tag.perceptron import PerceptronTagger

        def read(name: str):
            with gzip.open(data_dir / f"{name}.json.gz", "rt", encoding="utf-8") as handle:
                return json.load(handle)

        self.tagger = PerceptronTagger(load=False)
        self.tagger.model.weights = read("weights")
        self.tagger.tagdict = read("tagdict")
        self.tagger.classes = self.tagger.model.classes = set(read("classes"))
        self.ptb_to_universal = dict(
            line.split("\t") for line in (data_dir / "en-ptb.map").read_text().splitlines() if line.strip()
        )

    def ptb_tags(self, words: list[str]) -> list[str]:
        """Penn Treebank tags of a tokenised sentence."""
        return [ptb for _, ptb in self.tagger.tag(words)] if words else []

    def tag(self, words: list[str]) -> list[str]:
        """Universal tags of a tokenised sentence (unknown PTB tags map to X)."""
        if not words:
            return []
        return [self.ptb_to_universal.get(ptb, "X") for _, ptb in self.tagger.tag(words)]


def read_conllu(path: str | Path) -> list[tuple[list[str], list[str]]]:
    """(words, UPOS tags) of each sentence of a CoNLL-U file; multi-word token ranges and empty nodes skipped."""
    sentences, words, tags = [], [], []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if words:
                sentences.append((words, tags))
            words, tags = [], []
        elif not line.startswith("#"):
            columns = line.split("\t")
            if columns[0].isdigit():
                words.append(columns[1])
                tags.append(columns[3])
    if words:
        sentences.append((words, tags))
    return sentences


def pos_oracle_accuracy(conllu: str | Path, oracle: PosOracle | None = None) -> dict[str, float]:
    """Token accuracy of the oracle on gold UPOS mapped to the 12 universal tags."""
    oracle = oracle or PosOracle()
    correct = total = 0
    for words, gold in read_conllu(conllu):
        predicted = oracle.tag(words)
        correct += sum(p == UPOS_TO_UNIVERSAL[g] for p, g in zip(predicted, gold))
        total += len(gold)
    return {"accuracy": correct / total, "tokens": total}
