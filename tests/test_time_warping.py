"""CDCD's time warping: the fit of the cross-entropy over noise levels, drawing t from it, decoding on it, and
its state travelling with the model (save/load, training, export, resume)."""

from __future__ import annotations

import pytest
import torch

import textdiff
from tests.conftest import tiny_config
from tests.test_training import TINY_RUN, assert_same_export, rewound_copy, run, training_command
from textdiff import DiffusionLMLoss, NoiseSchedule, TextDiffusionModel
from textdiff.samplers import DDPMSampler
from textdiff.time_warping import TimeWarping


def fitted(warping: TimeWarping, middle: float, batches: int = 300) -> TimeWarping:
    """Feed the warping a cross-entropy that rises as a sigmoid centred at t = middle, as a denoiser's does."""
    generator = torch.Generator().manual_seed(0)
    for _ in range(batches):
        u = (torch.arange(64) + torch.rand(64, generator=generator)) / 64
        t = warping.sample(u)
        ce = 6.0 * torch.sigmoid((t.float() - middle) / (0.05 * warping.num_steps))
        warping.update(t, ce + 0.05 * torch.randn(64, generator=generator))
    return warping


def test_an_unfitted_warping_is_uniform_over_the_trained_range():
    warping = TimeWarping(2000, 100)
    assert torch.allclose(warping.density(), torch.full((64,), 1 / 64))
    t = warping.sample((torch.arange(190) + 0.5) / 190)
    assert t.min() == 105 and t.max() == 1995  # the midpoints of 190 strata of [100, 2000)
    assert warping.timesteps(5).tolist() == [1999, 1525, 1050, 575, 100]


def test_the_fit_draws_t_where_the_cross_entropy_changes():
    warping = fitted(TimeWarping(2000, 100), middle=900)
    t = warping.sample(torch.rand(20000, generator=torch.Generator().manual_seed(1)))
    assert t.min() >= 100 and t.max() <= 1999
    near = ((t - 900).abs() < 200).float().mean()  # 21 % of [100, 2000) under uniform draws
    assert near > 0.45
    assert ((t < 300) | (t > 1700)).float().mean() < 0.1  # the flat ends: only about the uniform share ε
    steps = warping.timesteps(16)
    assert steps[0] == 1999 and steps[-1] == 100 and bool((steps[:-1] > steps[1:]).all())
    assert ((steps - 900).abs() < 200).sum() >= 6  # decoding dwells where the words are decided


def test_the_fit_is_monotone_and_ignores_noise_that_lowers_the_loss():
    warping = TimeWarping(1000, 0, num_bins=10)
    t = torch.arange(50, 1000, 100)  # one sequence per bin
    warping.update(t, torch.tensor([0.0, 1.0, 2.0, 1.5, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]))
    assert bool((warping.cdf()[1:] >= warping.cdf()[:-1]).all()) and warping.cdf()[-1] == pytest.approx(1.0)
    assert warping.density().min() >= 0.1 / 10 - 1e-6  # the uniform share keeps every bin alive


def test_the_warping_rejects_impossible_settings():
    for kwargs, message in [
        ({"min_timestep": 2000}, "min_timestep"),
        ({"num_bins": 0}, "num_bins"),
        ({"decay": 1.0}, "decay"),
        ({"uniform_share": 0.0}, "uniform_share"),
    ]:
        with pytest.raises(ValueError, match=message):
            TimeWarping(2000, **kwargs)
    with pytest.raises(ValueError, match="time_warping.*prediction_type"):
        tiny_config(time_warping=True)  # a regressing (x0) denoiser has no cross-entropy over noise levels


def warped_model() -> TextDiffusionModel:
    torch.manual_seed(0)
    config = tiny_config(prediction_type="logits", embedding_scale=4.0, min_timestep=10, time_warping=True)
    return TextDiffusionModel(config)


def test_the_loss_fits_the_warping_in_training_only_and_draws_t_from_it():
    model = warped_model()
    objective = DiffusionLMLoss(NoiseSchedule.from_name("sqrt", 100), stratified_timesteps=True)
    ids = torch.randint(3, 100, (32, 12), generator=torch.Generator().manual_seed(0))
    model.eval()
    objective(model, ids, generator=torch.Generator().manual_seed(0))
    assert model.time_warping.counts.sum() == 0  # a held-out loss does not move the fit
    model.train()
    objective(model, ids, generator=torch.Generator().manual_seed(0))
    assert model.time_warping.counts.sum() == 32

    drawn = []
    model.time_warping.sample = lambda u: drawn.append(u) or torch.full_like(u, 50, dtype=torch.long)
    objective(model, ids, generator=torch.Generator().manual_seed(1))
    assert len(drawn) == 1 and drawn[0].shape == (32,)


def test_a_saved_warping_reloads_and_generation_decodes_on_its_timesteps(tmp_path):
    model = warped_model()
    fitted(model.time_warping, middle=50, batches=50)
    model.save_pretrained(tmp_path)
    again = TextDiffusionModel.from_pretrained(tmp_path)
    torch.testing.assert_close(again.time_warping.cross_entropy, model.time_warping.cross_entropy)
    torch.testing.assert_close(again.time_warping.counts, model.time_warping.counts)
    out = again.generate(num_return_sequences=2, num_inference_steps=8, seed=0, return_dict_in_generate=True)
    assert out.timesteps.tolist() == model.time_warping.timesteps(8).tolist()
    assert out.timesteps.tolist() != torch.linspace(10, 99, 8).round().long().flip(0).tolist()

    sampler = DDPMSampler(NoiseSchedule.from_name("sqrt", 200))
    with pytest.raises(ValueError, match="warping"):
        sampler.set_timesteps(8, 10, model.time_warping)  # a warping of another schedule


def test_training_with_time_warping_exports_the_fit_and_resumes_exactly(tmp_path, module_corpus):
    config = tmp_path / "run.yaml"
    config.write_text(TINY_RUN.format(corpus=module_corpus, output=tmp_path / "run"))
    settings = {
        "diffusion.prediction_type": "logits",
        "diffusion.embedding_scale": 2.83,
        "diffusion.min_timestep": 10,
        "diffusion.stratified_timesteps": True,
        "diffusion.time_warping": True,
    }
    command = training_command(config, settings)
    run(command)
    model, _ = textdiff.load_pretrained(str(tmp_path / "run" / "model"))
    assert model.time_warping.counts.sum() > 0  # the export carries the fit, not a fresh one

    resumed = rewound_copy(tmp_path / "run", tmp_path / "resumed")
    run([*command, "--resume", "--set", f"training.output_dir={resumed}"])
    assert_same_export(tmp_path / "run", resumed)
