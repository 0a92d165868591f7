"""Control targets in one format, read from Diffusion-LM's target files (datasets/control_target/ of its repo).

Each line of those files is JSON: `target_pos.json` {"pos", "words_"}, `target_spans.json` {"words_", "spans"},
`target_attribute.json` ["field", ":", value words...], `target_compose_pos_attr.json` {"pos", "words_",
"attr"}; and textdiff's own `target_tree.json` {"words_", "tree"} (a PTB bracketing: every constituent a span). Word lists are framed by START / END and hold a newline token "\\n" before END; those are dropped here
(with their tags), and span indices count words without START (inclusive ends), as in the reference code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

FRAME_TOKENS = {"START", "END", "\n"}


@dataclass
class ControlTarget:
    """What one generation is asked to satisfy; unused controls are None.

    Attributes:
        words: The reference sentence the target was taken from (tokenised), if any.
        pos: UPOS tags, one per word of the sentence to generate (a tree target: its preterminals' universal tags).
        spans: (start, end, label) constituents, word indices with inclusive ends (a tree target: all of them).
        attribute: (field, value), e.g. ("food", "Italian"): the value must appear in the text.
        length: Number of words.
    """

    words: list[str] | None = None
    pos: list[str] | None = None
    spans: list[tuple[int, int, str]] | None = None
    attribute: tuple[str, str] | None = None
    length: int | None = None


# Field names as Diffusion-LM's target files spell them -> the E2E meaning-representation keys the classifiers
# and conditional models are trained on.
FIELD_ALIASES = {"Type": "eatType", "price": "priceRange", "family friendly": "familyFriendly"}


def _attribute(tokens: list[str]) -> tuple[str, str]:
    """[field words..., ":", value words...] -> (E2E field, value); fields may be several words ("customer
    rating"); the target files' spellings of three fields become their MR keys (FIELD_ALIASES)."""
    if ":" not in tokens or tokens.index(":") == 0 or tokens.index(":") == len(tokens) - 1:
        raise ValueError(f"An attribute target must look like [field..., ':', value...], got {tokens!r}.")
    split = tokens.index(":")
    field = " ".join(tokens[:split])
    return FIELD_ALIASES.get(field, field), " ".join(tokens[split + 1 :])


def _universal_tags(ptb_tags: list[str]) -> list[str]:
    """PTB tags (a tree's preterminals) as the 12 universal tags the POS oracle and classifier use (the bundled
    tagger's en-ptb.map); a tag the map lacks is X, as in `PosOracle.tag`."""
    from textdiff.evaluation.oracles import ptb_to_universal

    mapping = ptb_to_universal()
    return [mapping.get(tag, "X") for tag in ptb_tags]


def _spans_over_words(spans: list[tuple[int, int, str]], words_: list[str]) -> list[tuple[int, int, str]]:
    """Spans indexed over `words_` without START (Diffusion-LM's parser read the newline token "\\n" as one more
    token, so a constituent that ends the text ends on it: the whole-text S of "The pub ." is (0, 3)) -> the same
    spans over the words alone: an end on a frame token moves back to the last word before it, a start on one
    forward to the next word."""
    tokens = words_[1:] if words_ and words_[0] == "START" else words_
    kept, last, first = 0, [], []  # per token: index of the last word at or before it, of the first at or after
    for token in tokens:
        if token not in FRAME_TOKENS:
            kept += 1
        last.append(kept - 1)
        first.append(kept - (token not in FRAME_TOKENS))
    out = []
    for a, b, label in spans:
        if not 0 <= a <= b < len(tokens):
            raise ValueError(f"Span ({a}, {b}, {label!r}) is outside the sentence's {len(tokens)} tokens.")
        if first[a] > last[b]:
            raise ValueError(f"Span ({a}, {b}, {label!r}) holds no word, only frame tokens.")
        out.append((first[a], last[b], label))
    return out


def parse_target(record: dict | list) -> ControlTarget:
    """One line of a Diffusion-LM target file as a `ControlTarget`."""
    if isinstance(record, list):
        return ControlTarget(attribute=_attribute(record))
    target = ControlTarget()
    words = record.get("words_")
    if words is not None:
        kept = [i for i, word in enumerate(words) if word not in FRAME_TOKENS]
        target.words = [words[i] for i in kept]
        target.length = len(target.words)
        if "pos" in record:
            if len(record["pos"]) != len(words):
                raise ValueError(f"A POS target has {len(record['pos'])} tags for {len(words)} words.")
            target.pos = [record["pos"][i] for i in kept]
    elif "pos" in record:
        target.pos = [tag for tag in record["pos"] if tag not in FRAME_TOKENS]
        target.length = len(target.pos)
    if "spans" in record:
        target.spans = [(int(a), int(b), str(label)) for a, b, label in record["spans"]]
        if words is not None:
            target.spans = _spans_over_words(target.spans, words)
    if "tree" in record:  # a full parse: every constituent is a span to meet
        from textdiff.evaluation.trees import tree_spans

        tree_words, tree_tags, constituents = tree_spans(record["tree"])
        if target.words is not None and tree_words != target.words:
            raise ValueError(f"A tree target's tree has words {tree_words} but its sentence is {target.words}.")
        target.words, target.length = tree_words, len(tree_words)
        target.spans = sorted((a, b - 1, label) for a, b, label in constituents)
        target.pos = _universal_tags(tree_tags)  # its preterminals
    if "attr" in record:
        target.attribute = _attribute(record["attr"])
    return target


def read_control_targets(path: str | Path) -> list[ControlTarget]:
    """All targets of a Diffusion-LM target file (JSON lines)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Control target file {path} does not exist.")
    targets = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            targets.append(parse_target(json.loads(line)))
        except (json.JSONDecodeError, TypeError, KeyError, ValueError) as error:
            raise ValueError(f"{path}, line {number}: not a Diffusion-LM control target ({error}).") from None
    return targets
