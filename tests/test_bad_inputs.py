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
from safetensors.torch import load_file, save_file

import textdiff
from tests.conftest import tiny_config
from textdiff.data import frame_sequences, load_corpus
from textdiff.evaluation.controls import read_control_targets
from textdiff.evaluation.fluency import load_causal_lm
from textdiff.guidance import load_classifiers
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


def write(directory: Path, name: str, text: str) -> Path:
    (directory / name).write_text(text)
    return directory / name


def load_damaged(tmp: Path, m, damage):
    return textdiff.load_pretrained(damaged(tmp, m[0], damage))


def nan_weights(directory: Path) -> None:
    weights = load_file(directory / "model.safetensors")
    name = sorted(weights)[0]
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, directory / "model.safetensors", metadata={"format": "pt"})


def drop_tensor(directory: Path) -> None:
    weights = load_file(directory / "model.safetensors")
    weights.pop(sorted(weights)[0])
    save_file(weights, directory / "model.safetensors", metadata={"format": "pt"})


def edit_config(directory: Path, **values) -> None:
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **values}))


def wider_config(directory: Path) -> None:
    edit_config(directory, hidden_size=64)


def bert_config(directory: Path) -> None:
    edit_config(directory, model_type="bert")


def no_tokenizer(directory: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (directory / name).unlink(missing_ok=True)


def garbage_tokenizer(directory: Path) -> None:
    write(directory, "tokenizer.json", "not json")
    write(directory, "tokenizer_config.json", "{")


def truncated_classifier(directory: Path) -> None:
    from textdiff.guidance import LatentClassifier, LatentClassifierConfig, classifier_path

    config = LatentClassifierConfig(
        task="pos",
        labels=["A", "B"],
        embedding_dim=16,
        hidden_size=8,
        num_attention_heads=2,
        max_position_embeddings=12,
        num_diffusion_steps=100,
    )
    path = classifier_path(directory, "pos")
    LatentClassifier(config).save_pretrained(path)
    cut(path / "model.safetensors")


def export_case(tmp: Path, m, case: str):
    """A checkpoint directory as a run writes it (config, EMA, COMPLETE) beside a run's tokenizer, damaged."""
    from textdiff.training.export import export

    run = tmp / "run"
    step = run / "checkpoints" / "step00000001"
    step.mkdir(parents=True)
    model = m[1].__class__(m[1].config.__class__.from_pretrained(m[0]))
    model.config.to_json_file(step / "config.json")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, step / "ema.safetensors")
    (step / "COMPLETE").write_text("1\n")
    m[2].save_pretrained(run / "tokenizer")
    output = tmp / "exported"
    if case == "other_tokenizer":
        other = train_tokenizer(["a"], "word", min_frequency=1)
        other.save_pretrained(tmp / "other")
        return export(step, output, tokenizer=tmp / "other")
    if case == "output_file":
        output.write_text("x")
    if case == "no_tokenizer":
        shutil.rmtree(run / "tokenizer")
    if case == "cut_ema":
        cut(step / "ema.safetensors")
    try:
        return export(step, output)
    finally:
        assert not (output / "config.json").exists()  # nothing half-written


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
    ("config: NaN learning rate", lambda t, m: run_config(t, "training:\n  learning_rate: .nan\n"), "finite"),
    (
        "config: infinite float override",
        lambda t, m: run_config(t, "", ["training.warmup_steps=3", "model.dropout=inf"]),
        "finite",
    ),
    ("config: threads below 1", lambda t, m: run_config(t, "training:\n  threads: -1\n"), "threads must be at least 1"),
    (
        "config: output_dir is a file",
        lambda t, m: write(t, "f", "x") and run_config(t, f"training:\n  output_dir: {t / 'f'}\n"),
        "is a file",
    ),
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
    ("generate: seed not an integer", lambda t, m: m[1].generate(seed="abc"), "seed must be an integer"),
    ("generate: sampler of another type", lambda t, m: m[1].generate(sampler=object()), "Sampler instance"),
    ("generate: steps not an integer", lambda t, m: m[1].generate(num_inference_steps=2.5), "must be int"),
    ("generate: NaN guidance", lambda t, m: m[1].generate(guidance_scale=float("nan")), "finite"),
    ("generate: generator of another type", lambda t, m: m[1].generate(generator=3), "torch.Generator"),
    (
        "generate: max_new_tokens 0",
        lambda t, m: m[1].generate(input_ids=torch.ones(1, 2, dtype=torch.long), max_new_tokens=0),
        "positive",
    ),
    (
        "generate: prompt ends early",
        lambda t, m: m[1].generate(input_ids=torch.tensor([[m[1].config.eos_token_id or 2, 5]])),
        "end-of-sequence token",
    ),
    ("generate: batch not an integer", lambda t, m: m[1].generate(num_return_sequences="2"), "num_return_sequences"),
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
    ("load: weights not finite", lambda t, m: load_damaged(t, m, nan_weights), "not finite"),
    ("load: a tensor missing", lambda t, m: load_damaged(t, m, drop_tensor), r"does not match .*missing"),
    ("load: config width differs", lambda t, m: load_damaged(t, m, wider_config), "in the file, .* by config.json"),
    ("load: another model type", lambda t, m: load_damaged(t, m, bert_config), "describes a 'bert' model"),
    ("load: config not JSON", lambda t, m: load_damaged(t, m, lambda d: write(d, "config.json", "{")), "not a JSON"),
    ("load: tokenizer missing", lambda t, m: load_damaged(t, m, no_tokenizer), "Cannot read the tokenizer"),
    ("load: tokenizer garbage", lambda t, m: load_damaged(t, m, garbage_tokenizer), "Cannot read the tokenizer"),
    (
        "load: classifier truncated",
        lambda t, m: load_classifiers(damaged(t, m[0], truncated_classifier), ["pos"]),
        "truncated or corrupted",
    ),
    ("eval: teacher path missing", lambda t, m: load_causal_lm(str(t / "none")), "does not exist"),
    ("eval: teacher a file", lambda t, m: load_causal_lm(str(m[0] / "config.json")), "is a file"),
    # --- export ------------------------------------------------------------------------------------------------
    ("export: tokenizer of another run", lambda t, m: export_case(t, m, "other_tokenizer"), "has 5 entries"),
    ("export: output is a file", lambda t, m: export_case(t, m, "output_file"), "is a file"),
    ("export: no tokenizer beside the run", lambda t, m: export_case(t, m, "no_tokenizer"), "No tokenizer at"),
    ("export: EMA weights truncated", lambda t, m: export_case(t, m, "cut_ema"), "truncated or corrupted"),
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


