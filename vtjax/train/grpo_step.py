"""Jitted GRPO pieces: the step's vision pass, per-token log-probs of a rollout batch, and the update.

Everything takes the step's prompt features [Mp, E] (the vision tower's
output, encoded once per step) instead of pixels. When the tower trains, the
encode program also returns its pullback (``jax.vjp``'s residuals, a pytree
that crosses program boundaries): the update sends the gradient of the loss
with respect to the features back through it, so the tower's forward runs
once per step and its backward once, whatever the micro-batching. Later
updates on the same rollouts (``rl.num_iterations`` > 1) see new params and
encode again inside the update.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding

from vtjax.models.qwen2_5_vl import Qwen25VL, Qwen25VLConfig
from vtjax.models.qwen2_5_vl.vision import VisionInputs
from vtjax.ops.logprobs import chunked_token_logprobs
from vtjax.rl.grpo import grpo_loss
from vtjax.train import update
from vtjax.train.optimizer import frozen_mask
from vtjax.train.rollout_batch import RolloutBatch, ScoredTokens, loss_shares
from vtjax.train.state import TrainState


def encode_fn(model_cfg: Qwen25VLConfig, freeze: str, features: NamedSharding, with_pullback: bool):
    """Jitted ``(params, VisionInputs) -> features [Mp, E]`` (row-sharded), or ``(features, pullback)``:
    the pullback maps a features cotangent to the gradient of ``params["visual"]``."""
    model = Qwen25VL(model_cfg)

    def encode(params, vision):
        return model.apply({"params": update.freeze(params, freeze)}, vision, method=Qwen25VL.encode_vision)

    def encode_with_pullback(params, vision):
        return jax.vjp(lambda visual: encode({**params, "visual": visual}, vision), params["visual"])

    if with_pullback:
        return jax.jit(encode_with_pullback, out_shardings=(features, None))
    return jax.jit(encode, out_shardings=features)


def vision_trains(params, freeze: str) -> bool:
    """Whether any vision-tower parameter is trained (not named in ``train.freeze``)."""
    mask = frozen_mask(params, freeze)
    return any(not frozen for frozen in jax.tree_util.tree_leaves(mask["visual"]))


def policy_logprobs_fn(model_cfg: Qwen25VLConfig, chunk: int):
    """``(params, inputs, scored, features) -> [b, T]`` float32 log-prob of each completion token (one
    micro-batch of a ``RolloutBatch``; ``scored``: its ``ScoredTokens``).

    Only the scored positions go through the LM head, in ``chunk``-position slices.
    ``features`` [Mp, E]: the vision features ``inputs.vision_gather`` indexes (None: encode ``inputs.vision``).
    """
    model = Qwen25VL(model_cfg)

    def logprobs(params, inputs, scored: ScoredTokens, features=None, dropout_key=None):
        variables = {"params": params}
        rngs = None if dropout_key is None else {"dropout": dropout_key}  # the adapters' dropout (LoRA)
        x = model.apply(variables, inputs, features, method=Qwen25VL.embed, rngs=rngs)
        hidden = model.apply(variables, x, inputs.position_ids, inputs.segment_ids, inputs.shared_prefix,
                             method=Qwen25VL.decode, rngs=rngs)  # [s, L, E]
        picked = jnp.take_along_axis(hidden, scored.positions[..., None], axis=1)  # [s, K, E]
        per_sequence = chunked_token_logprobs(
            lambda h: model.apply(variables, h, method=Qwen25VL.logits, rngs=rngs),
            picked, scored.tokens, chunk)  # [s, K]
        rows, tokens = scored.index.shape
        index = scored.index.reshape(hidden.shape[0], -1)  # [s, b/s * T]
        return jnp.take_along_axis(per_sequence, index, axis=1).reshape(rows, tokens)  # [b, T]

    return logprobs


def batch_logprobs_fn(model_cfg: Qwen25VLConfig, chunk: int, rows: NamedSharding | None = None):
    """Jitted ``(params, RolloutBatch, features) -> [M, b, T]`` log-probs, no gradient (old / reference policy).

    ``rows``: the output's sharding (rows over the batch axes, like the batch's weights).
    """
    logprobs = policy_logprobs_fn(model_cfg, chunk)

    def run(params, batch: RolloutBatch, features):
        return jax.lax.map(lambda xs: logprobs(params, *xs, features), (batch.inputs, batch.scored))

    return jax.jit(run) if rows is None else jax.jit(run, out_shardings=rows)


def make_grpo_step(model_cfg: Qwen25VLConfig, tx: optax.GradientTransformation, schedule: optax.Schedule,
                   train_cfg, rl_cfg, *, last: bool = True, seed: int = 0):
    """The un-jitted update ``(state, RolloutBatch, VisionInputs, features, pullback) -> (state, metrics)``.

    ``seed``: the adapters' dropout draws (LoRA with ``train.lora.dropout``) follow (seed, step).

    ``features``: the prompts' features from ``encode_fn`` with ``state.params``; ``pullback``: its
    pullback when the tower trains, or None, which makes a training tower encode again here (the params
    moved since the features were made, or the caller kept no pullback). ``last``: this is a step's last
    update (``rl.num_iterations``), which advances ``state.step``.
    """
    model = Qwen25VL(model_cfg)
    logprobs = policy_logprobs_fn(model_cfg, train_cfg.loss_chunk)
    clip = dict(clip_eps_low=rl_cfg.clip_eps_low, clip_eps_high=rl_cfg.clip_eps_high) if rl_cfg.clip \
        else dict(clip_eps_low=None, clip_eps_high=None)
    token_norm = float(rl_cfg.max_new_tokens) if rl_cfg.loss_agg == "seq-mean-token-sum-norm" else None

    def encode(params, vision):
        return model.apply({"params": update.freeze(params, train_cfg.freeze)}, vision,
                           method=Qwen25VL.encode_vision)

    def micro_loss(train, features, params, mb: RolloutBatch, share, key):  # the gradient: of train, features
        logp = logprobs(update.with_frozen(train, params), mb.inputs, mb.scored, features, key)  # [b, T]
        old = mb.old_logp if mb.old_logp is not None else jax.lax.stop_gradient(logp)
        loss, metrics = grpo_loss(logp, old, mb.ref_logp, mb.advantages, mb.weights, beta=rl_cfg.beta,
                                  agg=rl_cfg.loss_agg, token_norm=token_norm, **clip)
        return loss * share, {k: v * share for k, v in metrics.items()}

    def step(state: TrainState, batch: RolloutBatch, vision: VisionInputs, features, pullback=None):
        shares = loss_shares(batch.weights, rl_cfg.loss_agg)  # [M]
        trains_vision = vision_trains(state.params, train_cfg.freeze)
        if trains_vision and pullback is None:  # encode with these params, keeping the way back
            features, pullback = jax.vjp(lambda visual: encode({**state.params, "visual": visual}, vision),
                                         state.params["visual"])
        if trains_vision:  # accumulate the features' gradient in float32 whatever the compute dtype
            feature_dtype, features = features.dtype, features.astype(jnp.float32)
        grad_fn = jax.value_and_grad(micro_loss, argnums=(0, 1) if trains_vision else 0, has_aux=True)
        train = update.trainable(state.params, train_cfg.freeze)

        def micro_grads(xs):
            mb, share, key = xs
            (loss, metrics), grads = grad_fn(train, features, state.params, mb, share, key)
            return grads, (loss, metrics)

        grads_like = (train, features) if trains_vision else train
        keys = update.dropout_keys(model_cfg, seed, state.step, shares.shape[0])
        grads, (losses, metrics) = update.accumulate(micro_grads, grads_like, (batch, shares, keys))
        if trains_vision:
            grads, feature_grads = grads
            (visual,) = pullback(feature_grads.astype(feature_dtype))
            grads = update.full_grads(grads, state.params)
            grads = {**grads, "visual": jax.tree_util.tree_map(jnp.add, grads["visual"], visual)}
        else:
            grads = update.full_grads(grads, state.params)
        loss = jnp.sum(losses)
        new_state, applied = update.apply(state, grads, loss, tx, advance=int(last))
        out = {k: jnp.sum(v) for k, v in metrics.items()}
        out.update(loss=loss, lr=schedule(state.step), **applied,
                   tokens=jnp.sum(batch.inputs.segment_ids > 0).astype(jnp.float32))
        return new_state, out

    return step
