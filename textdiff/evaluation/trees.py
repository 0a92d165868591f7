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
