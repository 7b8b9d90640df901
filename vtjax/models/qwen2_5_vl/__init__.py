"""Qwen2.5-VL in Flax (Linen), numerically equal to transformers 4.51.3."""

from vtjax.models.qwen2_5_vl.api import (abstract_params, compiled_logits, forward, init_params,
                                         param_logical_axes, unstack_layers)
from vtjax.models.qwen2_5_vl.cache import DecodeCache, KVCache, init_cache, widen_generated
from vtjax.models.qwen2_5_vl.config import ConfigError, Qwen25VLConfig, TextConfig, VisionConfig
from vtjax.models.qwen2_5_vl.inputs import bucket_size, prepare_inputs
from vtjax.models.qwen2_5_vl.model import ModelInputs, Qwen25VL
from vtjax.models.qwen2_5_vl.positions import decode_position_ids, get_rope_index
from vtjax.models.qwen2_5_vl.vision import VisionInputs

__all__ = [
    "ConfigError", "DecodeCache", "KVCache", "ModelInputs", "Qwen25VL", "Qwen25VLConfig", "TextConfig", "VisionConfig",
    "VisionInputs", "abstract_params", "bucket_size", "compiled_logits", "decode_position_ids",
    "forward", "get_rope_index", "init_cache", "init_params", "param_logical_axes", "prepare_inputs", "unstack_layers",
    "widen_generated",
]
