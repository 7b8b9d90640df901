"""The jitted SFT step: gradient accumulation over micro-batches, clipping, AdamW, non-finite guard.

The loss is the token mean over the whole global batch: every micro-batch
contributes ``sum(ce) / total_target_tokens``, so accumulating M slices gives
exactly the gradient of one step over all of them. A non-finite loss or
gradient norm leaves params and optimizer state as they were.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vtjax.models.qwen2_5_vl import Qwen25VL, Qwen25VLConfig
from vtjax.train.batch import BATCH_AXES, TrainBatch
from vtjax.train.loss import chunked_cross_entropy
from vtjax.train.optimizer import frozen_mask
from vtjax.train.state import TrainState


def loss_and_grads(model_cfg: Qwen25VLConfig, mesh: Mesh | None, *, loss_chunk: int, freeze: str = ""):
    """``(params, TrainBatch) -> (loss, target_tokens, grads)`` accumulated over the micro-batch axis."""
    model = Qwen25VL(model_cfg)
    rows = None if mesh is None else NamedSharding(mesh, P(BATCH_AXES))

    def constrain(x):  # [b, L, E]: examples over the batch axes, the rest whole
        return x if rows is None else jax.lax.with_sharding_constraint(x, rows)

    def micro_loss(params, mb: TrainBatch, total):
        if freeze:
            mask = frozen_mask(params, freeze)
            params = jax.tree_util.tree_map(lambda p, f: jax.lax.stop_gradient(p) if f else p, params, mask)
        variables = {"params": params}
        x = constrain(model.apply(variables, mb.inputs, method=Qwen25VL.embed))  # [b, L, E]
        hidden = model.apply(variables, x, mb.inputs.position_ids, mb.inputs.segment_ids,
                             method=Qwen25VL.decode)  # [b, L, E]
        logits_fn = lambda h: model.apply(variables, h, method=Qwen25VL.logits)  # noqa: E731
        ce_sum = chunked_cross_entropy(logits_fn, constrain(hidden), mb.targets, mb.weights, loss_chunk)
        return ce_sum / total, ce_sum

    def run(params, batch: TrainBatch):
        total = jnp.maximum(jnp.sum(batch.weights), 1.0)  # target tokens of the global batch
        grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

        def body(acc, mb):
            (_, ce_sum), grads = grad_fn(params, mb, total)
            return jax.tree_util.tree_map(jnp.add, acc, grads), ce_sum

        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        grads, ce_sums = jax.lax.scan(body, zeros, batch)
        return jnp.sum(ce_sums) / total, total, grads

    return run


def make_train_step(model_cfg: Qwen25VLConfig, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    train_cfg, mesh: Mesh | None):
    """The un-jitted step ``(state, batch) -> (state, metrics)``; see ``jit_train_step``."""
    grads_fn = loss_and_grads(model_cfg, mesh, loss_chunk=train_cfg.loss_chunk, freeze=train_cfg.freeze)

    def step(state: TrainState, batch: TrainBatch):
        loss, target_tokens, grads = grads_fn(state.params, batch)
        grad_norm = optax.tree.norm(grads)
        updates, new_opt = tx.update(grads, state.opt_state, state.params)
        ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates = jax.tree_util.tree_map(lambda u: jnp.where(ok, u, jnp.zeros_like(u)), updates)
        params = optax.apply_updates(state.params, updates)
        opt_state = jax.tree_util.tree_map(lambda new, old: jnp.where(ok, new, old), new_opt, state.opt_state)
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "lr": schedule(state.step),
            "target_tokens": target_tokens,
            "tokens": jnp.sum(batch.inputs.segment_ids > 0).astype(jnp.float32),
            "finite": ok,
        }
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return step


def jit_train_step(step_fn, state_shardings: TrainState, batch_shardings: TrainBatch, mesh: Mesh,
                   compiler_options: dict | None = None):
    """``jax.jit`` with explicit in/out shardings and the state donated.

    ``compiler_options`` are XLA debug options for this program only (e.g. the
    tests' ``{"xla_backend_optimization_level": 0}`` to compile faster on a CPU).
    """
    replicated = NamedSharding(mesh, P())
    return jax.jit(step_fn, in_shardings=(state_shardings, batch_shardings),
                   out_shardings=(state_shardings, replicated), donate_argnums=0,
                   compiler_options=compiler_options)
