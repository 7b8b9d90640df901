"""Qwen2.5-VL configuration: vision and text parts, Hub config.json round trip, presets.

Field values of the presets are those of the Hub's config.json files; a
checkpoint's own config.json always wins (``from_hf_dict``), since the
transformers class defaults differ from the published files (e.g. the vision
``hidden_size`` defaults to 3584 in the class but is 1280 in every checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from vtjax import errors
from vtjax.models.qwen2_5_vl.lora import LoraSpec

# Keys transformers writes into every config.json that carry no architecture
# information (bookkeeping, generation defaults, training-only switches).
_HF_BOOKKEEPING_KEYS = frozenset({
    "_attn_implementation_autoset", "_name_or_path", "add_cross_attention", "architectures",
    "attention_dropout", "bad_words_ids", "begin_suppress_tokens", "chunk_size_feed_forward",
    "cross_attention_hidden_size", "decoder_start_token_id", "diversity_penalty", "do_sample",
    "early_stopping", "encoder_no_repeat_ngram_size", "exponential_decay_length_penalty",
    "finetuning_task", "forced_bos_token_id", "forced_eos_token_id", "id2label", "is_decoder",
    "is_encoder_decoder", "label2id", "length_penalty", "max_length", "max_window_layers",
    "min_length", "model_type", "no_repeat_ngram_size", "num_beam_groups", "num_beams",
    "num_return_sequences", "output_attentions", "output_hidden_states", "output_scores",
    "prefix", "problem_type", "pruned_heads", "remove_invalid_values", "repetition_penalty",
    "return_dict", "return_dict_in_generate", "sep_token_id", "sliding_window",
    "suppress_tokens", "task_specific_params", "temperature", "tf_legacy_loss",
    "tie_encoder_decoder", "tokenizer_class", "top_k", "top_p", "torch_dtype", "torchscript",
    "transformers_version", "typical_p", "use_bfloat16", "use_cache", "vision_token_id",
    "initializer_range",
})
_HF_VISION_BOOKKEEPING_KEYS = _HF_BOOKKEEPING_KEYS | {"spatial_patch_size", "in_chans"}

ATTENTION_IMPLS = ("xla", "pallas", "cudnn", "auto")
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch", "save_attention_out")
DTYPES = ("float32", "bfloat16", "float16")


ConfigError = errors.ConfigError  # re-exported: callers catch vtjax.models.qwen2_5_vl.config.ConfigError


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """The ViT with window attention that turns pixel patches into LLM tokens."""

    depth: int = 32  # number of transformer blocks
    hidden_size: int = 1280  # width of the ViT blocks
    intermediate_size: int = 3420  # SwiGLU MLP width inside the ViT
    num_heads: int = 16  # attention heads (head_dim = hidden_size / num_heads = 80)
    in_channels: int = 3  # RGB
    patch_size: int = 14  # spatial patch side in pixels
    temporal_patch_size: int = 2  # frames folded into one patch
    spatial_merge_size: int = 2  # merger folds merge x merge patches into one LLM token
    window_size: int = 112  # window side in pixels for windowed blocks (4x4 merged tokens)
    fullatt_block_indexes: tuple[int, ...] = (7, 15, 23, 31)  # blocks attending per frame
    tokens_per_second: int = 2  # temporal position ids advanced per second of video
    out_hidden_size: int = 3584  # merger output width = text hidden size
    hidden_act: str = "silu"  # MLP activation
    attention_impl: str = "auto"  # xla | pallas | cudnn | auto (pallas on GPU/TPU)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def merge_unit(self) -> int:
        """Patches folded into one merged (LLM) token."""
        return self.spatial_merge_size ** 2

    @property
    def window_merged(self) -> int:
        """Window side in merged tokens (112 px / 2 / 14 = 4)."""
        return self.window_size // self.spatial_merge_size // self.patch_size

    @property
    def window_patches(self) -> int:
        """Patches in one full window: the longest window-attention segment."""
        return self.window_merged ** 2 * self.merge_unit

    @property
    def patch_dim(self) -> int:
        """Values in one row of pixel_values: C * T * P * P = 1176."""
        return self.in_channels * self.temporal_patch_size * self.patch_size ** 2


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """The Qwen2 decoder with multimodal rotary position embeddings."""

    vocab_size: int = 152064  # token embedding rows
    hidden_size: int = 3584  # model width
    intermediate_size: int = 18944  # SwiGLU MLP width
    num_hidden_layers: int = 28  # decoder layers
    num_attention_heads: int = 28  # query heads (head_dim = hidden / heads = 128)
    num_key_value_heads: int = 4  # shared K/V heads (GQA)
    rms_norm_eps: float = 1e-6  # RMSNorm epsilon
    rope_theta: float = 1_000_000.0  # rotary base
    mrope_section: tuple[int, int, int] = (16, 24, 24)  # rotary freqs for t / h / w planes
    max_position_embeddings: int = 128000  # informational; positions are not clipped
    tie_word_embeddings: bool = False  # lm_head shares the embedding matrix (3B)
    hidden_act: str = "silu"  # MLP activation
    attention_impl: str = "auto"  # xla | pallas | cudnn | auto (pallas on GPU/TPU)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclasses.dataclass(frozen=True)
class Qwen25VLConfig:
    """Full model config: vision + text parts, special token ids and runtime policy."""

    vision: VisionConfig = VisionConfig()
    text: TextConfig = TextConfig()
    image_token_id: int = 151655  # <|image_pad|>
    video_token_id: int = 151656  # <|video_pad|>
    vision_start_token_id: int = 151652  # <|vision_start|>
    vision_end_token_id: int = 151653  # <|vision_end|>
    bos_token_id: int | None = 151643  # <|endoftext|>
    eos_token_id: int | None = 151645  # <|im_end|>
    pad_token_id: int | None = None  # processors pad with <|endoftext|>; None when unset
    # Runtime policy (not part of the Hub file).
    dtype: str = "float32"  # compute dtype of activations and matmuls (bfloat16 on accelerators)
    param_dtype: str = "float32"  # storage dtype of the parameters
    scan_layers: bool = True  # run layers under nn.scan: compile time independent of depth
    remat_policy: str = "none"  # none | full | dots | dots_no_batch | save_attention_out
    lora: LoraSpec | None = None  # low-rank adapters on the selected projections (lora.py); None = none

    def __post_init__(self):
        _validate(self)

    # --- Hugging Face config.json round trip -------------------------------------------

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any], **runtime: Any) -> "Qwen25VLConfig":
        """Builds a config from a Hub config.json dict; ``runtime`` sets dtype/scan/remat."""
        d = dict(d)
        vision_d = dict(d.pop("vision_config", None) or {})
        if not vision_d:
            raise ConfigError("config.json has no 'vision_config': not a Qwen2.5-VL checkpoint")
        model_type = d.get("model_type")
        if model_type not in (None, "qwen2_5_vl"):
            raise ConfigError(f"model_type={model_type!r}; expected 'qwen2_5_vl'")
        if d.get("use_sliding_window"):
            raise ConfigError("use_sliding_window=true is not supported (Qwen2.5-VL uses full attention)")
        d.pop("use_sliding_window", None)
        rope = dict(d.pop("rope_scaling", None) or {})
        rope_type = rope.pop("rope_type", None) or rope.pop("type", "default")
        rope.pop("type", None)
        if rope_type not in ("mrope", "default"):
            raise ConfigError(f"rope_scaling.type={rope_type!r} is not supported; expected 'mrope'")
        if "mrope_section" not in rope:
            raise ConfigError("rope_scaling.mrope_section is missing")
        mrope_section = tuple(rope.pop("mrope_section"))
        if rope:
            raise ConfigError(f"unknown field(s) in rope_scaling: {sorted(rope)}")

        text_fields = {f.name for f in dataclasses.fields(TextConfig)} - {"mrope_section", "attention_impl"}
        top_fields = {"image_token_id", "video_token_id", "vision_start_token_id",
                      "vision_end_token_id", "bos_token_id", "eos_token_id", "pad_token_id"}
        text_kw = {k: d.pop(k) for k in list(d) if k in text_fields}
        top_kw = {k: d.pop(k) for k in list(d) if k in top_fields}
        unknown = sorted(k for k in d if k not in _HF_BOOKKEEPING_KEYS)
        if unknown:
            raise ConfigError(f"unknown field(s) in config.json: {unknown}")
        if isinstance(top_kw.get("eos_token_id"), list):
            top_kw["eos_token_id"] = top_kw["eos_token_id"][0]

        vision_fields = {f.name for f in dataclasses.fields(VisionConfig)} - {"attention_impl"}
        if "in_chans" in vision_d and "in_channels" not in vision_d:
            vision_d["in_channels"] = vision_d["in_chans"]
        vision_kw = {k: vision_d.pop(k) for k in list(vision_d) if k in vision_fields}
        unknown = sorted(k for k in vision_d if k not in _HF_VISION_BOOKKEEPING_KEYS)
        if unknown:
            raise ConfigError(f"unknown field(s) in config.json vision_config: {unknown}")
        if "fullatt_block_indexes" in vision_kw:
            vision_kw["fullatt_block_indexes"] = tuple(vision_kw["fullatt_block_indexes"])
        for name, value in text_kw.items():
            _check_type(f"config.json {name}", value, TextConfig, name)
        for name, value in vision_kw.items():
            _check_type(f"config.json vision_config.{name}", value, VisionConfig, name)
        return cls(vision=VisionConfig(**vision_kw),
                   text=TextConfig(mrope_section=mrope_section, **text_kw), **top_kw, **runtime)

    def to_hf_dict(self) -> dict[str, Any]:
        """The Hub config.json dict that transformers' Qwen2_5_VLConfig reads back."""
        t, v = self.text, self.vision
        d = {
            "architectures": ["Qwen2_5_VLForConditionalGeneration"],
            "model_type": "qwen2_5_vl",
            "vocab_size": t.vocab_size,
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_hidden_layers": t.num_hidden_layers,
            "num_attention_heads": t.num_attention_heads,
            "num_key_value_heads": t.num_key_value_heads,
            "hidden_act": t.hidden_act,
            "rms_norm_eps": t.rms_norm_eps,
            "rope_theta": t.rope_theta,
            "rope_scaling": {"type": "mrope", "mrope_section": list(t.mrope_section)},
            "max_position_embeddings": t.max_position_embeddings,
            "tie_word_embeddings": t.tie_word_embeddings,
            "use_sliding_window": False,
            "attention_dropout": 0.0,
            "torch_dtype": self.param_dtype,
            "image_token_id": self.image_token_id,
            "video_token_id": self.video_token_id,
            "vision_start_token_id": self.vision_start_token_id,
            "vision_end_token_id": self.vision_end_token_id,
            "vision_config": {
                "model_type": "qwen2_5_vl",
                "depth": v.depth,
                "hidden_size": v.hidden_size,
                "intermediate_size": v.intermediate_size,
                "num_heads": v.num_heads,
                "in_channels": v.in_channels,
                "patch_size": v.patch_size,
                "temporal_patch_size": v.temporal_patch_size,
                "spatial_merge_size": v.spatial_merge_size,
                "window_size": v.window_size,
                "fullatt_block_indexes": list(v.fullatt_block_indexes),
                "tokens_per_second": v.tokens_per_second,
                "out_hidden_size": v.out_hidden_size,
                "hidden_act": v.hidden_act,
            },
        }
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if getattr(self, name) is not None:
                d[name] = getattr(self, name)
        return d

    @classmethod
    def from_json_file(cls, path, **runtime: Any) -> "Qwen25VLConfig":
        with open(path) as f:
            return cls.from_hf_dict(json.load(f), **runtime)

    def replace(self, **changes: Any) -> "Qwen25VLConfig":
        """A copy with top-level fields (or ``vision=`` / ``text=`` parts) replaced."""
        return dataclasses.replace(self, **changes)

    # --- Presets -----------------------------------------------------------------------

    @classmethod
    def preset(cls, name: str, **runtime: Any) -> "Qwen25VLConfig":
        """One of "3b", "7b", "32b", "72b" (the Instruct checkpoints) or "tiny"."""
        if str(name).lower() not in PRESETS:
            raise ConfigError(f"model.preset={name!r} is not a preset; choose one of {list(PRESETS)}")
        return PRESETS[name.lower()]().replace(**runtime)

    @classmethod
    def tiny(cls, **runtime: Any) -> "Qwen25VLConfig":
        return cls.preset("tiny", **runtime)


