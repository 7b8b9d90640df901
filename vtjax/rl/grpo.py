"""GRPO: group-relative advantages, completion masks and the clipped surrogate loss with k3 KL.

All functions are jnp and jittable (the string / int arguments are static).
Shapes: B completions, T completion tokens; advantages are per completion.

Per token (REFERENCE.md §1, Video-R1's loss with optional PPO clipping):
    ratio_t = exp(logp_t - old_logp_t)
    surr_t  = min(ratio_t * A, clip(ratio_t, 1 - eps_low, 1 + eps_high) * A)
    d_t     = clamp(ref_logp_t - logp_t, -10, 10)
    kl_t    = exp(d_t) - d_t - 1                              (k3 estimator)
    loss_t  = -(surr_t - beta * kl_t)
With one update per batch, old_logp == logp in value and the gradient of
ratio * A is A * dlogp, as in Video-R1. `old_logp` and `ref_logp` are
treated as constants (stop_gradient).

Aggregations (`agg`):
  "seq-mean-token-mean"      mean over a completion's tokens, then over completions
                             (Video-R1 / GRPO paper). Completions with no token
                             (all-padding rows) are left out of the mean.
  "token-mean"               mean over all masked tokens of the batch (DAPO).
  "seq-mean-token-sum-norm"  each completion's token sum divided by a constant
                             `token_norm` (default T, the padded completion
                             length; set it to max_new_tokens), then mean over
                             completions (Dr. GRPO: no length bias).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

AGGREGATIONS = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm")
ADVANTAGE_SCALES = ("group", "batch", "none")
KL_CLAMP = 10.0


def group_advantages(rewards: jax.Array, group_size: int, scale: str = "group", eps: float = 1e-4) -> jax.Array:
    """(r - group mean) / (std + eps) for rewards laid out as consecutive groups.

    Args:
      rewards: float [N], N = num_prompts * group_size, each prompt's samples consecutive.
      group_size: G.
      scale: "group": unbiased std of each group; "batch": unbiased std of all
        N rewards; "none": no division (centred only).
      eps: added to the std.

    Returns:
      float32 [N] advantages.
    """
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"scale={scale!r} is not one of {ADVANTAGE_SCALES}.")
    r = jnp.asarray(rewards, jnp.float32)
    n = r.shape[0]
    if group_size < 1 or n % group_size:
        raise ValueError(f"{n} rewards do not split into groups of group_size={group_size}.")
    if scale == "group" and group_size < 2:
        raise ValueError("scale='group' needs group_size >= 2 (the unbiased std of one sample is undefined).")
    if scale == "batch" and n < 2:
        raise ValueError("scale='batch' needs at least 2 rewards.")
    g = r.reshape(n // group_size, group_size)  # [P, G]
    centred = g - g.mean(axis=1, keepdims=True)  # [P, G]
    if scale == "group":
        centred = centred / (jnp.std(g, axis=1, ddof=1, keepdims=True) + eps)
    elif scale == "batch":
        centred = centred / (jnp.std(r, ddof=1) + eps)
    return centred.reshape(n)


def completion_mask(tokens: jax.Array, eos_ids: int | Sequence[int]) -> jax.Array:
    """bool [B, T]: tokens up to and including each row's first EOS (all of a row without one)."""
    tokens = jnp.asarray(tokens)
    eos = jnp.asarray(eos_ids if not isinstance(eos_ids, int) else [eos_ids], tokens.dtype)
    is_eos = (tokens[..., None] == eos).any(-1)  # [B, T]
    eos_before = jnp.cumsum(is_eos, axis=-1) - is_eos  # EOS count strictly before t
    return eos_before == 0


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    return (x * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def aggregate(loss_bt: jax.Array, mask: jax.Array, agg: str, token_norm: float | None = None) -> jax.Array:
    """Reduces per-token values [B, T] to a scalar by one of `AGGREGATIONS`."""
    if agg == "token-mean":
        return _masked_mean(loss_bt, mask)
    per_seq_sum = (loss_bt * mask).sum(-1)  # [B]
    has_tokens = (mask.sum(-1) > 0).astype(loss_bt.dtype)  # [B]
    if agg == "seq-mean-token-mean":
        per_seq = per_seq_sum / jnp.maximum(mask.sum(-1), 1.0)
    elif agg == "seq-mean-token-sum-norm":
        per_seq = per_seq_sum / (loss_bt.shape[-1] if token_norm is None else token_norm)
    else:
        raise ValueError(f"agg={agg!r} is not one of {AGGREGATIONS}.")
    return (per_seq * has_tokens).sum() / jnp.maximum(has_tokens.sum(), 1.0)


def grpo_loss(
    logp: jax.Array,
    old_logp: jax.Array,
    ref_logp: jax.Array | None,
    advantages: jax.Array,
    mask: jax.Array,
    clip_eps_low: float | None = 0.2,
    clip_eps_high: float | None = 0.2,
    beta: float = 0.04,
    agg: str = "seq-mean-token-mean",
    token_norm: float | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """GRPO loss (module docstring) and its metrics.

    Args:
      logp: float [B, T] log-probs of the completion tokens under the policy being trained.
      old_logp: float [B, T] log-probs under the policy that sampled them.
      ref_logp: float [B, T] log-probs under the frozen reference policy, or
        None when beta == 0.
      advantages: float [B].
      mask: [B, T] 1 on completion tokens (`completion_mask`), 0 on padding.
      clip_eps_low, clip_eps_high: ratio clip range [1 - low, 1 + high]; both
        None disables clipping (plain ratio * A, Video-R1).
      beta: weight of the k3 KL penalty.
      agg: one of `AGGREGATIONS`.
      token_norm: the constant of "seq-mean-token-sum-norm" (default T).

    Returns:
      (scalar loss, metrics), float32 (float64 for float64 inputs): `kl` (masked token mean of kl_t),
      `clip_fraction` (share of masked tokens whose clipped term is the one
      taken and differs), `entropy` (-mean masked logp), `ratio` (masked mean),
      scalars without gradient.
    """
    if agg not in AGGREGATIONS:
        raise ValueError(f"agg={agg!r} is not one of {AGGREGATIONS}.")
    if (clip_eps_low is None) != (clip_eps_high is None):
        raise ValueError("set both clip_eps_low and clip_eps_high, or both to None to disable clipping.")
    if ref_logp is None and beta != 0:
        raise ValueError(f"ref_logp is None but beta={beta}; pass the reference log-probs or set beta=0.")
    if logp.ndim != 2 or advantages.shape != logp.shape[:1] or mask.shape != logp.shape:
        raise ValueError(
            f"expected logp [B, T], advantages [B], mask [B, T]; got {logp.shape}, {advantages.shape}, {mask.shape}."
        )
    f32 = jnp.promote_types(logp.dtype, jnp.float32)  # bf16 -> float32; float64 stays (tests)
    logp = logp.astype(f32)
    old_logp = jax.lax.stop_gradient(old_logp.astype(f32))
    m = mask.astype(f32)  # [B, T]
    adv = advantages.astype(f32)[:, None]  # [B, 1]

    ratio = jnp.exp(logp - old_logp)  # [B, T]
    surr = ratio * adv
    if clip_eps_low is not None:
        clipped = jnp.clip(ratio, 1.0 - clip_eps_low, 1.0 + clip_eps_high) * adv
        is_clipped = clipped < surr
        surr = jnp.minimum(surr, clipped)
    else:
        is_clipped = jnp.zeros_like(surr, dtype=bool)

    if ref_logp is not None:
        d = jnp.clip(jax.lax.stop_gradient(ref_logp.astype(f32)) - logp, -KL_CLAMP, KL_CLAMP)
        kl = jnp.exp(d) - d - 1.0  # [B, T]
    else:
        kl = jnp.zeros_like(logp)
    loss_t = -(surr - beta * kl)  # [B, T]
    loss = aggregate(loss_t, m, agg, token_norm)

    sg = jax.lax.stop_gradient
    metrics = {
        "kl": _masked_mean(sg(kl), m),
        "clip_fraction": _masked_mean(is_clipped.astype(f32), m),
        "entropy": -_masked_mean(sg(logp), m),
        "ratio": _masked_mean(sg(ratio), m),
    }
    return loss, metrics
