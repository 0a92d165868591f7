"""Decoding through compiled graphs (`torch_compile=True`): the same text as eager decoding (the whole loop as one
graph, or step by step where a processor acts between the steps), graphs that follow the weights when they change,
and no compiled forward where a gradient is taken."""

from __future__ import annotations

import pytest
import torch

from tests.test_bucketing import prior_model
from textdiff import DecodingConfig
from textdiff.compilation import compiled_forward


@pytest.fixture(scope="module")
def model():
    return prior_model({4: 0.5, 7: 0.5})


def decode(model, compiled: bool, seed: int, **settings) -> torch.Tensor:
    return model.generate(num_return_sequences=1, num_inference_steps=4, sampler="renoise", clamp=False,
                          x0_temperature=0.5, seed=seed, torch_compile=compiled, **settings)  # fmt: skip


def test_compiled_decoding_writes_what_eager_decoding_writes(model):
    # Two windows (4 and 7 positions), so two loop graphs; and a batch decoded in length buckets.
    for seed in range(4):
        assert torch.equal(decode(model, True, seed), decode(model, False, seed))
    assert any(signature[1][0] == "loop" for signature in compiled_forward(model).graphs)  # (training, …)
    # A prompt keeps its words between the steps (a processor): one graph per forward instead.
    prompt = {"input_ids": torch.tensor([[1, 5, 6]]), "max_new_tokens": 4}
    assert torch.equal(decode(model, True, 0, **prompt), decode(model, False, 0, **prompt))
    assert any(signature[1][0] != "loop" for signature in compiled_forward(model).graphs)
    rows = lambda compiled: model.generate(num_return_sequences=6, num_inference_steps=4, sampler="renoise",
                                           seed=9, torch_compile=compiled, bucket_lengths=True)  # fmt: skip
    assert torch.equal(rows(True), rows(False))


def test_compiled_graphs_follow_the_weights_when_they_change(model):
    before = decode(model, True, 0)
    kept = compiled_forward(model)
    assert compiled_forward(model) is kept  # the same weights: the graphs are reused
    with torch.no_grad():
        model.output_logits.bias[5] += 50.0  # the word with id 5 now wins every position
    try:
        after = decode(model, True, 0)
        assert compiled_forward(model) is not kept
        assert torch.equal(after, decode(model, False, 0)) and not torch.equal(after, before)
        assert (after[0, 1:-1] == 5).all()
    finally:
        with torch.no_grad():
            model.output_logits.bias[5] -= 50.0


def test_a_compiled_forward_refuses_a_gradient_and_the_setting_is_validated(model):
    x, t = torch.randn(1, 4, model.config.embedding_dim), torch.tensor([10])
    with pytest.raises(ValueError, match="torch.no_grad"):
        compiled_forward(model)(x, t)
    with pytest.raises(ValueError, match="torch_compile must be bool"):
        DecodingConfig(torch_compile="yes")
