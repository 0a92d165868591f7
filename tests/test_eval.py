"""The evaluation harness's metrics on hand-made cases with known answers."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import textdiff
from tests.conftest import e2e_texts
from textdiff.data import frame_sequences
from textdiff.evaluation.fluency import teacher_score
from textdiff.evaluation.harness import load_metric
from textdiff.evaluation.likelihood import likelihood_bound
from textdiff.tokenization import train_tokenizer


def test_distinct_n():
    scores = load_metric("distinct_n").compute(predictions=["a b a b", "c"], max_n=3)
    assert scores == {"dist-1": 3 / 5, "dist-2": 2 / 3, "dist-3": 1.0}  # trigrams: (a b a), (b a b)


def test_self_bleu_identical_and_disjoint():
    assert load_metric("self_bleu").compute(predictions=["a b c d e"] * 3)["self_bleu"] == pytest.approx(1.0)
    disjoint = load_metric("self_bleu").compute(predictions=["a b c d e", "f g h i j", "k l m n o"])["self_bleu"]
    assert disjoint < 0.01


def test_bleu_and_rouge_l_against_references():
    bleu = load_metric("bleu")
    assert bleu.compute(predictions=["the cat sat on the mat"], references=[["x y", "the cat sat on the mat"]])[
        "bleu"
    ] == pytest.approx(1.0)
    assert bleu.compute(predictions=["p q r s t"], references=[["a b c d e"]])["bleu"] < 0.01
    rouge = load_metric("rouge_l")
    assert rouge.compute(predictions=["a b c"], references=[["a b c"]])["rouge_l"] == pytest.approx(1.0)
    # LCS 2 of 3 predicted, 2 of 2 reference words: P = 2/3, R = 1, F_1.2 = 2.44 * (2/3) / (1.44 * 2/3 + 1)
    expected = 2.44 * (2 / 3) / (1.44 * 2 / 3 + 1)
    assert rouge.compute(predictions=["a b c"], references=[["a c", "z"]])["rouge_l"] == pytest.approx(expected)


@pytest.fixture(scope="module")
def small_data():
    texts = e2e_texts("train", 600)
    tokenizer = train_tokenizer(texts, "word", min_frequency=3)
    return texts, tokenizer


def test_shuffled_text_has_higher_teacher_perplexity(small_data):
    texts, tokenizer = small_data
    torch.manual_seed(0)
    teacher = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=48,
            n_embd=64,
            n_layer=2,
            n_head=2,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
    )
    optimizer = torch.optim.AdamW(teacher.parameters(), lr=3e-3)
    from textdiff.evaluation.fluency import frame

    framed = frame(texts, tokenizer, 48)
    for step in range(120):
        rows = random.Random(step).sample(framed, 32)
        width = max(map(len, rows))
        ids = torch.tensor([row + [0] * (width - len(row)) for row in rows])
        mask = (ids != 0).long()
        loss = teacher(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    originals = texts[:50]
    shuffled = [" ".join(random.Random(i).sample(t.split(), len(t.split()))) for i, t in enumerate(originals)]
    original_ppl = teacher_score(originals, teacher, tokenizer).perplexity
    assert teacher_score(shuffled, teacher, tokenizer).perplexity > 1.5 * original_ppl
    assert 1.0 < original_ppl < len(tokenizer)


def test_likelihood_bound_is_finite_and_lower_on_corpus_text_than_random_tokens(small_data):
    texts, tokenizer = small_data
    from datasets import Dataset

    ids = frame_sequences(Dataset.from_dict({"text": texts}), tokenizer, 24)[:]["input_ids"]
    torch.manual_seed(0)
    config = textdiff.TextDiffusionConfig(
        vocab_size=len(tokenizer),
        embedding_dim=16,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=24,
        num_diffusion_steps=200,
        hidden_dropout_prob=0.0,
        attention_dropout_prob=0.0,
    )
    model = textdiff.TextDiffusionModel(config)
    objective = textdiff.DiffusionLMLoss(textdiff.NoiseSchedule.from_name("sqrt", 200))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    for step in range(150):
        batch = ids[torch.randint(0, len(ids), (32,), generator=generator)]
        loss = objective(model, batch, generator=generator).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    held = ids[:48]
    random_ids = held.clone()
    words = random_ids > 3
    random_ids[words] = torch.randint(4, len(tokenizer), (int(words.sum()),), generator=generator)
    kwargs = dict(pad_token_id=0, bos_token_id=1, num_timesteps=20, decoder_steps=(0, 20, 50), progress=False)
    corpus_bound = likelihood_bound(model, held, **kwargs)
    random_bound = likelihood_bound(model, random_ids, **kwargs)
    assert torch.isfinite(torch.tensor(corpus_bound.nats_per_token)) and corpus_bound.stderr > 0
    assert corpus_bound.nats_per_token < random_bound.nats_per_token
    assert set(corpus_bound.by_decoder_step) == {0, 20, 50}
    assert corpus_bound.nats_per_token == min(v[0] for v in corpus_bound.by_decoder_step.values())


def test_a_teacher_that_is_not_a_causal_lm_is_one_clear_error(tmp_path, tiny_model):
    from textdiff.evaluation.fluency import load_causal_lm

    tiny_model.save_pretrained(tmp_path / "diffusion")
    with pytest.raises(ValueError, match=r"--teacher .*diffusion holds a 'textdiff' model, not a causal language"):
        load_causal_lm(str(tmp_path / "diffusion"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="--baseline .*empty: no config.json"):
        load_causal_lm(str(tmp_path / "empty"), "--baseline")
