"""Resuming a run: the workdir's saved config against this one, and the newest intact checkpoint.

``check_workdir`` runs before anything is built or written: it reads the
config saved with the newest checkpoint and refuses another kind of run
(``mode``) or another model; changes that keep the run the same run (learning
rate and schedule, step count, logging, checkpoint cadence, mesh, kernels)
are logged as a diff; any other change (batch size, data, seed, ...) is
refused unless ``checkpoint.allow_config_change``. ``restore_newest`` then
restores the newest step that reads back whole, moving damaged newer steps
aside (``Checkpointer.set_aside``).
"""

from __future__ import annotations

import json
import logging

import jax
import numpy as np
from jax.experimental import multihost_utils

from vtjax import errors
from vtjax.train.checkpoint import Checkpointer
from vtjax.train.state import TrainState

log = logging.getLogger("vtjax.train")

# Never resumable across a change: another trainer, or another parameter tree.
IDENTITY = ("mode", "model.preset", "model.init_from", "model.scan_layers")
# Safe to change on resume (prefix match): they change how the same run goes on, not what it is.
SAFE = ("train.lr", "train.warmup_steps", "train.warmup_ratio", "train.end_lr_ratio", "train.num_steps",
        "train.num_epochs", "train.on_nonfinite", "train.loss_chunk", "train.micro_batches", "log.",
        "checkpoint.", "mesh.", "model.attention_impl", "model.remat_policy", "model.dtype", "data.worker_count",
        "rl.decode_rows_per_prompt", "rl.decode_cache_growth", "rl.decode_compact_rows")
_ABSENT = "<absent>"
_MAX_LISTED = 6  # changed fields named in a refusal


