"""The jitted SFT step: the next-token loss under the shared update (``update``: accumulation, guard, apply).

The loss is the weighted mean over the whole global batch (weights: 1 per
answer token, or 1 / its example's answer tokens with per-example weighting,
``loss.shift_targets``): every micro-batch contributes
``sum(weights * ce) / sum(weights)``, so accumulating M slices gives
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
from vtjax.train import update
from vtjax.train.state import TrainState


def loss_and_grads(model_cfg: Qwen25VLConfig, mesh: Mesh | None, *, loss_chunk: int, freeze: str = ""):
    """``(params, TrainBatch) -> (loss, grads)`` accumulated over the micro-batch axis."""
    model = Qwen25VL(model_cfg)
    rows = None if mesh is None else NamedSharding(mesh, P(BATCH_AXES))

    def constrain(x):  # [b, L, E]: examples over the batch axes, the rest whole
        return x if rows is None else jax.lax.with_sharding_constraint(x, rows)

    def micro_loss(train, params, mb: TrainBatch, total, key):  # the gradient is of `train` (frozen: None)
        variables = {"params": update.with_frozen(train, params)}
        rngs = None if key is None else {"dropout": key}  # the adapters' dropout (LoRA), else none
        x = constrain(model.apply(variables, mb.inputs, method=Qwen25VL.embed, rngs=rngs))  # [b, L, E]
        hidden = model.apply(variables, x, mb.inputs.position_ids, mb.inputs.segment_ids,
                             method=Qwen25VL.decode, rngs=rngs)  # [b, L, E]
        logits_fn = lambda h: model.apply(variables, h, method=Qwen25VL.logits, rngs=rngs)  # noqa: E731
        ce_sum = chunked_cross_entropy(logits_fn, constrain(hidden), mb.targets, mb.weights, loss_chunk)
        return ce_sum / total, ce_sum

    def run(params, batch: TrainBatch, keys=None):
        """keys: [M] dropout keys of the micro-batches, or None."""
        total = jnp.maximum(jnp.sum(batch.weights), 1.0)  # target tokens (per-example weighting: examples)
        grad_fn = jax.value_and_grad(micro_loss, has_aux=True)
        train = update.trainable(params, freeze)

        def micro_grads(xs):
            mb, key = xs
            (_, ce_sum), grads = grad_fn(train, params, mb, total, key)
            return grads, ce_sum

        grads, ce_sums = update.accumulate(micro_grads, train, (batch, keys))
        return jnp.sum(ce_sums) / total, update.full_grads(grads, params)

    return run


def make_train_step(model_cfg: Qwen25VLConfig, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    train_cfg, mesh: Mesh | None, seed: int = 0):
    """The un-jitted step ``(state, batch) -> (state, metrics)``; see ``jit_train_step``. ``seed``: the
    adapters' dropout draws (LoRA with ``train.lora.dropout``) follow (seed, step)."""
    grads_fn = loss_and_grads(model_cfg, mesh, loss_chunk=train_cfg.loss_chunk, freeze=train_cfg.freeze)

    def step(state: TrainState, batch: TrainBatch):
        keys = update.dropout_keys(model_cfg, seed, state.step, batch.targets.shape[0])
        loss, grads = grads_fn(state.params, batch, keys)
        new_state, applied = update.apply(state, grads, loss, tx)
        metrics = {
            "loss": loss,
            "lr": schedule(state.step),
            "target_tokens": jnp.sum(batch.weights > 0).astype(jnp.float32),
            "tokens": jnp.sum(batch.inputs.segment_ids > 0).astype(jnp.float32),
            **applied,
        }
        return new_state, metrics

    return step


def jit_train_step(step_fn, state_shardings: TrainState, batch_shardings: TrainBatch, mesh: Mesh,
                   compiler_options: dict | None = None):
    """The SFT step under ``update.jit_update`` (explicit shardings, state donated)."""
    return update.jit_update(step_fn, state_shardings, (batch_shardings,), mesh, compiler_options)
