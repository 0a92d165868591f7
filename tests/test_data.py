import json
import time

import pytest
import torch

from textdiff.data import BatchOrder, frame_sequences, load_corpus
from textdiff.tokenization import train_tokenizer


def test_bundled_e2e_loads_through_datasets():
    train = load_corpus("data/e2e", "train")
    assert len(train) == 42061
    assert set(train.column_names) >= {"mr", "text"}
    assert len(load_corpus("data/e2e", "test")) == 4693


def test_local_file_formats(tmp_path):
    (tmp_path / "train.csv").write_text("sentence\nthe cat sat .\na dog ran .\n")
    assert load_corpus(str(tmp_path), "train", "sentence")["sentence"] == ["the cat sat .", "a dog ran ."]
    (tmp_path / "corpus.txt").write_text("one line\nanother line\n")
    assert len(load_corpus(str(tmp_path / "corpus.txt"), "train")) == 2


@pytest.mark.parametrize(
    "setup, source, column, message",
    [
        (lambda d: (d / "train.jsonl").write_text(json.dumps({"body": "x"}) + "\n"), "{d}", "text", "no column 'text'"),
        (lambda d: (d / "train.jsonl").write_text(""), "{d}", "text", "empty|no column"),
        (lambda d: None, "{d}", "text", "No file for split 'train'"),
        (lambda d: None, "{d}/missing.jsonl", "text", "does not exist"),
        (lambda d: (d / "train.xml").write_text("<a/>"), "{d}/train.xml", "text", "unknown file type"),
    ],
)
def test_bad_corpora_are_clear_errors(tmp_path, setup, source, column, message):
    setup(tmp_path)
    with pytest.raises(ValueError, match=message):
        load_corpus(source.format(d=tmp_path), "train", column)


def test_hub_id_offline_fails_fast_with_the_fix(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ValueError, match="Point data.dataset at local files"):
        load_corpus("e2e_nlg", "train", "human_reference")
    assert time.monotonic() - start < 5


def test_padded_framing(tiny_corpus):
    corpus = load_corpus(str(tiny_corpus), "train")
    tokenizer = train_tokenizer(corpus["text"], "word", min_frequency=1)
    framed = frame_sequences(corpus, tokenizer, 24)[:]["input_ids"]
    assert framed.shape[1] == 24
    assert torch.all(framed[:, 0] == tokenizer.bos_token_id)
    assert torch.all((framed == tokenizer.eos_token_id).sum(1) == 1)  # over-long sentences were dropped
    first = tokenizer(corpus["text"][0], add_special_tokens=False)["input_ids"]
    if len(first) <= 22:
        assert framed[0, 1 : len(first) + 1].tolist() == first
        assert torch.all(framed[0, len(first) + 2 :] == tokenizer.pad_token_id)


def test_packed_framing_has_no_padding(tiny_corpus):
    corpus = load_corpus(str(tiny_corpus), "train")
    tokenizer = train_tokenizer(corpus["text"], "word", min_frequency=1)
    framed = frame_sequences(corpus, tokenizer, 16, packing=True)[:]["input_ids"]
    assert framed.shape[1] == 16
    assert not torch.any(framed == tokenizer.pad_token_id)
    total = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 2 for t in corpus["text"])
    assert framed.shape[0] == total // 16


def test_batch_order_is_a_function_of_step_and_covers_each_epoch():
    order = BatchOrder(num_examples=10, global_batch_size=4, seed=1)
    first_epoch = torch.cat([order.indices(0), order.indices(1), order.indices(2, rank=0, world_size=2)])
    assert sorted(first_epoch.tolist()) == list(range(10))  # steps 0, 1 and half of 2 = one epoch
    again = BatchOrder(num_examples=10, global_batch_size=4, seed=1)
    assert torch.equal(again.indices(7), order.indices(7))
    both = torch.cat([order.indices(5, 0, 2), order.indices(5, 1, 2)])
    assert torch.equal(both, order.indices(5))
