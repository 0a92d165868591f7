"""What a user can ask of the generated text (Diffusion-LM §7): semantic content, parts of speech, syntax spans
and length.

A control is a plain description of a target. Those that need a classifier turn into a row of a batched target
tensor for that classifier (`target`); `Length` needs none: it fixes END at the target position and PAD after it
(`known_tokens`), as the paper does. Word positions count from the first word; in the latent sequence word i sits
at position i + 1, after START.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from .classifier import LatentClassifierConfig
from .tasks import IGNORE

# UD's 17 UPOS tags -> the 12 universal tags of Petrov et al. (2012) (AUX is a verb; SCONJ an adposition, as PTB's
# IN maps to ADP). Diffusion-LM's POS targets use UPOS; textdiff's tagger oracle and POS classifier the 12.
UPOS_TO_UNIVERSAL = {
    "ADJ": "ADJ",
    "ADP": "ADP",
    "ADV": "ADV",
    "AUX": "VERB",
    "CCONJ": "CONJ",
    "DET": "DET",
    "INTJ": "X",
    "NOUN": "NOUN",
    "NUM": "NUM",
    "PART": "PRT",
    "PRON": "PRON",
    "PROPN": "NOUN",
    "PUNCT": ".",
    "SCONJ": "ADP",
    "SYM": "X",
    "VERB": "VERB",
    "X": "X",
}
FRAME_LABELS = ("START", "END", "PAD")  # the POS classifier's labels for the framing positions
CLAUSES = ("S", "SINV", "SQ", "SBARQ")  # the PTB labels of a sentence's root clause


class Control(ABC):
    """A target for the generated text. `task` names the classifier it needs (None: no classifier)."""

    task: str | None = None

    @abstractmethod
    def check(self, max_length: int, config: LatentClassifierConfig | None) -> None:
        """Raise ValueError if this target cannot be met with `max_length` positions and this classifier."""

    def target(self, length: int, config: LatentClassifierConfig) -> torch.Tensor:
        """This control as one row of its classifier's batched target (see `LatentClassifier.log_prob`)."""
        raise NotImplementedError(f"{type(self).__name__} needs no classifier.")

    def window(self) -> tuple[int, bool]:
        """(ℓ, exact): the positions [START] … [END] the text needs under this target, and whether that is its
        length exactly (else a minimum). A model with a length prior decodes each row in a window of ℓ positions."""
        return 2, False


@dataclass(frozen=True)
class FieldValue(Control):
    """The text should mention a field's value, e.g. `FieldValue("food", "Italian")` (semantic content)."""

    field: str
    value: str
    task = "field_value"

    def check(self, max_length: int, config: LatentClassifierConfig | None) -> None:
        if config is None:
            return
        if self.field not in config.fields:
            raise ValueError(f"Unknown field {self.field!r}; the classifier knows {sorted(config.fields)}.")
        if self.value not in config.fields[self.field]:
            raise ValueError(
                f"Unknown value {self.value!r} for field {self.field!r}; known values: {config.fields[self.field]}."
            )

    def target(self, length: int, config: LatentClassifierConfig) -> torch.Tensor:
        row = torch.full((len(config.fields),), IGNORE, dtype=torch.long)  # (F,)
        row[list(config.fields).index(self.field)] = config.fields[self.field].index(self.value) + 1
        return row


