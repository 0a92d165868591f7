"""Few-step students (textdiff.distillation, `textdiff distill`): the objective's timesteps and inputs, the teacher
corpus and its reuse, and the command end to end: the student loads through `AutoModel.from_pretrained` and decodes
with its own saved defaults."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, GenerationConfig

import textdiff
from textdiff.distillation import FewStepDistillationLoss, student_timesteps, write_teacher_corpus
from textdiff.samplers import RenoiseSampler
from textdiff.schedules import NoiseSchedule

from conftest import e2e_texts, tiny_config

REPO = Path(__file__).resolve().parents[1]


def classifying_model(**overrides) -> textdiff.TextDiffusionModel:
    torch.manual_seed(0)
    settings = dict(prediction_type="logits", embedding_scale=4.0, num_diffusion_steps=200, min_timestep=10)
    return textdiff.TextDiffusionModel(tiny_config(**{**settings, **overrides}))


def test_student_timesteps_are_the_renoise_decoders():
    schedule = NoiseSchedule.from_name("sqrt", 2000)
    sampler = RenoiseSampler(schedule)
    sampler.set_timesteps(8, 100)
    assert torch.equal(student_timesteps(schedule, 8, 100), sampler.timesteps)
    assert student_timesteps(schedule, 8, 100).tolist() == [1999, 1728, 1456, 1185, 914, 643, 371, 100]


class Recorder(torch.nn.Module):
    """Wraps a model and records every call's (x_t, t, x0_temperature, grad enabled)."""

    def __init__(self, model):
        super().__init__()
        self.module, self.calls = model, []

    def forward(self, x_t, t, **kwargs):
        self.calls.append((x_t.clone(), t.clone(), kwargs.get("x0_temperature", 1.0), torch.is_grad_enabled()))
        return self.module(x_t, t, **kwargs)


def recorded_objective(**settings):
    """A tiny classifying model, the 4 student timesteps of a 200-step schedule, and one objective call on 8 rows
    through a `Recorder`: (model, schedule, timesteps, recorder, ids, output)."""
    model = classifying_model()
    schedule = NoiseSchedule.from_name("sqrt", 200)
    timesteps = student_timesteps(schedule, 4, 10)
    recorder = Recorder(model)
    ids = torch.randint(4, 100, (8, 12), generator=torch.Generator().manual_seed(1))
    out = FewStepDistillationLoss(schedule, timesteps, **settings)(recorder, ids, generator=torch.Generator().manual_seed(0))
    return model, schedule, timesteps, recorder, ids, out


def test_objective_trains_only_at_the_students_timesteps_spread_over_the_batch():
    model, _, timesteps, recorder, _, out = recorded_objective(rollout_prob=0.0)
    assert len(recorder.calls) == 1  # no rollout: one pass, with gradients
    _, t, _, grad = recorder.calls[0]
    assert grad and set(t.tolist()) == set(timesteps.tolist())
    assert sorted(t.tolist()).count(int(timesteps[0])) == 2  # 8 rows over 4 timesteps: each twice
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.output_logits.weight.grad.abs().sum() > 0


def test_rollout_inputs_are_the_renoised_prediction_of_the_step_before():
    model, schedule, timesteps, recorder, ids, _ = recorded_objective(rollout_prob=1.0, x0_temperature=0.5)
    (x_before, t_before, tau, grad_before), (x_t, t, _, grad) = recorder.calls
    assert not grad_before and grad and tau == 0.5  # the prediction is the student's own, at its decoding τ
    position = {int(v): i for i, v in enumerate(timesteps)}
    for row in range(len(ids)):
        k = position[int(t[row])]
        assert int(t_before[row]) == int(timesteps[max(k - 1, 0)])  # the step before (the first has none)
    # Rows past the first timestep start from √ᾱ_t · x̂0(x_before): their distance to the clean embedding is that of
    # a prediction, not of q(x_t | y)'s noise alone; the first timestep's rows are q(x_t | y) itself.
    with torch.no_grad():
        pred = model(x_before, t_before, x0_temperature=0.5).pred_x0
    alpha_bar = schedule.alphas_cumprod[t].float()[:, None, None]
    residual = (x_t - alpha_bar.sqrt() * pred) / (1 - alpha_bar).sqrt()  # the fresh noise ε, for rollout rows
    later = t != timesteps[0]
    assert later.any()
    assert residual[later].std().item() == pytest.approx(1.0, abs=0.15)


def test_objective_rejects_bad_settings():
    schedule = NoiseSchedule.from_name("sqrt", 200)
    with pytest.raises(ValueError, match="descending"):
        FewStepDistillationLoss(schedule, torch.tensor([10, 50]))
    with pytest.raises(ValueError, match="rollout_prob"):
        FewStepDistillationLoss(schedule, torch.tensor([50, 10]), rollout_prob=1.5)
    regressing = textdiff.TextDiffusionModel(tiny_config(num_diffusion_steps=200))
    with pytest.raises(ValueError, match="classifies the clean word"):
        FewStepDistillationLoss(schedule, torch.tensor([50, 10]))(regressing, torch.randint(4, 100, (2, 12)))


