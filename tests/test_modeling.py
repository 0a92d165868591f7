import pytest
import torch
from transformers import AutoConfig, AutoModel

import textdiff
from tests.conftest import tiny_config


def test_rounding_inverts_embedding(tiny_model):
    ids = torch.randint(0, 100, (4, 12))
    assert torch.equal(tiny_model.round(tiny_model.embed(ids)), ids)


def test_clamp_snaps_to_the_nearest_embedding(tiny_model):
    ids = torch.randint(0, 100, (2, 12))
    noisy = tiny_model.embed(ids) + 0.01 * torch.randn(2, 12, 16)
    torch.testing.assert_close(tiny_model.clamp(noisy), tiny_model.embed(ids))


def test_logits_are_tied_to_the_embedding(tiny_model):
    x = torch.randn(2, 3, 16)
    torch.testing.assert_close(tiny_model.logits(x), x @ tiny_model.word_embeddings.weight.T)


def test_denoiser_shapes_and_mask(tiny_model):
    x = torch.randn(3, 12, 16)
    t = torch.tensor([0, 5, 99])
    out = tiny_model(x, t)
    assert out.pred_x0.shape == (3, 12, 16)
    mask = torch.ones(3, 12)
    mask[:, 8:] = 0
    masked = tiny_model(x, t, attention_mask=mask).pred_x0
    changed = x.clone()
    changed[:, 8:] += 5.0
    # positions that attend only to the first 8 do not see a change in the masked-out ones (except themselves)
    torch.testing.assert_close(tiny_model(changed, t, attention_mask=mask).pred_x0[:, :8], masked[:, :8])


def test_too_long_input_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="max_position_embeddings"):
        tiny_model(torch.randn(1, 13, 16), torch.tensor([0]))


def test_self_conditioning_input():
    model = textdiff.TextDiffusionModel(tiny_config(self_conditioning=True))
    x = torch.randn(2, 12, 16)
    t = torch.tensor([3, 4])
    plain = model(x, t).pred_x0
    torch.testing.assert_close(model(x, t, self_cond=torch.zeros_like(x)).pred_x0, plain)
    assert not torch.allclose(model(x, t, self_cond=torch.randn_like(x)).pred_x0, plain)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"hidden_size": 30, "num_attention_heads": 4}, "divisible"),
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"noise_schedule": "quadratic"}, "noise_schedule"),
        ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob"),
        ({"eos_token_id": 500}, "outside the vocabulary"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_save_and_load_with_auto_classes(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert isinstance(AutoConfig.from_pretrained(tmp_path), textdiff.TextDiffusionConfig)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, textdiff.TextDiffusionModel)
    for (name, a), (_, b) in zip(tiny_model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
