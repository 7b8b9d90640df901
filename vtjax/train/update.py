"""The optimizer update SFT and GRPO share: micro-batch accumulation, frozen parts, the finite guard, apply.

An objective supplies a micro-batch loss; ``accumulate`` sums its gradients
over the leading micro-batch axis of a batch (``lax.scan``), ``apply``
clips (inside ``tx``), applies and keeps params and optimizer state as they
were when the loss or the gradient norm is not finite, and ``jit_update``
compiles the whole step with explicit in/out shardings and the state
donated, so each step's layout is fixed and its old buffers are reused.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vtjax.train.optimizer import frozen_mask, has_adapters
from vtjax.train.state import TrainState


def freeze(params, parts: str):
    """``params`` with the parts named in ``train.freeze`` (with LoRA adapters: all but the adapters) behind
    ``stop_gradient`` (their gradient is 0, and no weight gradient of theirs is computed)."""
    if not parts and not has_adapters(params):
        return params
    mask = frozen_mask(params, parts)
    return jax.tree_util.tree_map(lambda p, f: jax.lax.stop_gradient(p) if f else p, params, mask)


def trainable(params, parts: str):
    """``params`` with None at every frozen leaf (``freeze``'s rule): what the gradient is taken of, so
    that neither the backward pass nor the accumulator holds anything for frozen weights."""
    mask = frozen_mask(params, parts)
    return jax.tree_util.tree_map(lambda p, f: None if f else p, params, mask)


def with_frozen(train, params):
    """The full params: ``train``'s leaves, and ``params``' (behind ``stop_gradient``) where it has None."""
    return jax.tree_util.tree_map(lambda t, p: jax.lax.stop_gradient(p) if t is None else t, train, params,
                                  is_leaf=lambda x: x is None)


def full_grads(grads, params):
    """Gradients of ``trainable(params)`` completed with zeros at the frozen leaves (the optimizer's tree)."""
    return jax.tree_util.tree_map(lambda g, p: jnp.zeros_like(p) if g is None else g, grads, params,
                                  is_leaf=lambda x: x is None)


def dropout_keys(model_cfg, seed: int, step: jax.Array, micro_batches: int) -> jax.Array | None:
    """[M] PRNG keys for the adapters' dropout in one step's micro-batches (from seed and step), or None
    when the model has no dropout (its programs then take no key)."""
    if model_cfg.lora is None or not model_cfg.lora.dropout:
        return None
    return jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), step), micro_batches)


def accumulate(grad_fn: Callable, grads_like, batch):
    """Sums ``grad_fn(micro_batch) -> (grads, aux)`` over the leading axis of ``batch``.

    ``grads_like``: a pytree shaped like the gradients (the accumulator starts at zeros of it).
    Returns (summed grads, aux stacked over micro-batches).
    """
    def body(acc, mb):
        grads, aux = grad_fn(mb)
        return jax.tree_util.tree_map(jnp.add, acc, grads), aux

    zeros = jax.tree_util.tree_map(jnp.zeros_like, grads_like)
    return jax.lax.scan(body, zeros, batch)


def apply(state: TrainState, grads, loss: jax.Array, tx: optax.GradientTransformation, advance: int = 1):
    """One optimizer step unless ``loss`` or the gradient norm is non-finite.

    Returns (new state, {"grad_norm", "finite"}); the step counter (training steps, not optimizer
    updates) moves by ``advance`` either way: 0 for all but the last update of a GRPO step.
    """
    grad_norm = optax.tree.norm(grads)
    updates, new_opt = tx.update(grads, state.opt_state, state.params)
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates = jax.tree_util.tree_map(lambda u: jnp.where(ok, u, jnp.zeros_like(u)), updates)
    params = optax.apply_updates(state.params, updates)
    opt_state = jax.tree_util.tree_map(lambda new, old: jnp.where(ok, new, old), new_opt, state.opt_state)
    return TrainState(step=state.step + advance, params=params, opt_state=opt_state), {"grad_norm": grad_norm,
                                                                                       "finite": ok}


def jit_update(step_fn: Callable, state_shardings: TrainState, input_shardings: tuple, mesh: Mesh,
               compiler_options: dict | None = None):
    """``jax.jit`` of ``step_fn(state, *inputs) -> (state, metrics)``: explicit shardings, state donated.

    ``input_shardings``: one sharding pytree (or prefix) per input after the state; metrics come back
    replicated. ``compiler_options`` are XLA debug options for this program only (e.g. the tests'
    ``{"xla_backend_optimization_level": 0}`` to compile faster on a CPU).
    """
    replicated = NamedSharding(mesh, P())
    return jax.jit(step_fn, in_shardings=(state_shardings, *input_shardings),
                   out_shardings=(state_shardings, replicated), donate_argnums=0,
                   compiler_options=compiler_options)
