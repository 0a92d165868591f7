"""The run's tokenizer: loaded, or trained on the corpus by rank 0."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ..tokenization import train_tokenizer
from .config import RunConfig
from .distributed import DistInfo

logger = logging.getLogger("textdiff.train")


def load_or_train_tokenizer(
    run: RunConfig, corpus: datasets.Dataset, path: Path, dist: DistInfo, *, resume: bool
) -> PreTrainedTokenizerBase:
    """The run's tokenizer: loaded from tokenizer.path, or (resuming) from the run's own copy at `path`, or trained
    on the training split by rank 0 (which saves it to `path` once the data is framed; the other ranks, which
    come after rank 0, load it from there)."""
    if run.tokenizer.path:
        return AutoTokenizer.from_pretrained(run.tokenizer.path)
    if dist.rank == 0 and not (resume and path.is_dir()):
        tokenizer = train_tokenizer(
            corpus[run.data.text_column],
            run.tokenizer.kind,
            min_frequency=run.tokenizer.min_frequency,
            vocab_size=run.tokenizer.vocab_size,
            model_max_length=run.data.seq_len,
        )
        logger.info("Trained a %s tokenizer with %d entries.", run.tokenizer.kind, len(tokenizer))
        check_coverage(tokenizer, corpus[run.data.text_column][:2000], run)
        return tokenizer
    return AutoTokenizer.from_pretrained(path)


MAX_UNKNOWN_SHARE = 0.3  # a vocabulary that leaves more of its own training text unknown cannot train a model


def check_coverage(tokenizer: PreTrainedTokenizerBase, texts: list[str], run: RunConfig) -> None:
    """Raise `ValueError` when the trained vocabulary leaves over MAX_UNKNOWN_SHARE of its own training text as
    [UNK] (a corpus too small for tokenizer.min_frequency): the model would learn to write [UNK]."""
    ids = [i for row in tokenizer(texts, add_special_tokens=False)["input_ids"] for i in row]
    unknown = sum(i == tokenizer.unk_token_id for i in ids) / max(len(ids), 1)
    if not ids or unknown > MAX_UNKNOWN_SHARE:
        raise ValueError(
            f"The corpus is too small for its vocabulary: the {run.tokenizer.kind} tokenizer trained on it has "
            f"{len(tokenizer)} entries and leaves {unknown:.0%} of the training text unknown ([UNK]). Give more text "
            f"(data.dataset), or lower tokenizer.min_frequency (now {run.tokenizer.min_frequency}; 1 keeps every word)."
        )
