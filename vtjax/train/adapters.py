"""What a LoRA run checkpoints: the adapters and their optimizer state, and a record of the base they adapt.

The base weights never change in a LoRA run, so a checkpoint leaves them out
(a 7B run saves megabytes, not 15 GB) and records where they came from:
``model.init_from`` (or the random-init seed) and a fingerprint of the
loaded base, a weighted sum of its norm scales. A resume reloads the base
from that pointer and refuses one whose fingerprint differs, naming both.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from vtjax import errors
from vtjax.models.qwen2_5_vl import lora
from vtjax.train.state import TrainState

FINGERPRINT_RTOL = 1e-4  # float32 sums over another mesh round differently; another base differs far more


def adapters_only(params: dict) -> dict:
    """``params`` pruned to the adapter leaves (nested dicts without the base weights)."""
    out = {}
    for key, value in params.items():
        if isinstance(value, dict):
            kept = adapters_only(value)
            if kept:
                out[key] = kept
        elif key in lora.ADAPTER_NAMES:
            out[key] = value
    return out


def checkpointed(state: TrainState) -> TrainState:
    """The state a checkpoint holds: with adapters in the params, only those (and the optimizer state,
    which LoRA keeps for the adapters only)."""
    if not any(lora.is_adapter(p) for p, _ in jax.tree_util.tree_leaves_with_path(state.params)):
        return state
    return state.replace(params=adapters_only(state.params))


def fingerprint(params) -> float:
    """A weighted sum of the base's norm scales: cheap, computed on the mesh, different for another base."""
    scales = [x for p, x in jax.tree_util.tree_leaves_with_path(params)
              if getattr(p[-1], "key", None) == "scale"]

    @jax.jit
    def weighted(scales):
        total = jnp.zeros((), jnp.float32)
        for i, x in enumerate(scales):
            x = x.astype(jnp.float32).reshape(-1)
            total += jnp.sum(x * (1.0 + (jnp.arange(x.size) + i) % 7))
        return total

    return float(jax.device_get(weighted(scales)))


def base_record(params, init_from: str, seed: int) -> dict:
    """The pointer saved with every LoRA checkpoint."""
    return {"init_from": os.path.abspath(init_from) if init_from else "", "seed": None if init_from else seed,
            "fingerprint": fingerprint(params)}


def check_base(saved: dict | None, current: dict, step: int) -> None:
    """Refuses to put a checkpoint's adapters on another base than the one they were trained on."""
    if saved is None:
        raise errors.CheckpointError(f"checkpoint step {step} holds full-model params, but train.lora is on; "
                                     "resume it with train.lora.enabled=False")
    a, b = saved["fingerprint"], current["fingerprint"]
    if abs(a - b) > FINGERPRINT_RTOL * max(abs(a), abs(b), 1.0):
        raise errors.CheckpointError(
            f"checkpoint step {step} holds LoRA adapters trained on the base {_describe(saved)}, but this run "
            f"loads {_describe(current)} (fingerprints {a:.6g} vs {b:.6g}); set model.init_from to the base "
            "the adapters belong to")


def _describe(record: dict) -> str:
    return repr(record["init_from"]) if record["init_from"] else f"random init (seed {record['seed']})"