@dataclass(frozen=True)
class Mentions(Control):
    """The text should contain these words, in order and contiguously (e.g. a field value, "The Golden Curry"),
    scored by the denoiser's own word distribution: no classifier to train (`textdiff.guidance.word_guidance`).
    Build it from text with `Mentions.from_text(text, tokenizer)`."""

    token_ids: tuple[int, ...]
    task = "mentions"

    def __init__(self, token_ids) -> None:
        object.__setattr__(self, "token_ids", tuple(int(i) for i in token_ids))

    @classmethod
    def from_text(cls, text: str, tokenizer) -> Mentions:
        """The words of `text` in the model's vocabulary; a word the vocabulary lacks is an error."""
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"Mentions needs at least one word, got {text!r}.")
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
            unknown = [w for w, i in zip(text.split(), ids) if i == tokenizer.unk_token_id] or [text]
            raise ValueError(f"Mentions({text!r}): {unknown} not in the model's vocabulary; ask for words it knows.")
        return cls(ids)

    def check(self, max_length: int, config: LatentClassifierConfig | None) -> None:
        if not self.token_ids:
            raise ValueError("Mentions needs at least one word.")
        if len(self.token_ids) + 2 > max_length:
            raise ValueError(
                f"Mentions asks for {len(self.token_ids)} words, but {max_length} positions hold at most "
                f"{max_length - 2}; raise max_length or ask for fewer words."
            )

    def window(self) -> tuple[int, bool]:
        return len(self.token_ids) + 2, False

    def target(self, length: int, config: LatentClassifierConfig | None) -> torch.Tensor:
        return torch.tensor(self.token_ids)  # (W,)


@dataclass(frozen=True)
class PartsOfSpeech(Control):
    """One tag per word, UPOS or universal, e.g. `PartsOfSpeech(["PROPN", "AUX", "DET", "NOUN", "PUNCT"])`.

    The text gets exactly as many words: START, the tags, END and then PAD are the classifier's targets.
    """

    tags: tuple[str, ...]
    task = "pos"

    def __init__(self, tags) -> None:
        object.__setattr__(self, "tags", tuple(tags))

    def universal(self) -> list[str]:
        return [UPOS_TO_UNIVERSAL.get(tag, tag) for tag in self.tags]

    def check(self, max_length: int, config: LatentClassifierConfig | None) -> None:
        if not self.tags:
            raise ValueError("PartsOfSpeech needs at least one tag.")
        if len(self.tags) + 2 > max_length:
            raise ValueError(
                f"PartsOfSpeech asks for {len(self.tags)} words, but {max_length} positions hold at most "
                f"{max_length - 2} (START and END take two); raise max_length or shorten the target."
            )
        if config is not None:
            unknown = sorted(set(self.universal()) - set(config.labels))
            if unknown:
                raise ValueError(f"Unknown tags {unknown}; use UPOS or one of {config.labels}.")

    def window(self) -> tuple[int, bool]:
        return len(self.tags) + 2, True

    def target(self, length: int, config: LatentClassifierConfig) -> torch.Tensor:
        labels = ["START", *self.universal(), "END"] + ["PAD"] * (length - len(self.tags) - 2)
        return torch.tensor([config.labels.index(label) for label in labels])  # (L,)


@dataclass(frozen=True)
class Spans(Control):
    """Constituents the text's parse should contain: (start, end, label) with word indices and an inclusive end,
    e.g. `Spans([(0, 2, "NP"), (3, 5, "PP")])`. A unary chain written "S::NP" (as in Diffusion-LM's targets) is
    asked for by its top label, the one the span oracle gives such a span."""

    spans: tuple[tuple[int, int, str], ...]
    task = "spans"

    def __init__(self, spans) -> None:
        object.__setattr__(self, "spans", tuple((int(a), int(b), str(label).split("::")[0]) for a, b, label in spans))

    def check(self, max_length: int, config: LatentClassifierConfig | None) -> None:
        if not self.spans:
            raise ValueError("Spans needs at least one (start, end, label) span.")
        for start, end, label in self.spans:
            if not 0 <= start <= end or end + 2 >= max_length:
                raise ValueError(
                    f"Span ({start}, {end}, {label!r}) is impossible with {max_length} positions: it needs "
                    f"0 <= start <= end <= {max_length - 3}."
                )
            if config is not None and (label not in config.labels or label == config.labels[0]):
                raise ValueError(f"Unknown span label {label!r}; the classifier knows {config.labels[1:]}.")

    def window(self) -> tuple[int, bool]:
        """A clause over words 0 … n − 1 that holds every other span is the sentence's root: exactly n words. Else at
        least one word follows the last span: a constituent below the root never holds the sentence's final
        punctuation, which the parse attaches to the root (without that word, 1 in 20 texts ended in a broken
        sentence right after the span; docs/RESULTS.md, issue 14). A phrase at the start (a subject NP, a fronted
        PP) is not a root: taking it for one cut 14 of the texts for the paper's 18 such span targets to fragments
        ("The Bakers ,"; docs/RESULTS.md, issue 14, session 6)."""
        last = max(end for _, end, _ in self.spans)
        root = any(start == 0 and end == last and label in CLAUSES for start, end, label in self.spans)
        return (last + 3, True) if root else (last + 4, False)

    def target(self, length: int, config: LatentClassifierConfig) -> torch.Tensor:
        return torch.tensor([[a + 1, b + 1, config.labels.index(label)] for a, b, label in self.spans])  # (S, 3)


