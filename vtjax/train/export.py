"""A training run's params -> a params checkpoint directory (what ``model.init_from`` reads).

A training workdir holds full train states (params, optimizer moments, data
iterator state) under ``workdir/checkpoints/<step>/``. ``export_params``
restores only the params of one step, rebuilds the model config the run
trained (its preset or ``init_from`` config, with the special token ids
of its tokenizer) and writes the format of ``vtjax.convert.orbax_io``::

    out_dir/params/  out_dir/config.json  out_dir/vtjax.json  out_dir/tokenizer.model|json

so GRPO can start from an SFT run, and evaluation, generation and
``python -m vtjax.convert orbax-to-hf`` can load it. ``export_hf`` writes the
same params as a Hugging Face directory instead. On the command line:
``python -m vtjax.convert workdir-to-orbax`` / ``workdir-to-hf``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from vtjax import errors
from vtjax.convert.files import atomic_output_dir, copy_side_files, refuse_overlap
from vtjax.convert.hf import MAX_SHARD_BYTES, write_hf_files
from vtjax.convert.orbax_io import restore_params, write_params_checkpoint
from vtjax.data import tokenizer as tok_lib
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, abstract_params, init_params, lora
from vtjax.train.data import match_tokenizer
from vtjax.train import adapters
from vtjax.train.state import held_as, model_config


class ExportError(errors.CheckpointError):
    """The training workdir cannot be exported; the message says what is missing."""


def _checkpoints_dir(train_workdir: str | os.PathLike) -> Path:
    return Path(train_workdir).absolute() / "checkpoints"


def checkpoint_steps(train_workdir: str | os.PathLike) -> list[int]:
    """Steps with a committed checkpoint under ``train_workdir/checkpoints``, ascending."""
    root = _checkpoints_dir(train_workdir)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir()
                  if p.name.isdigit() and (p / "state").is_dir() and (p / "config").is_dir())


def _resolve_step(train_workdir, step: int | None) -> int:
    steps = checkpoint_steps(train_workdir)
    if not steps:
        raise ExportError(f"{train_workdir} has no training checkpoint under checkpoints/<step>/; "
                          "train first (python -m vtjax.main --config ... --workdir DIR) or fix the path")
    if step is None:
        return steps[-1]
    if step not in steps:
        raise ExportError(f"{train_workdir} has no checkpoint for step={step}; available: {steps}")
    return step


def training_config(train_workdir: str | os.PathLike, step: int | None = None) -> ml_collections.ConfigDict:
    """The experiment config stored with a training checkpoint (the newest when ``step`` is None)."""
    step = _resolve_step(train_workdir, step)
    restored = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(
        _checkpoints_dir(train_workdir) / str(step) / "config")
    return ml_collections.ConfigDict(restored)


def training_tokenizer_path(train_config) -> str:
    """The tokenizer a training config read (``data.tokenizer``, else its ``init_from`` dir); "" when none."""
    return train_config.data.tokenizer or train_config.model.init_from or ""


def training_model_config(train_config) -> Qwen25VLConfig:
    """The model config a training run built: preset or ``init_from``, with its tokenizer's special ids."""
    cfg = model_config(train_config)
    if train_config.data.source == "records":  # random init adopted the tokenizer's ids (train.data)
        tok = tok_lib.load_tokenizer(training_tokenizer_path(train_config))
        cfg = match_tokenizer(cfg, tok, adopt=not train_config.model.init_from)
    return cfg


def checkpoint_model_config(train_workdir: str | os.PathLike, step: int, train_config) -> Qwen25VLConfig:
    """The model config saved with a training step (``model/config.json``); rebuilt from the experiment
    config for steps saved before vtjax stored it."""
    path = _checkpoints_dir(train_workdir) / str(step) / "model" / "config.json"
    if not path.is_file():
        return training_model_config(train_config)
    return model_config(train_config, saved=json.loads(path.read_text()))


def restore_training_params(train_workdir: str | os.PathLike, step: int | None = None):
    """(model config, params as host numpy arrays, step) of a training checkpoint; optimizer state unread."""
    step = _resolve_step(train_workdir, step)
    train_config = training_config(train_workdir, step)
    model_cfg = checkpoint_model_config(train_workdir, step, train_config)
    shapes = abstract_params(model_cfg)
    if model_cfg.lora is not None:  # the checkpoint holds the adapters; the base comes from its pointer
        shapes = adapters.adapters_only(shapes)
    target = {"params": jax.tree_util.tree_map(lambda s: np.empty(s.shape, s.dtype), shapes)}
    restore_args = jax.tree_util.tree_map(lambda x: ocp.RestoreArgs(restore_type=np.ndarray), target)
    restored = ocp.PyTreeCheckpointer().restore(
        _checkpoints_dir(train_workdir) / str(step) / "state",
        args=ocp.args.PyTreeRestore(item=target, restore_args=restore_args, partial_restore=True))
    if model_cfg.lora is None:
        return model_cfg, restored["params"], step
    record = json.loads((_checkpoints_dir(train_workdir) / str(step) / "lora_base" / "base.json").read_text())
    base_cfg = model_cfg.replace(lora=None)
    base = (restore_params(record["init_from"], config=base_cfg) if record["init_from"]
            else jax.tree_util.tree_map(np.asarray, init_params(base_cfg, record["seed"])))
    base = jax.tree_util.tree_map(np.asarray, held_as(model_cfg, base))  # as the run held it (lora.base_dtype)
    adapters.check_base(record, adapters.base_record(base, record["init_from"], record["seed"]), step)
    return model_cfg, lora.insert(base, restored["params"]), step


