"""The control evaluation's pieces: target files → controls, and success scored by the oracles."""

from __future__ import annotations

from pathlib import Path

import pytest

from textdiff.evaluation.control_eval import controls_for, fits, length_targets, success, suite_of
from textdiff.evaluation.controls import read_control_targets
from textdiff.guidance import FieldValue, Length, PartsOfSpeech, Spans

TARGETS = Path(__file__).resolve().parents[1] / "data" / "control_targets"


@pytest.mark.parametrize(
    "name, suite, kinds",
    [
        ("target_attribute.json", "semantic", [FieldValue]),
        ("target_pos.json", "pos", [PartsOfSpeech]),
        ("target_spans.json", "spans", [Spans]),
        ("target_spans_remade.json", "spans-remade", [Spans]),
        ("target_tree.json", "tree", [Spans, Length]),
        ("target_compose_pos_attr.json", "compose", [PartsOfSpeech, FieldValue]),
    ],
)
def test_every_target_file_becomes_controls(name, suite, kinds):
    assert suite_of(str(TARGETS / name)) == suite
    targets = read_control_targets(TARGETS / name)
    for target in targets:
        assert [type(c) for c in controls_for(target, suite)] == kinds


def test_a_tree_asked_with_its_preterminals_adds_their_universal_tags():
    """Suite tree-pos asks for the tree's constituents (Spans, Length) and its preterminals' tags (PartsOfSpeech,
    PTB mapped to the 12 universal tags); the tree file alone still names suite tree."""
    from textdiff.evaluation.controls import parse_target

    target = parse_target(
        {
            "words_": ["START", "The", "pub", "is", "cheap", ".", "\n", "END"],
            "tree": "(ROOT (S (NP (DT The) (NN pub)) (VP (VBZ is) (ADJP (JJ cheap))) (. .)))",
        }
    )
    assert target.pos == ["DET", "NOUN", "VERB", "ADJ", "."]
    assert controls_for(target, "tree-pos") == [*controls_for(target, "tree"), PartsOfSpeech(target.pos)]
    trees = read_control_targets(TARGETS / "target_tree.json")
    assert all(len(t.pos) == len(t.words) for t in trees)
    assert suite_of(str(TARGETS / "target_tree.json")) == "tree" and suite_of("tree-pos") == "tree-pos"


def test_length_targets_come_from_the_pos_sentences_and_too_long_ones_are_left_out():
    targets = length_targets(TARGETS / "target_pos.json")
    assert len(targets) == 200 and all(t.length >= 1 for t in targets)
    assert controls_for(targets[0], "length") == [Length(targets[0].length)]
    assert fits(targets[0], 64) and not fits(targets[0], targets[0].length - 1)
    spans = read_control_targets(TARGETS / "target_spans.json")[0]  # spans [3, 5]: needs 6 words
    assert fits(spans.__class__(spans=spans.spans), 6) and not fits(spans.__class__(spans=spans.spans), 5)


def test_an_unknown_target_file_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown control target file"):
        suite_of("targets.json")


def test_reference_sentences_meet_their_own_targets(independent_tagger):
    """The sentences the targets were taken from score (nearly) perfectly: the scoring path is right."""
    pos = read_control_targets(TARGETS / "target_pos.json")[:40]
    texts = [" ".join(t.words) for t in pos]
    assert success("pos", texts, pos)["pos"] > 0.85  # the oracle tagger's own accuracy on them is ~0.91
    lengths = length_targets(TARGETS / "target_pos.json")[:40]
    assert success("length", texts, lengths)["length"] == pytest.approx(
        sum(len(x.split()) == t.length for x, t in zip(texts, lengths)) / 40
    )
    compose = read_control_targets(TARGETS / "target_compose_pos_attr.json")[:40]
    scores = success("compose", [" ".join(t.words) for t in compose], compose)
    assert set(scores) == {"semantic", "pos", "pos (independent)"} and scores["pos"] > 0.85
    # The independent tagger (trained on GUM + EWT, not WSJ; here fixture-size) agrees with the targets too.
    assert success("pos", texts, pos)["pos (independent)"] > 0.85
    assert success("semantic", ["The Vaults is a pub ."], [compose[0].__class__(attribute=("name", "The Vaults"))]) == {
        "semantic": 1.0
    }
