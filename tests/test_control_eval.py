"""The control evaluation's pieces: target files → controls, and success scored by the oracles."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.control_eval import controls_for, length_targets, success, task_of
from eval.controls import read_control_targets
from textdiff.guidance import FieldValue, Length, PartsOfSpeech, Spans

TARGETS = Path(__file__).resolve().parents[1] / "data" / "control_targets"


@pytest.mark.parametrize(
    "name, task, kinds",
    [
        ("target_attribute.json", "semantic", [FieldValue]),
        ("target_pos.json", "pos", [PartsOfSpeech]),
        ("target_spans.json", "spans", [Spans]),
        ("target_compose_pos_attr.json", "compose", [PartsOfSpeech, FieldValue]),
    ],
)
def test_every_target_file_becomes_controls(name, task, kinds):
    assert task_of(str(TARGETS / name)) == task
    targets = read_control_targets(TARGETS / name)
    for target in targets:
        assert [type(c) for c in controls_for(target, task)] == kinds


def test_length_targets_come_from_the_pos_sentences_and_fit_the_model():
    targets = length_targets(TARGETS / "target_pos.json", max_words=38)
    assert len(targets) == 200 and all(1 <= t.length <= 38 for t in targets)
    assert controls_for(targets[0], "length") == [Length(targets[0].length)]


def test_an_unknown_target_file_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown control target file"):
        task_of("targets.json")


def test_reference_sentences_meet_their_own_targets():
    """The sentences the targets were taken from score (nearly) perfectly: the scoring path is right."""
    pos = read_control_targets(TARGETS / "target_pos.json")[:40]
    texts = [" ".join(t.words) for t in pos]
    assert success("pos", texts, pos)["pos"] > 0.85  # the oracle tagger's own accuracy on them is ~0.91
    lengths = [t for t in length_targets(TARGETS / "target_pos.json", 38)[:40]]
    assert success("length", texts, lengths)["length"] == pytest.approx(
        sum(len(x.split()) == t.length for x, t in zip(texts, lengths)) / 40
    )
    compose = read_control_targets(TARGETS / "target_compose_pos_attr.json")[:40]
    scores = success("compose", [" ".join(t.words) for t in compose], compose)
    assert set(scores) == {"semantic", "pos"} and scores["pos"] > 0.85
    assert success("semantic", ["The Vaults is a pub ."], [compose[0].__class__(attribute=("name", "The Vaults"))]) == {
        "semantic": 1.0
    }
