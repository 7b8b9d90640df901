"""Token choice from logits: greedy, temperature, top-k and top-p (nucleus), one PRNG key per row."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def filter_logits(logits: jax.Array, *, temperature: float, top_k: int, top_p: float) -> jax.Array:
    """Temperature-scaled logits [N, V] with excluded tokens set to -inf.

    top_k = 0 and top_p = 1.0 disable their filters. Top-p keeps the smallest
    set of most likely tokens whose probability reaches ``top_p`` (always at
    least the most likely token).
    """
    logits = logits.astype(jnp.float32) / temperature
    if top_k > 0:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]  # [N, 1]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p < 1.0:
        order = jnp.argsort(-logits, axis=-1)  # [N, V] most likely first
        sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly more likely tokens
        keep_sorted = before < top_p
        keep = jnp.zeros_like(keep_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(keep_sorted)
        logits = jnp.where(keep, logits, -jnp.inf)
    return logits


def choose_tokens(logits: jax.Array, keys: jax.Array, *, temperature: float, top_k: int, top_p: float):
    """Picks one token per row of logits [N, V].

    keys: [N] PRNG keys (unused when temperature == 0, which is greedy).
    Returns (tokens [N] int32, log-probs [N] float32 of those tokens under the
    unfiltered, temperature-1 distribution: the policy's own log-probability).
    """
    logits = logits.astype(jnp.float32)
    if temperature == 0.0:
        tokens = jnp.argmax(logits, axis=-1)
    else:
        filtered = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p)
        tokens = jax.vmap(jax.random.categorical)(keys, filtered)
    logprobs = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), tokens[:, None], axis=-1)[:, 0]
    return tokens.astype(jnp.int32), logprobs
