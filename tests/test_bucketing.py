"""Bucketing by length: batches of nearly one length cut to their longest sentence, a learned prior over window
lengths, and decoding (and the likelihood bound) in windows drawn from it."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import tiny_config
from textdiff import TextDiffusionModel
from textdiff.data import BatchOrder, LengthBucketedOrder, length_prior
from textdiff.evaluation.likelihood import sequence_bound
from textdiff.guidance import Length, Mentions, PartsOfSpeech, Spans

PAD, BOS, EOS = 0, 1, 2


def prior_over(lengths: dict[int, float], max_length: int = 12) -> list[float]:
    prior = [0.0] * (max_length + 1)
    for length, p in lengths.items():
        prior[length] = p
    return prior


def prior_model(lengths: dict[int, float], **overrides) -> TextDiffusionModel:
    torch.manual_seed(0)
    config = tiny_config(prediction_type="logits", embedding_scale=4.0, length_prior=prior_over(lengths), **overrides)
    return TextDiffusionModel(config).eval()


def test_length_buckets_hold_nearly_one_length_and_cover_each_example_once_per_epoch():
    lengths = torch.randint(3, 17, (500,), generator=torch.Generator().manual_seed(0))
    order = LengthBucketedOrder(lengths, global_batch_size=8, seed=3, pool_batches=10)
    epoch = torch.cat([order.indices(step) for step in range(order.batches_per_epoch)])
    assert len(epoch) == 8 * (500 // 8) and len(set(epoch.tolist())) == len(epoch)  # no repeats in an epoch
    spread = [int(lengths[order.indices(s)].max() - lengths[order.indices(s)].min()) for s in range(20)]
    shuffled = BatchOrder(500, 8, seed=3)
    mixed = [int(lengths[shuffled.indices(s)].max() - lengths[shuffled.indices(s)].min()) for s in range(20)]
    assert sum(spread) / 20 <= 2 < sum(mixed) / 20  # buckets are tight; plain batches span the lengths
    # A pure function of (seed, step): a fresh order resumes anywhere; ranks split one global batch.
    again = LengthBucketedOrder(lengths, global_batch_size=8, seed=3, pool_batches=10)
    assert torch.equal(again.indices(70), order.indices(70)) and order.epoch(62) == 1.0
    halves = torch.cat([order.indices(5, rank, 2) for rank in (0, 1)])
    assert torch.equal(halves, order.indices(5))
    with pytest.raises(ValueError, match="full batch"):
        LengthBucketedOrder(lengths[:4], global_batch_size=8, seed=0)


def test_length_prior_is_the_share_of_each_length_and_is_validated():
    assert length_prior(torch.tensor([3, 3, 5, 4]), 6) == [0, 0, 0, 0.5, 0.25, 0.25, 0]
    for bad, message in [
        (prior_over({5: 1.0})[:-1], "13 non-negative"),
        (prior_over({5: 0.5}), "summing to 1"),
        (prior_over({1: 0.5, 5: 0.5}), "ℓ < 2"),
    ]:
        with pytest.raises(ValueError, match=message):
            tiny_config(length_prior=bad)


def test_a_masked_window_is_denoised_exactly_as_the_window_alone():
    model = prior_model({5: 1.0})
    x, t = torch.randn(1, 12, 16), torch.tensor([40])
    mask = torch.arange(12)[None] < 5
    full = model(x, t, attention_mask=mask).logits[:, :5]
    torch.testing.assert_close(full, model(x[:, :5], t).logits)


def test_generation_draws_each_rows_window_from_the_prior_and_pads_after_it():
    model = prior_model({4: 0.5, 7: 0.5})
    ids = model.generate(num_return_sequences=40, num_inference_steps=5, seed=0)
    assert ids.shape[1] == 7  # only the longest window drawn is decoded
    windows = ((ids != PAD) | (torch.arange(7) < 2)).long().cumprod(-1).sum(-1)  # positions before the padding
    assert set(windows.tolist()) <= set(range(2, 8))
    long_rows = (ids[:, 4:] != PAD).any(-1)
    assert 0 < long_rows.sum() < 40  # both windows are drawn
    # Exact windows from the controls: Length(n) and PartsOfSpeech(tags) need n + 2 positions.
    ids = model.generate(num_return_sequences=2, num_inference_steps=5, seed=0, controls=[Length(5)])
    assert ids.shape[1] == 12 and (ids[:, 6] == EOS).all() and (ids[:, 7:] == PAD).all()


def test_a_controls_needed_words_are_never_ended_early():
    """A span over words 2 … 4 needs six words (one after the span), a mention of three words three: rounding
    writes only words (never START / END / PAD / UNK) before the earliest END the row's controls allow, whatever the
    window and the model."""
    from textdiff.generation import _needed_words

    needed = _needed_words([[Spans([(2, 4, "PP")])], [Length(2)], [], [Mentions([10, 11, 12])]], 12)
    assert needed[0].nonzero().flatten().tolist() == [1, 2, 3, 4, 5, 6]
    assert needed[1].nonzero().flatten().tolist() == [1, 2] and not needed[2].any()
    assert needed[3].nonzero().flatten().tolist() == [1, 2, 3]
    assert _needed_words([[], []], 12) is None
    # a tree whose root is a phrase (no clause): its Length fixes END, the spans do not push past it
    tree = _needed_words([[Spans([(0, 2, "NP"), (1, 2, "NP")]), Length(3)]], 12)
    assert tree[0].nonzero().flatten().tolist() == [1, 2, 3]
    model = prior_model({4: 0.9, 9: 0.1})  # mostly windows too short for the mention
    with torch.no_grad():  # an untrained model: make START, then END and PAD the likeliest words everywhere
        model.output_logits.bias.zero_()
        model.output_logits.bias[[BOS, EOS, PAD]] = torch.tensor([30.0, 20.0, 20.0])
    ids = model.generate(num_return_sequences=8, num_inference_steps=5, seed=0, controls=[Mentions([10, 11, 12])])
    assert (ids[:, 0] == BOS).all() and not torch.isin(ids[:, 1:4], torch.tensor([PAD, BOS, EOS])).any()
    assert (ids[:, 4] == BOS).all()  # past what the mention needs, the likeliest word is written again


def test_bound_of_a_prior_model_adds_the_window_and_ignores_the_padding():
    model = prior_model({5: 0.25, 6: 0.75})
    ids = torch.tensor([[BOS, 10, 11, 12, EOS] + [PAD] * 7, [BOS, 10, 11, 12, 13, EOS] + [PAD] * 6])
    parts = sequence_bound(model, ids, num_timesteps=5, generator=torch.Generator().manual_seed(0))[0]
    torch.testing.assert_close(parts["length"], torch.tensor([-math.log(0.25), -math.log(0.75)]))
    # The prior term counts the window only: d/2 · (ᾱ‖e‖²/d − ᾱ − log(1 − ᾱ)) per position, with ‖e‖ = 4.
    other = ids.clone()
    other[:, 7:] = 50  # words where the window ended: not part of what the model generates
    other[other == PAD] = 50
    other_parts = sequence_bound(model, other, num_timesteps=5, generator=torch.Generator().manual_seed(0))[0]
    assert other_parts["prior"][0] > parts["prior"][0]  # more positions count once they are not padding
    assert torch.isfinite(parts["diffusion"]).all() and (parts["reconstruction"] > 0).all()


def test_controls_fix_or_bound_the_window():
    assert PartsOfSpeech(["DET", "NOUN", "VERB"]).window() == (5, True)
    assert Length(4).window() == (6, True)
    assert Spans([(0, 5, "S"), (0, 1, "NP")]).window() == (8, True)  # a root span: six words exactly
    assert Spans([(2, 4, "PP")]).window() == (8, False)  # at least six words: one follows the span
    assert Spans([(0, 1, "NP")]).window() == (5, False)  # a subject at the start is not the sentence: more follows
    assert Spans([(0, 0, "NP"), (0, 3, "NP")]).window() == (7, False)
