"""Per-token log-probabilities in float32, computed over sequence chunks.

The LM head runs on ``chunk`` positions at a time inside a rematerialised
``lax.scan``, so ``[B, L, vocab]`` float32 logits never exist at once (a 152k
vocabulary times thousands of tokens times a group of 8 would not fit).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def chunked_token_logprobs(logits_fn: Callable[[jax.Array], jax.Array], hidden: jax.Array,
                           targets: jax.Array, chunk: int) -> jax.Array:
    """``log softmax(logits_fn(hidden))[targets]`` for every position.

    Args:
      logits_fn: [B, C, E] hidden -> [B, C, V] logits (any float dtype).
      hidden: [B, L, E] final hidden states.
      targets: [B, L] int32 token whose log-probability is wanted at each position.
      chunk: positions per LM-head call.
    Returns:
      float32 [B, L].
    """
    batch, length, width = hidden.shape
    chunk = min(chunk, length)
    padded = -(-length // chunk) * chunk
    if padded != length:
        hidden = jnp.pad(hidden, ((0, 0), (0, padded - length), (0, 0)))
        targets = jnp.pad(targets, ((0, 0), (0, padded - length)))
    n = padded // chunk
    hidden = hidden.reshape(batch, n, chunk, width).swapaxes(0, 1)  # [n, B, C, E]
    targets = targets.reshape(batch, n, chunk).swapaxes(0, 1)  # [n, B, C]

    @jax.checkpoint
    def one_chunk(h, t):
        logits = logits_fn(h).astype(jnp.float32)  # [B, C, V]
        picked = jnp.take_along_axis(logits, t[..., None], axis=-1)[..., 0]
        return picked - jax.nn.logsumexp(logits, axis=-1)  # [B, C]

    _, out = jax.lax.scan(lambda carry, xs: (carry, one_chunk(*xs)), None, (hidden, targets))
    return out.swapaxes(0, 1).reshape(batch, padded)[:, :length]