def saved_teacher(root: Path) -> Path:
    """A tiny classifying model with a length prior, a word tokenizer and a saved 20-step renoise decoding."""
    tokenizer = textdiff.train_tokenizer(e2e_texts("train", 200), "word", min_frequency=1)
    prior = [0.0] * 8 + [1.0 / 17] * 17  # windows of 8 … 24 positions
    model = classifying_model(vocab_size=len(tokenizer), max_position_embeddings=24, num_diffusion_steps=2000,
                              length_prior=prior)  # fmt: skip
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    GenerationConfig(sampler="renoise", num_inference_steps=20, clamp=False).save_pretrained(root)
    return root


def test_teacher_corpus_is_written_whole_and_reused_only_when_its_maker_matches(tmp_path):
    teacher, tokenizer = textdiff.load_pretrained(str(saved_teacher(tmp_path / "teacher")))
    corpus = tmp_path / "corpus"
    assert write_teacher_corpus(teacher, tokenizer, corpus, num_samples=10, seed=3, batch_size=4)
    lines = (corpus / "train.jsonl").read_text().splitlines()
    assert len(lines) == 10 and all(isinstance(json.loads(line)["text"], str) for line in lines)
    assert sorted(p.name for p in corpus.iterdir()) == ["manifest.json", "train.jsonl"]  # no temporary left
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["num_inference_steps"] == 20 and manifest["sampler"] == "renoise" and manifest["seed"] == 3
    assert not write_teacher_corpus(teacher, tokenizer, corpus, num_samples=10, seed=3, batch_size=4)  # reused
    assert write_teacher_corpus(teacher, tokenizer, corpus, num_samples=10, seed=4, batch_size=4)  # another seed
    with torch.no_grad():
        teacher.output_logits.bias.add_(1.0)  # another teacher
    assert write_teacher_corpus(teacher, tokenizer, corpus, num_samples=10, seed=4, batch_size=4)


DISTILL_RUN = """
distillation:
  teacher: {teacher}
  num_teacher_samples: 48
  student_steps: 3
  x0_temperature: 0.5
training:
  output_dir: {output}
  max_steps: 4
  micro_batch_size: 8
  learning_rate: 1.0e-3
  warmup_steps: 1
  log_every: 1
  eval_every: 0
  checkpoint_every: 0
  num_samples: 2
  threads: 1
"""


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distill")
    teacher = saved_teacher(tmp / "teacher")
    config = tmp / "distill.yaml"
    config.write_text(DISTILL_RUN.format(teacher=teacher, output=tmp / "student"))
    result = subprocess.run(
        [sys.executable, "-m", "textdiff.cli", "distill", "--config", str(config)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return tmp, config, teacher


def test_student_loads_with_automodel_and_decodes_with_its_own_defaults(distilled):
    tmp, _, teacher_dir = distilled
    export = tmp / "student" / "model"
    saved = json.loads((export / "generation_config.json").read_text())
    assert (saved["sampler"], saved["num_inference_steps"], saved["clamp"], saved["x0_temperature"]) == (
        "renoise", 3, False, 0.5,
    )  # fmt: skip
    student = AutoModel.from_pretrained(export)
    teacher = AutoModel.from_pretrained(teacher_dir)
    assert isinstance(student, textdiff.TextDiffusionModel) and student.config.length_prior == teacher.config.length_prior
    out = student.generate(num_return_sequences=3, seed=0, return_dict_in_generate=True)
    schedule = NoiseSchedule.from_name("sqrt", 2000)
    assert out.timesteps.tolist() == student_timesteps(schedule, 3, 10).tolist()  # its own 3 steps
    explicit = student.generate(num_return_sequences=3, seed=0, num_inference_steps=3, sampler="renoise", clamp=False,
                                x0_temperature=0.5)  # fmt: skip
    assert torch.equal(out.sequences, explicit)  # the defaults are its saved decoding, not the library's
    different = {name for name, value in student.state_dict().items() if not torch.equal(value, teacher.state_dict()[name])}
    assert different  # trained from the teacher's weights
    assert len((tmp / "student" / "samples.txt").read_text().splitlines()) == 2
    assert len((tmp / "student" / "teacher_corpus" / "train.jsonl").read_text().splitlines()) == 48


def test_distill_reuses_the_teacher_corpus_and_names_a_missing_teacher(distilled, tmp_path):
    tmp, config, _ = distilled
    shutil.copytree(tmp / "student" / "teacher_corpus", tmp_path / "again" / "teacher_corpus")
    corpus = tmp_path / "again" / "teacher_corpus" / "train.jsonl"
    before = corpus.stat().st_mtime_ns
    result = subprocess.run(
        [sys.executable, "train/distill.py", "--config", str(config), "--set", "training.max_steps=1",
         "--set", f"training.output_dir={tmp_path / 'again'}"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Reusing the teacher's texts" in result.stdout + result.stderr and corpus.stat().st_mtime_ns == before
    missing = subprocess.run(
        [sys.executable, "-m", "textdiff.cli", "distill", "--config", str(config), "--set", "distillation.teacher=null"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert missing.returncode == 2 and "distillation.teacher is not set" in missing.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "textdiff.cli", "distill", "--config", str(config), "--set",
         "distillation.rollout_prob=2"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert bad.returncode == 2 and "distillation.rollout_prob must be in [0, 1]" in bad.stderr