def _preset_3b() -> Qwen25VLConfig:
    return Qwen25VLConfig(
        vision=VisionConfig(out_hidden_size=2048),
        text=TextConfig(vocab_size=151936, hidden_size=2048, intermediate_size=11008,
                        num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
                        tie_word_embeddings=True))


def _preset_7b() -> Qwen25VLConfig:
    return Qwen25VLConfig()


def _preset_32b() -> Qwen25VLConfig:
    return Qwen25VLConfig(
        vision=VisionConfig(intermediate_size=3456, out_hidden_size=5120),
        text=TextConfig(hidden_size=5120, intermediate_size=27648, num_hidden_layers=64,
                        num_attention_heads=40, num_key_value_heads=8))


def _preset_72b() -> Qwen25VLConfig:
    return Qwen25VLConfig(
        vision=VisionConfig(intermediate_size=3456, out_hidden_size=8192),
        text=TextConfig(hidden_size=8192, intermediate_size=29568, num_hidden_layers=80,
                        num_attention_heads=64, num_key_value_heads=8))


def _preset_tiny() -> Qwen25VLConfig:
    """A few-hundred-thousand-parameter model with the real structure, for tests.

    The special tokens sit at the top of a 512-entry vocabulary.
    """
    return Qwen25VLConfig(
        vision=VisionConfig(depth=4, hidden_size=32, intermediate_size=64, num_heads=2,
                            fullatt_block_indexes=(1, 3), out_hidden_size=64),
        text=TextConfig(vocab_size=512, hidden_size=64, intermediate_size=128,
                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        mrope_section=(2, 3, 3), max_position_embeddings=4096),
        image_token_id=505, video_token_id=506, vision_start_token_id=503,
        vision_end_token_id=504, bos_token_id=500, eos_token_id=502, pad_token_id=500)


