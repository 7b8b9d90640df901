"""Hugging Face safetensors <-> vtjax params: the key table and the conversion entry points."""

from vtjax.convert.mapping import canonical_hf_name, hf_to_params, links, params_to_hf

__all__ = ["canonical_hf_name", "hf_to_params", "links", "params_to_hf"]
