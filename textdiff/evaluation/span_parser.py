"""The syntax oracle: a small span-based constituency parser (Stern, Andreas, Klein 2017, "A Minimal Span-Based
Neural Constituency Parser"), trained on the GUM constituency trees, used to check syntax-span controls.

No pretrained parser can be downloaded here, so the oracle is trained from GUM (CC BY 4.0 annotations): a BiLSTM
over words and PTB tags (from the bundled NLTK tagger, the same tags it sees at test time) scores every span
(i, j) with a label or ∅; CKY finds the best binary bracketing; the spans labelled non-∅ are the parse. Trees are
normalised as in evalb-style scoring: function tags stripped (NP-SBJ → NP), unary chains kept by their top
label, preterminals and the root dropped.

    python eval/span_parser.py --gum ../shared/data/gum_const   # train into ~/.cache/textdiff/span_oracle, held-out F1

A third, faithful oracle (`faithful_span_oracle`) scores span control against the paper's file: a GUM parser that
also reads a small bidirectional LM trained on unlabelled E2E text (`context_lm`), adapted to the parser behind
Diffusion-LM's span targets by their partial bracketings (`adapt`, Joshi et al. 2018).

The oracle every score uses ships with textdiff (data/span_oracle): its training is not bit-identical across
machines, and the syntax-tree targets are its own parses, so the targets and the oracle that scores them travel
together. A newly trained one is used where $TEXTDIFF_SPAN_ORACLE points.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from textdiff.evaluation import context_lm
from textdiff.evaluation.trees import bracket, read_ptb, tree_spans
from textdiff.resources import bundled, cache_dir


def span_oracle_dir() -> Path:
    """The oracle that scores syntax controls: $TEXTDIFF_SPAN_ORACLE if set (read now, so a test or a job can point
    every use, subprocesses included, at its own oracle); else the bundled one (data/span_oracle, the oracle that
    made data/control_targets/target_tree.json); else the cache's, trained from GUM on first use (≈ 3 min)."""
    if os.environ.get("TEXTDIFF_SPAN_ORACLE"):
        return Path(os.environ["TEXTDIFF_SPAN_ORACLE"])
    try:
        return bundled("data/span_oracle")
    except FileNotFoundError:
        return span_oracle_cache_dir()


def span_oracle_cache_dir() -> Path:
    """Where a newly trained oracle goes by default: $TEXTDIFF_CACHE/span_oracle, else ~/.cache/textdiff/span_oracle."""
    return cache_dir("span_oracle")


def independent_span_oracle_dir() -> Path:
    """Where the second, independent span oracle is cached: $TEXTDIFF_CACHE/span_independent."""
    return cache_dir("span_independent")


def independent_span_oracle() -> SpanOracle:
    """A second syntax oracle for checking controls, one that labelled none of the span classifier's data.

    The oracle that scores syntax controls also parsed the E2E texts the span classifier learns from, and it reads
    the bundled NLTK tagger's tags (trained on WSJ text), whose errors on E2E ("a family friendly pub": DT NN RB VBD)
    its parses follow and the classifier can learn. This one learns from GUM's gold tags and reads the independent
    tagger's (GUM + UD English-EWT, no WSJ: `textdiff.evaluation.oracles.independent_pos_oracle`), with another
    seed. It shares GUM's trees with the first (the only treebank here), so its conventions are GUM's too.
    Trained on first use (≈ 4 min on one core)."""
    directory = independent_span_oracle_dir()
    return _built_on_first_use(directory, "independent", lambda: train(GUM, directory, seed=1, tags="gold"))


def _built_on_first_use(directory: Path, name: str, build) -> SpanOracle:
    """The oracle in `directory`, built there by `build()` from GUM's trees first if it has none."""
    if not (directory / "model.safetensors").is_file():
        if not GUM.is_dir():
            raise ValueError(
                f"No {name} span oracle in {directory} and no GUM trees at {GUM} to make one; set TEXTDIFF_GUM to a "
                "folder of GUM .ptb files."
            )
        build()
    return SpanOracle(directory)


logger = logging.getLogger(__name__)
GUM = Path(os.environ.get("TEXTDIFF_GUM", Path(__file__).resolve().parents[3] / "shared" / "data" / "gum_const"))
NULL, UNK, BOUNDARY = "∅", "<unk>", "<s>"


# --- the model -------------------------------------------------------------------------------------------------


