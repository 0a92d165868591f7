"""Oracles that label text for control evaluation (and, later, classifier training).

Parts of speech: NLTK's averaged-perceptron tagger (bundled in data/pos_oracle, loaded without any download),
its Penn Treebank tags mapped to the 12 universal tags of Petrov, Das and McDonald (2012). Gold UPOS tags (the
17 tags of Universal Dependencies, which Diffusion-LM's POS targets use) are mapped to the same 12, so oracle
output and targets are compared in one tagset.

That tagger also labels the POS classifier's training data, so guidance can learn its quirks and a control
figure it scores overstates control. `independent_pos_oracle()` is a second tagger for the check: the same
perceptron architecture trained on other data (the PTB tags of the GUM constituency trees and of UD English-EWT
dev, none of the WSJ text behind NLTK's model), trained on first use into $TEXTDIFF_CACHE/pos_independent with
its accuracy on UD English-EWT test in heldout.json.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import random
from pathlib import Path

from textdiff.guidance.controls import UPOS_TO_UNIVERSAL
from textdiff.resources import bundled, cache_dir

POS_DATA = bundled("data/pos_oracle")
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@functools.cache
def ptb_to_universal(data_dir: Path = POS_DATA) -> dict[str, str]:
    """{PTB tag: universal tag} from a tagger folder's en-ptb.map (Petrov, Das, McDonald 2012), read once."""
    lines = (Path(data_dir) / "en-ptb.map").read_text(encoding="utf-8").splitlines()
    return dict(line.split("\t") for line in lines if line.strip())


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
        self.ptb_to_universal = ptb_to_universal(data_dir)

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


def read_conllu_ptb(path: str | Path) -> list[list[tuple[str, str]]]:
    """(word, PTB tag) pairs of each sentence of a CoNLL-U file (its XPOS column)."""
    sentences, sentence = [], []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if sentence:
                sentences.append(sentence)
            sentence = []
        elif not line.startswith("#"):
            columns = line.split("\t")
            if columns[0].isdigit() and columns[4] != "_":
                sentence.append((columns[1], columns[4]))
    if sentence:
        sentences.append(sentence)
    return sentences


def independent_pos_dir() -> Path:
    """Where the independent tagger is cached: $TEXTDIFF_CACHE/pos_independent (~/.cache/textdiff by default)."""
    return cache_dir("pos_independent")


def train_independent_tagger(
    gum: Path, ewt: Path, output: Path, iterations: int = 5, max_files: int | None = None, seed: int = 0
) -> dict[str, float]:
    """Train NLTK's averaged perceptron on the PTB tags of the GUM trees and of UD English-EWT dev (no WSJ), save
    it in PosOracle's format to `output`, and return (and save as heldout.json) its accuracy on EWT test.

    max_files: use only the first N GUM documents (a fixture-size tagger for tests; None: all)."""
    from nltk.tag.perceptron import PerceptronTagger

    from textdiff.evaluation.trees import read_ptb, tree_spans

    files = sorted(gum.glob("*.ptb"))[:max_files]
    if not files or not (ewt / "en_ewt-ud-dev.conllu").is_file():
        raise ValueError(
            f"Training the independent POS tagger needs GUM trees ({gum}, TEXTDIFF_GUM) and UD English-EWT "
            f"({ewt}, TEXTDIFF_UD_EWT: en_ewt-ud-dev.conllu and en_ewt-ud-test.conllu)."
        )
    sentences = []
    for path in files:
        for bracketed in read_ptb(path):
            words, tags, _ = tree_spans(bracketed)
            if words:
                sentences.append(list(zip(words, tags)))
    sentences += read_conllu_ptb(ewt / "en_ewt-ud-dev.conllu")
    random.seed(seed)  # NLTK's trainer shuffles with the global random module
    tagger = PerceptronTagger(load=False)
    tagger.train(sentences, nr_iter=iterations)
    output.mkdir(parents=True, exist_ok=True)
    for name, value in (
        ("weights", tagger.model.weights),
        ("tagdict", tagger.tagdict),
        ("classes", sorted(tagger.classes)),
    ):
        with gzip.open(output / f"{name}.json.gz", "wt", encoding="utf-8") as handle:
            json.dump(value, handle)
    (output / "en-ptb.map").write_text((POS_DATA / "en-ptb.map").read_text())
    report = {
        **pos_oracle_accuracy(ewt / "en_ewt-ud-test.conllu", PosOracle(output)),
        "training_sentences": len(sentences),
        "sources": f"GUM ({len(files)} documents) + UD English-EWT dev",
    }
    (output / "heldout.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def independent_pos_oracle() -> PosOracle:
    """The independent tagger (see the module docstring), trained on first use (≈ 1 min on one core)."""
    directory = independent_pos_dir()
    if not (directory / "weights.json.gz").is_file():
        gum = Path(os.environ.get("TEXTDIFF_GUM", SHARED / "gum_const"))
        ewt = Path(os.environ.get("TEXTDIFF_UD_EWT", SHARED / "ud_english_ewt"))
        train_independent_tagger(gum, ewt, directory)
    return PosOracle(directory)
