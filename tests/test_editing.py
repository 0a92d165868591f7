"""Editing by partial noising (`model.edit`, `textdiff edit`, `textdiff correct`) on a tiny untrained model with a
word tokenizer of E2E sentences."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import e2e_texts, tiny_config
from transformers import GenerationConfig

import textdiff


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("editing")
    tokenizer = textdiff.train_tokenizer(e2e_texts("train", 200), "word", min_frequency=1)
    torch.manual_seed(0)
    model = textdiff.TextDiffusionModel(
        tiny_config(vocab_size=len(tokenizer), max_position_embeddings=24, prediction_type="logits", min_timestep=10)
    )
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    GenerationConfig(sampler="renoise", num_inference_steps=20, clamp=False).save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def loaded(saved):
    return textdiff.load_pretrained(str(saved))


TEXTS = ["The Eagle serves Italian food near the river .", "The Mill is a pub ."]


def framed(tokenizer, texts):
    ids = tokenizer(texts, padding=True, return_tensors="pt")["input_ids"]
    return ids, [[tokenizer.bos_token_id, *tokenizer(t)["input_ids"], tokenizer.eos_token_id] for t in texts]


def test_strength_zero_returns_the_text(loaded):
    model, tokenizer = loaded
    ids, expected = framed(tokenizer, TEXTS)
    out = model.edit(ids, 0.0, seed=0, return_dict_in_generate=True)
    assert [row[: len(e)] for row, e in zip(out.sequences.tolist(), expected)] == expected
    assert tokenizer.batch_decode(out.sequences, skip_special_tokens=True) == TEXTS
    assert out.timesteps.numel() == 0 and out.history.shape[0] == 0


def test_edit_changes_the_text_and_keeps_the_fixed_words(loaded):
    model, tokenizer = loaded
    ids, expected = framed(tokenizer, TEXTS)
    keep = torch.zeros(ids.shape, dtype=torch.bool)
    keep[:, :2] = True  # "The Eagle", "The Mill"
    out = model.edit(ids, 0.8, keep_mask=keep, seed=0, num_inference_steps=20, return_dict_in_generate=True)
    assert out.sequences[:, 1:3].tolist() == ids[:, :2].tolist()
    assert out.sequences[:, 0].eq(tokenizer.bos_token_id).all()
    assert tokenizer.batch_decode(out.sequences, skip_special_tokens=True) != TEXTS  # an untrained model rewrites
    assert 0 < out.timesteps.numel() < 20 and out.timesteps.max() <= 10 + 0.8 * (100 - 1 - 10)


def test_weaker_edits_take_fewer_steps_and_the_same_seed_repeats(loaded):
    model, tokenizer = loaded
    ids, _ = framed(tokenizer, TEXTS)
    steps = [model.edit(ids, s, seed=0, num_inference_steps=20, return_dict_in_generate=True).timesteps.numel()
             for s in (0.2, 0.5, 1.0)]  # fmt: skip
    assert steps[0] < steps[1] < steps[2] == 20
    assert torch.equal(model.edit(ids, 0.5, seed=3), model.edit(ids, 0.5, seed=3))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strength": 1.5}, r"strength must be a number in \[0, 1\]"),
        ({"strength": True}, r"strength must be a number in \[0, 1\]"),
        ({"input_ids": "bos"}, "without \\[START\\] or \\[END\\]"),
        ({"input_ids": "long"}, "does not fit the model's 24 positions"),
        ({"input_ids": "float"}, "integer word ids"),
        ({"keep_mask": torch.zeros(1, 2, dtype=torch.bool)}, "keep_mask must have input_ids' shape"),
        ({"num_inference_steps": 0}, "num_inference_steps must be at least 1"),
    ],
)
def test_bad_edits_are_clear_errors(loaded, change, message):
    model, tokenizer = loaded
    ids, _ = framed(tokenizer, TEXTS)
    special = {
        "bos": torch.cat([torch.full((2, 1), tokenizer.bos_token_id), ids], 1),
        "long": torch.full((1, 30), 5),
        "float": ids.float(),
    }
    kwargs = {"input_ids": ids, "strength": 0.5, **change}
    kwargs["input_ids"] = special.get(kwargs["input_ids"], kwargs["input_ids"]) if isinstance(change.get("input_ids"), str) else kwargs["input_ids"]  # fmt: skip
    with pytest.raises(ValueError, match=message):
        model.edit(**kwargs)


def test_cli_edit_and_correct(saved, capsys):
    from textdiff.cli import main

    assert main(["edit", "--model", str(saved), "--text", TEXTS[0], "--strength", "0", "--steps", "5"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == TEXTS[0]
    assert main(["edit", "--model", str(saved), "--text", TEXTS[0], "--strength", "0.9", "--keep", "0,1",
                 "--steps", "5", "--num-samples", "2"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()[-2:]
    assert all(line.startswith("The Eagle") for line in lines)
    assert main(["correct", "--model", str(saved), "--text", "The Eagle is is a pub .", "--steps", "5"]) == 0
    assert capsys.readouterr().out.strip()
    with pytest.raises(SystemExit):
        main(["edit", "--model", str(saved), "--text", TEXTS[0], "--strength", "0.5", "--keep", "0,99"])
    assert "--keep indices must be between 0 and" in capsys.readouterr().err


def test_confident_words_never_keep_unknown_words_or_padding(loaded):
    from textdiff.editing import confident_words

    model, tokenizer = loaded
    ids, _ = framed(tokenizer, TEXTS)
    ids[0, 3] = tokenizer.unk_token_id
    everything = confident_words(model, ids, threshold=0.0, generator=torch.Generator().manual_seed(0))
    assert everything.shape == ids.shape
    assert everything.tolist() == ((ids != tokenizer.pad_token_id) & (ids != tokenizer.unk_token_id)).tolist()
    assert not confident_words(model, ids, threshold=1.01).any()