def export_params(train_workdir: str | os.PathLike, out_dir: str | os.PathLike, *, tokenizer: str | None = None,
                  step: int | None = None, overwrite: bool = False) -> Path:
    """Writes the params of ``train_workdir``'s checkpoint (newest, or ``step``) as a params checkpoint.

    Args:
      train_workdir: the ``--workdir`` of an SFT or GRPO run.
      out_dir: the directory to create (complete or absent: written to a temporary sibling first).
      tokenizer: a tokenizer file (or directory holding one) to copy alongside; None copies the
        one the run trained with, when it had one.
      step: which checkpoint; None = the newest.
      overwrite: replace a non-empty ``out_dir``.

    Returns:
      ``out_dir`` as a Path; point ``model.init_from`` at it.
    """
    refuse_workdir_overlap(train_workdir, out_dir)
    model_cfg, params, _ = restore_training_params(train_workdir, step)
    tokenizer = tokenizer if tokenizer is not None else training_tokenizer_path(training_config(train_workdir, step))
    tok_file = _tokenizer_file(tokenizer) if tokenizer else None
    out_dir = Path(out_dir)
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        write_params_checkpoint(tmp, model_cfg, params)
        if tok_file is not None:  # under the name load_tokenizer looks for in a directory
            shutil.copy2(tok_file, tmp / ("tokenizer.json" if tok_file.suffix == ".json" else "tokenizer.model"))
    return out_dir


def export_hf(train_workdir: str | os.PathLike, out_dir: str | os.PathLike, *, step: int | None = None,
              dtype: str | None = None, max_shard_bytes: int = MAX_SHARD_BYTES, overwrite: bool = False,
              progress: bool = True, check=None) -> Path:
    """Writes the params of ``train_workdir``'s checkpoint as a Hugging Face directory (``from_pretrained``).

    Safetensors shards, config.json and generation_config.json as ``save_hf``
    writes them, plus the run's tokenizer files (all HF side files when the run
    read its tokenizer from a directory, e.g. its ``init_from``). ``check``, when
    given, is called as ``check(model_cfg, params, directory)`` before the
    directory moves into place (``--verify``); an exception from it leaves nothing.
    """
    refuse_workdir_overlap(train_workdir, out_dir)
    model_cfg, params, _ = restore_training_params(train_workdir, step)
    tokenizer = training_tokenizer_path(training_config(train_workdir, step))
    tok_file = _tokenizer_file(tokenizer) if tokenizer else None
    out_dir = Path(out_dir)
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        if tokenizer and Path(tokenizer).is_dir():
            copy_side_files(Path(tokenizer), tmp)
        if tok_file is not None and not (tmp / tok_file.name).exists():
            shutil.copy2(tok_file, tmp / ("tokenizer.json" if tok_file.suffix == ".json" else "tokenizer.model"))
        plain = params if model_cfg.lora is None else lora.merge(model_cfg.lora, params)  # LoRA: merged
        write_hf_files(model_cfg.replace(lora=None), plain, tmp, dtype=dtype, max_shard_bytes=max_shard_bytes,
                       progress=progress)
        if check is not None:
            check(model_cfg, params, tmp)
    return out_dir


def refuse_workdir_overlap(train_workdir: str | os.PathLike, out_dir: str | os.PathLike) -> None:
    """An export may sit inside the run's workdir (e.g. ``WORKDIR/sft_params``), never over it or its checkpoints."""
    refuse_overlap(train_workdir, out_dir, "--workdir", allow_inside=True)
    refuse_overlap(_checkpoints_dir(train_workdir), out_dir, "the checkpoints of --workdir")


def _tokenizer_file(path: str) -> Path:
    """The tokenizer file ``path`` names (``load_tokenizer``'s rules), checked to load."""
    p = Path(path)
    if p.is_dir():
        found = [p / n for n in ("tokenizer.json", "tokenizer.model", "spm.model") if (p / n).is_file()]
        if not found:
            raise ExportError(f"tokenizer={path!r} holds no tokenizer.json or tokenizer.model")
        p = found[0]
    if not p.is_file():
        raise ExportError(f"tokenizer={path!r} does not exist; pass the tokenizer file the run trained with")
    tok_lib.load_tokenizer(str(p))
    return p
