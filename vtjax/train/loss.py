"""Masked next-token cross-entropy in float32, computed over sequence chunks.

A 152k-entry vocabulary times thousands of tokens must never exist in
float32 at once: the LM head runs on ``chunk`` positions at a time inside a
``lax.scan`` whose body is rematerialised, so the backward pass recomputes
each chunk's logits instead of keeping ``[B, L, vocab]`` residuals.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


def shift_targets(input_ids: np.ndarray, loss_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Next-token targets and weights, on the host: position t predicts token t+1.

    Args:
      input_ids: [B, L] token ids.
      loss_mask: [B, L] bool, True on the tokens that are training targets.
    Returns:
      targets int32 [B, L] (input_ids shifted left), weights float32 [B, L]
      (the mask shifted left; the last position has none).
    """
    targets = np.zeros_like(input_ids, dtype=np.int32)
    weights = np.zeros(input_ids.shape, np.float32)
    targets[:, :-1] = input_ids[:, 1:]
    weights[:, :-1] = loss_mask[:, 1:]
    return targets, weights


def chunked_cross_entropy(logits_fn: Callable[[jax.Array], jax.Array], hidden: jax.Array, targets: jax.Array,
                          weights: jax.Array, chunk: int) -> jax.Array:
    """Sum over positions of ``weights * -log p(target)``, float32, never materialising all logits.

    Args:
      logits_fn: [B, C, E] hidden -> [B, C, V] logits (any float dtype).
      hidden: [B, L, E] final hidden states.
      targets: [B, L] int32 next-token ids.
      weights: [B, L] float32 per-position weights (0 off target).
      chunk: positions per LM-head call.
    Returns:
      The weighted sum (a float32 scalar); divide by the token count for the mean.
    """
    batch, length, width = hidden.shape
    chunk = min(chunk, length)
    padded = -(-length // chunk) * chunk
    if padded != length:  # padding positions carry weight 0
        pad = padded - length
        hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
        targets = jnp.pad(targets, ((0, 0), (0, pad)))
        weights = jnp.pad(weights, ((0, 0), (0, pad)))
    n = padded // chunk
    hidden = hidden.reshape(batch, n, chunk, width).swapaxes(0, 1)  # [n, B, C, E]
    targets = targets.reshape(batch, n, chunk).swapaxes(0, 1)  # [n, B, C]
    weights = weights.reshape(batch, n, chunk).swapaxes(0, 1)  # [n, B, C]

    @jax.checkpoint
    def one_chunk(h, t, w):
        logits = logits_fn(h).astype(jnp.float32)  # [B, C, V]
        lse = jax.nn.logsumexp(logits, axis=-1)  # [B, C]
        picked = jnp.take_along_axis(logits, t[..., None], axis=-1)[..., 0]  # [B, C]
        return jnp.sum((lse - picked) * w)

    def body(total, xs):
        return total + one_chunk(*xs), None

    total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), (hidden, targets, weights))
    return total
