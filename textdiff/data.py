"""Corpus loading (through `datasets`), framing into fixed-length id sequences, and a resumable batch order.

The data walk: corpus → tokenizer → `[START] w_1 … w_n [END]` → either padded to L (one sentence per sequence,
"pad"), or concatenated and cut into chunks of L with no padding ("pack", Diffusion-LM's E2E setting).
"""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
import torch
from transformers import PreTrainedTokenizerBase

from .utils import hub_reachable

logger = logging.getLogger(__name__)

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".txt": "text", ".parquet": "parquet"}


def _local_builder(path: Path) -> str:
    name = path.name.removesuffix(".gz").removesuffix(".bz2").removesuffix(".xz")
    suffix = Path(name).suffix
    if suffix not in LOCAL_FORMATS:
        raise ValueError(
            f"Cannot read {path}: unknown file type {suffix!r}; use one of {sorted(LOCAL_FORMATS)} (optionally .gz)."
        )
    return LOCAL_FORMATS[suffix]


def _check_utf8(path: Path) -> None:
    """Raise `ValueError` at the first byte sequence that is not UTF-8 (datasets would silently replace it)."""
    import bz2
    import codecs
    import gzip
    import lzma

    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix, open)
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with opener(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"{path} is not UTF-8 text: byte {offset + error.start} ({chunk[error.start : error.start + 1]!r}) "
                    "cannot be decoded. Re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)."
                ) from None
            offset += len(chunk)


def _split_file(directory: Path, split: str) -> Path:
    matches = sorted(p for p in directory.iterdir() if p.name.split(".")[0] == split)
    if not matches:
        raise ValueError(
            f"No file for split {split!r} in {directory}; expected e.g. {split}.jsonl, {split}.csv or {split}.txt."
        )
    return matches[0]


def load_corpus(source: str, split: str, text_column: str = "text") -> datasets.Dataset:
    """Load one split of a corpus as a `datasets.Dataset` with a string column `text_column`.

    Args:
        source: A local directory holding `{split}.jsonl|.csv|.txt|.parquet` (optionally .gz), a local file, or a
            datasets-hub id such as "e2e_nlg" (needs the network).
        split: The split to load ("train", "validation", "test").
        text_column: The column holding the text.
    """
    path = Path(source)
    if path.exists():
        data_file = _split_file(path, split) if path.is_dir() else path
        builder = _local_builder(data_file)
        if data_file.stat().st_size == 0:
            raise ValueError(f"{data_file} is empty; a corpus needs at least one sentence.")
        if builder != "parquet":
            _check_utf8(data_file)
        try:
            dataset = datasets.load_dataset(builder, data_files={split: str(data_file)}, split=split)
        except Exception as error:  # datasets raises many types for unreadable files; name the file instead
            raise ValueError(
                f"Could not read {data_file} as {builder}: {type(error).__name__}: {error}. "
                "Check that the file is UTF-8 text in that format."
            ) from error
    elif source.startswith((".", "/")) or source.endswith(tuple(LOCAL_FORMATS)):
        raise ValueError(f"Data path {source!r} does not exist; point data.dataset at a local directory or file.")
    elif not hub_reachable():
        raise ValueError(
            f"Cannot load {source!r} from the datasets hub: the hub is unreachable (offline). Point data.dataset "
            "at local files instead: a directory with train.jsonl / validation.jsonl (one JSON object per line "
            "with a text column), or a single .jsonl, .csv, .txt or .parquet file; the bundled E2E corpus is "
            "the default (leave data.dataset unset)."
        )
    else:
        dataset = datasets.load_dataset(source, split=split)
    if text_column not in dataset.column_names:
        raise ValueError(
            f"The {split} split of {source!r} has no column {text_column!r}; its columns are "
            f"{dataset.column_names}. Set data.text_column to one of them."
        )
    if len(dataset) == 0:
        raise ValueError(f"The {split} split of {source!r} is empty; a corpus needs at least one sentence.")
    return dataset


def frame_sequences(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    seq_len: int,
    *,
    text_column: str = "text",
    packing: bool = False,
    keep_columns: tuple[str, ...] = (),
) -> datasets.Dataset:
    """Tokenise and frame the corpus into a dataset with one column `input_ids` of fixed length `seq_len`.

    Each sentence becomes `[START] ids [END]`. Without packing it is padded with [PAD] to `seq_len`, and
    sentences that do not fit are dropped (counted in the log) so that every sequence ends with [END]. With
    packing, the framed sentences are concatenated and cut into chunks of exactly `seq_len`. `keep_columns`
    (e.g. the meaning representations a conditional model is trained on) stay beside their sentence's ids;
    they need one sentence per sequence, so not packing.
    """
    if seq_len < 3:
        raise ValueError(f"seq_len must be at least 3 ([START], one token, [END]), got {seq_len}.")
    if keep_columns and packing:
        raise ValueError("Per-sentence columns (conditions) need one sentence per sequence; set data.packing: false.")
    missing = sorted(set(keep_columns) - set(dataset.column_names))
    if missing:
        raise ValueError(f"The corpus has no column(s) {missing}; its columns are {dataset.column_names}.")
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(batch[text_column], add_special_tokens=False, verbose=False)["input_ids"]
        return {"ids": [[bos, *ids, eos] for ids in encoded]}

    dropped_columns = [c for c in dataset.column_names if c not in keep_columns]
    framed = dataset.map(tokenize, batched=True, remove_columns=dropped_columns, desc="Tokenizing")
    if packing:

        def pack(batch: dict[str, list]) -> dict[str, list]:
            stream = [token for ids in batch["ids"] for token in ids]
            usable = len(stream) - len(stream) % seq_len
            return {"input_ids": [stream[i : i + seq_len] for i in range(0, usable, seq_len)]}

        out = framed.map(pack, batched=True, batch_size=10_000, remove_columns=["ids"], desc="Packing")
    else:
        fits = framed.filter(lambda row: len(row["ids"]) <= seq_len, desc="Dropping over-long sentences")
        dropped = len(framed) - len(fits)
        if dropped:
            logger.info("Dropped %d of %d sentences longer than %d tokens.", dropped, len(framed), seq_len - 2)
        out = fits.map(
            lambda row: {"input_ids": row["ids"] + [pad] * (seq_len - len(row["ids"]))},
            remove_columns=["ids"],
            desc="Padding",
        )
    if len(out) == 0:
        raise ValueError(f"No training sequence of length {seq_len} could be made from the corpus; raise data.seq_len.")
    return out.with_format("torch", columns=["input_ids"], output_all_columns=True)