@dataclass
class Vocab:
    words: list[str]
    tags: list[str]
    labels: list[str]  # labels[0] == NULL
    characters: list[str] = field(default_factory=list)  # [PAD, UNK, …]; empty: the parser reads no characters
    lm_words: list[str] = field(default_factory=list)  # the context LM's vocabulary; empty: the parser has no LM

    @cached_property
    def _indices(self) -> dict[str, dict[str, int]]:
        """Each vocabulary's {entry: id}, built once (the lists are fixed once a parser is made or loaded)."""
        lists = {"words": self.words, "tags": self.tags, "characters": self.characters, "lm_words": self.lm_words}
        return {name: {x: i for i, x in enumerate(values)} for name, values in lists.items()}

    def encode(self, words: list[str], tags: list[str]) -> dict[str, torch.Tensor]:
        """The inputs of `SpanScorer`: word_ids (n+2,) and tag_ids (n+2,) with the boundaries; char_ids (n+2, longest
        word), 0-padded, if the parser reads characters; lm_ids (n+2,) if it reads a context LM's states."""
        word_index, tag_index = self._indices["words"], self._indices["tags"]
        w = (
            [word_index[BOUNDARY]]
            + [word_index.get(x.lower(), word_index[UNK]) for x in words]
            + [word_index[BOUNDARY]]
        )
        t = [tag_index[BOUNDARY]] + [tag_index.get(x, tag_index[UNK]) for x in tags] + [tag_index[BOUNDARY]]
        inputs = {"word_ids": torch.tensor(w), "tag_ids": torch.tensor(t)}
        if self.characters:
            char_index = self._indices["characters"]
            chars = torch.zeros(len(words) + 2, max(map(len, words)), dtype=torch.long)
            chars[0, 0] = chars[-1, 0] = 1  # a boundary reads as one unknown character
            for k, word in enumerate(words, start=1):
                chars[k, : len(word)] = torch.tensor([char_index.get(c, 1) for c in word])
            inputs["char_ids"] = chars
        if self.lm_words:
            inputs["lm_ids"] = context_lm.encode(words, self._indices["lm_words"])
        return inputs


