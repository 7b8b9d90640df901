"""Qwen25VLConfig: Hub config.json round trip, presets against transformers, clear errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from transformers import Qwen2_5_VLConfig as HFConfig
from transformers import Qwen2_5_VLForConditionalGeneration

from vtjax.models.qwen2_5_vl import ConfigError, Qwen25VLConfig, abstract_params

# The 7B-Instruct config.json as published on the Hub (legacy keys included).
HUB_7B = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "vision_start_token_id": 151652,
    "vision_end_token_id": 151653, "vision_token_id": 151654, "image_token_id": 151655,
    "video_token_id": 151656, "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02,
    "intermediate_size": 18944, "max_position_embeddings": 128000, "max_window_layers": 28,
    "model_type": "qwen2_5_vl", "num_attention_heads": 28, "num_hidden_layers": 28,
    "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.41.2",
    "use_cache": True, "use_sliding_window": False,
    "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                      "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
                      "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                      "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
                      "temporal_patch_size": 2},
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "vocab_size": 152064,
}


def test_hub_7b_config_reads_as_the_7b_preset():
    assert Qwen25VLConfig.from_hf_dict(HUB_7B) == Qwen25VLConfig.preset("7b")


@pytest.mark.parametrize("name", ["tiny", "3b", "7b", "32b", "72b"])
def test_round_trip_through_transformers(name, tmp_path):
    config = Qwen25VLConfig.preset(name)
    HFConfig(**config.to_hf_dict()).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert Qwen25VLConfig.from_hf_dict(saved) == config
    assert Qwen25VLConfig.from_hf_dict(config.to_hf_dict()) == config


@pytest.mark.parametrize("name", ["3b", "7b"])
def test_param_count_equals_transformers(name):
    """Parameter shapes of the presets equal transformers' module (built on the meta device)."""
    config = Qwen25VLConfig.preset(name)
    with torch.device("meta"):
        hf = Qwen2_5_VLForConditionalGeneration(HFConfig(**config.to_hf_dict()))
    hf_count = sum(p.numel() for p in hf.parameters())  # tied weights counted once
    ours = sum(int(np.prod(x.shape)) for x in __import__("jax").tree_util.tree_leaves(abstract_params(config)))
    assert ours == hf_count


def test_72b_shapes_without_allocating():
    shapes = abstract_params(Qwen25VLConfig.preset("72b"))
    assert shapes["layers"]["q_proj"]["kernel"].shape == (80, 8192, 64, 128)
    assert shapes["layers"]["k_proj"]["kernel"].shape == (80, 8192, 8, 128)
    assert shapes["visual"]["layers"]["qkv"]["kernel"].shape == (32, 1280, 3, 16, 80)
    assert shapes["visual"]["merger"]["fc2"]["kernel"].shape == (5120, 8192)
    total = sum(int(np.prod(x.shape)) for x in __import__("jax").tree_util.tree_leaves(shapes))
    assert 73e9 < total < 74e9


def _with(d, path, value):
    d = json.loads(json.dumps(d))
    node = d
    for key in path[:-1]:
        node = node[key]
    if value is None:
        node.pop(path[-1])
    else:
        node[path[-1]] = value
    return d


@pytest.mark.parametrize("path,value,message", [
    (("hidden_sizee",), 3, "hidden_sizee"),
    (("vision_config", "depthh"), 3, "depthh"),
    (("rope_scaling", "mrope_section"), [16, 24, 20], "mrope_section"),
    (("rope_scaling", "mrope_section"), None, "mrope_section"),
    (("num_key_value_heads",), 5, "num_key_value_heads"),
    (("vision_config", "out_hidden_size"), 1024, "out_hidden_size"),
    (("vision_config", "fullatt_block_indexes"), [7, 40], "fullatt_block_indexes"),
    (("vision_config", "num_heads"), 17, "num_heads"),
    (("hidden_size",), "3584", "hidden_size"),
    (("use_sliding_window",), True, "use_sliding_window"),
    (("model_type",), "llama", "model_type"),
    (("vision_config",), None, "vision_config"),
])
def test_bad_fields_are_named(path, value, message):
    with pytest.raises(ConfigError, match=message):
        Qwen25VLConfig.from_hf_dict(_with(HUB_7B, path, value))


def test_runtime_fields_validated():
    with pytest.raises(ConfigError, match="remat_policy"):
        Qwen25VLConfig.tiny(remat_policy="sometimes")
    with pytest.raises(ConfigError, match="attention_impl"):
        Qwen25VLConfig.tiny(text=dataclasses.replace(Qwen25VLConfig.tiny().text, attention_impl="flash"))
    with pytest.raises(ConfigError, match="preset"):
        Qwen25VLConfig.preset("13b")


def test_every_parameter_has_logical_axes():
    import jax

    from vtjax.models.qwen2_5_vl import param_logical_axes

    config = Qwen25VLConfig.tiny()
    specs = param_logical_axes(config)
    shapes = abstract_params(config)
    flat_specs = jax.tree_util.tree_leaves(specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    flat_shapes = jax.tree_util.tree_leaves(shapes)
    assert len(flat_specs) == len(flat_shapes)
    for spec, shape in zip(flat_specs, flat_shapes, strict=True):
        assert isinstance(spec, jax.sharding.PartitionSpec) and len(spec) == len(shape.shape)
    assert specs["layers"]["q_proj"]["kernel"] == jax.sharding.PartitionSpec("layers", "embed", "heads", "head_dim")
