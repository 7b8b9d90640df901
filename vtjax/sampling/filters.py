"""Token choice from logits: greedy, temperature, top-k and top-p (nucleus), one PRNG key per row."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vtjax.sampling.gumbel import gumbel


def filter_logits(logits: jax.Array, *, temperature: float, top_k: int, top_p: float) -> jax.Array:
    """Temperature-scaled logits [N, V] with excluded tokens set to -inf.

    top_k = 0 and top_p = 1.0 disable their filters. Top-p keeps the smallest
    set of most likely tokens whose probability reaches ``top_p`` (always at
    least the most likely token).
    """
    logits = logits.astype(jnp.float32) / temperature
    if top_k > 0:
        top_values = jax.lax.top_k(logits, top_k)[0]  # [N, k] sorted, most likely first
        logits = jnp.where(logits < top_values[:, -1:], -jnp.inf, logits)
    if top_p < 1.0:
        logits = jnp.where(logits < nucleus_cutoff(logits, top_p), -jnp.inf, logits)
    return logits


def nucleus_cutoff(logits: jax.Array, top_p: float) -> jax.Array:
    """[N, 1] logit of the least likely token in each row's top-p nucleus.

    The nucleus is the smallest set of most likely tokens holding ``top_p`` of the
    mass, so its cutoff is the largest value v with mass(logits >= v) >= top_p.
    Bisection finds it with O(V) work per halving instead of a sort of the
    vocabulary (slow on some backends). It halves the float32 values' order-preserving
    32-bit codes, not the values: 32 halvings end on the exact cutoff, so only exact
    ties with it can differ from a sorted cut.
    """
    probs = jax.nn.softmax(logits, axis=-1)  # [N, V]; -inf entries have probability 0
    codes = order_code(logits)  # [N, V] uint32
    lo = jnp.min(jnp.where(jnp.isfinite(logits), codes, jnp.uint32(0xFFFFFFFF)), axis=-1,
                 keepdims=True)  # [N, 1], mass(>= lo) = 1
    hi = jnp.max(codes, axis=-1, keepdims=True)  # the top token alone; mass(>= hi) may be < p

    def halve(_, bounds):  # keeps mass(>= lo) >= p and the cutoff in [lo, hi]
        lo, hi = bounds
        width = hi - lo
        mid = lo + width // 2 + width % 2  # the upper middle: > lo while hi > lo
        enough = jnp.sum(jnp.where(codes >= mid, probs, 0.0), axis=-1, keepdims=True) >= top_p
        return jnp.where(enough, mid, lo), jnp.where(enough, hi, mid - 1)

    lo, _ = jax.lax.fori_loop(0, 32, halve, (lo, hi))
    return jnp.min(jnp.where(codes >= lo, logits, jnp.inf), axis=-1, keepdims=True)  # the least kept logit


def order_code(x: jax.Array) -> jax.Array:
    """float32 -> uint32 codes in the same order (-inf lowest; -0.0 just below +0.0)."""
    bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
    negative = (bits >> 31) == 1
    return jnp.where(negative, ~bits, bits | jnp.uint32(0x80000000))


def choose_tokens(logits: jax.Array, keys: jax.Array, *, temperature: float, top_k: int, top_p: float):
    """Picks one token per row of logits [N, V].

    keys: [N] PRNG keys (unused when temperature == 0, which is greedy).
    Returns (tokens [N] int32, log-probs [N] float32 of those tokens under the
    unfiltered, temperature-1 distribution: the policy's own log-probability).
    """
    logits = logits.astype(jnp.float32)
    if temperature == 0.0:
        tokens = first_argmax(logits)
    else:
        filtered = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p)
        tokens = categorical(keys, filtered)
    logprobs = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), tokens[:, None], axis=-1)[:, 0]
    return tokens.astype(jnp.int32), logprobs


def categorical(keys: jax.Array, logits: jax.Array) -> jax.Array:
    """One draw per row of logits [N, V] with row keys [N]: ``jax.random.categorical`` (the Gumbel-max
    trick with the same noise, from ``gumbel``), its argmax taken by ``first_argmax``. Same tokens, a fraction
    of the cost."""
    noise = gumbel(keys, logits.shape[1]).astype(logits.dtype)  # [N, V]
    return first_argmax(noise + logits)


def first_argmax(x: jax.Array) -> jax.Array:
    """``jnp.argmax(x, axis=-1)`` of x [N, V] (the first index of each row's maximum, NaN counting as the
    largest) as two plain reductions: XLA:CPU runs argmax's (value, index) reduce as a scalar loop, several
    times slower. (A row holding both +inf and NaN gives its first +inf or NaN, argmax its first NaN.)"""
    x = jnp.where(jnp.isnan(x), jnp.inf, x)
    top = jnp.max(x, axis=-1, keepdims=True)  # [N, 1]
    index = jax.lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)  # [N, V]
    return jnp.min(jnp.where(x == top, index, x.shape[-1]), axis=-1)  # [N]