@dataclass(frozen=True)
class Length(Control):
    """Exactly `num_words` words: END is fixed at position num_words + 1 and PAD after it (no classifier)."""

    num_words: int

    def check(self, max_length: int, config: LatentClassifierConfig | None = None) -> None:
        if not isinstance(self.num_words, int) or self.num_words < 1:
            raise ValueError(f"Length needs a positive number of words, got {self.num_words!r}.")
        if self.num_words + 2 > max_length:
            raise ValueError(
                f"Length({self.num_words}) is impossible with {max_length} positions (START and END take two); "
                f"ask for at most {max_length - 2} words or raise max_length."
            )

    def window(self) -> tuple[int, bool]:
        return self.num_words + 2, True

    def known_tokens(self, length: int, bos: int, eos: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
        """((L,) ids, (L,) bool known): START at 0, END at num_words + 1, PAD after; the words are free."""
        ids = torch.full((length,), pad, dtype=torch.long)
        ids[0], ids[self.num_words + 1] = bos, eos
        known = torch.ones(length, dtype=torch.bool)
        known[1 : self.num_words + 1] = False
        return ids, known


def controls_from_dict(spec: dict, tokenizer=None) -> list[Control]:
    """Controls from their JSON form (the CLI's `--controls FILE`):

        {"field_value": {"food": "Italian"}, "mentions": "The Eagle", "pos": ["PROPN", "AUX", ...],
         "spans": [[0, 2, "NP"]], "length": 12}

    Every key is optional; unknown keys are an error. "mentions" (words the text should contain, scored by the
    denoiser itself) needs the model's `tokenizer`.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"A controls spec must be a JSON object, got {type(spec).__name__}.")
    unknown = sorted(set(spec) - {"field_value", "mentions", "pos", "spans", "length"})
    if unknown:
        raise ValueError(f"Unknown control kinds {unknown}; use field_value, mentions, pos, spans and length.")
    controls: list[Control] = []
    if spec.get("mentions") is not None:
        if not isinstance(spec["mentions"], str):
            raise ValueError(f'"mentions" must be the words as one string, e.g. "The Eagle", got {spec["mentions"]!r}.')
        if tokenizer is None:
            raise ValueError('"mentions" needs the model\'s tokenizer: controls_from_dict(spec, tokenizer).')
        controls.append(Mentions.from_text(spec["mentions"], tokenizer))
    fields = spec.get("field_value") or {}
    if not isinstance(fields, dict):
        raise ValueError('"field_value" must map fields to values, e.g. {"food": "Italian"}.')
    controls += [FieldValue(str(field), str(value)) for field, value in fields.items()]
    if spec.get("pos"):
        controls.append(PartsOfSpeech([str(tag) for tag in spec["pos"]]))
    if spec.get("spans"):
        try:
            controls.append(Spans(spec["spans"]))
        except (TypeError, ValueError):
            raise ValueError('"spans" must be a list of [start, end, label], e.g. [[0, 2, "NP"]].') from None
    if spec.get("length") is not None:
        controls.append(Length(spec["length"]))
    return controls
