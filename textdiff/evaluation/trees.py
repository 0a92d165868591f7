"""Constituency trees in PTB bracket format (the GUM treebank): the trees of a file, and each tree's words, PTB
tags and labelled constituents. Read by the span oracle and by the independent POS tagger."""

from __future__ import annotations

from pathlib import Path


def read_ptb(path: Path) -> list[str]:
    """The bracketed trees of a .ptb file, one string each (split at depth 0)."""
    text, trees, depth, start = path.read_text(encoding="utf-8"), [], 0, None
    for index, char in enumerate(text):
        if char == "(":
            if depth == 0:
                start = index
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                trees.append(text[start : index + 1])
    return trees


def base_label(label: str) -> str:
    if label.startswith("-"):  # -LRB-, -NONE-
        return label
    return label.split("-")[0].split("=")[0]


def tree_spans(bracketed: str) -> tuple[list[str], list[str], set[tuple[int, int, str]]]:
    """(words, PTB tags, constituents) of a tree; constituents are (i, j, label), j exclusive."""
    from nltk import Tree

    tree = Tree.fromstring(bracketed)
    words, tags, spans = [], [], set()

    def visit(node: Tree) -> tuple[int, int]:
        if isinstance(node[0], str):  # preterminal
            words.append(node[0])
            tags.append(node.label())
            return len(words) - 1, len(words)
        children = [visit(child) for child in node if not (isinstance(child, Tree) and child.label() == "-NONE-")]
        start, end = children[0][0], children[-1][1]
        if node.label() != "ROOT":
            if not any(s[0] == start and s[1] == end for s in spans):  # unary chain: keep the top label
                spans.add((start, end, base_label(node.label())))
            else:
                spans.discard(next(s for s in spans if s[0] == start and s[1] == end))
                spans.add((start, end, base_label(node.label())))
        return start, end

    visit(tree)
    return words, tags, spans


def bracket(words: list[str], tags: list[str], spans: set[tuple[int, int, str]]) -> str:
    """The PTB bracketing of labelled, well-nested constituents (i, j, label), j exclusive, over tagged words, under
    a ROOT node: the inverse of `tree_spans` (its words, tags and constituents read back the same).

    >>> bracket(["The", "Eagle", "is", "a", "pub"], ["DT", "NNP", "VBZ", "DT", "NN"],
    ...         {(0, 5, "S"), (0, 2, "NP"), (2, 5, "VP"), (3, 5, "NP")})
    '(ROOT (S (NP (DT The) (NNP Eagle)) (VP (VBZ is) (NP (DT a) (NN pub)))))'
    """
    if len(words) != len(tags):
        raise ValueError(f"{len(words)} words but {len(tags)} tags.")
    for i, j, label in spans:
        if not 0 <= i < j <= len(words):
            raise ValueError(f"Constituent ({i}, {j}, {label!r}) is outside the {len(words)} words.")
        for a, b, _ in spans:
            if a < i < b < j or i < a < j < b:
                raise ValueError(f"Constituents ({i}, {j}) and ({a}, {b}) cross: not a tree.")
    if len({(i, j) for i, j, _ in spans}) != len(spans):
        raise ValueError("Two labels for one span: write a unary chain as its top label.")

    def escape(text: str) -> str:
        return {"(": "-LRB-", ")": "-RRB-"}.get(text, text)

    def node(start: int, end: int) -> str:
        # the largest constituents strictly inside (start, end), left to right, words between them as leaves
        inside = sorted(
            ((i, j, label) for i, j, label in spans if start <= i and j <= end and (i, j) != (start, end)),
            key=lambda s: (s[0], -s[1]),
        )
        parts, position = [], start
        for i, j, label in inside:
            if i < position:
                continue  # inside a constituent already written
            parts += [f"({escape(tags[k])} {escape(words[k])})" for k in range(position, i)]
            parts.append(f"({label} {node(i, j)})")
            position = j
        parts += [f"({escape(tags[k])} {escape(words[k])})" for k in range(position, end)]
        return " ".join(parts)

    top = next((label for i, j, label in spans if (i, j) == (0, len(words))), None)
    body = node(0, len(words))
    return f"(ROOT ({top} {body}))" if top else f"(ROOT {body})"