BAD_CORPORA = [
    # (lines of the training split, data.seq_len, tokenizer.min_frequency, the error's words)
    (["a sentence far too long to fit"], 4, 1, "raise data.seq_len"),
    ([f"line {i} ." for i in range(3)], 8, 11, "too small for its vocabulary"),
]


@pytest.mark.parametrize("lines, seq_len, min_frequency, message", BAD_CORPORA, ids=["frames to nothing", "tiny"])
def test_a_bad_corpus_is_one_error_and_leaves_no_output(tmp_path, lines, seq_len, min_frequency, message):
    """Through the real command: the error comes before any file of the run is written."""
    import subprocess
    import sys

    from tests.test_training import REPO

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "train.jsonl").write_text("".join(json.dumps({"text": line}) + "\n" for line in lines))
    config = tmp_path / "run.yaml"
    config.write_text(
        f"data: {{dataset: {tmp_path / 'corpus'}, seq_len: {seq_len}, eval_split: null}}\n"
        f"tokenizer: {{min_frequency: {min_frequency}}}\ntraining: {{output_dir: {tmp_path / 'out'}, max_steps: 2}}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "textdiff.cli", "train", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 2 and message in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


# --- the CLI: one line naming the option, nothing half-written ------------------------------------------------


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """textdiff's main in this process: (exit code, stdout, stderr)."""
    from textdiff.cli import main

    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code or 0, captured.out, captured.err


def test_visualize_with_an_unsupported_extension_leaves_nothing(saved_model, tmp_path, capsys):
    code, _, err = cli(
        ["visualize", "--model", str(saved_model[0]), "--output", str(tmp_path / "new" / "t.png")], capsys
    )
    assert code == 2 and "--output must end in .svg" in err
    assert not (tmp_path / "new").exists()


def test_device_without_cuda_is_one_clear_error(saved_model, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = cli(["generate", "--model", str(saved_model[0]), "--device", "cuda"], capsys)
    assert code == 2 and "sees no CUDA GPU" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(["generate", "--model", str(saved_model[0]), "--device", "gpu0"], capsys)
    assert code == 2 and "is not a device" in err


@pytest.mark.parametrize("command", ["train", "train-teacher", "train-classifier", "export", "generate", "eval"])
def test_every_subcommand_help_names_itself(command, capsys):
    code, out, _ = cli([command, "--help"], capsys)
    assert code == 0 and out.startswith(f"usage: textdiff {command} ")


def test_generate_decodes_a_large_request_in_batches(saved_model, capsys):
    code, out, _ = cli(["generate", "--model", str(saved_model[0]), "--num-samples", "7", "--batch-size", "3",
                        "--steps", "2"], capsys)  # fmt: skip
    assert code == 0 and len(out.splitlines()) == 7


def test_hostile_text_stays_inert_in_the_html_page_and_the_svg():
    """A word that closes the script, opens markup or breaks JS lines round-trips as data."""
    import re
    import xml.dom.minidom

    from textdiff.visualization import Trajectory, trajectory_html, trajectory_svg

    hostile = ["</script>", "<b>&amp;", "\u2028", '"\\', "<!--", "]]>"]
    trajectory = Trajectory(timesteps=[5, 0], words=[hostile, hostile[::-1]], confidence=[[0.5] * 6, [1.0] * 6])
    page = trajectory_html(trajectory, title="</title><script>alert(1)</script>")
    assert page.count("</script>") == 1 and "<b>" not in page and "\u2028" not in page
    data = re.search(r"const D = (.*?);\n", page).group(1)
    assert json.loads(data)["w"] == [hostile, hostile[::-1]]
    svg = trajectory_svg(trajectory, num_rows=2, title="<x>")
    xml.dom.minidom.parseString(svg)  # well-formed: every word escaped


def test_a_stale_build_lock_is_removed_and_a_live_one_kept(tmp_path, monkeypatch, caplog):
    """An interrupted first build of DeepSpeed's CPU op leaves torch's lock file; every later multi-process run
    would wait on it forever. One older than any build is removed at once with a message; a young one (a build in
    progress) is left for torch to wait on; one process does not need the op at all."""
    import time

    import deepspeed.ops

    from textdiff.training.distributed import SHM_OP, prepare_cpu_communication

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    from torch.utils.cpp_extension import _get_build_directory

    lock = Path(_get_build_directory(SHM_OP, verbose=False)) / "lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")
    os.utime(lock, (time.time() - 3600, time.time() - 3600))
    started = time.monotonic()
    with caplog.at_level("WARNING"):
        prepare_cpu_communication(world_size=2)
    assert not lock.exists() and time.monotonic() - started < 5
    assert "never finished" in caplog.text
    lock.write_text("")  # fresh: a build in progress
    prepare_cpu_communication(world_size=2)
    assert lock.exists()
    monkeypatch.setitem(deepspeed.ops.__compatible_ops__, SHM_OP, True)
    prepare_cpu_communication(world_size=1)
    assert deepspeed.ops.__compatible_ops__[SHM_OP] is False


GENERATE_FLAGS = {
    "--num-samples": st.one_of(st.integers(-2, 3), st.just("x")),
    "--batch-size": st.integers(-1, 3),
    "--steps": st.one_of(st.integers(-1, 4), st.sampled_from(["2.5", "nan", ""])),
    "--max-length": st.integers(-1, 14),
    "--sampler": st.sampled_from(["ddpm", "ddim", "dpm-solver++", "euler"]),
    "--seed": st.one_of(st.integers(-3, 5), st.just("abc")),
    "--guidance-scale": st.sampled_from(["1", "-1", "nan", "inf", "x"]),
    "--length": st.integers(-1, 4),
    "--prompt": st.sampled_from(["the pub", "zorblax", "", "<mask>"]),
    "--infill": st.sampled_from(["the <mask> is near the river .", "no blanks", "<mask>"]),
    "--device": st.sampled_from(["cpu", "cuda", "tpu", "cuda:x"]),
    "--bogus": st.just("1"),
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chosen=st.lists(st.sampled_from(sorted(GENERATE_FLAGS)), max_size=4, unique=True),
    data=st.data(),
    flag_only=st.booleans(),
)
def test_fuzzed_cli_arguments_either_work_or_name_the_problem_in_one_line(saved_model, capsys, chosen, data, flag_only):
    """Every generated `textdiff generate` argv: exit 0 with the texts it asked for, or exit 2 with one line
    (never a traceback). A flag may come without its value."""
    argv = ["generate", "--model", str(saved_model[0])]
    for flag in chosen:
        argv += [flag] if flag_only and flag == chosen[-1] else [flag, str(data.draw(GENERATE_FLAGS[flag]))]
    if "--steps" not in chosen:
        argv += ["--steps", "2"]
    code, out, err = cli(argv, capsys)
    if code == 0:
        asked = int(argv[argv.index("--num-samples") + 1]) if "--num-samples" in chosen else 10
        assert len(out.splitlines()) == asked
    else:
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1 and err.startswith("textdiff"), err
