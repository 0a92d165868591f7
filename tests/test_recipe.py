"""The parts of the training recipe beyond the paper's: x0 by classification, embeddings of fixed norm, a noise
floor with stratified timesteps, and the embeddings' own learning rate."""

from __future__ import annotations

import json

import pytest
import torch

import textdiff
from tests.conftest import tiny_config
from tests.test_training import TINY_RUN, run, training_command
from textdiff import DiffusionLMLoss, NoiseSchedule, TextDiffusionModel
from textdiff.samplers import DDPMSampler


def classifying_model(**overrides) -> TextDiffusionModel:
    torch.manual_seed(0)
    return TextDiffusionModel(tiny_config(prediction_type="logits", embedding_scale=4.0, **overrides))


def test_a_classifying_denoiser_predicts_x0_as_the_softmax_average_of_the_embeddings():
    model = classifying_model()
    out = model(torch.randn(3, 12, 16), torch.tensor([5, 50, 99]))
    assert out.logits.shape == (3, 12, 100)
    expected = out.logits.softmax(-1) @ model.embedding_table()
    torch.testing.assert_close(out.pred_x0, expected)
    assert TextDiffusionModel(tiny_config())(torch.randn(1, 12, 16), torch.tensor([3])).logits is None


def test_embeddings_of_fixed_norm_whatever_the_weights():
    model = classifying_model()
    with torch.no_grad():
        model.word_embeddings.weight.mul_(torch.rand(100, 1) * 10)
    ids = torch.randint(0, 100, (2, 12))
    torch.testing.assert_close(model.embed(ids).norm(dim=-1), torch.full((2, 12), 4.0))
    torch.testing.assert_close(model.embedding_table().norm(dim=-1), torch.full((100,), 4.0))
    assert (model.round(model.embed(ids)) == ids).all()  # rounding reads the same normalised table


def test_classification_loss_is_the_cross_entropy_of_the_clean_words():
    model = classifying_model()
    schedule = NoiseSchedule.from_name("sqrt", 100)
    ids = torch.randint(0, 100, (4, 12))
    out = DiffusionLMLoss(schedule)(model, ids, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.loss, out.rounding)
    assert out.rounding > 0 and out.mse > 0
    weighted = DiffusionLMLoss(schedule, mse_weight=2.0)(model, ids, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(weighted.loss, weighted.rounding + 2.0 * weighted.mse)
    out.loss.backward()
    assert model.word_embeddings.weight.grad.abs().sum() > 0  # the embeddings learn through x_t and x̂0


def test_stratified_timesteps_fill_every_stratum_above_the_noise_floor(monkeypatch):
    model = TextDiffusionModel(tiny_config(min_timestep=20))
    schedule = NoiseSchedule.from_name("sqrt", 100)
    seen = []
    real_forward = model.forward

    def spy(x_t, timesteps, **kwargs):
        seen.append(timesteps.clone())
        return real_forward(x_t, timesteps, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    DiffusionLMLoss(schedule, stratified_timesteps=True)(model, torch.zeros(8, 12, dtype=torch.long))
    t = seen[-1]
    assert t.min() >= 20 and t.max() <= 99
    assert sorted(((t - 20) // 10).tolist()) == list(range(8))  # one t in each of the 8 strata of [20, 100)
    DiffusionLMLoss(schedule)(model, torch.zeros(64, 12, dtype=torch.long), generator=torch.Generator().manual_seed(1))
    assert seen[-1].min() >= 20


def test_decoding_respects_the_noise_floor_and_rounds_by_the_logits():
    sampler = DDPMSampler(NoiseSchedule.from_name("sqrt", 100))
    sampler.set_timesteps(5, min_timestep=20)
    assert sampler.timesteps.tolist() == [99, 79, 60, 40, 20]
    with pytest.raises(ValueError, match="between 1 and the 80 training steps"):
        sampler.set_timesteps(81, min_timestep=20)

    model = classifying_model(min_timestep=20)
    seen = []
    out = model.generate(
        num_return_sequences=2,
        num_inference_steps=4,
        seed=0,
        return_dict_in_generate=True,
        callback_on_step_end=lambda step, t, x, pred: seen.append(t),
    )
    assert seen[-1] == 20 and out.sequences.shape == (2, 12)
    for sampler_name in ("ddim", "dpm-solver++"):
        assert model.generate(num_inference_steps=3, sampler=sampler_name, seed=0).shape == (1, 12)


def test_config_rejects_unknown_recipes():
    for bad, message in [
        ({"prediction_type": "eps"}, "prediction_type"),
        ({"embedding_scale": 0.0}, "embedding_scale"),
        ({"min_timestep": 100}, "min_timestep"),
    ]:
        with pytest.raises(ValueError, match=message):
            tiny_config(**bad)


def test_the_new_recipe_trains_exports_and_decodes_end_to_end(tmp_path, module_corpus):
    config = tmp_path / "run.yaml"
    config.write_text(TINY_RUN.format(corpus=module_corpus, output=tmp_path / "run"))
    settings = {
        "diffusion.prediction_type": "logits",
        "diffusion.embedding_scale": 2.83,
        "diffusion.min_timestep": 10,
        "diffusion.stratified_timesteps": True,
        "training.embedding_lr_scale": 10.0,
        "data.bucket_by_length": True,
    }
    run(training_command(config, settings))
    model, tokenizer = textdiff.load_pretrained(str(tmp_path / "run" / "model"))
    assert model.config.prediction_type == "logits" and model.config.min_timestep == 10
    assert len(model.config.length_prior) == 17 and sum(model.config.length_prior) == pytest.approx(1.0)
    assert len(tokenizer.batch_decode(model.generate(num_return_sequences=2, num_inference_steps=4, seed=0))) == 2
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "lr" in r][-1]
    assert last["lr_embeddings"] == pytest.approx(10 * last["lr"]) and last["lr"] > 0


def test_the_output_prior_adds_the_likelihood_of_the_noisy_latent_under_each_word():
    plain = classifying_model()
    model = classifying_model(output_prior=True)
    model.load_state_dict(plain.state_dict())
    x, t = torch.randn(2, 12, 16), torch.tensor([3, 80])
    schedule = NoiseSchedule.from_name("sqrt", 100)
    table = model.embedding_table()
    for row in range(2):  # log N(x; √ᾱ e_w, (1 − ᾱ) I) up to a constant in w
        a = schedule.alphas_cumprod[t[row]].float()
        log_normal = -((x[row, :, None, :] - a.sqrt() * table) ** 2).sum(-1) / (2 * (1 - a))  # (L, V)
        added = model(x, t).logits[row] - plain(x, t).logits[row]
        torch.testing.assert_close(added - added[:, :1], log_normal - log_normal[:, :1], atol=1e-3, rtol=1e-4)
    # Nearly clean latents: the prior alone already names each word.
    ids = torch.randint(0, 100, (1, 12))
    assert (model(model.embed(ids), torch.tensor([0])).logits.argmax(-1) == ids).all()
    with pytest.raises(ValueError, match="output_prior"):
        tiny_config(output_prior=True)
