import pytest
from transformers import AutoTokenizer

from tests.conftest import e2e_texts
from textdiff.tokenization import SPECIAL_TOKENS, check_tokenizer_matches, train_tokenizer


def test_word_vocabulary_of_e2e_has_the_papers_821_entries():
    tokenizer = train_tokenizer(e2e_texts("train"), "word", min_frequency=11)
    assert len(tokenizer) == 821
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3]) == SPECIAL_TOKENS


@pytest.mark.parametrize("kind", ["word", "bpe", "unigram"])
def test_tokenizer_save_load_round_trip(tmp_path, kind):
    texts = e2e_texts("train", 2000)
    tokenizer = train_tokenizer(texts, kind, min_frequency=2, vocab_size=300)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert len(loaded) == len(tokenizer)
    assert (loaded.pad_token_id, loaded.bos_token_id, loaded.eos_token_id, loaded.unk_token_id) == (0, 1, 2, 3)
    for text in texts[:20]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert loaded(text, add_special_tokens=False)["input_ids"] == ids
        framed = [loaded.bos_token_id, *ids, loaded.eos_token_id, loaded.pad_token_id]
        decoded = loaded.decode(framed, skip_special_tokens=True)
        assert decoded == tokenizer.decode(ids, skip_special_tokens=True)
        if kind != "word":  # subword vocabularies cover every sentence; the word one maps rare words to [UNK]
            assert decoded == text


def test_word_decoding_restores_whitespace_tokenised_text():
    tokenizer = train_tokenizer(e2e_texts("train", 3000), "word", min_frequency=1)
    text = e2e_texts("train", 1)[0]
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_unknown_kind_and_mismatched_vocabulary_are_clear_errors():
    with pytest.raises(ValueError, match="Unknown tokenizer kind"):
        train_tokenizer(["a b"], "char")
    tokenizer = train_tokenizer(e2e_texts("train", 500), "word", min_frequency=2)
    with pytest.raises(ValueError, match="saved with the model"):
        check_tokenizer_matches(tokenizer, len(tokenizer) + 1)


def test_encode_infill_frames_text_with_blanks():
    from textdiff.tokenization import encode_infill

    tokenizer = train_tokenizer(e2e_texts("train", 3000), "word", min_frequency=1)
    ids, mask = encode_infill(tokenizer, "The Eagle is a <mask> <mask> near Burger King .", 14)
    words = tokenizer.convert_ids_to_tokens(ids)
    assert words[:5] == ["[START]", "The", "Eagle", "is", "a"] and words[9:12] == ["King", ".", "[END]"]
    assert mask == [False] * 5 + [True, True] + [False] * 7
    with pytest.raises(ValueError, match="no <mask>"):
        encode_infill(tokenizer, "The Eagle .", 14)
    with pytest.raises(ValueError, match="needs 12 positions"):
        encode_infill(tokenizer, "The Eagle is a <mask> <mask> near Burger King .", 11)
    with pytest.raises(ValueError, match="not in the model's vocabulary"):
        encode_infill(tokenizer, "The Zorblax <mask> .", 14)
