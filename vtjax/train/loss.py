"""Masked next-token cross-entropy in float32, computed over sequence chunks.

A 152k-entry vocabulary times thousands of tokens must never exist in
float32 at once: the LM head runs on ``chunk`` positions at a time inside a
``lax.scan`` whose body is rematerialised, so the backward pass recomputes
each chunk's logits instead of keeping ``[B, L, vocab]`` residuals.
"""

from __future__ import annotations

import enum
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


class LossWeighting(enum.Enum):
    """How the answer tokens of a batch weigh in the SFT loss."""

    TOKEN = "token"  # every answer token alike: the token mean over the batch
    EXAMPLE = "example"  # every example alike: the mean over examples of each one's token mean


def example_keys(segment_ids: np.ndarray) -> np.ndarray:
    """[B, L] int: one number per (row, segment id) pair, i.e. per example of a packed batch."""
    segment_ids = np.asarray(segment_ids)
    return np.arange(segment_ids.shape[0])[:, None] * (int(segment_ids.max()) + 1) + segment_ids


def shift_targets(input_ids: np.ndarray, loss_mask: np.ndarray, segment_ids: np.ndarray | None = None,
                  weighting: LossWeighting = LossWeighting.TOKEN) -> tuple[np.ndarray, np.ndarray]:
    """Next-token targets and weights, on the host: position t predicts token t+1 of the same example.

    Args:
      input_ids: [B, L] token ids.
      loss_mask: [B, L] bool, True on the tokens that are training targets.
      segment_ids: [B, L] the example of each position within its row (packed rows), 0 on padding;
        None: one example per row.
      weighting: TOKEN gives every target weight 1; EXAMPLE gives an example's targets 1 / their count.
    Returns:
      targets int32 [B, L] (input_ids shifted left), weights float32 [B, L]
      (the mask shifted left; none across examples nor at the last position).
    """
    segments = np.ones(input_ids.shape, np.int32) if segment_ids is None else np.asarray(segment_ids)
    targets = np.zeros_like(input_ids, dtype=np.int32)
    weights = np.zeros(input_ids.shape, np.float32)
    targets[:, :-1] = input_ids[:, 1:]
    weights[:, :-1] = loss_mask[:, 1:] & (segments[:, :-1] == segments[:, 1:])
    if LossWeighting(weighting) is LossWeighting.EXAMPLE:
        _, example, counts = np.unique(example_keys(segments), return_inverse=True, return_counts=True)
        per_example = np.bincount(example.reshape(-1), weights=weights.reshape(-1), minlength=counts.size)
        weights = np.where(weights > 0, weights / np.maximum(per_example, 1)[example.reshape(weights.shape)], 0)
    return targets, weights.astype(np.float32)


def chunked_cross_entropy(logits_fn: Callable[[jax.Array], jax.Array], hidden: jax.Array, targets: jax.Array,
                          weights: jax.Array, chunk: int) -> jax.Array:
    """Sum over positions of ``weights * -log p(target)``, float32, never materialising all logits.

    Args:
      logits_fn: [B, C, E] hidden -> [B, C, V] logits (any float dtype).
      hidden: [B, L, E] final hidden states.
      targets: [B, L] int32 next-token ids.
      weights: [B, L] float32 per-position weights (0 off target).
      chunk: positions per LM-head call at most; the length splits into as few chunks, as evenly as
        possible (a multiple of 8 positions each where that stays within ``chunk``).
    Returns:
      The weighted sum (a float32 scalar); divide by the token count for the mean.
    """
    batch, length, width = hidden.shape
    n = -(-length // min(chunk, length))  # chunks of at most ``chunk`` positions
    even = -(-length // n)  # as even as possible: under n positions of padding in all
    aligned = -(-even // 8) * 8
    chunk = aligned if n > 1 and aligned <= chunk else even
    padded = n * chunk
    if padded != length:  # padding positions carry weight 0
        pad = padded - length
        hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
        targets = jnp.pad(targets, ((0, 0), (0, pad)))
        weights = jnp.pad(weights, ((0, 0), (0, pad)))
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