# name -> builder of Qwen25VLConfig.preset (names are lowercase; lookups lowercase the name).
PRESETS = {"3b": _preset_3b, "7b": _preset_7b, "32b": _preset_32b, "72b": _preset_72b, "tiny": _preset_tiny}


def _check_type(where: str, value: Any, cls: type, name: str) -> None:
    default = next(f.default for f in dataclasses.fields(cls) if f.name == name)
    expected = float if isinstance(default, float) else type(default)
    ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
    if not ok or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{where}={value!r} should be of type {expected.__name__}")


def _validate(c: Qwen25VLConfig) -> None:
    v, t = c.vision, c.text
    positive = [("vision.depth", v.depth), ("vision.hidden_size", v.hidden_size),
                ("vision.num_heads", v.num_heads), ("vision.patch_size", v.patch_size),
                ("vision.temporal_patch_size", v.temporal_patch_size),
                ("vision.spatial_merge_size", v.spatial_merge_size),
                ("text.vocab_size", t.vocab_size), ("text.hidden_size", t.hidden_size),
                ("text.num_hidden_layers", t.num_hidden_layers),
                ("text.num_attention_heads", t.num_attention_heads),
                ("text.num_key_value_heads", t.num_key_value_heads)]
    for name, value in positive:
        if value <= 0:
            raise ConfigError(f"{name}={value} must be positive")
    if v.hidden_size % v.num_heads:
        raise ConfigError(f"vision.hidden_size={v.hidden_size} is not divisible by vision.num_heads={v.num_heads}")
    if v.head_dim % 4:
        raise ConfigError(f"vision head_dim={v.head_dim} must be a multiple of 4 for 2D rotary")
    if v.window_size % (v.spatial_merge_size * v.patch_size) or v.window_merged < 1:
        raise ConfigError(f"vision.window_size={v.window_size} must be a positive multiple of "
                          f"spatial_merge_size*patch_size={v.spatial_merge_size * v.patch_size}")
    bad = [i for i in v.fullatt_block_indexes if not 0 <= i < v.depth]
    if bad:
        raise ConfigError(f"vision.fullatt_block_indexes {bad} out of range for depth={v.depth}")
    if v.out_hidden_size != t.hidden_size:
        raise ConfigError(f"vision.out_hidden_size={v.out_hidden_size} must equal text.hidden_size={t.hidden_size}")
    if t.hidden_size % t.num_attention_heads:
        raise ConfigError(f"text.hidden_size={t.hidden_size} is not divisible by "
                          f"text.num_attention_heads={t.num_attention_heads}")
    if t.num_attention_heads % t.num_key_value_heads:
        raise ConfigError(f"text.num_attention_heads={t.num_attention_heads} is not a multiple of "
                          f"text.num_key_value_heads={t.num_key_value_heads}")
    if len(t.mrope_section) != 3 or 2 * sum(t.mrope_section) != t.head_dim:
        raise ConfigError(f"text.mrope_section={list(t.mrope_section)} must have 3 entries summing to "
                          f"head_dim/2={t.head_dim // 2}")
    for name, act in (("vision.hidden_act", v.hidden_act), ("text.hidden_act", t.hidden_act)):
        if act != "silu":
            raise ConfigError(f"{name}={act!r}: only 'silu' is supported")
    for name, impl in (("vision.attention_impl", v.attention_impl), ("text.attention_impl", t.attention_impl)):
        if impl not in ATTENTION_IMPLS:
            raise ConfigError(f"{name}={impl!r} must be one of {ATTENTION_IMPLS}")
    for name in ("dtype", "param_dtype"):
        if getattr(c, name) not in DTYPES:
            raise ConfigError(f"{name}={getattr(c, name)!r} must be one of {DTYPES}")
    if c.remat_policy not in REMAT_POLICIES:
        raise ConfigError(f"remat_policy={c.remat_policy!r} must be one of {REMAT_POLICIES}")
    for name in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        if not 0 <= getattr(c, name) < t.vocab_size:
            raise ConfigError(f"{name}={getattr(c, name)} is outside the vocabulary (size {t.vocab_size})")
