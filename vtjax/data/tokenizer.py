"""One tokenizer interface over two backends: `tokenizers` (tokenizer.json) and sentencepiece.

Qwen's special tokens always resolve to single ids. The `tokenizers` backend
reads them from tokenizer.json (registering any that are missing); the
sentencepiece backend uses the model's piece when it has one (train it with
`user_defined_symbols`) and otherwise appends ids after the model's vocab.
Text is split around special tokens before the plain segments are encoded,
so a special token written in the text is that token, in both backends.
"""

from __future__ import annotations

import abc
import os
import re
from collections.abc import Sequence

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
ENDOFTEXT = "<|endoftext|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
VISION_PAD = "<|vision_pad|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
# Order matches Qwen2.5-VL's ids (151643, 151644, 151645, 151652 ... 151656).
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, VISION_START, VISION_END, VISION_PAD, IMAGE_PAD, VIDEO_PAD)

_SPECIAL_RE = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")


class Tokenizer(abc.ABC):
    """Text <-> ids with Qwen's special tokens as single ids."""

    special_ids: dict[str, int]  # every entry of SPECIAL_TOKENS -> its id

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Number of ids (max id + 1), including appended special tokens."""

    @abc.abstractmethod
    def _encode_plain(self, text: str) -> list[int]:
        """Encodes text that contains no special token."""

    @abc.abstractmethod
    def _decode_plain(self, ids: Sequence[int]) -> str:
        """Decodes ids that contain no special token."""

    def encode(self, text: str) -> list[int]:
        """Ids of `text`; special tokens written in the text become their ids."""
        ids: list[int] = []
        for piece in _SPECIAL_RE.split(text):
            if piece in self.special_ids:
                ids.append(self.special_ids[piece])
            elif piece:
                ids.extend(self._encode_plain(piece))
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of `ids`; special tokens are written out unless skipped."""
        by_id = {v: k for k, v in self.special_ids.items()}
        out, run = [], []
        for i in (int(i) for i in ids):
            if i in by_id:
                if run:
                    out.append(self._decode_plain(run))
                    run = []
                if not skip_special_tokens:
                    out.append(by_id[i])
            else:
                run.append(i)
        if run:
            out.append(self._decode_plain(run))
        return "".join(out)

    def token_to_id(self, token: str) -> int:
        """Id of a special token."""
        if token not in self.special_ids:
            raise KeyError(f"{token!r} is not one of the special tokens {SPECIAL_TOKENS}.")
        return self.special_ids[token]

    @property
    def pad_id(self) -> int:
        """Padding id: `<|endoftext|>`, as Qwen's tokenizer config sets it."""
        return self.special_ids[ENDOFTEXT]

    @property
    def eos_ids(self) -> tuple[int, ...]:
        """Ids that end a generated answer: `<|im_end|>`, then `<|endoftext|>`."""
        return (self.special_ids[IM_END], self.special_ids[ENDOFTEXT])


class HFTokenizer(Tokenizer):
    """Backend over a `tokenizers` tokenizer.json (Qwen's byte-level BPE)."""

    def __init__(self, path: str):
        self._json = open(path, encoding="utf-8").read()
        self._setup()

    def _setup(self):
        import tokenizers  # pylint: disable=import-outside-toplevel

        self._tok = tokenizers.Tokenizer.from_str(self._json)
        missing = [t for t in SPECIAL_TOKENS if self._tok.token_to_id(t) is None]
        # Registering is idempotent; it also makes in-vocab specials match as one token.
        self._tok.add_special_tokens(
            [tokenizers.AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]
        )
        self.special_ids = {t: self._tok.token_to_id(t) for t in SPECIAL_TOKENS}
        self.appended = tuple(missing)

    def __getstate__(self):
        return {"json": self._json}

    def __setstate__(self, state):
        self._json = state["json"]
        self._setup()

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def _encode_plain(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def _decode_plain(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)


class SentencePieceTokenizer(Tokenizer):
    """Backend over a sentencepiece model (small models trained here, e.g. the demo)."""

    def __init__(self, path: str | None = None, *, model_proto: bytes | None = None):
        if model_proto is None:
            with open(path, "rb") as f:
                model_proto = f.read()
        self._proto = model_proto
        self._setup()

    def _setup(self):
        import sentencepiece as spm  # pylint: disable=import-outside-toplevel

        self._sp = spm.SentencePieceProcessor(model_proto=self._proto)
        size = self._sp.get_piece_size()
        self.special_ids, extra = {}, 0
        for t in SPECIAL_TOKENS:
            pid = self._sp.piece_to_id(t)
            if pid == self._sp.unk_id() and t != self._sp.id_to_piece(pid):
                pid, extra = size + extra, extra + 1  # not in the model: append after its vocab
            self.special_ids[t] = pid
        self._vocab_size = size + extra

    def __getstate__(self):
        return {"proto": self._proto}

    def __setstate__(self, state):
        self._proto = state["proto"]
        self._setup()

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def _encode_plain(self, text: str) -> list[int]:
        return list(self._sp.encode(text, out_type=int))

    def _decode_plain(self, ids: Sequence[int]) -> str:
        return self._sp.decode(list(ids))


def load_tokenizer(path: str) -> Tokenizer:
    """Loads `tokenizer.json` (or a directory holding one) or a sentencepiece `.model`."""
    path = os.fspath(path)
    if os.path.isdir(path):
        for name in ("tokenizer.json", "tokenizer.model", "spm.model"):
            if os.path.isfile(os.path.join(path, name)):
                return load_tokenizer(os.path.join(path, name))
        raise FileNotFoundError(f"{path} holds no tokenizer.json or sentencepiece .model file.")
    if path.endswith(".json"):
        return HFTokenizer(path)
    if path.endswith(".model"):
        return SentencePieceTokenizer(path)
    raise ValueError(f"{path}: expected a tokenizer.json or a sentencepiece .model file.")
