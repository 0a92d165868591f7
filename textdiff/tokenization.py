"""Vocabularies trained on the corpus, each wrapped as a transformers tokenizer that round-trips through
`save_pretrained` / `AutoTokenizer.from_pretrained`.

- "word": a word-level vocabulary (`tokenizers` WordLevel) of the words seen at least `min_frequency` times,
  as Diffusion-LM does (more than 10 times on E2E: 817 words + 4 special tokens = 821).
- "bpe": byte-pair encoding (`tokenizers` BPE) with `vocab_size` entries.
- "unigram": a `sentencepiece` unigram model with `vocab_size` entries.

Every kind has the same four special tokens at ids 0-3, the START / END / UNK / PAD tokens of the paper.
Text is encoded without them (`add_special_tokens=False`); `textdiff.data` frames each sentence itself.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "[PAD]", "[START]", "[END]", "[UNK]"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]
SPECIAL_TOKEN_NAMES = {"pad_token": PAD, "bos_token": BOS, "eos_token": EOS, "unk_token": UNK}  # for transformers


def train_tokenizer(
    texts: Iterable[str],
    kind: str = "word",
    *,
    min_frequency: int = 11,
    vocab_size: int = 8000,
    model_max_length: int = 64,
) -> PreTrainedTokenizerBase:
    """Train a vocabulary on `texts` and wrap it as a transformers tokenizer.

    Args:
        texts: The training sentences (the word-level kind expects whitespace-tokenised text, like E2E's).
        kind: A name in TOKENIZER_KINDS: "word", "bpe" or "unigram".
        min_frequency: Word-level only: keep the words seen at least this many times.
        vocab_size: BPE and unigram only: number of entries, special tokens included.
        model_max_length: The longest sequence the model will see, stored with the tokenizer.
    """
    if kind not in TOKENIZER_TRAINERS:
        raise ValueError(f"Unknown tokenizer kind {kind!r}; choose one of {TOKENIZER_KINDS}.")
    return TOKENIZER_TRAINERS[kind](texts, min_frequency, vocab_size, model_max_length)


def _train_word_level(texts, min_frequency: int, vocab_size: int, model_max_length: int) -> PreTrainedTokenizerBase:
    """Whole words seen at least min_frequency times (the paper's E2E vocabulary)."""
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be at least 1, got {min_frequency}.")
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordLevelTrainer(min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS)
    return _wrap(tokenizer, texts, trainer, model_max_length)


def _train_bpe(texts, min_frequency: int, vocab_size: int, model_max_length: int) -> PreTrainedTokenizerBase:
    """Byte-pair encoding of vocab_size entries over NFKC-normalised, Metaspace-split text."""
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}.")
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS)
    return _wrap(tokenizer, texts, trainer, model_max_length)


def _wrap(tokenizer: Tokenizer, texts, trainer, model_max_length: int) -> PreTrainedTokenizerBase:
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKEN_NAMES, model_max_length=model_max_length)


def _train_sentencepiece(texts, min_frequency: int, vocab_size: int, model_max_length: int) -> PreTrainedTokenizerBase:
    """Unigram model with sentencepiece, loaded back through transformers' T5 tokenizer class (no sentinels)."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        bos_id=1,
        eos_id=2,
        unk_id=3,
        pad_piece=PAD,
        bos_piece=BOS,
        eos_piece=EOS,
        unk_piece=UNK,
        hard_vocab_limit=False,
        character_coverage=1.0,
        minloglevel=2,
    )
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "tokenizer.model").write_bytes(model.getvalue())
        return T5Tokenizer.from_pretrained(
            directory, extra_ids=0, **SPECIAL_TOKEN_NAMES, model_max_length=model_max_length
        )


# The tokenizer kinds: tokenizer.kind of a run config -> its trainer.
TOKENIZER_TRAINERS = {"word": _train_word_level, "bpe": _train_bpe, "unigram": _train_sentencepiece}
TOKENIZER_KINDS = tuple(TOKENIZER_TRAINERS)


def check_tokenizer_matches(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> None:
    """Raise `ValueError` if the tokenizer cannot serve a model whose embedding has `vocab_size` rows."""
    if len(tokenizer) != vocab_size:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} entries but the model's vocabulary has {vocab_size}; "
            "load the tokenizer that was saved with the model (the same directory)."
        )
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if getattr(tokenizer, name) is None:
            raise ValueError(f"The tokenizer has no {name[:-3]}; textdiff needs [PAD], [START] and [END] tokens.")


MASK = "<mask>"


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str) -> list[int]:
    """[START] and the prompt's ids: the known start of a generation (`generate(input_ids=...)`)."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if tokenizer.unk_token_id in ids:
        unknown = [w for w in prompt.split() if tokenizer.convert_tokens_to_ids(w) == tokenizer.unk_token_id]
        raise ValueError(f"The prompt has words outside the model's vocabulary: {unknown}; rephrase them.")
    return [tokenizer.bos_token_id, *ids]


def encode_infill(
    tokenizer: PreTrainedTokenizerBase, text: str, length: int, mask_token: str = MASK
) -> tuple[list[int], list[bool]]:
    """Ids and infilling mask for text with blanks, e.g. "The Eagle is a <mask> <mask> near Burger King .".

    The sequence is framed as in training, [START] … [END] and padding to `length`; each `mask_token` is one
    position to generate (True in the mask), every other position is kept.

    Returns:
        (ids, mask), each of `length` entries (ids of masked positions are [PAD] placeholders).
    """
    ids, mask = [tokenizer.bos_token_id], [False]
    for word in text.split():
        if word == mask_token:
            ids.append(tokenizer.pad_token_id)
            mask.append(True)
        else:
            pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
            if tokenizer.unk_token_id in pieces:
                raise ValueError(f"{word!r} is not in the model's vocabulary; rephrase it or make it a {mask_token}.")
            ids.extend(pieces)
            mask.extend([False] * len(pieces))
    ids.append(tokenizer.eos_token_id)
    mask.append(False)
    if not any(mask):
        raise ValueError(f"The text has no {mask_token}; mark the words to generate with {mask_token}.")
    if len(ids) > length:
        raise ValueError(f"The text needs {len(ids)} positions but the model decodes at most {length}; shorten it.")
    padding = length - len(ids)
    return ids + [tokenizer.pad_token_id] * padding, mask + [False] * padding
