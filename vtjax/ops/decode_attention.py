"""Decode-time attention: one new query token per row against a long KV cache.

The sampler keeps a dense cache ``[B, S, Hkv, D]`` and, per row, the number
of valid entries ``lengths[b]`` (positions ``>= lengths[b]`` are unwritten).
An optional ``kv_mask`` removes holes inside the valid prefix, e.g. the left
padding of a batched prompt. GQA contracts each group of query heads against
its shared kv head (``[B, Hkv, G, D]`` queries), so K/V are read once and
never repeated per query head.

One decode step is memory-bound (it reads the whole cache once), so a plain
XLA einsum - softmax - einsum is the right shape here; the logits are only
``[B, Hq, S]`` float32.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# Finite stand-in for -inf, so a row with no valid entry never produces NaN.
_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)


def decode_attention(
    q: jax.Array,
    k_cache: jax.Array,
    v_cache: jax.Array,
    lengths: jax.Array,
    *,
    kv_mask: jax.Array | None = None,
    scale: float | None = None,
) -> jax.Array:
    """Attention of one query token per row over the valid prefix of a KV cache.

    Args:
      q: [B, Hq, D] the new token's queries.
      k_cache: [B, S, Hkv, D] keys, ``Hq % Hkv == 0``.
      v_cache: [B, S, Hkv, D] values.
      lengths: [B] int, valid cache entries per row (0 <= lengths <= S);
        usually including the new token's own key. Entries past the length
        are multiplied by zero weight, so they must be finite (a
        zero-initialised or reused cache is; NaN there would propagate).
      kv_mask: optional [B, S] bool, False marks entries to ignore inside the
        valid prefix (prompt padding).
      scale: logit scale, default ``D ** -0.5``.

    Returns:
      [B, Hq, D] in ``q.dtype``; zeros for a row with no visible entry.
    """
    _check(q, k_cache, v_cache, lengths, kv_mask)
    b, hq, d = q.shape
    s, hkv = k_cache.shape[1], k_cache.shape[2]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    q_grouped = q.reshape(b, hkv, hq // hkv, d)  # [B, Hkv, G, D]
    logits = jnp.einsum("bhgd,bshd->bhgs", q_grouped, k_cache,
                        preferred_element_type=jnp.float32) * scale  # [B, Hkv, G, S]
    visible = jnp.arange(s)[None, :] < lengths[:, None]  # [B, S]
    if kv_mask is not None:
        visible &= kv_mask.astype(bool)
    visible = visible[:, None, None, :]  # [B, 1, 1, S]
    logits = jnp.where(visible, logits, _MASK_VALUE)
    row_max = jnp.max(logits, axis=-1, keepdims=True)
    weights = jnp.where(visible, jnp.exp(logits - row_max), 0.0)
    total = jnp.sum(weights, axis=-1, keepdims=True)
    probs = weights / jnp.where(total == 0.0, 1.0, total)
    out = jnp.einsum("bhgs,bshd->bhgd", probs.astype(v_cache.dtype), v_cache,
                     preferred_element_type=jnp.float32)  # [B, Hkv, G, D]
    return out.reshape(b, hq, d).astype(q.dtype)


def _check(q, k_cache, v_cache, lengths, kv_mask) -> None:
    if q.ndim != 3:
        raise ValueError(f"q must be [B, Hq, D] (one token per row); got {q.shape=}")
    if k_cache.ndim != 4 or k_cache.shape != v_cache.shape:
        raise ValueError(f"k_cache and v_cache must both be [B, S, Hkv, D]; "
                         f"got {k_cache.shape=}, {v_cache.shape=}")
    b, hq, d = q.shape
    if k_cache.shape[0] != b or k_cache.shape[3] != d:
        raise ValueError(f"q {q.shape} and k_cache {k_cache.shape} must share batch and head_dim")
    if hq % k_cache.shape[2]:
        raise ValueError(f"query heads {hq} must be a multiple of kv heads {k_cache.shape[2]}")
    if lengths.shape != (b,):
        raise ValueError(f"{lengths.shape=} must be [B] = ({b},)")
    if kv_mask is not None and kv_mask.shape != k_cache.shape[:2]:
        raise ValueError(f"{kv_mask.shape=} must be [B, S] = {k_cache.shape[:2]}")