class SpanScorer(nn.Module):
    """BiLSTM over [<s>, w_1 … w_n, </s>]; span (i, j) = [f_j − f_i ; b_i − b_j] on fenceposts → label logits.

    Each position reads its word and tag embeddings and, with `chars` > 0 (the size of the character vocabulary),
    the last forward and first backward states of a character BiLSTM over the word (Kitaev & Klein 2018), which
    reads words the vocabulary lacks (names, "averagely") by their spelling; with `lm` (a `BiLM`'s sizes), a
    projection of a frozen bidirectional LM's states at the word (Peters et al. 2018), which carry how the word is
    used in unlabelled E2E text."""

    def __init__(
        self,
        num_words: int,
        num_tags: int,
        num_labels: int,
        dim: int = 64,
        hidden: int = 128,
        chars: int = 0,
        dropout: float = 0.2,
        lm: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.words = nn.Embedding(num_words, dim)
        self.tags = nn.Embedding(num_tags, dim // 2)
        if chars:
            self.chars = nn.Embedding(chars, 24)
            self.char_lstm = nn.LSTM(24, 32, bidirectional=True, batch_first=True)
        self.lm = None
        if lm:
            self.lm = context_lm.BiLM(**lm).requires_grad_(False).eval()
            self.context = nn.Sequential(nn.Linear(2 * lm["hidden"], dim), nn.Dropout(dropout))
        width = dim + dim // 2 + (64 if chars else 0) + (dim if lm else 0)
        self.lstm = nn.LSTM(width, hidden, num_layers=2, bidirectional=True, batch_first=True, dropout=dropout)
        self.label = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_labels))
        self.hidden = hidden

    def train(self, mode: bool = True) -> SpanScorer:
        super().train(mode)
        if self.lm is not None:
            self.lm.eval()  # frozen: no dropout inside it while the parser learns
        return self

    def forward(
        self,
        word_ids: torch.Tensor,
        tag_ids: torch.Tensor,
        char_ids: torch.Tensor | None = None,
        lm_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """word_ids, tag_ids: (n + 2,) for one sentence; char_ids: (n + 2, longest word), 0-padded, if the scorer
        reads characters; lm_ids: (n + 2,) if it reads an LM -> (n + 1, n + 1, labels) logits for fenceposts i < j."""
        features = [self.words(word_ids), self.tags(tag_ids)]  # (n+2, dim), (n+2, dim/2)
        if char_ids is not None:
            states, _ = self.char_lstm(self.chars(char_ids))  # (n+2, longest, 2·32)
            last = (char_ids != 0).sum(-1).clamp(min=1) - 1  # each word's last character
            features += [states[torch.arange(len(char_ids)), last, :32], states[:, 0, 32:]]
        if self.lm is not None:
            with torch.no_grad():
                ahead, behind = self.lm.states(lm_ids[None], [len(lm_ids)])  # (1, n+2, H) each
            features.append(self.context(torch.cat([ahead[0], behind[0]], dim=-1)))  # (n+2, dim)
        out, _ = self.lstm(torch.cat(features, dim=-1)[None])  # (1, n+2, 2H)
        forward, backward = out[0, :, : self.hidden], out[0, :, self.hidden :]  # (n+2, H) each
        fwd = forward[:-1]  # fencepost k: after word k (k = 0 … n)
        bwd = backward[1:]
        spans = torch.cat([fwd[None, :, :] - fwd[:, None, :], bwd[:, None, :] - bwd[None, :, :]], dim=-1)
        return self.label(spans)  # (n+1, n+1, labels): [i, j] scores span i..j


def cky(scores: torch.Tensor) -> set[tuple[int, int, int]]:
    """Best binary bracketing; returns (i, j, label index) with label ≠ ∅.

    scores: (n+1, n+1, labels) log-probabilities. Each span of the tree scores the log-odds of its best label
    against ∅, or 0 if ∅ is likelier (it is then in the bracketing but not a constituent), so that the bracketing
    with the most confident constituents wins (Stern et al.'s s(i, j, ∅) = 0). The whole sentence is one span.
    """
    n = scores.shape[0] - 1
    log_odds, best = (scores[..., 1:] - scores[..., :1]).max(-1)  # (n+1, n+1) each
    label_score = log_odds.clamp(min=0.0).tolist()
    best_label = torch.where(log_odds > 0, best + 1, torch.zeros_like(best)).tolist()
    chart: dict[tuple[int, int], tuple[float, int]] = {}
    for length in range(1, n + 1):
        for i in range(n - length + 1):
            j = i + length
            split_score, split = 0.0, -1
            if length > 1:
                split_score, split = max((chart[i, k][0] + chart[k, j][0], k) for k in range(i + 1, j))
            chart[i, j] = (label_score[i][j] + split_score, split)
    spans: set[tuple[int, int, int]] = set()

    def backtrack(i: int, j: int) -> None:
        if best_label[i][j] != 0:
            spans.add((i, j, best_label[i][j]))
        split = chart[i, j][1]
        if split > 0:
            backtrack(i, split)
            backtrack(split, j)

    if n > 0:
        backtrack(0, n)
    return spans


class SpanOracle:
    """Parse tokenised sentences into labelled spans (i, j inclusive, label), Diffusion-LM's span format."""

    def __init__(self, directory: Path | None = None) -> None:
        from safetensors.torch import load_file

        from textdiff.evaluation.oracles import PosOracle, independent_pos_oracle

        directory = span_oracle_dir() if directory is None else Path(directory)
        if not (directory / "model.safetensors").is_file():
            if not GUM.is_dir():
                raise ValueError(
                    f"No span oracle in {directory} and no GUM trees at {GUM} to train one; set TEXTDIFF_GUM to a "
                    "folder of GUM .ptb files (or run python eval/span_parser.py --gum DIR --output DIR)."
                )
            train(GUM, directory)

        meta = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
        self.vocab = Vocab(
            meta["words"], meta["tags"], meta["labels"], meta.get("characters", []), meta.get("lm_words", [])
        )
        self.model = SpanScorer(len(self.vocab.words), len(self.vocab.tags), len(self.vocab.labels), **meta["sizes"])
        self.model.load_state_dict(load_file(directory / "model.safetensors"))
        self.model.eval()
        reads = meta.get("tagger", "project")
        self.tagger = {"project": PosOracle, "independent": independent_pos_oracle, "none": lambda: None}[reads]()

    def tags(self, words: list[str]) -> list[str]:
        """The PTB tags the parser reads: its tagger's, or all unknown for a parser that reads no tags."""
        return self.tagger.ptb_tags(words) if self.tagger is not None else [UNK] * len(words)

    @torch.no_grad()
    def constituents(self, words: list[str]) -> tuple[list[str], set[tuple[int, int, str]]]:
        """(PTB tags, constituents (i, j, label) with j exclusive) of one tokenised sentence."""
        if not words:
            return [], set()
        tags = self.tags(words)
        scores = self.model(**self.vocab.encode(words, tags)).log_softmax(-1)
        return tags, {(i, j, self.vocab.labels[label]) for i, j, label in cky(scores)}

    def parse(self, words: list[str]) -> set[tuple[int, int, str]]:
        """Labelled spans (i, j, label) with an inclusive end j, as Diffusion-LM's span targets write them."""
        return {(i, j - 1, label) for i, j, label in self.constituents(words)[1]}

    def tree(self, words: list[str]) -> str:
        """The parse as a PTB bracketing with the tagger's tags, e.g. "(ROOT (S (NP (DT The) (NNP Eagle)) …))"."""
        tags, spans = self.constituents(words)
        return bracket(words, tags, spans)


def span_oracle_named(name: str, user: str = "span_oracle_named") -> SpanOracle:
    """The span oracle a metric's `oracle` argument names: "project" (`SpanOracle()`), "independent" or "faithful"
    (adapted to the parser behind Diffusion-LM's span targets)."""
    oracles = {"project": SpanOracle, "independent": independent_span_oracle, "faithful": faithful_span_oracle}
    if name not in oracles:
        raise ValueError(f"{user}: oracle must be one of {sorted(oracles)}, got {name!r}.")
    return oracles[name]()


def top_label(label: str) -> str:
    """A unary chain written "S::NP" (as in Diffusion-LM's targets) by its top label, the one the oracle gives."""
    return label.split("::")[0]


def span_set(spans: list[dict]) -> set[tuple[int, int, str]]:
    """A span metric's reference ([{"start", "end", "label"}, …]) as the oracle's parse writes spans."""
    return {(span["start"], span["end"], top_label(span["label"])) for span in spans}


def span_metric_features():
    """The `datasets.Features` of the span metrics (control_spans, control_tree): texts and their target spans."""
    import datasets

    span = {"start": datasets.Value("int32"), "end": datasets.Value("int32"), "label": datasets.Value("string")}
    return datasets.Features({"predictions": datasets.Value("string"), "references": datasets.List(span)})


def tree_targets(oracle: SpanOracle, texts: list[str], num: int, seed: int = 0, max_words: int = 38) -> list[dict]:
    """Syntax-tree control targets made as Diffusion-LM made its own: the oracle's full parse of held-out sentences.

    `num` texts of at most `max_words` words (38: what a model of 40 positions can write), drawn at random (`seed`)
    from `texts`, each as one JSON line of a Diffusion-LM target file: {"words_": [START, words…, "\n", END],
    "tree": "(ROOT (S …))"}, the tree a PTB bracketing with the tagger's tags."""
    if num < 1:
        raise ValueError(f"num must be at least 1, got {num}.")
    fitting = [text.split() for text in texts if 0 < len(text.split()) <= max_words]
    if len(fitting) < num:
        raise ValueError(f"Only {len(fitting)} texts have 1 to {max_words} words; {num} targets were asked for.")
    chosen = random.Random(seed).sample(fitting, num)
    return [{"words_": ["START", *words, "\n", "END"], "tree": oracle.tree(words)} for words in chosen]


def remade_span_targets(oracle: SpanOracle, targets: list) -> list[dict]:
    """Span targets for `oracle`, on the sentences of another file's targets (Diffusion-LM's target_spans.json).

    Diffusion-LM drew each span target from its own parser's parse of a held-out sentence; an oracle with other
    conventions (GUM's, not PTB-2012's) cannot find a third of those spans even in the targets' own sentences, so
    success under it is bounded below 100. Here each target span is redrawn from `oracle`'s parse of the same
    sentence: the target's own span where the parse has it; else the parse's constituent with the same label that
    overlaps it most (overlap: shared words / words of both); else (no overlapping constituent with that label) the
    constituent overlapping it most. Ties go to the earliest, shortest span, so the file is a function of the
    oracle and the targets.
    targets: `ControlTarget`s with words and spans -> JSON-line records {"words_": [START, …, "\n", END], "spans"}."""

    def overlap(a: tuple[int, int], b: tuple[int, int]) -> float:
        shared = min(a[1], b[1]) - max(a[0], b[0]) + 1
        return max(shared, 0) / (max(a[1], b[1]) - min(a[0], b[0]) + 1)

    records = []
    for target in targets:
        if not target.words or not target.spans:
            raise ValueError("Every target needs its sentence (words_) and at least one span to remake it.")
        parse = sorted(oracle.parse(target.words), key=lambda s: (s[0], s[1] - s[0], s[2]))
        if not parse:
            raise ValueError(f"The oracle finds no constituent in {' '.join(target.words)!r}; drop that target.")
        spans = []
        for start, end, label in target.spans:
            top = top_label(label)
            overlapping = [s for s in parse if overlap((s[0], s[1]), (start, end)) > 0]
            same = [s for s in overlapping if s[2] == top]
            best = max(same or overlapping or parse, key=lambda s: overlap((s[0], s[1]), (start, end)))  # the first
            spans.append([start, end, top] if (start, end, top) in parse else list(best))
        records.append({"words_": ["START", *target.words, "\n", "END"], "spans": spans})
    return records


def target_agreement(oracle: SpanOracle, targets: list) -> dict[str, dict[str, int]]:
    """How many target spans the oracle's parse of each target's own sentence contains, by label: {label: {"found",
    "total"}} and "all". targets: `ControlTarget`s with words and spans (e.g. read from target_spans.json); a unary
    chain ("S::NP") counts by its top label."""
    counts: dict[str, dict[str, int]] = {}
    for target in targets:
        parse = oracle.parse(target.words)
        for start, end, label in target.spans:
            top = top_label(label)
            for key in (top, "all"):
                counts.setdefault(key, {"found": 0, "total": 0})
                counts[key]["total"] += 1
                counts[key]["found"] += (start, end, top) in parse
    return counts


# --- training --------------------------------------------------------------------------------------------------


def tree_f1(gold: set, predicted: set) -> float:
    """Labelled F1 of one parse's constituents against one gold tree's (1.0 when both are empty)."""
    if not gold and not predicted:
        return 1.0
    return 2 * len(gold & predicted) / (len(gold) + len(predicted))


def labelled_f1(gold: list[set], predicted: list[set]) -> float:
    """Labelled F1 over a corpus: constituents matched in all trees against all gold and all predicted ones."""
    matched = sum(len(g & p) for g, p in zip(gold, predicted))
    total_gold, total_predicted = sum(map(len, gold)), sum(map(len, predicted))
    precision, recall = matched / max(total_predicted, 1), matched / max(total_gold, 1)
    return 2 * precision * recall / max(precision + recall, 1e-9)


def gum_trees(gum: Path, max_words: int = 60, max_files: int | None = None) -> dict[str, list]:
    """GUM's trees of 2 to `max_words` words as {"train", "test"}: lists of (words, gold PTB tags, constituents (i, j
    exclusive, label)); every 10th document (sorted by name) is held out for testing. max_files: the first N only."""
    files = sorted(gum.glob("*.ptb"))[:max_files]
    if not files:
        raise ValueError(f"No .ptb trees in {gum}; point --gum (or TEXTDIFF_GUM) at the GUM constituency folder.")
    splits: dict[str, list] = {"train": [], "test": []}
    for index, path in enumerate(files):
        for bracketed in read_ptb(path):
            words, gold_tags, spans = tree_spans(bracketed)
            if 1 < len(words) <= max_words:
                splits["test" if index % 10 == 0 else "train"].append((words, gold_tags, spans))
    return splits


def full_span_loss(
    logits: torch.Tensor, spans: list[tuple[int, int, str]], label_index: dict[str, int]
) -> torch.Tensor:
    """Cross-entropy of a full bracketing: every span i < j of the sentence has its gold label, ∅ if it is no
    constituent. logits: (n+1, n+1, labels) from `SpanScorer`; spans: (i, j exclusive, label); a label missing from
    `label_index` counts as ∅."""
    n = logits.shape[0] - 1
    gold = torch.zeros(n + 1, n + 1, dtype=torch.long)
    for i, j, label in spans:
        gold[i, j] = label_index.get(label, 0)
    upper = torch.triu(torch.ones(n + 1, n + 1, dtype=torch.bool), diagonal=1)
    return nn.functional.cross_entropy(logits[upper], gold[upper])


def heldout_f1(oracle: SpanOracle, trees: list) -> float:
    """The oracle's labelled span F1 on trees (words, tags, constituents (i, j exclusive, label)), e.g. GUM's test."""
    from tqdm.auto import tqdm

    gold = [{(i, j - 1, label) for i, j, label in spans} for _, _, spans in trees]
    return labelled_f1(gold, [oracle.parse(words) for words, _, _ in tqdm(trees, desc="held-out parse")])


def train(
    gum: Path,
    output: Path,
    epochs: int = 4,
    seed: int = 0,
    max_words: int = 60,
    max_files: int | None = None,
    tags: str = "project",
    characters: bool = False,
    hidden: int = 128,
    tag_dropout: float = 0.0,
    lm: Path | None = None,
) -> dict[str, float]:
    """Train on GUM (every 10th document held out for testing) and save; returns held-out labelled span F1.
    max_files: use only the first N documents (a fixture-size oracle for tests; None: all 110).
    tags: "project" learns from and reads the bundled NLTK tagger's tags (the oracle every score uses); "gold"
    learns from GUM's own tags and reads the independent tagger's (`independent_span_oracle`).
    characters: also read each word's characters (`SpanScorer`), with dropout 0.3 between the LSTM layers and the
    learning rate falling linearly to a tenth over training (the faithful oracle's base: 8 epochs, hidden 200, tag
    dropout 0.3); tag_dropout: the share of tags hidden (as unknown) in training, so that words count too."""
    if tags not in ("project", "gold", "none"):
        raise ValueError(f"tags must be 'project', 'gold' or 'none', got {tags!r}.")
    if epochs < 1 or hidden < 1 or not 0.0 <= tag_dropout < 1.0:
        raise ValueError(
            f"train needs epochs >= 1, hidden >= 1, 0 <= tag_dropout < 1; got {epochs}, {hidden}, {tag_dropout}."
        )
    from collections import Counter

    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from textdiff.evaluation.oracles import PosOracle

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tagger = PosOracle()
    splits = {
        split: [
            (
                words,
                tagger.ptb_tags(words) if tags == "project" else gold_tags if tags == "gold" else [UNK] * len(words),
                spans,
            )
            for words, gold_tags, spans in trees
        ]
        for split, trees in gum_trees(gum, max_words, max_files).items()
    }
    counts = Counter(w.lower() for words, _, _ in splits["train"] for w in words)
    lm_meta = json.loads((Path(lm) / "lm.json").read_text(encoding="utf-8")) if lm is not None else {}
    vocab = Vocab(
        words=[UNK, BOUNDARY] + sorted(w for w, c in counts.items() if c >= 2),
        tags=[UNK, BOUNDARY] + sorted({t for _, tags, _ in splits["train"] for t in tags} - {UNK, BOUNDARY}),
        labels=[NULL] + sorted({label for _, _, spans in splits["train"] for _, _, label in spans}),
        characters=["<pad>", UNK] + sorted({c for words, _, _ in splits["train"] for w in words for c in w})
        if characters
        else [],
        lm_words=lm_meta.get("words", []),
    )
    label_index = {label: i for i, label in enumerate(vocab.labels)}
    sizes = {"dim": 64, "hidden": hidden} | ({"chars": len(vocab.characters), "dropout": 0.3} if characters else {})
    sizes |= {"lm": lm_meta["sizes"]} if lm is not None else {}
    model = SpanScorer(len(vocab.words), len(vocab.tags), len(vocab.labels), **sizes)
    if lm is not None:
        from safetensors.torch import load_file

        model.lm.load_state_dict(load_file(Path(lm) / "lm.safetensors"))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    total = epochs * len(splits["train"])
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, (lambda step: max(0.1, 1 - step / total)) if characters else (lambda step: 1.0)
    )
    for epoch in range(epochs):
        model.train()
        rng.shuffle(splits["train"])
        for words, sentence_tags, spans in tqdm(splits["train"], desc=f"span parser epoch {epoch + 1}/{epochs}"):
            if tag_dropout:
                sentence_tags = [UNK if rng.random() < tag_dropout else t for t in sentence_tags]
            inputs = vocab.encode(words, sentence_tags)  # a word hidden below keeps its spelling and LM states
            hidden_words = [False] + [counts[w.lower()] <= 1 and rng.random() <= 0.5 for w in words] + [False]
            inputs["word_ids"] = inputs["word_ids"].masked_fill(torch.tensor(hidden_words), vocab.words.index(UNK))
            loss = full_span_loss(model(**inputs), spans, label_index)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    output.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), output / "model.safetensors")
    (output / "vocab.json").write_text(
        json.dumps(
            {
                "words": vocab.words,
                "tags": vocab.tags,
                "labels": vocab.labels,
                "characters": vocab.characters,
                "lm_words": vocab.lm_words,
                "sizes": sizes,
                "tagger": {"project": "project", "gold": "independent", "none": "none"}[tags],
            },
            ensure_ascii=False,
        )
    )
    report = {
        "labelled_span_f1": heldout_f1(SpanOracle(output), splits["test"]),
        "test_trees": len(splits["test"]),
        "train_trees": len(splits["train"]),
        "tags": {
            "project": "the bundled NLTK tagger's",
            "gold": "GUM's gold (training), the independent tagger's (reading)",
            "none": "none (words and characters only)",
        }[tags],
        "seed": seed,
    }
    (output / "heldout.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


# --- adapting to the paper's parser ----------------------------------------------------------------------------


def faithful_span_oracle_dir() -> Path:
    """Where the faithful span oracle (adapted to the parser behind Diffusion-LM's span targets) is:
    $TEXTDIFF_SPAN_FAITHFUL if set, else the cache's ($TEXTDIFF_CACHE/span_faithful)."""
    if os.environ.get("TEXTDIFF_SPAN_FAITHFUL"):
        return Path(os.environ["TEXTDIFF_SPAN_FAITHFUL"])
    return cache_dir("span_faithful")


def faithful_base_dir() -> Path:
    """Where the faithful oracle's base (`train_faithful_base`) is cached: $TEXTDIFF_CACHE/span_faithful_base."""
    return cache_dir("span_faithful_base")


def bilm_sentences(gum: Path, seed: int = 0, num_e2e: int = 25000) -> list[list[str]]:
    """The context LM's text: `num_e2e` of the bundled E2E training references (drawn with `seed`; its 42,061
    references repeat themselves a lot) and GUM's training sentences twice, tokenised."""
    from textdiff.data import load_corpus

    e2e = [text.split() for text in load_corpus(str(bundled("data/e2e")), "train")["text"]]
    random.Random(seed).shuffle(e2e)
    return e2e[:num_e2e] + [words for words, _, _ in gum_trees(gum)["train"]] * 2


def train_faithful_base(directory: Path, gum: Path | None = None, seed: int = 0) -> dict[str, float]:
    """The parser the faithful oracle is adapted from, into `directory`: a context LM (`context_lm.train_bilm`,
    2 epochs on 25,000 E2E references and GUM's training sentences, into directory/lm), then a GUM parser reading
    words, characters, the bundled tagger's tags (30 % hidden in training) and the LM's states (8 epochs, hidden
    200). ≈ 40 min on one core; returns the parser's held-out GUM report."""
    from textdiff.evaluation.context_lm import train_bilm

    gum = GUM if gum is None else gum
    train_bilm(bilm_sentences(gum, seed), directory / "lm", epochs=2, seed=seed)
    return train(gum, directory, 8, seed, characters=True, hidden=200, tag_dropout=0.3, lm=directory / "lm")


def faithful_span_oracle() -> SpanOracle:
    """A span oracle with the conventions of the parser that drew Diffusion-LM's span targets, for scoring span
    control against the paper's file.

    The oracle every score uses learned GUM's trees and finds 70 % of target_spans.json's spans in the targets' own
    sentences: the paper's parser (trained on the Penn Treebank) brackets E2E's phrases its own way ("a (family
    friendly) pub" as ADJP, "(5 out of 5)" as QP, "called (The Punter)" as S::NP). This one is a GUM parser that also
    reads a context LM trained on unlabelled E2E text (`train_faithful_base`), adapted to the paper's parser by the
    targets' partial bracketings (`adapt`), each of the 200 sentences giving one span and the spans that cannot be
    beside it. Its agreement on sentences it did not learn from (5-fold cross-validation) and held-out GUM F1 are in
    docs/RESULTS.md and its heldout.json, written by `python eval/span_parser.py --faithful`. Built on first use
    (the base ≈ 40 min on one core, cached in $TEXTDIFF_CACHE/span_faithful_base; the adaptation ≈ 3 min)."""
    from textdiff.evaluation.controls import read_control_targets

    directory, base = faithful_span_oracle_dir(), faithful_base_dir()
    paper = bundled("data/control_targets/target_spans.json")

    def build() -> None:
        if not (base / "model.safetensors").is_file():
            logger.warning("Training the faithful span oracle's base into %s (≈ 40 min on one core, once).", base)
            train_faithful_base(base)
        adapt(base, read_control_targets(paper), directory)

    return _built_on_first_use(directory, "faithful", build)


def partial_span_loss(logits: torch.Tensor, spans: list[tuple[int, int, str]], labels: list[str]) -> torch.Tensor:
    """Cross-entropy of a partial bracketing (Joshi et al. 2018, "Extending a Parser to Distant Domains Using a Few
    Dozen Partially Annotated Examples"): each known span (i, j inclusive, label) has its label at fenceposts
    (i, j + 1), every span crossing it is ∅ (it cannot be a constituent beside it), and the rest is left free.

    logits: (n+1, n+1, labels) from `SpanScorer`; spans: labels in `labels` (a chain "S::NP" by its top label)."""
    n = logits.shape[0] - 1
    label_index = {label: k for k, label in enumerate(labels)}
    cells: dict[tuple[int, int], int] = {}
    for start, end, label in spans:
        if top_label(label) not in label_index:
            raise ValueError(f"Span label {label!r} is not one of the oracle's labels {labels[1:]}.")
        i, j = start, end + 1
        if not 0 <= i < j <= n:
            raise ValueError(f"Span ({start}, {end}) is outside the sentence's {n} words.")
        for x in range(n):
            for y in range(x + 1, n + 1):
                if x < i < y < j or i < x < j < y:
                    cells.setdefault((x, y), 0)
        cells[i, j] = label_index[top_label(label)]
    rows, cols = torch.tensor([c[0] for c in cells]), torch.tensor([c[1] for c in cells])
    return nn.functional.cross_entropy(logits[rows, cols], torch.tensor(list(cells.values())))


def _with_labels(model: SpanScorer, vocab: Vocab, extra: list[str]) -> None:
    """Give the model's last layer a row per new label (NML: absent from GUM), scored far below ∅ until learnt."""
    if not extra:
        return
    last = model.label[-1]
    grown = nn.Linear(last.in_features, last.out_features + len(extra))
    with torch.no_grad():
        grown.weight[: last.out_features] = last.weight
        grown.bias[: last.out_features] = last.bias
        grown.weight[last.out_features :] = 0.0
        grown.bias[last.out_features :] = last.bias[0] - 10.0
    model.label[-1] = grown
    vocab.labels += extra


def adapt(
    base: Path,
    targets: list,
    output: Path,
    epochs: int = 10,
    weight: float = 3.0,
    lr: float = 1e-3,
    seed: int = 0,
    gum: Path | None = None,
    max_files: int | None = None,
) -> None:
    """Fine-tune the oracle in `base` towards the parser that drew `targets`' spans, and save it into `output`.

    Each step takes one target's partial bracketing (`partial_span_loss`, times `weight`) and one GUM training tree
    (full bracketing), so that the oracle learns the other parser's conventions without forgetting how to bracket a
    whole sentence; `epochs` passes over the targets with Adam (`lr`). A label the targets use and the oracle lacks
    (NML) is added. targets: `ControlTarget`s with words and spans (e.g. read from target_spans.json)."""
    from safetensors.torch import save_file

    gum = GUM if gum is None else gum
    if epochs < 1 or weight <= 0 or lr <= 0:
        raise ValueError(f"adapt needs epochs >= 1, weight > 0 and lr > 0; got {epochs}, {weight}, {lr}.")
    targets = [t for t in targets if t.words and t.spans]
    if not targets:
        raise ValueError("adapt needs targets with words and spans, e.g. read from target_spans.json.")
    oracle = SpanOracle(base)
    model, vocab = oracle.model, oracle.vocab
    _with_labels(model, vocab, sorted({top_label(l) for t in targets for *_, l in t.spans} - set(vocab.labels)))
    trees = gum_trees(gum, max_files=max_files)["train"]
    tags = {tuple(t.words): oracle.tags(t.words) for t in targets}
    torch.manual_seed(seed)
    rng = random.Random(seed)
    label_index = {label: k for k, label in enumerate(vocab.labels)}
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for target in rng.sample(targets, len(targets)):
            loss = weight * partial_span_loss(
                model(**vocab.encode(target.words, tags[tuple(target.words)])), target.spans, vocab.labels
            )
            words, _, spans = rng.choice(trees)
            loss = loss + full_span_loss(model(**vocab.encode(words, oracle.tags(words))), spans, label_index)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    output.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), output / "model.safetensors")
    meta = json.loads((Path(base) / "vocab.json").read_text(encoding="utf-8"))
    meta["labels"] = vocab.labels
    (output / "vocab.json").write_text(json.dumps(meta, ensure_ascii=False))


