"""The YAML run config: one typed, validated section per axis of variation.

    model:      the denoiser's architecture              -> TextDiffusionConfig
    diffusion:  the forward process and its training     -> TextDiffusionConfig + the loss
    data:       which corpus, which column, how framed
    tokenizer:  which vocabulary is trained (or loaded)
    training:   optimiser, schedule, batch, logging, checkpoints, DeepSpeed config
    distillation: `textdiff distill` only: the teacher and the few-step student's decoding

Unknown keys and wrong types are errors that say which key and what is expected.

Paths in a config file (data.dataset, tokenizer.path, training.init_from, training.deepspeed_config,
distillation.teacher) are read relative to the config file's folder when something is there, else as given
(relative to the working directory, or a datasets-hub id), so a config works from any directory and from the
installed package's copy (textdiff/bundled/configs). Paths given as --set overrides are as given.
training.output_dir is relative to the working directory: runs are written where the command runs.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..decoding_config import DecodingConfig
from ..resources import bundled, bundled_config
from ..schedules import SCHEDULES
from ..tokenization import TOKENIZER_KINDS
from ..utils import is_integer

PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class ModelSection:
    embedding_dim: int = 16  # width d of the word embeddings the diffusion runs on
    hidden_size: int = 128  # transformer width
    num_hidden_layers: int = 4  # transformer blocks
    num_attention_heads: int = 4  # heads per block
    intermediate_size: int | None = None  # feed-forward width (4 × hidden_size if null)
    dropout: float = 0.1  # hidden and attention dropout


@dataclass
class DiffusionSection:
    schedule: str = "sqrt"  # noise schedule: sqrt (the paper's), cosine, linear
    num_steps: int = 2000  # T, the training diffusion steps
    self_conditioning: bool = False  # feed the previous x0 estimate back to the denoiser
    self_conditioning_prob: float = 0.5  # share of training batches that use it
    condition_dropout: float = 0.1  # conditional model: share of sequences trained unconditionally (for CFG)
    condition_keep: float = 0.5  # conditional model: share of each sequence's conditions kept, independently
    prediction_type: str = "x0"  # x0: regress the clean embedding (the paper) | logits: classify the clean word
    embedding_scale: float | None = None  # null: free embeddings (the paper) | s: rows renormalised to norm s
    min_timestep: int = 0  # never train (or decode) below this step: there rounding already recovers the word
    stratified_timesteps: bool = False  # draw a batch's t evenly spread over [min_timestep, T), not independently
    mse_weight: float = 0.0  # prediction_type logits: weight of ‖x̂0 − x0‖² beside the cross-entropy
    time_warping: bool = False  # draw t from a CDF fitted to the cross-entropy over noise levels; decode on it (CDCD)
    output_prior: bool = False  # prediction_type logits: add log N(x_t; √ᾱ e_w, (1 − ᾱ) I) to the logits (Plaid)


@dataclass
class DataSection:
    dataset: str | None = None  # local directory / file, or a datasets-hub id such as e2e_nlg (null: bundled E2E)
    text_column: str = "text"  # column holding the text
    train_split: str = "train"
    eval_split: str | None = "validation"  # null: no held-out loss
    seq_len: int = 64  # positions per sequence (= the model's max length)
    packing: bool = False  # true: concatenate and chunk (no padding); false: one padded sentence per sequence
    # true: batches of sentences of nearly equal length, each cut to its longest sentence (no step computes on
    # padding); the model learns p(ℓ) of the window lengths and decodes each row in a window drawn from it
    bucket_by_length: bool = False
    condition_column: str | None = None  # E2E-style meaning representations ("food[Italian], ..."): train a
    # conditional model for classifier-free guidance on their field=value pairs (null: unconditional)


@dataclass
class TokenizerSection:
    kind: str = "word"  # word | bpe | unigram
    min_frequency: int = 11  # word: keep words seen at least this often (more than 10 times: 821 on E2E)
    vocab_size: int = 8000  # bpe / unigram: entries
    path: str | None = None  # load a saved tokenizer from here instead of training one


@dataclass
class TrainingSection:
    output_dir: str = "runs/default"  # checkpoints/, model/ (the export), metrics.jsonl, samples.txt
    init_from: str | None = None  # start from a saved model's weights (fine-tuning; new layers start at zero)
    deepspeed_config: str | None = None  # ZeRO stage and engine settings (null: the bundled ZeRO-0 config)
    max_steps: int = 1000  # optimiser steps (the learning-rate schedule decays to 0 over them)
    max_minutes: float | None = None  # stop early, checkpoint and export after this wall-clock budget
    micro_batch_size: int = 64  # sequences per process per micro step
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    warmup_steps: int = 0
    weight_decay: float = 0.0
    ema_decay: float = 0.9999  # EMA of the weights, exported at the end (warmed up as min(decay, (1+n)/(10+n)))
    seed: int = 42
    log_every: int = 10  # steps between lines of metrics.jsonl
    eval_every: int = 500  # steps between held-out losses (0: never)
    eval_batches: int = 8  # batches of the held-out loss
    checkpoint_every: int = 500  # steps between DeepSpeed checkpoints (0: only at the end)
    keep_checkpoints: int = 2  # how many recent checkpoints to keep
    num_samples: int = 10  # samples written after training
    sample_steps: int = 200  # denoising steps of those samples
    # sample_steps, sample_sampler and sample_clamp are also saved with the model (generation_config.json) as its
    # decoding defaults: the sampler (textdiff.samplers.SAMPLERS) and whether x̂0 is clamped to a word embedding.
    sample_sampler: str = "ddpm"
    sample_clamp: bool = True
    threads: int | None = None  # CPU threads per process (default: cores / local processes)
    embedding_lr_scale: float = 1.0  # the word embeddings' learning rate / learning_rate (Plaid: ~7x)
    precision: str = "auto"  # auto (bf16 on GPUs, fp32 on CPU, where bf16 is ~40x slower) | bf16 | fp32
    compile: bool = False  # torch.compile the network in place (pays on GPUs; minutes of compiling on CPU)


@dataclass
class DistillationSection:
    # Read by `textdiff distill` only; the student is the teacher's architecture (model, diffusion, tokenizer and
    # data sections do not apply) and learns from the teacher's own texts (textdiff.distillation).
    teacher: str | None = None  # the many-step model to distil: a save_pretrained directory
    num_teacher_samples: int = 20480  # texts the teacher decodes, with its saved decoding settings, for the student
    teacher_seed: int = 0  # seed of the first batch of those texts (batch i: teacher_seed + i)
    student_steps: int = 8  # K, the student's renoise decoding steps (saved in its generation config)
    x0_temperature: float = 0.5  # τ of the student's x̂0 = softmax(logits / τ) · E when decoding (saved too)
    rollout_prob: float = 0.5  # share of each batch whose input is the student's own renoised previous prediction


@dataclass
class RunConfig:
    model: ModelSection = field(default_factory=ModelSection)
    diffusion: DiffusionSection = field(default_factory=DiffusionSection)
    data: DataSection = field(default_factory=DataSection)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    distillation: DistillationSection = field(default_factory=DistillationSection)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> RunConfig:
        """Read a YAML run config (a file, or the name of a bundled one such as e2e-tiny), resolve its paths
        against its folder, then apply `section.key=value` overrides (values parsed as YAML)."""
        path = Path(path)
        if not path.is_file() and path.suffix == "" and path.parent == Path("."):
            try:
                path = bundled_config(path.name)
            except FileNotFoundError:
                pass
        if not path.is_file():
            bundled_names = sorted(p.stem for p in bundled("configs").glob("*.yaml"))
            raise ValueError(
                f"Run config {path} does not exist; pass a YAML file or a bundled config's name ({bundled_names})."
            )
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"Run config {path} is not valid YAML: {error}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"Run config {path} must be a mapping of sections, got {type(raw).__name__}.")
        _resolve_paths(raw, path.resolve().parent)
        for override in overrides or []:
            key, sep, value = override.partition("=")
            section, dot, name = key.partition(".")
            if not sep or not dot:
                raise ValueError(f"Override {override!r} must look like section.key=value, e.g. training.max_steps=50.")
            raw.setdefault(section, {})
            if not isinstance(raw[section], dict):
                raise ValueError(f"Section {section!r} of {path} must be a mapping.")
            raw[section][name] = yaml.safe_load(value)
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "run config") -> RunConfig:
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(raw) - set(sections)
        if unknown:
            raise ValueError(f"Unknown section(s) {sorted(unknown)} in {source}; the sections are {sorted(sections)}.")
        built = {}
        for name, spec in sections.items():
            section_type = spec.default_factory
            values = raw.get(name) or {}
            if not isinstance(values, dict):
                raise ValueError(f"Section {name!r} of {source} must be a mapping, got {values!r}.")
            built[name] = _build_section(section_type, values, f"{source}: {name}")
        config = cls(**built)
        if config.data.dataset is None:
            config.data.dataset = str(bundled("data/e2e"))
        if config.training.deepspeed_config is None:
            config.training.deepspeed_config = str(bundled("configs/deepspeed/zero0.json"))
        config.validate()
        return config

    def validate(self) -> None:
        """Check values that types alone cannot; raise `ValueError` naming the key."""
        m, d, data, tok, tr = self.model, self.diffusion, self.data, self.tokenizer, self.training
        for key, value in [
            ("model.embedding_dim", m.embedding_dim),
            ("model.hidden_size", m.hidden_size),
            ("model.num_hidden_layers", m.num_hidden_layers),
            ("model.num_attention_heads", m.num_attention_heads),
            ("diffusion.num_steps", d.num_steps),
            ("training.max_steps", tr.max_steps),
            ("training.micro_batch_size", tr.micro_batch_size),
            ("training.gradient_accumulation_steps", tr.gradient_accumulation_steps),
            ("tokenizer.min_frequency", tok.min_frequency),
        ]:
            if value <= 0:
                raise ValueError(f"{key} must be positive, got {value}.")
        if m.hidden_size % m.num_attention_heads:
            raise ValueError(
                f"model.hidden_size ({m.hidden_size}) must be divisible by model.num_attention_heads "
                f"({m.num_attention_heads})."
            )
        if not 0.0 <= m.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {m.dropout}.")
        if d.schedule not in SCHEDULES:
            raise ValueError(f"diffusion.schedule must be {_either(SCHEDULES)}, got {d.schedule!r}.")
        for key in ("self_conditioning_prob", "condition_dropout", "condition_keep"):
            if not 0.0 <= getattr(d, key) <= 1.0:
                raise ValueError(f"diffusion.{key} must be in [0, 1], got {getattr(d, key)}.")
        if d.prediction_type not in ("x0", "logits"):
            raise ValueError(f"diffusion.prediction_type must be x0 or logits, got {d.prediction_type!r}.")
        if d.embedding_scale is not None and d.embedding_scale <= 0:
            raise ValueError(f"diffusion.embedding_scale must be positive or null, got {d.embedding_scale}.")
        if not 0 <= d.min_timestep < d.num_steps:
            raise ValueError(f"diffusion.min_timestep must be in [0, diffusion.num_steps), got {d.min_timestep}.")
        if d.output_prior and d.prediction_type != "logits":
            raise ValueError("diffusion.output_prior needs diffusion.prediction_type: logits.")
        if d.mse_weight < 0:
            raise ValueError(f"diffusion.mse_weight must be non-negative, got {d.mse_weight}.")
        if tr.embedding_lr_scale <= 0:
            raise ValueError(f"training.embedding_lr_scale must be positive, got {tr.embedding_lr_scale}.")
        if data.bucket_by_length and data.packing:
            raise ValueError("data.bucket_by_length and data.packing exclude each other; set one of them to false.")
        if data.condition_column and data.packing:
            raise ValueError("data.condition_column needs one sentence per sequence; set data.packing: false.")
        if tr.init_from and not self.tokenizer.path:
            raise ValueError(
                f"training.init_from={tr.init_from!r} needs the same vocabulary: set tokenizer.path to that directory."
            )
        if data.seq_len < 3:
            raise ValueError(f"data.seq_len must be at least 3, got {data.seq_len}.")
        if tok.kind not in TOKENIZER_KINDS:
            raise ValueError(f"tokenizer.kind must be {_either(TOKENIZER_KINDS)}, got {tok.kind!r}.")
        if tr.learning_rate <= 0:
            raise ValueError(f"training.learning_rate must be positive, got {tr.learning_rate}.")
        if not 0.0 <= tr.ema_decay < 1.0:
            raise ValueError(f"training.ema_decay must be in [0, 1), got {tr.ema_decay}.")
        if tr.max_minutes is not None and tr.max_minutes <= 0:
            raise ValueError(f"training.max_minutes must be positive or null, got {tr.max_minutes}.")
        for key in ("warmup_steps", "log_every", "eval_every", "checkpoint_every", "num_samples", "eval_batches"):
            if getattr(tr, key) < 0:
                raise ValueError(f"training.{key} must be non-negative, got {getattr(tr, key)}.")
        try:
            DecodingConfig(num_inference_steps=tr.sample_steps, sampler=tr.sample_sampler, clamp=tr.sample_clamp)
        except ValueError as error:
            raise ValueError(f"training.sample_steps / sample_sampler / sample_clamp: {error}") from None
        if tr.precision not in PRECISIONS:
            raise ValueError(f"training.precision must be one of {PRECISIONS}, got {tr.precision!r}.")
        if tr.keep_checkpoints < 1:
            raise ValueError(f"training.keep_checkpoints must be at least 1, got {tr.keep_checkpoints}.")
        if tr.threads is not None and tr.threads < 1:
            raise ValueError(f"training.threads must be at least 1 (or null: cores / processes), got {tr.threads}.")
        dl = self.distillation
        for key in ("num_teacher_samples", "student_steps"):
            if getattr(dl, key) < 1:
                raise ValueError(f"distillation.{key} must be at least 1, got {getattr(dl, key)}.")
        if dl.teacher_seed < 0:
            raise ValueError(f"distillation.teacher_seed must be non-negative, got {dl.teacher_seed}.")
        if dl.x0_temperature <= 0:
            raise ValueError(f"distillation.x0_temperature must be positive, got {dl.x0_temperature}.")
        if not 0.0 <= dl.rollout_prob <= 1.0:
            raise ValueError(f"distillation.rollout_prob must be in [0, 1], got {dl.rollout_prob}.")
        if Path(tr.output_dir).exists() and not Path(tr.output_dir).is_dir():
            raise ValueError(f"training.output_dir={tr.output_dir!r} is a file; name a directory for the run.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PATH_KEYS = (
    ("data", "dataset"),
    ("tokenizer", "path"),
    ("training", "init_from"),
    ("training", "deepspeed_config"),
    ("distillation", "teacher"),
)


def _resolve_paths(raw: dict[str, Any], folder: Path) -> None:
    """Point the file's relative input paths at `folder` (the config file's) where something exists there."""
    for section, key in PATH_KEYS:
        values = raw.get(section)
        value = values.get(key) if isinstance(values, dict) else None
        if isinstance(value, str) and not Path(value).is_absolute() and (folder / value).exists():
            values[key] = str((folder / value).resolve())


def _either(names: tuple[str, ...]) -> str:
    """("a", "b", "c") -> "a, b or c": a registry's names in an error message."""
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def _build_section(section_type: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(section_type)
    known = {f.name for f in dataclasses.fields(section_type)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"Unknown key(s) {sorted(unknown)} in {where}; the keys are {sorted(known)}.")
    return section_type(**{key: _coerce(value, hints[key], f"{where}.{key}") for key, value in values.items()})


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against a simple type hint (int, float, str, bool, or X | None); ints pass as floats."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ValueError(f"{where} must not be null.")
    if float in options and str not in options and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-4 (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option is int and is_integer(value):
            return value
        if option is float and (is_integer(value) or isinstance(value, float)):
            if not math.isfinite(value):
                raise ValueError(f"{where} must be a finite number, got {value!r}.")
            return float(value)
        if option is str and isinstance(value, str):
            return value
    names = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ValueError(f"{where} must be {names}, got {value!r} ({type(value).__name__}).")
