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
        return tokenizer
    return AutoTokenizer.from_pretrained(path)
