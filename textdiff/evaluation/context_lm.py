"""A small bidirectional LSTM language model whose states give the span oracle context (Peters et al. 2018, ELMo).

No pretrained encoder can be downloaded here, and GUM's 4,000 training trees are few: a parser learning from
them alone reads "a family friendly pub" with the conventions of essays and interviews. A forward and a backward
LSTM language model trained on unlabelled E2E references (and GUM's own sentences) learn how restaurant
descriptions go together; the parser reads their states beside its own word and character features.

    python eval/span_parser.py --bilm runs/bilm     # train it (≈ 12 min, one core)
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import torch
from torch import nn

PAD, UNK, START, STOP = "<pad>", "<unk>", "<s>", "</s>"


class BiLM(nn.Module):
    """Forward and backward 2-layer LSTM LMs over lower-cased words sharing embeddings and output layer.

    The forward state at position t has read words ≤ t and predicts word t+1; the backward state at t has read
    words ≥ t and predicts word t-1. Only the `outputs` most frequent words (ids < outputs) are predicted; rarer ones
    are predicted as <unk>, which keeps the softmax cheap on a CPU."""

    def __init__(self, vocab: int, outputs: int, dim: int = 128, hidden: int = 192) -> None:
        super().__init__()
        if not 4 < outputs <= vocab:
            raise ValueError(f"BiLM needs 4 < outputs <= vocab, got outputs={outputs}, vocab={vocab}.")
        self.embed = nn.Embedding(vocab, dim)
        self.fwd = nn.LSTM(dim, hidden, num_layers=2, batch_first=True, dropout=0.2)
        self.bwd = nn.LSTM(dim, hidden, num_layers=2, batch_first=True, dropout=0.2)
        self.out = nn.Linear(hidden, outputs)
        self.drop = nn.Dropout(0.2)
        self.outputs, self.hidden = outputs, hidden

    def states(self, ids: torch.Tensor, lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """ids: (B, T) = [<s>, words…, </s>] padded with 0 after each row's length -> forward and backward top-layer
        states, (B, T, hidden) each, position t of both aligned with ids[:, t]."""

        def reverse(x: torch.Tensor) -> torch.Tensor:  # each row's first `length` entries backwards
            return torch.stack([torch.cat([row[:length].flip(0), row[length:]]) for row, length in zip(x, lengths)])

        forward, _ = self.fwd(self.drop(self.embed(ids)))
        backward, _ = self.bwd(self.drop(self.embed(reverse(ids))))
        return forward, reverse(backward)

    def loss(self, ids: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """Mean of the forward and backward next-word cross-entropies over the real positions of ids (B, T)."""
        forward, backward = self.states(ids, lengths)
        real = (torch.arange(ids.shape[1])[None] < torch.tensor(lengths)[:, None])[:, 1:]  # (B, T-1)
        targets = ids.masked_fill(ids >= self.outputs, 1)  # rare words are predicted as <unk> (id 1)
        ahead = nn.functional.cross_entropy(self.out(self.drop(forward[:, :-1][real])), targets[:, 1:][real])
        behind = nn.functional.cross_entropy(self.out(self.drop(backward[:, 1:][real])), targets[:, :-1][real])
        return (ahead + behind) / 2


def encode(words: list[str], vocabulary: dict[str, int]) -> torch.Tensor:
    """[<s>, words…, </s>] as BiLM ids (n+2,), lower-cased, unknown words as <unk>."""
    return torch.tensor([vocabulary[START], *(vocabulary.get(w.lower(), 1) for w in words), vocabulary[STOP]])


def train_bilm(
    sentences: list[list[str]],
    output: Path,
    epochs: int = 2,
    outputs: int = 2000,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, float]:
    """Train a `BiLM` on tokenised sentences and save lm.safetensors and lm.json (its vocabulary: words seen twice,
    most frequent first) into `output`; returns the last epoch's mean loss."""
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    if epochs < 1 or batch_size < 1 or not sentences:
        raise ValueError(f"train_bilm needs sentences, epochs >= 1 and batch_size >= 1; got {epochs}, {batch_size}.")
    lowered = [[w.lower() for w in s] for s in sentences if s]
    counts = Counter(w for s in lowered for w in s)
    words = [PAD, UNK, START, STOP] + [w for w, c in counts.most_common() if c >= 2]
    vocabulary = {w: i for i, w in enumerate(words)}
    model = BiLM(len(words), min(outputs, len(words)))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        rng.shuffle(lowered)
        total, batches = 0.0, 0
        for start in tqdm(range(0, len(lowered), batch_size), desc=f"BiLM epoch {epoch + 1}/{epochs}"):
            rows = [encode(s, vocabulary) for s in lowered[start : start + batch_size]]
            lengths = [len(r) for r in rows]
            ids = nn.utils.rnn.pad_sequence(rows, batch_first=True)  # (B, T), 0-padded
            loss = model.loss(ids, lengths)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
    output.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), output / "lm.safetensors")
    sizes = {"vocab": len(words), "outputs": model.outputs, "dim": model.embed.embedding_dim, "hidden": model.hidden}
    (output / "lm.json").write_text(json.dumps({"words": words, "sizes": sizes}, ensure_ascii=False))
    return {"loss": total / batches, "words": len(words), "sentences": len(lowered)}
