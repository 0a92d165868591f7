"""The syntax oracle: a small span-based constituency parser (Stern, Andreas, Klein 2017, "A Minimal Span-Based
Neural Constituency Parser"), trained on the GUM constituency trees, used to check syntax-span controls.

No pretrained parser can be downloaded here, so the oracle is trained from GUM (CC BY 4.0 annotations): a BiLSTM
over words and PTB tags (from the bundled NLTK tagger, the same tags it sees at test time) scores every span
(i, j) with a label or ∅; CKY finds the best binary bracketing; the spans labelled non-∅ are the parse. Trees are
normalised as in evalb-style scoring: function tags stripped (NP-SBJ → NP), unary chains kept by their top
label, preterminals and the root dropped.

    python eval/span_parser.py --gum ../shared/data/gum_const   # train into ~/.cache/textdiff/span_oracle, held-out F1

The oracle every score uses ships with textdiff (data/span_oracle): its training is not bit-identical across
machines, and the syntax-tree targets are its own parses, so the targets and the oracle that scores them travel
together. A newly trained one is used where $TEXTDIFF_SPAN_ORACLE points.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

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
    if not (directory / "model.safetensors").is_file():
        if not GUM.is_dir():
            raise ValueError(
                f"No independent span oracle in {directory} and no GUM trees at {GUM} to train one; set TEXTDIFF_GUM "
                "to a folder of GUM .ptb files."
            )
        train(GUM, directory, seed=1, tags="gold")
    return SpanOracle(directory)


GUM = Path(os.environ.get("TEXTDIFF_GUM", Path(__file__).resolve().parents[3] / "shared" / "data" / "gum_const"))
NULL, UNK, BOUNDARY = "∅", "<unk>", "<s>"


# --- the model -------------------------------------------------------------------------------------------------


@dataclass
class Vocab:
    words: list[str]
    tags: list[str]
    labels: list[str]  # labels[0] == NULL

    def encode(self, words: list[str], tags: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        word_index = {w: i for i, w in enumerate(self.words)}
        tag_index = {t: i for i, t in enumerate(self.tags)}
        w = (
            [word_index[BOUNDARY]]
            + [word_index.get(x.lower(), word_index[UNK]) for x in words]
            + [word_index[BOUNDARY]]
        )
        t = [tag_index[BOUNDARY]] + [tag_index.get(x, tag_index[UNK]) for x in tags] + [tag_index[BOUNDARY]]
        return torch.tensor(w), torch.tensor(t)


class SpanScorer(nn.Module):
    """BiLSTM over [<s>, w_1 … w_n, </s>]; span (i, j) = [f_j − f_i ; b_i − b_j] on fenceposts → label logits."""

    def __init__(self, num_words: int, num_tags: int, num_labels: int, dim: int = 64, hidden: int = 128) -> None:
        super().__init__()
        self.words = nn.Embedding(num_words, dim)
        self.tags = nn.Embedding(num_tags, dim // 2)
        self.lstm = nn.LSTM(dim + dim // 2, hidden, num_layers=2, bidirectional=True, batch_first=True, dropout=0.2)
        self.label = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_labels))
        self.hidden = hidden

    def forward(self, word_ids: torch.Tensor, tag_ids: torch.Tensor) -> torch.Tensor:
        """word_ids, tag_ids: (n + 2,) for one sentence -> (n + 1, n + 1, labels) logits for fenceposts i < j."""
        x = torch.cat([self.words(word_ids), self.tags(tag_ids)], dim=-1)[None]  # (1, n+2, 1.5·dim)
        out, _ = self.lstm(x)
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
        for i in range(0, n - length + 1):
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
        self.vocab = Vocab(meta["words"], meta["tags"], meta["labels"])
        self.model = SpanScorer(len(self.vocab.words), len(self.vocab.tags), len(self.vocab.labels), **meta["sizes"])
        self.model.load_state_dict(load_file(directory / "model.safetensors"))
        self.model.eval()
        self.tagger = PosOracle() if meta.get("tagger", "project") == "project" else independent_pos_oracle()

    @torch.no_grad()
    def constituents(self, words: list[str]) -> tuple[list[str], set[tuple[int, int, str]]]:
        """(PTB tags, constituents (i, j, label) with j exclusive) of one tokenised sentence."""
        if not words:
            return [], set()
        tags = self.tagger.ptb_tags(words)
        scores = self.model(*self.vocab.encode(words, tags)).log_softmax(-1)
        return tags, {(i, j, self.vocab.labels[label]) for i, j, label in cky(scores)}

    def parse(self, words: list[str]) -> set[tuple[int, int, str]]:
        """Labelled spans (i, j, label) with an inclusive end j, as Diffusion-LM's span targets write them."""
        return {(i, j - 1, label) for i, j, label in self.constituents(words)[1]}

    def tree(self, words: list[str]) -> str:
        """The parse as a PTB bracketing with the tagger's tags, e.g. "(ROOT (S (NP (DT The) (NNP Eagle)) …))"."""
        tags, spans = self.constituents(words)
        return bracket(words, tags, spans)


