"""Fixtures for the data tests: tiny mp4 files and tiny tokenizers, built in tmp dirs."""

from __future__ import annotations

import os

import av
import numpy as np
import pytest

from vtjax.data import tokenizer as tok_lib

CORPUS = [
    "You are a helpful assistant.",
    "What does the man do after opening the door? Options:\nA. He sits down\nB. He leaves",
    "<time>00:01-00:04</time> <caption>a man opens a door</caption> <think>he walks out</think>",
    "Hmm, the answer is <answer>B</answer>. Watch the video and answer with one letter.",
    "The quick brown fox jumps over the lazy dog 0123456789 times, then rests.",
    "Reason over the video with time, caption and think blocks, then give only the letter.",
]


def write_video(
    path, *, frames=24, fps=12, width=96, height=64, gop=None, bframes=None, codec="libx264", faststart=False,
    codec_options=None,
):
    """Writes an mp4 whose frames differ (moving bar, changing colour); returns the path.

    faststart puts the index (moov) before the frames, so a truncated copy still opens;
    codec_options go to the encoder (e.g. {"preset": "ultrafast"} for large test frames).
    """
    options = {"movflags": "faststart"} if faststart else {}
    container = av.open(os.fspath(path), "w", options=options)
    stream = container.add_stream(codec, rate=fps, options=codec_options or {})
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    if gop is not None:
        stream.codec_context.gop_size = gop
    if bframes is not None:
        stream.codec_context.max_b_frames = bframes
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]  # [1, W]
    for i in range(frames):
        img = np.zeros((height, width, 3), np.uint8)
        img[..., 0] = (i * 9) % 256
        img[..., 2] = x.astype(np.uint8)
        img[:, (i * 5) % width : (i * 5) % width + 6, 1] = 230
        img[(i * 3) % height] = 255
        for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return os.fspath(path)


@pytest.fixture(scope="session")
def video_factory(tmp_path_factory):
    """Returns make(name, **write_video kwargs) -> path, caching by name."""
    root = tmp_path_factory.mktemp("videos")
    made = {}

    def make(name, **kwargs):
        if name not in made:
            made[name] = write_video(root / name, **kwargs)
        return made[name]

    return make


@pytest.fixture(scope="session")
def tokenizer_json(tmp_path_factory):
    """A byte-level BPE tokenizer.json with Qwen's special tokens (Qwen's pre-tokenizer split)."""
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    split = pre_tokenizers.Split(
        tokenizers.Regex(
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+"
        ),
        behavior="isolated",
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=list(tok_lib.SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(os.fspath(path))
    return os.fspath(path)


def _train_sentencepiece(path, user_symbols):
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20),
        model_prefix=os.fspath(path),
        vocab_size=120,
        model_type="bpe",
        character_coverage=1.0,
        normalization_rule_name="identity",
        user_defined_symbols=list(tok_lib.SPECIAL_TOKENS) if user_symbols else [],
        minloglevel=2,
    )
    return os.fspath(path) + ".model"


@pytest.fixture(scope="session")
def sp_model(tmp_path_factory):
    """sentencepiece model that knows Qwen's special tokens as user symbols."""
    return _train_sentencepiece(tmp_path_factory.mktemp("sp") / "with_specials", True)


@pytest.fixture(scope="session")
def sp_model_plain(tmp_path_factory):
    """sentencepiece model without the special tokens (they get appended ids)."""
    return _train_sentencepiece(tmp_path_factory.mktemp("sp") / "plain", False)