def cross_validated_agreement(base: Path, targets: list, folds: int = 5, **adapt_args) -> dict:
    """How many of `targets`' spans an oracle adapted to the others finds in each target's own sentence: target k is
    held out in fold k % `folds`, `adapt` learns from the rest, and the adapted oracle parses fold k's sentences.
    Returns {"found", "total", "per_fold": [[found, total], ...], "by_label": {label: {"found", "total"}}}."""
    import tempfile

    if folds < 2:
        raise ValueError(f"Cross-validation needs at least 2 folds, got {folds}.")
    per_fold, by_label = [], {}
    for fold in range(folds):
        held_out = [t for k, t in enumerate(targets) if k % folds == fold]
        with tempfile.TemporaryDirectory() as directory:
            adapt(base, [t for k, t in enumerate(targets) if k % folds != fold], Path(directory), **adapt_args)
            counts = target_agreement(SpanOracle(Path(directory)), held_out)
        per_fold.append([counts["all"]["found"], counts["all"]["total"]])
        for label, count in counts.items():
            if label != "all":
                summed = by_label.setdefault(label, {"found": 0, "total": 0})
                summed["found"], summed["total"] = summed["found"] + count["found"], summed["total"] + count["total"]
    return {
        "found": sum(f for f, _ in per_fold),
        "total": sum(t for _, t in per_fold),
        "per_fold": per_fold,
        "by_label": dict(sorted(by_label.items(), key=lambda item: -item[1]["total"])),
    }
