"""The DeepSpeed path end to end, in subprocesses as a user runs it: train → checkpoint → resume → export →
`AutoModel.from_pretrained` in a fresh process → `generate`, and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from textdiff.training.distributed import free_port

REPO = Path(__file__).resolve().parents[1]

TINY_RUN = """
model: {{embedding_dim: 8, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, dropout: 0.1}}
diffusion: {{schedule: sqrt, num_steps: 100}}
data: {{dataset: {corpus}, seq_len: 16}}
tokenizer: {{kind: word, min_frequency: 2}}
training:
  output_dir: {output}
  max_steps: 6
  micro_batch_size: 8
  gradient_accumulation_steps: 2
  learning_rate: 1.0e-3
  warmup_steps: 2
  checkpoint_every: 3
  keep_checkpoints: 2
  eval_every: 3
  eval_batches: 1
  log_every: 1
  num_samples: 2
  sample_steps: 4
  sample_sampler: renoise
  sample_clamp: false
  threads: 1
"""


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def training_command(config: Path, settings: dict | None = None) -> list[str]:
    """`train/diffusion.py --config CONFIG`, with each setting as `--set KEY=JSON`."""
    command = [sys.executable, "train/diffusion.py", "--config", str(config)]
    for key, value in (settings or {}).items():
        command += ["--set", f"{key}={json.dumps(value)}"]
    return command


def rewound_copy(run_dir: Path, target: Path) -> Path:
    """A copy of a finished 6-step run (checkpoints every 3 steps) as a kill after step 3 would have left it."""
    shutil.copytree(run_dir, target)
    shutil.rmtree(target / "model")
    shutil.rmtree(target / "checkpoints" / "step00000006")
    (target / "checkpoints" / "latest").write_text("step00000003")
    return target


def assert_same_export(first: Path, second: Path) -> None:
    """The two runs exported the same weights (model/model.safetensors), up to summation order."""
    straight = load_file(first / "model" / "model.safetensors")
    again = load_file(second / "model" / "model.safetensors")
    for name in straight:
        torch.testing.assert_close(again[name], straight[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("train")
    corpus = request.getfixturevalue("module_corpus")
    config = tmp / "run.yaml"
    config.write_text(TINY_RUN.format(corpus=corpus, output=tmp / "run"))
    run([sys.executable, "train/diffusion.py", "--config", str(config)])
    return tmp, config


def test_training_writes_checkpoints_metrics_export_and_samples(trained):
    tmp, _ = trained
    out = tmp / "run"
    assert sorted(p.name for p in (out / "checkpoints").glob("step*")) == ["step00000003", "step00000006"]
    assert (out / "checkpoints" / "latest").read_text().strip() == "step00000006"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))
    assert any("eval_loss" in r for r in records)
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "tokenizer.json").is_file()
    assert len((out / "samples.txt").read_text().splitlines()) == 2
    saved = json.loads((out / "model" / "generation_config.json").read_text())  # the model's decoding defaults
    assert (saved["sampler"], saved["num_inference_steps"], saved["clamp"]) == ("renoise", 4, False)


def test_resume_from_a_checkpoint_reproduces_the_uninterrupted_run(trained):
    tmp, config = trained
    resumed = rewound_copy(tmp / "run", tmp / "resumed")
    run([*training_command(config), "--resume", "--set", f"training.output_dir={resumed}"])
    assert_same_export(tmp / "run", resumed)
    steps = [json.loads(line).get("step") for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps.count(4) >= 1 and steps.count(6) >= 1


def test_export_loads_in_a_fresh_process_with_only_import_textdiff(trained):
    tmp, _ = trained
    model_dir = tmp / "run" / "model"
    script = (
        "import sys, textdiff\n"
        "from transformers import AutoModel, AutoTokenizer\n"
        "model = AutoModel.from_pretrained(sys.argv[1])\n"
        "tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])\n"
        "assert type(model).__name__ == 'TextDiffusionModel', type(model)\n"
        "a = model.generate(num_return_sequences=3, num_inference_steps=4, seed=0)\n"
        "b = model.generate(num_return_sequences=3, num_inference_steps=4, seed=0)\n"
        "assert (a == b).all()\n"
        "print('\\n'.join(tokenizer.batch_decode(a, skip_special_tokens=True)))\n"
    )
    result = run([sys.executable, "-c", script, str(model_dir)])
    assert len(result.stdout.strip().splitlines()) == 3


def test_cli_generate(trained):
    tmp, _ = trained
    result = run(
        [
            sys.executable,
            "-m",
            "textdiff.cli",
            "generate",
            "--model",
            str(tmp / "run" / "model"),
            "--num-samples",
            "2",
            "--steps",
            "3",
        ]
    )
    assert len(result.stdout.strip().splitlines()) == 2


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path, module_corpus):
    config = tmp_path / "run.yaml"
    config.write_text(TINY_RUN.format(corpus=module_corpus, output=tmp_path / "empty"))
    result = subprocess.run(
        [sys.executable, "-m", "textdiff.cli", "train", "--config", str(config), "--resume"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 2
    assert "no complete checkpoint" in result.stderr


def test_two_processes_under_the_deepspeed_launcher_with_zero2_resume_exactly(tmp_path, module_corpus):
    """2 CPU processes (gloo), ZeRO-2: train, then resume from the mid-run checkpoint; the export matches."""
    deepspeed = shutil.which("deepspeed")
    if deepspeed is None:
        pytest.skip("the deepspeed launcher is not on PATH")
    config = tmp_path / "run.yaml"
    config.write_text(TINY_RUN.format(corpus=module_corpus, output=tmp_path / "run"))
    shm = Path("/dev/shm")
    before = set(shm.glob("deepspeed_allreduce_buffer_*"))
    launch = [
        deepspeed,
        "--num_gpus",
        "2",
        "--master_port",
        str(free_port()),
        "train/diffusion.py",
        "--config",
        str(config),
        "--deepspeed",
        "configs/deepspeed/zero2.json",
    ]
    try:
        run(launch)
        resumed = rewound_copy(tmp_path / "run", tmp_path / "resumed")
        run([*launch, "--resume", "--set", f"training.output_dir={resumed}"])
        left = set(shm.glob("deepspeed_allreduce_buffer_*")) - before
        assert not left, f"the run left {sorted(p.name for p in left)} in /dev/shm"
    finally:
        for leftover in set(shm.glob("deepspeed_allreduce_buffer_*")) - before:
            leftover.unlink(missing_ok=True)
    # ZeRO-2 partitions the optimiser state: one shard per rank.
    assert len(list((tmp_path / "run" / "checkpoints" / "step00000006").glob("*optim_states.pt"))) == 2
    assert_same_export(tmp_path / "run", resumed)


def test_train_teacher_and_eval_end_to_end(trained, module_corpus, tmp_path):
    tmp, config = trained
    model_dir = tmp / "run" / "model"
    run(
        [
            sys.executable,
            "-m",
            "textdiff.cli",
            "train-teacher",
            "--config",
            str(config),
            "--tokenizer",
            str(model_dir),
            "--set",
            f"training.output_dir={tmp_path / 'teacher'}",
        ]
    )
    teacher_dir = tmp_path / "teacher" / "model"
    assert (teacher_dir / "model.safetensors").is_file()
    report_path = tmp_path / "report.json"
    result = run(
        [
            sys.executable,
            "-m",
            "textdiff.cli",
            "eval",
            "--model",
            str(model_dir),
            "--teacher",
            str(teacher_dir),
            "--num-samples",
            "8",
            "--num-references",
            "16",
            "--steps",
            "4",
            "--nll-sentences",
            "8",
            "--nll-timesteps",
            "4",
            "--data",
            str(module_corpus),
            "--split",
            "validation",
            "--output",
            str(report_path),
        ]
    )
    assert "| diffusion (4 steps) |" in result.stdout and "| human references (validation) |" in result.stdout
    report = json.loads(report_path.read_text())
    assert [row["num_texts"] for row in report["rows"]] == [8, 8, 8]
    for row in report["rows"]:
        assert row["teacher_perplexity"] > 1.0
    assert report["likelihood_bound"]["nats_per_token"] > 0
    assert report_path.with_suffix(".md").is_file()


def test_cli_prompt_infill_show_steps_and_visualize(trained, tmp_path):
    tmp, _ = trained
    model_dir = str(tmp / "run" / "model")
    base = [sys.executable, "-m", "textdiff.cli"]
    shown = run([*base, "generate", "--model", model_dir, "--num-samples", "2", "--steps", "5", "--show-steps"])
    assert shown.stdout.count("t=   99") == 2  # the first frame of each sample (not a terminal: plain lines)
    prompted = run([*base, "generate", "--model", model_dir, "--num-samples", "2", "--steps", "3", "--prompt", "The"])
    assert all(line.startswith("The") for line in prompted.stdout.strip().splitlines())
    for suffix in ("svg", "html"):
        run([*base, "visualize", "--model", model_dir, "--steps", "4", "--output", str(tmp_path / f"t.{suffix}")])
        assert (tmp_path / f"t.{suffix}").stat().st_size > 500


def test_export_a_checkpoint_as_ema_or_consolidated_raw_weights(trained, tmp_path):
    import textdiff

    tmp, _ = trained
    checkpoint = tmp / "run" / "checkpoints" / "step00000006"
    base = [sys.executable, "-m", "textdiff.cli", "export", "--checkpoint", str(checkpoint)]
    run([*base, "--output", str(tmp_path / "ema")])
    run([*base, "--output", str(tmp_path / "raw"), "--weights", "raw"])
    final = load_file(tmp / "run" / "model" / "model.safetensors")
    ema = load_file(tmp_path / "ema" / "model.safetensors")
    raw = load_file(tmp_path / "raw" / "model.safetensors")
    for name in final:
        torch.testing.assert_close(ema[name], final[name])  # the run's export is the last checkpoint's EMA
    assert any(not torch.allclose(raw[name], final[name]) for name in final)  # raw weights are not the EMA
    model, tokenizer = textdiff.load_pretrained(str(tmp_path / "raw"))
    assert model.generate(num_inference_steps=3, seed=0).shape == (1, 16)


def test_conditional_model_fine_tuned_from_a_saved_one_for_classifier_free_guidance(trained, tmp_path):
    import gzip

    import textdiff
    from textdiff import FieldValue

    tmp, _ = trained
    base = tmp / "run" / "model"
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split, limit in (("train", 300), ("validation", 40)):  # the same sentences as module_corpus, with MRs
        with gzip.open(REPO / "data" / "e2e" / f"{split}.jsonl.gz", "rt", encoding="utf-8") as source:
            rows = [line for _, line in zip(range(limit), source)]
        (corpus / f"{split}.jsonl").write_text("".join(rows), encoding="utf-8")
    config = tmp_path / "cfg.yaml"
    text = TINY_RUN.format(corpus=corpus, output=tmp_path / "cfg").replace(
        "seq_len: 16}", "seq_len: 16, condition_column: mr}"
    )
    text = text.replace("tokenizer: {kind: word, min_frequency: 2}", f"tokenizer: {{path: {base}}}")
    text = text.replace("training:\n", f"training:\n  init_from: {base}\n")
    config.write_text(text)
    run([sys.executable, "-m", "textdiff.cli", "train", "--config", str(config), "--set", "training.max_steps=3"])

    model, _ = textdiff.load_pretrained(str(tmp_path / "cfg" / "model"))
    start, _ = textdiff.load_pretrained(str(base))
    assert "food=Italian" in model.config.condition_labels
    torch.testing.assert_close(model.word_embeddings.weight, start.word_embeddings.weight, atol=0.05, rtol=0)
    ids = model.generate(
        num_return_sequences=2, num_inference_steps=3, seed=0, controls=[FieldValue("food", "Italian")], cfg_scale=2.0
    )
    assert ids.shape == (2, 16)
