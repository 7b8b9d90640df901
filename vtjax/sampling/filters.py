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
        top_values = jax.lax.top_k(logits, top_k)[0]  # [N, k] sorted, most likely first
        logits = jnp.where(logits < top_values[:, -1:], -jnp.inf, logits)
    if top_p < 1.0:
        logits = jnp.where(logits < nucleus_cutoff(logits, top_p), -jnp.inf, logits)
    return logits


def nucleus_cutoff(logits: jax.Array, top_p: float, iterations: int = 48) -> jax.Array:
    """[N, 1] logit of the least likely token in each row's top-p nucleus.

    The nucleus is the smallest set of most likely tokens holding ``top_p`` of the
    mass, so its cutoff is the largest value v with mass(logits >= v) >= top_p.
    Bisection on v finds it with O(V) work per iteration instead of a sort of the
    vocabulary (slow on some backends); 48 halvings take the interval below float32
    resolution, so only exact ties with the cutoff can differ from a sorted cut.
    """
    probs = jax.nn.softmax(logits, axis=-1)  # [N, V]; -inf entries have probability 0
    finite = jnp.isfinite(logits)
    lo = jnp.min(jnp.where(finite, logits, jnp.inf), axis=-1, keepdims=True)  # mass(>= lo) = 1
    hi = jnp.max(logits, axis=-1, keepdims=True)  # the top token alone; mass(>= hi) may be < p

    def halve(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        enough = jnp.sum(jnp.where(logits >= mid, probs, 0.0), axis=-1, keepdims=True) >= top_p
        return jnp.where(enough, mid, lo), jnp.where(enough, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iterations, halve, (lo, hi))
    top_alone = jnp.sum(jnp.where(logits >= hi, probs, 0.0), axis=-1, keepdims=True) >= top_p
    return jnp.where(top_alone, hi, lo)


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
