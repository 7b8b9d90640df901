"""The train state (step, params, optimizer state), its shardings and its sharded initialisation.

Shapes come from ``jax.eval_shape`` (nothing allocated), shardings from the
params' logical axes; the state is then created directly in its sharding by
a jitted init (random) or restored shard by shard (``init_from``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vtjax import errors
from vtjax.convert.orbax_io import read_checkpoint_config, restore_params
from vtjax.models.qwen2_5_vl import Qwen25VL, Qwen25VLConfig, param_logical_axes
from vtjax.models.qwen2_5_vl import lora
from vtjax.models.qwen2_5_vl.api import dummy_inputs
from vtjax.sharding import shardings_for
from vtjax.train.config import lora_spec


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # [] int32, optimizer steps taken
    params: Any  # the model's parameter pytree
    opt_state: Any  # optax state (moments sharded like the params)


def model_config(config, saved: dict | None = None) -> Qwen25VLConfig:
    """The Qwen25VLConfig of ``config.model``: ``saved`` (a training checkpoint's config.json) when given,
    else ``init_from``'s own config.json, else a preset; runtime fields (dtypes, remat, attention) from
    ``config.model``."""
    m = config.model
    runtime = dict(dtype=m.dtype, param_dtype=m.param_dtype, scan_layers=m.scan_layers,
                   remat_policy=m.remat_policy)
    if saved is not None:
        cfg = Qwen25VLConfig.from_hf_dict(saved, **runtime)
    elif m.init_from:
        cfg = read_checkpoint_config(m.init_from, **runtime)
    else:  # a preset (its special ids may still change to a tokenizer's: train.data)
        cfg = Qwen25VLConfig.preset(m.preset, **runtime)
    return cfg.replace(vision=dataclasses.replace(cfg.vision, attention_impl=m.attention_impl),
                       text=dataclasses.replace(cfg.text, attention_impl=m.attention_impl),
                       lora=lora_spec(config))


def _init_params(model_cfg: Qwen25VLConfig, rng: jax.Array):
    return nn.meta.unbox(Qwen25VL(model_cfg).init(rng, dummy_inputs(model_cfg))["params"])


def param_shapes(model_cfg: Qwen25VLConfig):
    """ShapeDtypeStructs of the params (no optimizer needed)."""
    return jax.eval_shape(functools.partial(_init_params, model_cfg), jax.random.PRNGKey(0))


def abstract_state(model_cfg: Qwen25VLConfig, tx: optax.GradientTransformation) -> TrainState:
    """Shapes and dtypes of the whole train state (a LoRA base in its storage dtype), allocating nothing."""
    params = jax.tree_util.tree_map_with_path(
        lambda p, s: jax.ShapeDtypeStruct(s.shape, lora.storage_dtype(model_cfg.lora, p, s.dtype)),
        param_shapes(model_cfg))
    return TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=params,
                      opt_state=jax.eval_shape(tx.init, params))


def state_shardings(model_cfg: Qwen25VLConfig, tx: optax.GradientTransformation, mesh: Mesh,
                    shapes: TrainState | None = None) -> TrainState:
    """NamedSharding of every state leaf: params by their logical axes, moments like their params."""
    shapes = shapes or abstract_state(model_cfg, tx)
    param_sh = shardings_for(param_logical_axes(model_cfg), shapes.params, mesh)
    replicated = NamedSharding(mesh, PartitionSpec())
    opt_sh = moment_shardings(shapes.opt_state, shapes.params, param_sh, replicated)
    return TrainState(step=replicated, params=param_sh, opt_state=opt_sh)


def moment_shardings(opt_state, params, param_shardings, default: NamedSharding):
    """A sharding for every optimizer-state leaf: that of the parameter it mirrors, else ``default``.

    Optax moments (``mu``, ``nu``, ...) are trees shaped like the params, nested
    in the state, so a moment's key path ends with its parameter's key path.
    Matching paths (not tree structures) also covers masked and partitioned
    optimizers, whose states hold ``MaskedNode`` in place of frozen params.
    """
    by_path = {tuple(path): (leaf.shape, sh) for (path, leaf), sh in zip(
        jax.tree_util.tree_leaves_with_path(params), jax.tree_util.tree_leaves(param_shardings), strict=True)}
    depth = max((len(p) for p in by_path), default=0)

    def pick(path, leaf):
        for start in range(max(0, len(path) - depth), len(path)):
            shape, sh = by_path.get(tuple(path[start:]), (None, None))
            if sh is not None and shape == leaf.shape:
                return sh
        return default

    return jax.tree_util.tree_map_with_path(pick, opt_state)


def with_shardings(shapes: TrainState, shardings: TrainState) -> TrainState:
    """ShapeDtypeStructs that carry their target sharding (restore / AOT targets)."""
    return jax.tree_util.tree_map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                                  shapes, shardings)


def init_state(model_cfg: Qwen25VLConfig, tx: optax.GradientTransformation, mesh: Mesh, *, seed: int,
               init_from: str = "") -> TrainState:
    """A fresh state placed in its sharding: random params from ``seed``, or restored from ``init_from``."""
    shardings = state_shardings(model_cfg, tx, mesh)
    params = initial_params(model_cfg, shardings.params, mesh, seed=seed, init_from=init_from)
    opt_state = jax.jit(tx.init, out_shardings=shardings.opt_state)(params)
    step = jax.device_put(jnp.zeros((), jnp.int32), shardings.step)
    return TrainState(step=step, params=params, opt_state=opt_state)


def initial_params(model_cfg: Qwen25VLConfig, param_shardings, mesh: Mesh, *, seed: int, init_from: str = ""):
    """The run's starting params in ``param_shardings`` (GRPO's frozen reference is these).

    With LoRA (``model_cfg.lora``) the base comes from ``init_from`` (or ``seed``) and the adapters start
    fresh from ``seed`` (B = 0: the model starts as the base), unless ``init_from`` holds adapters of the
    same spec (e.g. a PEFT adapter imported with ``hf-to-orbax --peft-adapter``), which then continue.
    """
    if not init_from:
        return jax.jit(lambda rng: held_as(model_cfg, _init_params(model_cfg, rng)),
                       out_shardings=param_shardings)(jax.random.PRNGKey(seed))
    stored = read_checkpoint_config(init_from).lora
    if stored is not None and stored != model_cfg.lora:
        raise errors.ConfigError(
            f"model.init_from={init_from!r} holds LoRA adapters ({stored}) but train.lora asks for "
            f"{model_cfg.lora}: train with the same train.lora fields, or merge the adapters first "
            "(python -m vtjax.convert orbax-to-hf --lora merge, then hf-to-orbax)")
    restored_cfg = model_cfg if stored is not None else model_cfg.replace(lora=None)
    params = restore_params(init_from, mesh=mesh, config=restored_cfg)
    if model_cfg.lora is not None and stored is None:
        _, adapter_shardings = lora.split(param_shardings)
        fresh = jax.jit(lambda rng: lora.split(_init_params(model_cfg, rng))[1],
                        out_shardings=adapter_shardings)(jax.random.PRNGKey(seed))
        params = lora.insert(params, fresh)
    return jax.jit(lambda p: held_as(model_cfg, p), out_shardings=param_shardings, donate_argnums=0)(params)


def held_as(model_cfg: Qwen25VLConfig, params):
    """``params`` in their training storage dtypes (``param_dtype``; a LoRA base in ``lora.base_dtype``)."""
    return jax.tree_util.tree_map_with_path(
        lambda p, x: x.astype(lora.storage_dtype(model_cfg.lora, p, model_cfg.param_dtype)), params)
