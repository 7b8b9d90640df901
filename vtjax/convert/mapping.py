"""The one table between Hugging Face checkpoint keys and vtjax params, used in both directions.

HF Linear weights are (out, in); vtjax kernels are (in..., out...) with heads
split out. Per-layer HF tensors ``...{i}...`` stack on a leading 'layers' axis
when the config scans layers, and go to ``layers_{i}`` modules otherwise.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping

import numpy as np

from vtjax.models.qwen2_5_vl.config import Qwen25VLConfig

# Layouts: how one HF tensor becomes one vtjax array.
#   copy     same values, reshaped to the param's shape (norms, biases, embedding)
#   linear   HF (out, in) -> kernel (in, out...): transpose, then split heads
#   linear2  HF (out, in) -> kernel (heads, head_dim, out): the input side is split
#   conv     HF Conv3d (E, C, T, P, P) -> kernel (C*T*P*P, E)
#
# (HF name, vtjax path, layout). "{i}" marks a per-layer tensor; "layers" in the
# path is the stacked (or per-layer) module.
TEXT_TABLE = (
    ("model.embed_tokens.weight", "embed_tokens/embedding", "copy"),
    ("model.layers.{i}.self_attn.q_proj.weight", "layers/q_proj/kernel", "linear"),
    ("model.layers.{i}.self_attn.q_proj.bias", "layers/q_proj/bias", "copy"),
    ("model.layers.{i}.self_attn.k_proj.weight", "layers/k_proj/kernel", "linear"),
    ("model.layers.{i}.self_attn.k_proj.bias", "layers/k_proj/bias", "copy"),
    ("model.layers.{i}.self_attn.v_proj.weight", "layers/v_proj/kernel", "linear"),
    ("model.layers.{i}.self_attn.v_proj.bias", "layers/v_proj/bias", "copy"),
    ("model.layers.{i}.self_attn.o_proj.weight", "layers/o_proj/kernel", "linear2"),
    ("model.layers.{i}.mlp.gate_proj.weight", "layers/mlp/gate_proj/kernel", "linear"),
    ("model.layers.{i}.mlp.up_proj.weight", "layers/mlp/up_proj/kernel", "linear"),
    ("model.layers.{i}.mlp.down_proj.weight", "layers/mlp/down_proj/kernel", "linear"),
    ("model.layers.{i}.input_layernorm.weight", "layers/input_layernorm/scale", "copy"),
    ("model.layers.{i}.post_attention_layernorm.weight", "layers/post_attention_layernorm/scale", "copy"),
    ("model.norm.weight", "norm/scale", "copy"),
)
LM_HEAD = ("lm_head.weight", "lm_head/kernel", "linear")  # absent when embeddings are tied
VISION_TABLE = (
    ("visual.patch_embed.proj.weight", "visual/patch_embed/kernel", "conv"),
    ("visual.blocks.{i}.norm1.weight", "visual/layers/norm1/scale", "copy"),
    ("visual.blocks.{i}.norm2.weight", "visual/layers/norm2/scale", "copy"),
    ("visual.blocks.{i}.attn.qkv.weight", "visual/layers/qkv/kernel", "linear"),
    ("visual.blocks.{i}.attn.qkv.bias", "visual/layers/qkv/bias", "copy"),
    ("visual.blocks.{i}.attn.proj.weight", "visual/layers/proj/kernel", "linear2"),
    ("visual.blocks.{i}.attn.proj.bias", "visual/layers/proj/bias", "copy"),
    ("visual.blocks.{i}.mlp.gate_proj.weight", "visual/layers/mlp/gate_proj/kernel", "linear"),
    ("visual.blocks.{i}.mlp.gate_proj.bias", "visual/layers/mlp/gate_proj/bias", "copy"),
    ("visual.blocks.{i}.mlp.up_proj.weight", "visual/layers/mlp/up_proj/kernel", "linear"),
    ("visual.blocks.{i}.mlp.up_proj.bias", "visual/layers/mlp/up_proj/bias", "copy"),
    ("visual.blocks.{i}.mlp.down_proj.weight", "visual/layers/mlp/down_proj/kernel", "linear"),
    ("visual.blocks.{i}.mlp.down_proj.bias", "visual/layers/mlp/down_proj/bias", "copy"),
    ("visual.merger.ln_q.weight", "visual/merger/ln_q/scale", "copy"),
    ("visual.merger.mlp.0.weight", "visual/merger/fc1/kernel", "linear"),
    ("visual.merger.mlp.0.bias", "visual/merger/fc1/bias", "copy"),
    ("visual.merger.mlp.2.weight", "visual/merger/fc2/kernel", "linear"),
    ("visual.merger.mlp.2.bias", "visual/merger/fc2/bias", "copy"),
)


@dataclasses.dataclass(frozen=True)
class ParamLink:
    """One HF tensor and where it lives in the vtjax params."""

    hf_name: str  # legacy Hub name, e.g. "model.layers.3.mlp.up_proj.weight"
    path: tuple[str, ...]  # vtjax param path
    layer: int | None  # index on the stacked leading axis (scanned layers), else None
    layout: str  # copy | linear | linear2 | conv


def canonical_hf_name(name: str) -> str:
    """Maps the transformers >= 4.52 names (``model.language_model.*``, ``model.visual.*``) to legacy ones."""
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model."):]
    if name.startswith("model.visual."):
        return name[len("model."):]
    return name


def links(config: Qwen25VLConfig) -> list[ParamLink]:
    """Every HF tensor of a checkpoint with this config, in table order."""
    rows = list(VISION_TABLE) + list(TEXT_TABLE)
    if not config.text.tie_word_embeddings:
        rows.append(LM_HEAD)
    depth = {"visual": config.vision.depth, "text": config.text.num_hidden_layers}
    out = []
    for hf, path, layout in rows:
        parts = tuple(path.split("/"))
        if "{i}" not in hf:
            out.append(ParamLink(hf, parts, None, layout))
            continue
        for i in range(depth["visual" if hf.startswith("visual.") else "text"]):
            if config.scan_layers:
                out.append(ParamLink(hf.format(i=i), parts, i, layout))
            else:
                unstacked = tuple(f"layers_{i}" if p == "layers" else p for p in parts)
                out.append(ParamLink(hf.format(i=i), unstacked, None, layout))
    return out


def hf_to_ours(link: ParamLink, tensor: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """One HF tensor -> the vtjax array of ``shape`` (one layer's slice when stacked)."""
    if link.layout == "copy":
        out = tensor
    elif link.layout in ("linear", "linear2"):
        out = tensor.T
    elif link.layout == "conv":
        out = tensor.reshape(tensor.shape[0], -1).T
    else:
        raise ValueError(f"unknown layout {link.layout!r}")
    if int(np.prod(out.shape)) != int(np.prod(shape)):
        raise ValueError(f"{link.hf_name}: shape {tuple(tensor.shape)} does not fit param "
                         f"{'/'.join(link.path)} of shape {tuple(shape)}")
    return np.reshape(out, shape)


def hf_shape(link: ParamLink, shape: tuple[int, ...], config: Qwen25VLConfig) -> tuple[int, ...]:
    """The HF tensor shape that maps onto a vtjax array of ``shape`` (one layer's slice)."""
    if link.layout == "copy":
        return (int(np.prod(shape)),) if link.hf_name.endswith(".bias") else tuple(shape)
    if link.layout == "linear":
        return (int(np.prod(shape[1:])), shape[0])
    if link.layout == "linear2":
        return (shape[-1], shape[0] * shape[1])
    if link.layout == "conv":
        v = config.vision
        return (v.hidden_size, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size)
    raise ValueError(f"unknown layout {link.layout!r}")


def ours_to_hf(link: ParamLink, array: np.ndarray, config: Qwen25VLConfig) -> np.ndarray:
    """One vtjax array (one layer's slice when stacked) -> the HF tensor."""
    if link.layout == "copy":
        return array.reshape(-1) if array.ndim > 1 and link.hf_name.endswith(".bias") else array
    if link.layout == "linear":
        return array.reshape(array.shape[0], -1).T
    if link.layout == "linear2":
        return array.reshape(array.shape[0] * array.shape[1], -1).T
    if link.layout == "conv":
        v = config.vision
        return array.T.reshape(v.hidden_size, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size)
    raise ValueError(f"unknown layout {link.layout!r}")


def hf_to_params(config: Qwen25VLConfig, tensors: Mapping[str, np.ndarray], shapes) -> dict:
    """Builds the params pytree from HF tensors (names in either naming scheme).

    ``shapes`` is the pytree of param shapes/ShapeDtypeStructs (``abstract_params``).
    Raises ValueError listing missing and unexpected keys.
    """
    tensors = {canonical_hf_name(k): v for k, v in tensors.items()}
    wanted = links(config)
    missing = sorted(l.hf_name for l in wanted if l.hf_name not in tensors)
    unexpected = sorted(set(tensors) - {l.hf_name for l in wanted})
    if missing or unexpected:
        raise ValueError(f"checkpoint does not match the config: missing keys {missing}, "
                         f"unexpected keys {unexpected}")
    params: dict = {}
    for link, array in iter_params(config, tensors, shapes):
        _assign(params, link.path, array, link.layer, _shape_at(shapes, link.path))
    return params


def iter_params(config, tensors: Mapping[str, np.ndarray], shapes) -> Iterator[tuple[ParamLink, np.ndarray]]:
    """Yields (link, converted array) one tensor at a time (a layer's slice when stacked)."""
    for link in links(config):
        full_shape = tuple(_shape_at(shapes, link.path).shape)
        shape = full_shape[1:] if link.layer is not None else full_shape
        yield link, hf_to_ours(link, np.asarray(tensors[link.hf_name]), shape)


def params_to_hf(config: Qwen25VLConfig, params) -> dict[str, np.ndarray]:
    """The HF state dict (legacy names) of a params pytree, as numpy arrays."""
    out = {}
    for link in links(config):
        array = np.asarray(_get(params, link.path))
        if link.layer is not None:
            array = array[link.layer]
        out[link.hf_name] = np.ascontiguousarray(ours_to_hf(link, array, config))
    return out


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def _shape_at(shapes, path):
    return _get(shapes, path)


def _assign(params: dict, path, array, layer, spec) -> None:
    node = params
    for p in path[:-1]:
        node = node.setdefault(p, {})
    if layer is None:
        node[path[-1]] = array.astype(spec.dtype, copy=False)
        return
    if path[-1] not in node:
        node[path[-1]] = np.zeros(spec.shape, spec.dtype)
    node[path[-1]][layer] = array