class BatchOrder:
    """A reshuffled-every-epoch order of examples that is a pure function of (seed, step).

    The global batch of step s holds examples s·G … s·G + G − 1 of the stream perm_0 ++ perm_1 ++ …, where
    perm_e is a permutation drawn from seed + e; rank r of R takes its contiguous slice. Resuming at step s
    therefore needs nothing but s.

    Args:
        num_examples: Size of the dataset.
        global_batch_size: Examples per optimiser step over all ranks (micro batch × accumulation × world size).
        seed: Base seed of the permutations.
    """

    def __init__(self, num_examples: int, global_batch_size: int, seed: int) -> None:
        if num_examples < 1:
            raise ValueError("The training set is empty.")
        self.num_examples = num_examples
        self.global_batch_size = global_batch_size
        self.seed = seed
        self._permutations: dict[int, torch.Tensor] = {}

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._permutations:
            self._permutations = {
                epoch: torch.randperm(self.num_examples, generator=torch.Generator().manual_seed(self.seed + epoch))
            }
        return self._permutations[epoch]

    def indices(self, step: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
        """Dataset indices of rank `rank`'s share of the global batch of `step`: (G / world_size,)."""
        per_rank = self.global_batch_size // world_size
        positions = step * self.global_batch_size + rank * per_rank + torch.arange(per_rank)
        epochs, offsets = positions // self.num_examples, positions % self.num_examples
        return torch.stack([self._permutation(int(e))[int(o)] for e, o in zip(epochs, offsets)])

    def epoch(self, step: int) -> float:
        return step * self.global_batch_size / self.num_examples


class LengthBucketedOrder(BatchOrder):
    """`BatchOrder` whose batches hold sentences of nearly equal length, so that a batch can be cut to its longest
    sentence and no step computes on padding (bucketing by length, as in NMT).

    Every epoch's permutation is cut into pools of `pool_batches` global batches; each pool is sorted by length
    and cut into batches, and the batches of the epoch are shuffled. Still a pure function of (seed, step); the
    last partial batch of an epoch is dropped.

    Args:
        lengths: (N,) framed length of every example (tokens before the padding).
        global_batch_size: Examples per optimiser step over all ranks.
        seed: Base seed of the permutations.
        pool_batches: Batches per sorted pool: more gives tighter buckets, fewer gives more mixed batches.
    """

    def __init__(self, lengths: torch.Tensor, global_batch_size: int, seed: int, pool_batches: int = 50) -> None:
        super().__init__(len(lengths), global_batch_size, seed)
        if len(lengths) < global_batch_size:
            raise ValueError(
                f"Bucketing by length needs at least one full batch: {len(lengths)} examples for a global batch of "
                f"{global_batch_size}; lower the batch size or set data.bucket_by_length: false."
            )
        self.lengths = lengths
        self.pool_batches = pool_batches
        self.batches_per_epoch = len(lengths) // global_batch_size
        self._epoch_batches: dict[int, torch.Tensor] = {}

    def _batches(self, epoch: int) -> torch.Tensor:
        """(batches_per_epoch, G) example indices of an epoch's batches, in their shuffled order."""
        if epoch not in self._epoch_batches:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.num_examples, generator=generator)
            G = self.global_batch_size
            order = order[: self.batches_per_epoch * G]
            pools = order.split(self.pool_batches * G)
            batches = []
            for pool in pools:  # stable sort by length inside the pool, then cut into batches
                pool = pool[torch.sort(self.lengths[pool], stable=True).indices]
                batches.extend(pool.split(G))
            batches = torch.stack(batches)[torch.randperm(self.batches_per_epoch, generator=generator)]
            self._epoch_batches = {epoch: batches}
        return self._epoch_batches[epoch]

    def indices(self, step: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
        per_rank = self.global_batch_size // world_size
        batch = self._batches(step // self.batches_per_epoch)[step % self.batches_per_epoch]
        return batch[rank * per_rank : (rank + 1) * per_rank]

    def epoch(self, step: int) -> float:
        return step / self.batches_per_epoch


def length_prior(lengths: torch.Tensor, max_length: int) -> list[float]:
    """p(ℓ) for ℓ = 0 … max_length: the share of framed lengths `lengths` (N,) equal to each ℓ."""
    counts = torch.bincount(lengths.long(), minlength=max_length + 1)[: max_length + 1].double()
    return (counts / counts.sum()).tolist()
