"""The vtjax params checkpoint: an Orbax tree of params plus the HF config and side files.

Layout of a converted checkpoint directory (what ``init_from`` points at)::

    DIR/params/        Orbax (StandardCheckpointer) tree of the params
    DIR/config.json    the Hub config.json of the model
    DIR/vtjax.json     {"format": "vtjax-params", "version": 1, "scan_layers": ..., "param_dtype": ...,
                        "lora": {rank, alpha, dropout, targets, rslora} when the params hold adapters}
    DIR/tokenizer.json, generation_config.json, ...   copied from the source when present

``restore_params`` can place every array directly into a target sharding, so
no host ever holds the whole model.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh

from vtjax.convert.safetensors_io import CheckpointError
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, abstract_params, param_logical_axes
from vtjax.models.qwen2_5_vl.lora import LoraSpec
from vtjax.sharding import LOGICAL_RULES, shardings_for

FORMAT = "vtjax-params"
RESTORE_CONCURRENT_GB = 1  # bytes of checkpoint reads in flight at once
VERSION = 1


def write_params_checkpoint(directory: Path, config: Qwen25VLConfig, params) -> None:
    """Writes params, config.json and vtjax.json into ``directory`` (which must exist)."""
    directory = Path(directory).absolute()
    # Uncompressed: zstd buffers would cost ~50% of the model in host memory and double the
    # time, for ~25% less disk on weights. Synchronous: the directory is complete on return.
    checkpointer = ocp.Checkpointer(ocp.PyTreeCheckpointHandler(use_compression=False))
    checkpointer.save(directory / "params", args=ocp.args.PyTreeSave(params))
    (directory / "config.json").write_text(json.dumps(config.to_hf_dict(), indent=2))
    meta = {"format": FORMAT, "version": VERSION, "scan_layers": config.scan_layers,
            "param_dtype": config.param_dtype}
    if config.lora is not None:
        meta["lora"] = dataclasses.asdict(config.lora)
    (directory / "vtjax.json").write_text(json.dumps(meta, indent=2))


def read_checkpoint_config(ckpt_dir: str | os.PathLike, **runtime) -> Qwen25VLConfig:
    """The model config stored with a params checkpoint (runtime fields from vtjax.json unless given)."""
    ckpt_dir = Path(ckpt_dir)
    meta_path, config_path = ckpt_dir / "vtjax.json", ckpt_dir / "config.json"
    if not meta_path.is_file() or not config_path.is_file() or not (ckpt_dir / "params").is_dir():
        raise CheckpointError(f"{ckpt_dir} is not a vtjax params checkpoint (expected params/, config.json "
                              "and vtjax.json; create one with `python -m vtjax.convert hf-to-orbax`)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    runtime.setdefault("scan_layers", meta["scan_layers"])
    runtime.setdefault("param_dtype", meta["param_dtype"])
    runtime.setdefault("lora", LoraSpec(**meta["lora"]) if meta.get("lora") else None)
    return Qwen25VLConfig.from_json_file(config_path, **runtime)


def restore_params(ckpt_dir: str | os.PathLike, *, mesh: Mesh | None = None, rules=LOGICAL_RULES,
                   config: Qwen25VLConfig | None = None):
    """Restores the params of a checkpoint written by ``write_params_checkpoint``.

    With ``mesh``, every array is restored straight into its ``NamedSharding``
    (logical axes mapped by ``rules``): each host reads only its shards. Without
    a mesh, arrays come back as host numpy arrays.
    """
    ckpt_dir = Path(ckpt_dir).absolute()
    stored = read_checkpoint_config(ckpt_dir)
    config = config or stored
    if config.scan_layers != stored.scan_layers:
        raise CheckpointError(f"{ckpt_dir} stores scan_layers={stored.scan_layers} params; "
                              f"the config asks for scan_layers={config.scan_layers}")
    shapes = abstract_params(config.replace(param_dtype=stored.param_dtype))
    if mesh is None:
        target = jax.tree_util.tree_map(lambda s: np.empty(s.shape, s.dtype), shapes)
    else:
        shardings = shardings_for(param_logical_axes(config), shapes, mesh, rules)
        target = jax.tree_util.tree_map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                                        shapes, shardings)
    # At most ~1 GB of reads in flight: host memory stays near one copy of the params.
    checkpointer = ocp.Checkpointer(ocp.PyTreeCheckpointHandler(restore_concurrent_gb=RESTORE_CONCURRENT_GB))
    restore_args = ocp.checkpoint_utils.construct_restore_args(target)
    return checkpointer.restore(ckpt_dir / "params", args=ocp.args.PyTreeRestore(target, restore_args=restore_args))


class ParamLeafReader:
    """Restores one parameter at a time (the others are Orbax placeholders), keeping the last one.

    ``reader(path)`` returns the numpy array at ``path``; with callers that ask for
    each parameter's pieces consecutively, host memory holds about one parameter.
    """

    def __init__(self, ckpt_dir: str | os.PathLike):
        self.directory = Path(ckpt_dir).absolute()
        self.config = read_checkpoint_config(self.directory)
        self.shapes = abstract_params(self.config)
        self._checkpointer = ocp.Checkpointer(ocp.PyTreeCheckpointHandler())
        self._cached: tuple = (None, None)

    def __call__(self, path: tuple[str, ...]) -> np.ndarray:
        if self._cached[0] != tuple(path):
            self._cached = (None, None)  # drop the previous parameter before reading the next
            self._cached = (tuple(path), self._restore(tuple(path)))
        return self._cached[1]

    def _restore(self, path: tuple[str, ...]) -> np.ndarray:
        def leaf(key_path, spec):
            keys = tuple(k.key for k in key_path)
            return np.empty(spec.shape, spec.dtype) if keys == path else ocp.PLACEHOLDER

        target = jax.tree_util.tree_map_with_path(leaf, self.shapes)
        args = jax.tree_util.tree_map(
            lambda x: x if x is ocp.PLACEHOLDER else ocp.RestoreArgs(restore_type=np.ndarray), target,
            is_leaf=lambda x: x is ocp.PLACEHOLDER)
        restored = self._checkpointer.restore(self.directory / "params",
                                              args=ocp.args.PyTreeRestore(target, restore_args=args))
        for key in path:
            restored = restored[key]
        return restored