def span_oracle_named(name: str, user: str = "span_oracle_named") -> SpanOracle:
    """The span oracle a metric's `oracle` argument names: "project" (`SpanOracle()`) or "independent"."""
    if name not in ("project", "independent"):
        raise ValueError(f"{user}: oracle must be 'project' or 'independent', got {name!r}.")
    return SpanOracle() if name == "project" else independent_span_oracle()


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


def train(
    gum: Path,
    output: Path,
    epochs: int = 4,
    seed: int = 0,
    max_words: int = 60,
    max_files: int | None = None,
    tags: str = "project",
) -> dict[str, float]:
    """Train on GUM (every 10th document held out for testing) and save; returns held-out labelled span F1.
    max_files: use only the first N documents (a fixture-size oracle for tests; None: all 110).
    tags: "project" learns from and reads the bundled NLTK tagger's tags (the oracle every score uses); "gold"
    learns from GUM's own tags and reads the independent tagger's (`independent_span_oracle`)."""
    if tags not in ("project", "gold"):
        raise ValueError(f"tags must be 'project' or 'gold', got {tags!r}.")
    from collections import Counter

    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from textdiff.evaluation.oracles import PosOracle

    torch.manual_seed(seed)
    rng = random.Random(seed)
    files = sorted(gum.glob("*.ptb"))[:max_files]
    if not files:
        raise ValueError(f"No .ptb trees in {gum}; point --gum at the GUM constituency folder.")
    tagger = PosOracle()
    splits = {"train": [], "test": []}
    for index, path in enumerate(files):
        for bracketed in read_ptb(path):
            words, gold_tags, spans = tree_spans(bracketed)
            if 1 < len(words) <= max_words:
                word_tags = tagger.ptb_tags(words) if tags == "project" else gold_tags
                splits["test" if index % 10 == 0 else "train"].append((words, word_tags, spans))
    counts = Counter(w.lower() for words, _, _ in splits["train"] for w in words)
    vocab = Vocab(
        words=[UNK, BOUNDARY] + sorted(w for w, c in counts.items() if c >= 2),
        tags=[UNK, BOUNDARY] + sorted({t for _, tags, _ in splits["train"] for t in tags}),
        labels=[NULL] + sorted({label for _, _, spans in splits["train"] for _, _, label in spans}),
    )
    label_index = {label: i for i, label in enumerate(vocab.labels)}
    sizes = {"dim": 64, "hidden": 128}
    model = SpanScorer(len(vocab.words), len(vocab.tags), len(vocab.labels), **sizes)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for epoch in range(epochs):
        model.train()
        rng.shuffle(splits["train"])
        for words, sentence_tags, spans in tqdm(splits["train"], desc=f"span parser epoch {epoch + 1}/{epochs}"):
            word_ids, tag_ids = vocab.encode(
                [w if counts[w.lower()] > 1 or rng.random() > 0.5 else UNK for w in words], sentence_tags
            )
            logits = model(word_ids, tag_ids)  # (n+1, n+1, labels)
            n = len(words)
            target = torch.zeros(n + 1, n + 1, dtype=torch.long)
            for i, j, label in spans:
                target[i, j] = label_index.get(label, 0)
            upper = torch.triu(torch.ones(n + 1, n + 1, dtype=torch.bool), diagonal=1)
            loss = nn.functional.cross_entropy(logits[upper], target[upper])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    output.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), output / "model.safetensors")
    (output / "vocab.json").write_text(
        json.dumps(
            {
                "words": vocab.words,
                "tags": vocab.tags,
                "labels": vocab.labels,
                "sizes": sizes,
                "tagger": "project" if tags == "project" else "independent",
            },
            ensure_ascii=False,
        )
    )
    oracle = SpanOracle(output)
    gold = [{(i, j - 1, label) for i, j, label in spans} for _, _, spans in splits["test"]]
    predicted = [oracle.parse(words) for words, _, _ in tqdm(splits["test"], desc="held-out parse")]
    report = {
        "labelled_span_f1": labelled_f1(gold, predicted),
        "test_trees": len(gold),
        "train_trees": len(splits["train"]),
        "tags": "the bundled NLTK tagger's"
        if tags == "project"
        else "GUM's gold (training), the independent tagger's (reading)",
        "seed": seed,
    }
    (output / "heldout.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
