"""Hugging Face safetensors <-> vtjax params: the key table, streaming I/O, Orbax checkpoints, CLI.

``load_hf(hf_dir) -> (config, params)`` and ``save_hf(config, params, out_dir)`` are the
library entry points; ``python -m vtjax.convert`` is the command line.
"""

from vtjax.convert.hf import load_hf, save_hf
from vtjax.convert.mapping import canonical_hf_name, hf_to_params, links, params_to_hf
from vtjax.convert.orbax_io import read_checkpoint_config, restore_params, write_params_checkpoint
from vtjax.convert.safetensors_io import CheckpointError

__all__ = ["CheckpointError", "canonical_hf_name", "hf_to_params", "links", "load_hf", "params_to_hf",
           "read_checkpoint_config", "restore_params", "save_hf", "write_params_checkpoint"]
