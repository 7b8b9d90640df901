"""Hugging Face checkpoint directory <-> (config, params), one tensor at a time."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from vtjax.convert.files import atomic_output_dir
from vtjax.convert.mapping import canonical_hf_name, hf_shape, hf_to_ours, links, ours_to_hf
from vtjax.convert.safetensors_io import CheckpointError, CheckpointReader, plan_shards, shard_file_names, \
    write_safetensors, INDEX_FILE
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, abstract_params

MAX_SHARD_BYTES = 5 * 1000**3  # transformers' default shard size


def read_config(hf_dir: str | os.PathLike, **runtime) -> Qwen25VLConfig:
    path = Path(hf_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{hf_dir} has no config.json; an HF checkpoint directory needs one")
    return Qwen25VLConfig.from_json_file(path, **runtime)


def load_hf(hf_dir: str | os.PathLike, *, dtype: str | None = None, scan_layers: bool = True,
            device: jax.Device | None = None, progress: bool = True) -> tuple[Qwen25VLConfig, dict]:
    """Reads an HF Qwen2.5-VL checkpoint into ``(config, params)`` of jax arrays on ``device``.

    Accepts a single ``model.safetensors`` or shards with ``model.safetensors.index.json``,
    and both the legacy and the transformers >= 4.52 key names. Tensors are read one
    at a time and each parameter moves to ``device`` (default: the default device) as
    soon as it is complete, so host memory peaks near one copy of the model plus its
    largest (layer-stacked) parameter. ``dtype`` (default float32) is the storage dtype.
    """
    dtype = dtype or "float32"
    config = read_config(hf_dir, param_dtype=dtype, scan_layers=scan_layers)
    reader = CheckpointReader(hf_dir)
    names = {canonical_hf_name(n): n for n in reader.names()}
    wanted = links(config)
    missing = sorted(l.hf_name for l in wanted if l.hf_name not in names)
    unexpected = sorted(set(names) - {l.hf_name for l in wanted})
    if config.text.tie_word_embeddings and "lm_head.weight" in unexpected:
        unexpected.remove("lm_head.weight")  # some exports keep a tied copy; it equals the embedding
    if missing or unexpected:
        raise CheckpointError(f"{hf_dir}: tensors do not match config.json: missing {missing}, "
                              f"unexpected {unexpected}")
    shapes = abstract_params(config)
    bad = []
    for link in wanted:
        ours = _leaf(shapes, link.path).shape
        expected = hf_shape(link, ours[1:] if link.layer is not None else ours, config)
        found = reader.shape(names[link.hf_name])
        if tuple(found) != tuple(expected):
            bad.append(f"{link.hf_name}: expected {tuple(expected)}, found {tuple(found)}")
    if bad:
        raise CheckpointError(f"{hf_dir}: tensor shapes do not match config.json:\n  " + "\n  ".join(bad))

    np_dtype = np.dtype(jax.numpy.dtype(dtype))
    device = device or jax.devices()[0]
    params: dict = {}
    for link in tqdm(wanted, desc="reading tensors", unit="tensor", disable=not progress):
        full = _leaf(shapes, link.path).shape
        shape = full[1:] if link.layer is not None else full
        array = hf_to_ours(link, reader.read(names[link.hf_name]), shape).astype(np_dtype)
        node = params
        for key in link.path[:-1]:
            node = node.setdefault(key, {})
        if link.layer is None:
            node[link.path[-1]] = jax.device_put(array, device)
        else:  # stacked layers are assembled in place in one device buffer
            if link.path[-1] not in node:
                node[link.path[-1]] = jax.numpy.zeros(full, np_dtype, device=device)
            node[link.path[-1]] = _set_layer(node[link.path[-1]], array, link.layer)
        del array
    return config, params


@functools.partial(jax.jit, donate_argnums=0)
def _set_layer(stacked: jax.Array, layer: jax.Array, index: int) -> jax.Array:
    """``stacked[index] = layer`` without copying ``stacked`` (its buffer is donated)."""
    return jax.lax.dynamic_update_index_in_dim(stacked, layer.astype(stacked.dtype), index, 0)


def save_hf(config: Qwen25VLConfig, params, out_dir: str | os.PathLike, *, dtype: str | None = None,
            max_shard_bytes: int = MAX_SHARD_BYTES, overwrite: bool = False, progress: bool = True) -> Path:
    """Writes ``params`` as an HF checkpoint: sharded safetensors (legacy key names), index, config.json.

    The directory appears complete or not at all. ``dtype`` defaults to the params' dtype.
    """
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        write_hf_files(config, params, tmp, dtype=dtype, max_shard_bytes=max_shard_bytes, progress=progress)
    return Path(out_dir)


def write_hf_files(config: Qwen25VLConfig, params, directory: Path, *, dtype: str | None = None,
                   max_shard_bytes: int = MAX_SHARD_BYTES, progress: bool = True) -> None:
    """The body of ``save_hf`` into an existing directory (no atomicity of its own).

    ``params`` is the pytree, or a callable ``path -> array`` (e.g. ``ParamLeafReader``)
    asked for each parameter's layers consecutively, so it can hold one at a time.
    """
    all_links = links(config)
    get = params if callable(params) else (lambda path: _leaf(params, path))
    shapes = abstract_params(config)
    np_dtype = np.dtype(jax.numpy.dtype(dtype or config.param_dtype))
    by_name = {l.hf_name: l for l in all_links}
    specs = []
    for link in all_links:
        shape = tuple(_leaf(shapes, link.path).shape)
        specs.append((link.hf_name, hf_shape(link, shape[1:] if link.layer is not None else shape, config),
                      np_dtype))
    shards = plan_shards(specs, max_shard_bytes)
    file_names = list(shard_file_names(len(shards)))
    bar = tqdm(total=len(specs), desc="writing tensors", unit="tensor", disable=not progress)

    def produce(name: str) -> np.ndarray:
        link = by_name[name]
        array = np.asarray(get(link.path))
        if link.layer is not None:
            array = array[link.layer]
        bar.update(1)
        return ours_to_hf(link, array, config).astype(np_dtype, copy=False)

    weight_map = {}
    for fname, shard in zip(file_names, shards, strict=True):
        write_safetensors(directory / fname, shard, produce)
        weight_map.update({name: fname for name, _, _ in shard})
    bar.close()
    if len(shards) > 1:
        total = sum(int(np.prod(s)) * d.itemsize for _, s, d in specs)
        (directory / INDEX_FILE).write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    hf_config = config.to_hf_dict()
    hf_config["torch_dtype"] = str(jax.numpy.dtype(np_dtype).name)
    (directory / "config.json").write_text(json.dumps(hf_config, indent=2))
    if not (directory / "generation_config.json").exists():
        generation = {k: v for k, v in (("bos_token_id", config.bos_token_id), ("eos_token_id", config.eos_token_id),
                                        ("pad_token_id", config.pad_token_id)) if v is not None}
        (directory / "generation_config.json").write_text(json.dumps(generation, indent=2))


def _leaf(tree, path):
    for key in path:
        tree = tree[key]
    return tree
