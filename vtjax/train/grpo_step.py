"""Jitted GRPO pieces: per-token log-probs of a rollout batch, and the update step.

The update accumulates gradients over the micro-batch axis; micro-batch m's
loss is weighted by its ``share`` of the aggregation (completions or tokens),
so M slices give exactly the gradient of the loss over all N completions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from vtjax.models.qwen2_5_vl import Qwen25VL, Qwen25VLConfig
from vtjax.ops.logprobs import chunked_token_logprobs
from vtjax.rl.grpo import grpo_loss
from vtjax.train.optimizer import frozen_mask
from vtjax.train.rollout_batch import RolloutBatch
from vtjax.train.state import TrainState


def policy_logprobs_fn(model_cfg: Qwen25VLConfig, chunk: int):
    """``(params, inputs, targets) -> [b, L]`` float32 log-prob of each target (one micro-batch)."""
    model = Qwen25VL(model_cfg)

    def logprobs(params, inputs, targets):
        variables = {"params": params}
        x = model.apply(variables, inputs, method=Qwen25VL.embed)
        hidden = model.apply(variables, x, inputs.position_ids, inputs.segment_ids, method=Qwen25VL.decode)
        return chunked_token_logprobs(lambda h: model.apply(variables, h, method=Qwen25VL.logits),
                                      hidden, targets, chunk)

    return logprobs


def batch_logprobs_fn(model_cfg: Qwen25VLConfig, chunk: int):
    """Jitted ``(params, RolloutBatch) -> [M, b, L]`` log-probs, no gradient (old / reference policy)."""
    logprobs = policy_logprobs_fn(model_cfg, chunk)

    def run(params, batch: RolloutBatch):
        return jax.lax.map(lambda xs: logprobs(params, *xs), (batch.inputs, batch.targets))

    return jax.jit(run)


def make_grpo_step(model_cfg: Qwen25VLConfig, tx: optax.GradientTransformation, schedule: optax.Schedule,
                   train_cfg, rl_cfg):
    """The un-jitted update ``(state, RolloutBatch) -> (state, metrics)``."""
    logprobs = policy_logprobs_fn(model_cfg, train_cfg.loss_chunk)
    clip = dict(clip_eps_low=rl_cfg.clip_eps_low, clip_eps_high=rl_cfg.clip_eps_high) if rl_cfg.clip \
        else dict(clip_eps_low=None, clip_eps_high=None)
    token_norm = float(rl_cfg.max_new_tokens) if rl_cfg.loss_agg == "seq-mean-token-sum-norm" else None

    def micro_loss(params, mb: RolloutBatch):
        if train_cfg.freeze:
            mask = frozen_mask(params, train_cfg.freeze)
            params = jax.tree_util.tree_map(lambda p, f: jax.lax.stop_gradient(p) if f else p, params, mask)
        logp = logprobs(params, mb.inputs, mb.targets)  # [b, L]
        old = mb.old_logp if mb.old_logp is not None else jax.lax.stop_gradient(logp)
        loss, metrics = grpo_loss(logp, old, mb.ref_logp, mb.advantages, mb.weights, beta=rl_cfg.beta,
                                  agg=rl_cfg.loss_agg, token_norm=token_norm, **clip)
        return loss * mb.share, {k: v * mb.share for k, v in metrics.items()}

    def step(state: TrainState, batch: RolloutBatch):
        grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

        def body(acc, mb):
            (loss, metrics), grads = grad_fn(state.params, mb)
            return jax.tree_util.tree_map(jnp.add, acc, grads), (loss, metrics)

        zeros = jax.tree_util.tree_map(jnp.zeros_like, state.params)
        grads, (losses, metrics) = jax.lax.scan(body, zeros, batch)
        loss = jnp.sum(losses)
        grad_norm = optax.global_norm(grads)
        updates, new_opt = tx.update(grads, state.opt_state, state.params)
        ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates = jax.tree_util.tree_map(lambda u: jnp.where(ok, u, jnp.zeros_like(u)), updates)
        params = optax.apply_updates(state.params, updates)
        opt_state = jax.tree_util.tree_map(lambda new, old: jnp.where(ok, new, old), new_opt, state.opt_state)
        out = {k: jnp.sum(v) for k, v in metrics.items()}
        out.update(loss=loss, grad_norm=grad_norm, lr=schedule(state.step), finite=ok,
                   tokens=jnp.sum(batch.inputs.segment_ids > 0).astype(jnp.float32))
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), out

    return step
