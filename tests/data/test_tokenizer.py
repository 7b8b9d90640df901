"""Tokenizer backends: special tokens as single ids, parity with transformers' Qwen2 tokenizer."""

import pickle

import pytest

from vtjax.data import tokenizer as tok_lib

TEXT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|video_pad|><|video_pad|><|vision_end|>What does the man do? Options:\n"
    "A. He sits down\nB. He leaves<|im_end|>\n<|im_start|>assistant\n<answer>B</answer><|im_end|>"
)


def test_hf_backend_matches_transformers_qwen2_tokenizer(tokenizer_json):
    transformers = pytest.importorskip("transformers")
    ours = tok_lib.load_tokenizer(tokenizer_json)
    ref = transformers.Qwen2TokenizerFast(tokenizer_file=tokenizer_json)
    for text in [TEXT, "plain words, no specials 123", "  leading spaces\n\nand blank lines  "]:
        assert ours.encode(text) == ref(text, add_special_tokens=False)["input_ids"]
    assert ours.decode(ours.encode(TEXT)) == TEXT


@pytest.mark.parametrize("fixture", ["tokenizer_json", "sp_model", "sp_model_plain"])
def test_special_tokens_are_single_ids(request, fixture):
    tok = tok_lib.load_tokenizer(request.getfixturevalue(fixture))
    ids = tok.special_ids
    assert set(ids) == set(tok_lib.SPECIAL_TOKENS)
    assert len(set(ids.values())) == len(ids)  # distinct
    assert max(ids.values()) < tok.vocab_size
    for token, i in ids.items():
        assert tok.encode(token) == [i]
        assert tok.encode(f"ab{token}cd").count(i) == 1
    assert tok.eos_ids[0] == ids[tok_lib.IM_END] and tok.pad_id == ids[tok_lib.ENDOFTEXT]


@pytest.mark.parametrize("fixture", ["tokenizer_json", "sp_model", "sp_model_plain"])
def test_round_trip_and_pickle(request, fixture):
    tok = tok_lib.load_tokenizer(request.getfixturevalue(fixture))
    ids = tok.encode(TEXT)
    assert tok.decode(ids) == TEXT
    plain = tok.decode(ids, skip_special_tokens=True)
    assert "<|" not in plain and "What does the man do?" in plain
    clone = pickle.loads(pickle.dumps(tok))  # grain workers receive the tokenizer pickled
    assert clone.encode(TEXT) == ids and clone.special_ids == tok.special_ids


def test_sentencepiece_appends_missing_specials(sp_model, sp_model_plain):
    import sentencepiece as spm

    plain = tok_lib.load_tokenizer(sp_model_plain)
    size = spm.SentencePieceProcessor(model_file=sp_model_plain).get_piece_size()
    assert sorted(plain.special_ids.values()) == list(range(size, size + len(tok_lib.SPECIAL_TOKENS)))
    assert plain.vocab_size == size + len(tok_lib.SPECIAL_TOKENS)
    known = tok_lib.load_tokenizer(sp_model)
    sp = spm.SentencePieceProcessor(model_file=sp_model)
    assert all(sp.id_to_piece(i) == t for t, i in known.special_ids.items())
    assert known.vocab_size == sp.get_piece_size()


def test_load_tokenizer_dispatch(tmp_path, tokenizer_json):
    assert isinstance(tok_lib.load_tokenizer(tokenizer_json.rsplit("/", 1)[0]), tok_lib.HFTokenizer)
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        tok_lib.load_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="expected a tokenizer.json"):
        tok_lib.load_tokenizer(tmp_path / "vocab.txt")
    with pytest.raises(KeyError, match="not one of the special tokens"):
        tok_lib.load_tokenizer(tokenizer_json).token_to_id("<think>")
