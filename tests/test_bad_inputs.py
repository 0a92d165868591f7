"""Every bad input gets one clear error (a ValueError naming the problem and the fix): a table of cases, and a
hypothesis fuzz of `generate`'s arguments."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import textdiff
from tests.conftest import tiny_config
from textdiff.data import frame_sequences, load_corpus
from textdiff.evaluation.controls import read_control_targets
from textdiff.samplers import DDIMSampler
from textdiff.tokenization import check_tokenizer_matches, encode_infill, train_tokenizer
from textdiff.training.config import RunConfig, TrainingSection
from textdiff.training.distributed import DistInfo
from textdiff.training.engine import build_deepspeed_config

CPU = DistInfo(rank=0, world_size=1, local_rank=0, on_gpu=False)


def run_config(tmp: Path, text: str, overrides=()):
    (tmp / "run.yaml").write_text(text)
    return RunConfig.from_yaml(tmp / "run.yaml", list(overrides))


def ds_config(tmp: Path, text: str):
    (tmp / "ds.json").write_text(text)
    return build_deepspeed_config(TrainingSection(deepspeed_config=str(tmp / "ds.json")), CPU)


def corpus(tmp: Path, name: str, content: bytes, column: str = "text"):
    (tmp / name).write_bytes(content)
    return load_corpus(str(tmp / name), "train", column)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    tokenizer = train_tokenizer(["the pub is near the river ."] * 3, "word", min_frequency=1)
    model = textdiff.TextDiffusionModel(tiny_config(vocab_size=len(tokenizer)))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory, model, tokenizer


def damaged(tmp: Path, source: Path, damage) -> str:
    target = tmp / "damaged"
    shutil.copytree(source, target)
    damage(target)
    return str(target)


def cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


CASES = [
    # --- run configs -------------------------------------------------------------------------------------------
    ("config: unknown key", lambda t, m: run_config(t, "model:\n  widht: 3\n"), r"Unknown key\(s\) \['widht'\]"),
    ("config: unknown section", lambda t, m: run_config(t, "optimiser: {}\n"), r"Unknown section"),
    ("config: wrong type", lambda t, m: run_config(t, "model:\n  hidden_size: wide\n"), "must be int"),
    ("config: bool for int", lambda t, m: run_config(t, "training:\n  max_steps: true\n"), "must be int"),
    (
        "config: heads do not divide width",
        lambda t, m: run_config(t, "model:\n  hidden_size: 100\n  num_attention_heads: 3\n"),
        "divisible",
    ),
    ("config: zero steps", lambda t, m: run_config(t, "training:\n  max_steps: 0\n"), "must be positive"),
    ("config: dropout out of range", lambda t, m: run_config(t, "model:\n  dropout: 1.5\n"), r"\[0, 1\)"),
    (
        "config: unknown schedule",
        lambda t, m: run_config(t, "diffusion:\n  schedule: quadratic\n"),
        "sqrt, cosine or linear",
    ),
    ("config: unknown tokenizer", lambda t, m: run_config(t, "tokenizer:\n  kind: chars\n"), "word, bpe or unigram"),
    ("config: sequence too short", lambda t, m: run_config(t, "data:\n  seq_len: 2\n"), "at least 3"),
    ("config: invalid YAML", lambda t, m: run_config(t, "model: [\n"), "not valid YAML"),
    ("config: override syntax", lambda t, m: run_config(t, "", ["steps=3"]), "section.key=value"),
    ("config: missing file", lambda t, m: RunConfig.from_yaml(t / "nope.yaml"), "does not exist"),
    ("config: EMA decay 1", lambda t, m: run_config(t, "training:\n  ema_decay: 1.0\n"), "ema_decay"),
    (
        "deepspeed: missing file",
        lambda t, m: build_deepspeed_config(TrainingSection(deepspeed_config=str(t / "x.json")), CPU),
        "does not exist",
    ),
    ("deepspeed: invalid JSON", lambda t, m: ds_config(t, "{stage: 2"), "not valid JSON"),
    ("deepspeed: batch size in JSON", lambda t, m: ds_config(t, '{"train_batch_size": 8}'), "come from the run config"),
    # --- model configs -----------------------------------------------------------------------------------------
    ("model config: zero width", lambda t, m: tiny_config(embedding_dim=0), "embedding_dim"),
    ("model config: special token outside vocab", lambda t, m: tiny_config(eos_token_id=100), "outside the vocabulary"),
    # --- data --------------------------------------------------------------------------------------------------
    ("data: empty file", lambda t, m: corpus(t, "train.jsonl", b""), "is empty"),
    ("data: missing column", lambda t, m: corpus(t, "train.jsonl", b'{"body": "x"}\n'), "no column 'text'"),
    ("data: non-UTF-8 bytes", lambda t, m: corpus(t, "train.jsonl", b'{"text": "caf\xe9 \xff"}\n'), "UTF-8"),
    ("data: unknown file type", lambda t, m: corpus(t, "train.xml", b"<a/>"), "unknown file type"),
    ("data: no split file", lambda t, m: load_corpus(str(t), "train"), "No file for split 'train'"),
    ("data: missing path", lambda t, m: load_corpus(str(t / "none.jsonl"), "train"), "does not exist"),
    (
        "data: nothing fits",
        lambda t, m: frame_sequences(load_corpus("data/e2e", "validation").select(range(5)), m[2], 3),
        "raise data.seq_len",
    ),
    # --- generation --------------------------------------------------------------------------------------------
    (
        "generate: prompt longer than the model",
        lambda t, m: m[1].generate(input_ids=torch.ones(1, 13, dtype=torch.long)),
        "prompt has 13 tokens",
    ),
    (
        "generate: ids outside vocabulary",
        lambda t, m: m[1].generate(input_ids=torch.tensor([[1, 10_000]])),
        "outside the vocabulary",
    ),
    ("generate: too long", lambda t, m: m[1].generate(max_length=99), "max_length"),
    ("generate: unknown sampler", lambda t, m: m[1].generate(sampler="euler"), "Unknown sampler"),
    ("generate: no sequences", lambda t, m: m[1].generate(num_return_sequences=0), "num_return_sequences"),
    ("generate: too many steps", lambda t, m: m[1].generate(num_inference_steps=101), "num_inference_steps"),
    ("generate: seed and generator", lambda t, m: m[1].generate(seed=1, generator=torch.Generator()), "either"),
    (
        "generate: mask without ids",
        lambda t, m: m[1].generate(infill_mask=torch.ones(1, 12, dtype=torch.bool)),
        "needs input_ids",
    ),
    (
        "generate: mask of another length",
        lambda t, m: m[1].generate(
            input_ids=torch.ones(1, 12, dtype=torch.long), infill_mask=torch.ones(1, 9, dtype=torch.bool)
        ),
        "same",
    ),
    (
        "generate: DDIM eta < 0",
        lambda t, m: DDIMSampler(textdiff.NoiseSchedule.from_name("sqrt", 10), eta=-1),
        "non-negative",
    ),
    (
        "infill text: unknown word",
        lambda t, m: encode_infill(m[2], "the Zorblax <mask> .", 12),
        "not in the model's vocabulary",
    ),
    ("infill text: no blank", lambda t, m: encode_infill(m[2], "the pub .", 12), "no <mask>"),
    # --- loading -----------------------------------------------------------------------------------------------
    (
        "load: truncated weights",
        lambda t, m: textdiff.load_pretrained(damaged(t, m[0], lambda d: cut(d / "model.safetensors"))),
        "truncated or corrupted",
    ),
    (
        "load: garbage weights",
        lambda t, m: textdiff.load_pretrained(
            damaged(t, m[0], lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 64))
        ),
        "truncated or corrupted",
    ),
    (
        "load: only a pickle",
        lambda t, m: textdiff.load_pretrained(
            damaged(t, m[0], lambda d: (d / "model.safetensors").rename(d / "pytorch_model.bin"))
        ),
        "pickle files, which textdiff never loads",
    ),
    (
        "load: no config",
        lambda t, m: textdiff.load_pretrained(damaged(t, m[0], lambda d: (d / "config.json").unlink())),
        "no config.json",
    ),
    ("load: a file, not a directory", lambda t, m: textdiff.load_pretrained(str(m[0] / "config.json")), "is a file"),
    ("load: hub id offline", lambda t, m: textdiff.load_pretrained("org/model"), "hub is unreachable"),
    ("load: tokenizer of another model", lambda t, m: check_tokenizer_matches(m[2], 821), "saved with the model"),
    # --- controls ----------------------------------------------------------------------------------------------
    (
        "controls: malformed target",
        lambda t, m: (t / "c.json").write_text('["name", "Aromi"]\n') and read_control_targets(t / "c.json"),
        "not a Diffusion-LM control target",
    ),
    ("controls: missing target file", lambda t, m: read_control_targets(t / "none.json"), "does not exist"),
    # --- training objects --------------------------------------------------------------------------------------
    (
        "loss: self-conditioning share > 1",
        lambda t, m: textdiff.DiffusionLMLoss(textdiff.NoiseSchedule.from_name("sqrt", 10), 2.0),
        r"\[0, 1\]",
    ),
]


@pytest.mark.parametrize("name, action, message", CASES, ids=[case[0] for case in CASES])
def test_bad_input_gets_one_clear_error(name, action, message, tmp_path, saved_model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    model = textdiff.TextDiffusionModel(tiny_config())
    with pytest.raises(ValueError, match=message):
        action(tmp_path, (saved_model[0], model, saved_model[2]))


def test_the_table_has_at_least_30_cases():
    assert len(CASES) >= 30


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sequences=st.integers(-2, 4),
    length=st.one_of(st.none(), st.integers(-1, 14)),
    steps=st.integers(-1, 110),
    sampler=st.sampled_from(["ddpm", "ddim", "dpm-solver++", "euler", ""]),
    clamp=st.booleans(),
    seed=st.one_of(st.none(), st.integers(0, 2**31)),
    prompt=st.one_of(st.none(), st.lists(st.integers(-3, 120), min_size=0, max_size=14)),
)
def test_fuzzed_generate_arguments_either_work_or_raise_value_error(
    tiny_model, sequences, length, steps, sampler, clamp, seed, prompt
):
    kwargs = dict(
        num_return_sequences=sequences,
        max_length=length,
        num_inference_steps=steps,
        sampler=sampler,
        clamp=clamp,
        seed=seed,
    )
    if prompt is not None:
        kwargs["input_ids"] = torch.tensor([prompt], dtype=torch.long)
    try:
        ids = tiny_model.generate(**kwargs)
    except ValueError as error:
        assert str(error)  # a message, not an empty error
        return
    assert ids.shape == (sequences, length or 12)
    assert int(ids.min()) >= 0 and int(ids.max()) < tiny_model.config.vocab_size
    if prompt:
        assert ids[:, : len(prompt)].tolist() == [prompt] * sequences


def test_a_corpus_that_frames_to_nothing_leaves_no_output(tmp_path):
    import subprocess
    import sys

    from tests.test_training import REPO

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "train.jsonl").write_text(json.dumps({"text": "a sentence far too long to fit"}) + "\n")
    config = tmp_path / "run.yaml"
    config.write_text(
        f"data: {{dataset: {tmp_path / 'corpus'}, seq_len: 4, eval_split: null}}\n"
        f"tokenizer: {{min_frequency: 1}}\ntraining: {{output_dir: {tmp_path / 'out'}}}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "textdiff.cli", "train", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 2 and "raise data.seq_len" in result.stderr
    assert not (tmp_path / "out").exists()
