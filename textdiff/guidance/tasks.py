"""The kinds of control a latent classifier predicts, one object each, and their registry.

A task owns everything that differs between them: which settings its config needs, the width and input of the
output head, how the logits line up with a batched target, how the rows' targets are stacked into one batch,
and how two controls of the same task in one row merge. `LatentClassifier` and `ClassifierGuidance` only call
these; a new kind of control is a new `ClassifierTask` in `CLASSIFIER_TASKS`.

Targets (see `LatentClassifier.log_prob`), IGNORE entries not counted:
    field_value: (B, F) value index per field (0 = absent, i + 1 = values[i])
    pos:         (B, L) label id per position
    spans:       (B, S, 3) rows (start, end, label)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F

IGNORE = -100  # a target entry that does not count


class ClassifierTask(ABC):
    """One kind of control: the head's shape, the logits for a target, and how targets batch and merge."""

    name: str
    head_inputs: int = 1  # the head reads this many H-wide features per output row

    @abstractmethod
    def check(self, config) -> None:
        """Raise `ValueError` if a `LatentClassifierConfig` lacks what this task needs."""

    @abstractmethod
    def num_outputs(self, config) -> int:
        """Width of the output layer."""

    @abstractmethod
    def logits(self, head, hidden: torch.Tensor, spans: torch.Tensor | None) -> torch.Tensor:
        """The classifier's output logits from its features hidden (B, L, H)."""

    def labels(self, target: torch.Tensor) -> torch.Tensor:
        """The label ids of a batched target."""
        return target

    def logits_and_labels(self, classifier, x_t, timesteps, target) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (..., C) aligned with the labels (...) of a batched target."""
        return classifier(x_t, timesteps).logits, target

    def stack(self, rows: list[torch.Tensor | None]) -> torch.Tensor:
        """One batched target from each row's target (None: the row has no control of this task)."""
        template = next(r for r in rows if r is not None)
        return torch.stack([torch.full_like(template, IGNORE) if r is None else r for r in rows])

    def merge(self, first: torch.Tensor, second: torch.Tensor, control) -> torch.Tensor:
        """The target of two controls of this task in one row."""
        raise ValueError(f"Two {type(control).__name__} controls for the same row conflict; give one per row.")


class FieldValueTask(ClassifierTask):
    """Semantic content: per position, scores for every (field, value or absent), pooled over positions by
    log-mean-exp ("some word mentions it"); one softmax per field."""

    name = "field_value"

    def check(self, config) -> None:
        if not config.fields or not all(config.fields.values()):
            raise ValueError("A 'field_value' classifier needs `fields`: {field: [values, ...]}, none empty.")

    def num_outputs(self, config) -> int:
        return sum(len(values) + 1 for values in config.fields.values())

    def logits(self, head, hidden, spans):
        scores = head(hidden)  # (B, L, Σ_f (|values_f| + 1))
        return scores.logsumexp(1) - math.log(scores.shape[1])  # (B, Σ)

    def logits_and_labels(self, classifier, x_t, timesteps, target):
        """(B, F, W) one row per field, padded with −1e9 to the widest field, and the (B, F) value indices."""
        logits = classifier(x_t, timesteps).logits
        sizes = [len(values) + 1 for values in classifier.config.fields.values()]
        width = max(sizes)
        per_field = [F.pad(block, (0, width - block.shape[-1]), value=-1e9) for block in logits.split(sizes, -1)]
        return torch.stack(per_field, 1), target

    def merge(self, first, second, control):
        if not ((first != IGNORE) & (second != IGNORE)).any():  # different fields: both count
            return torch.where(second != IGNORE, second, first)
        return super().merge(first, second, control)


class LabelledTask(ClassifierTask):
    """A task with one softmax over `config.labels` per output row."""

    def check(self, config) -> None:
        if len(config.labels) < 2:
            raise ValueError(f"A {self.name!r} classifier needs at least two labels, got {config.labels!r}.")

    def num_outputs(self, config) -> int:
        return len(config.labels)


class PartsOfSpeechTask(LabelledTask):
    """Parts of speech: per position, a softmax over the universal tags ∪ {START, END, PAD}."""

    name = "pos"

    def logits(self, head, hidden, spans):
        return head(hidden)  # (B, L, C)


class SpansTask(LabelledTask):
    """Syntax spans: per queried span (i, j), a softmax over constituent labels ∪ {NONE} from [h_i; h_j; h_i ⊙ h_j]."""

    name = "spans"
    head_inputs = 3

    def logits(self, head, hidden, spans):
        if spans is None:
            raise ValueError("A 'spans' classifier needs the spans to label: a (B, S, 2) tensor of positions.")
        # Indexing, not a gather from hidden expanded to (B, S, L, H): its backward filled that whole tensor (one
        # thread, B = 100, S = 17, L = 40, H = 64: 4.4 ms per forward and backward, against 0.75 ms).
        rows = torch.arange(hidden.shape[0], device=hidden.device)[:, None, None]  # (B, 1, 1)
        ends = hidden[rows, spans.clamp(min=0)]  # (B, S, 2, H)
        start, end = ends[:, :, 0], ends[:, :, 1]
        return head(torch.cat([start, end, start * end], dim=-1))  # (B, S, C)

    def labels(self, target):
        return target[..., 2]

    def logits_and_labels(self, classifier, x_t, timesteps, target):
        return classifier(x_t, timesteps, spans=target[..., :2]).logits, target[..., 2]  # (B, S, C), (B, S)

    def stack(self, rows):
        """A different number of spans per row: padded with IGNORE-labelled rows (over positions 1, 1)."""
        width = max(r.shape[0] for r in rows if r is not None)
        padded = torch.full((len(rows), width, 3), IGNORE, dtype=torch.long)
        padded[..., :2] = 1
        for i, row in enumerate(rows):
            if row is not None:
                padded[i, : row.shape[0]] = row
        return padded

    def merge(self, first, second, control):
        return torch.cat([first, second])


CLASSIFIER_TASKS: dict[str, ClassifierTask] = {
    task.name: task for task in (FieldValueTask(), PartsOfSpeechTask(), SpansTask())
}
TASKS = tuple(CLASSIFIER_TASKS)


def classifier_task(name: str) -> ClassifierTask:
    """The registered task called `name`; an unknown name is a `ValueError` listing the known ones."""
    if name not in CLASSIFIER_TASKS:
        raise ValueError(f"Unknown classifier task {name!r}; the tasks are {TASKS}.")
    return CLASSIFIER_TASKS[name]