def flatten(tree: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (JSON-normalised: tuples become lists)."""
    out = {}
    for key, value in json.loads(json.dumps(tree)).items():
        name = f"{prefix}{key}"
        out.update(flatten(value, name + ".") if isinstance(value, dict) else {name: value})
    return out


def config_changes(saved: dict, current: dict) -> dict[str, tuple]:
    """Every field whose value differs between ``saved`` and ``current``: name -> (old, new)."""
    old, new = flatten(saved), flatten(current)
    return {k: (old.get(k, _ABSENT), new.get(k, _ABSENT)) for k in sorted(old.keys() | new.keys())
            if old.get(k, _ABSENT) != new.get(k, _ABSENT)}


def _identity_changes(changes: dict, saved: dict, current: dict) -> dict:
    random_init = not flatten(saved).get("model.init_from") and not flatten(current).get("model.init_from")
    return {k: v for k, v in changes.items()
            if k in IDENTITY and (k != "model.preset" or random_init)}  # init_from decides the architecture


def _listed(changes: dict) -> str:
    items = [f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items()]
    more = f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return ", ".join(items[:_MAX_LISTED]) + more


def _new_fields_at_default(changes: dict, defaults: dict | None) -> dict:
    """Fields the saved config lacks (added to vtjax since it was saved) whose value is still the default:
    the run computes what it did before, so they are safe."""
    flat = flatten(defaults) if defaults else {}
    return {k: v for k, v in changes.items() if v[0] == _ABSENT and k in flat and flat[k] == v[1]}


def check_config(saved: dict, current: dict, *, workdir: str, step: int,
                 defaults: dict | None = None) -> dict[str, tuple]:
    """Raises CheckpointError when ``current`` may not resume the run that saved ``saved`` at ``step``;
    returns the safe changes (logged by the caller). ``defaults`` (the mode's schema) lets a field added
    since the save resume when it holds its default."""
    changes = config_changes(saved, current)
    if "mode" in changes:
        old, new = changes["mode"]
        raise errors.CheckpointError(
            f"workdir {workdir} holds a {old} run at step {step}; this is a {new} config. Use a new --workdir, "
            f"or export that run (python -m vtjax.convert workdir-to-orbax --workdir {workdir} --out DIR) and "
            "set model.init_from=DIR")
    identity = _identity_changes(changes, saved, current)
    if identity:
        raise errors.CheckpointError(
            f"workdir {workdir} holds a run of another model at step {step} ({_listed(identity)}); use a new "
            "--workdir, or set the model fields back to the saved values")
    added = _new_fields_at_default(changes, defaults)
    unsafe = {k: v for k, v in changes.items()
              if k not in IDENTITY and k not in added and not any(k == s or k.startswith(s) for s in SAFE)}
    allowed = bool(current.get("checkpoint", {}).get("allow_config_change", False))
    if unsafe and not allowed:
        raise errors.CheckpointError(
            f"workdir {workdir} holds a run at step {step} whose config differs: {_listed(unsafe)}; resuming "
            "would not continue the same run. Use a new --workdir, undo the change, or set "
            "--config.checkpoint.allow_config_change=True to resume with it")
    return changes


def check_workdir(ckpt: Checkpointer, config: dict, *, resume: bool = True,
                  defaults: dict | None = None) -> int | None:
    """The newest saved step whose config ``config`` may resume (None when the workdir holds none).

    Runs before anything is written. Raises CheckpointError when the saved run is not this config's
    run, or when ``resume`` is False but the workdir holds checkpoints (a new run would prune them).
    Steps whose config cannot be read are skipped here (``restore_newest`` reports and sets them aside).
    """
    steps = ckpt.steps()
    if steps and not resume:
        raise errors.CheckpointError(
            f"checkpoint.resume=False but {ckpt.directory} holds checkpoints (steps {steps}) that a new run "
            "would overwrite and prune; use a new --workdir, or set checkpoint.resume=True to continue them")
    for step in reversed(steps):
        try:
            saved = ckpt.read_config(step)
        except Exception as e:  # noqa: BLE001  (a damaged step: restore_newest reports and skips it)
            log.warning("checkpoint step %d: its config cannot be read (%s)", step, _reason(e))
            continue
        changes = check_config(saved, config, workdir=ckpt.workdir, step=step, defaults=defaults)
        for name, (old, new) in changes.items():
            log.info("config change since step %d: %s: %r -> %r", step, name, old, new)
        return step
    if steps:
        raise errors.CheckpointError(f"no checkpoint under {ckpt.directory} has a readable config (steps "
                                     f"{steps}); use a new --workdir")
    return None


def check_model_config(saved: dict | None, built: dict, step: int) -> None:
    """Refuses to resume when the model this run built differs from the one saved with ``step`` (e.g. a
    tokenizer with other special ids); steps saved before the model config was stored pass."""
    if saved is None or saved == built:
        return
    changed = [f"{key}: {saved.get(key)!r} -> {built.get(key)!r}" for key in sorted(set(saved) | set(built))
               if saved.get(key) != built.get(key)]
    raise errors.CheckpointError(f"the model this run builds differs from the one saved with step {step} "
                                 f"({'; '.join(changed)}); resume with the config (and tokenizer) that wrote it, "
                                 "or use a new --workdir")


def restore_newest(ckpt: Checkpointer, target: TrainState) -> tuple[int, TrainState, dict]:
    """(step, state, this process's data-iterator state) of the newest checkpoint that restores whole.

    Damaged newer steps are logged (one line each), then moved to ``checkpoints_damaged/``; raises
    CheckpointError when no step is intact.
    """
    damaged: list[tuple[int, str]] = []
    for step in reversed(ckpt.steps()):
        try:
            ckpt.read_config(step)
            state, data_state = ckpt.restore(step, target)
            error = None
        except Exception as e:  # noqa: BLE001  (any failure to read a step back means it is damaged)
            state = data_state = None
            error = e
        if not _everywhere(error is None):
            reason = _reason(error) if error is not None else "unreadable on another process"
            log.warning("checkpoint step %d under %s is damaged, skipping it: %s", step, ckpt.directory, reason)
            damaged.append((step, reason))
            continue
        if damaged:
            aside = ckpt.set_aside([s for s, _ in damaged])
            log.warning("moved damaged step(s) %s to %s; resuming from step %d",
                        [s for s, _ in damaged], aside, step)
        return step, state, data_state
    detail = "; ".join(f"step {s}: {r}" for s, r in damaged)
    raise errors.CheckpointError(f"no intact checkpoint under {ckpt.directory} ({detail}); use a new --workdir "
                                 "(or restore the files of a step)")


def _everywhere(ok: bool) -> bool:
    """Whether ``ok`` holds on every process (the processes must resume from the same step)."""
    if jax.process_count() == 1:
        return ok
    return bool(np.min(multihost_utils.process_allgather(np.int32(ok))))


def _reason(error: BaseException) -> str:
    """One short line: the type and the first line of the message (which names the missing file)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:240]
