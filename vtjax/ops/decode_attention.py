"""Decode-time attention: the sampler's new tokens against their prompt's shared cache and their own.

N = B * R rows decode at once: R samples of each of B prompts. A prompt's keys
and values are cached once, ``[B, Lp, Hkv, D]``, and shared by its R rows
(never repeated); each row also owns a cache of its generated tokens
``[N, M, Hkv, D]``. One softmax spans both caches.

Einsum letters, as in ``ops/attention.py``: ``b`` prompt, ``r`` sample of a
prompt, ``t`` new token, ``k`` cached key, ``h`` kv head, ``g`` query head of a
GQA group, ``d`` head dim. GQA contracts each group of query heads against its
kv head, so K/V are read once.

One decode step is memory-bound (it reads the caches once), so a plain XLA
einsum - softmax - einsum is the right shape here; the logits are only
``[B, R, Hkv, G, T, Lp + M]`` float32.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def decode_attention(
    q: jax.Array,
    prompt_k: jax.Array,
    prompt_v: jax.Array,
    prompt_mask: jax.Array,
    generated_k: jax.Array,
    generated_v: jax.Array,
    generated_visible: jax.Array,
    *,
    scale: float | None = None,
) -> jax.Array:
    """Attention of T new tokens per row over the row's prompt cache and its generated-token cache.

    Args:
      q: [N, T, Hq, D] queries, N = B * R (row ``b * R + r`` is sample r of prompt b).
      prompt_k, prompt_v: [B, Lp, Hkv, D], ``Hq % Hkv == 0``.
      prompt_mask: [B, Lp] bool, False at prompt padding.
      generated_k, generated_v: [N, M, Hkv, D]; unwritten slots must be finite (zeros).
      generated_visible: [N, T, M] bool, which generated slots each new token sees (its own included).
      scale: logit scale, default ``D ** -0.5``.

    Returns:
      [N, T, Hq, D] in ``q.dtype``; zeros for a query that sees nothing.
    """
    _check(q, prompt_k, prompt_v, prompt_mask, generated_k, generated_v, generated_visible)
    n, t, hq, d = q.shape
    b, _, hkv, _ = prompt_k.shape
    r, g = n // b, hq // hkv
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    q_grouped = q.reshape(b, r, t, hkv, g, d)  # [B, R, T, Hkv, G, D]
    gen_k = generated_k.reshape(b, r, -1, hkv, d)  # [B, R, M, Hkv, D]
    gen_v = generated_v.reshape(b, r, -1, hkv, d)
    logits_p = jnp.einsum("brthgd,bkhd->brhgtk", q_grouped, prompt_k,
                          preferred_element_type=jnp.float32) * scale  # [B, R, Hkv, G, T, Lp]
    logits_g = jnp.einsum("brthgd,brkhd->brhgtk", q_grouped, gen_k,
                          preferred_element_type=jnp.float32) * scale  # [B, R, Hkv, G, T, M]
    see_p = prompt_mask.astype(bool)[:, None, None, None, None, :]  # [B, 1, 1, 1, 1, Lp]
    see_g = generated_visible.reshape(b, r, 1, 1, t, -1)  # [B, R, 1, 1, T, M]
    logits_p = jnp.where(see_p, logits_p, -jnp.inf)
    logits_g = jnp.where(see_g, logits_g, -jnp.inf)
    top = jnp.maximum(logits_p.max(-1, keepdims=True), logits_g.max(-1, keepdims=True))
    top = jnp.where(jnp.isfinite(top), top, 0.0)  # a query that sees nothing
    p_p = jnp.where(see_p, jnp.exp(logits_p - top), 0.0)
    p_g = jnp.where(see_g, jnp.exp(logits_g - top), 0.0)
    denom = p_p.sum(-1, keepdims=True) + p_g.sum(-1, keepdims=True)
    denom = jnp.where(denom == 0.0, 1.0, denom)
    out = (jnp.einsum("brhgtk,bkhd->brthgd", (p_p / denom).astype(prompt_v.dtype), prompt_v)
           + jnp.einsum("brhgtk,brkhd->brthgd", (p_g / denom).astype(gen_v.dtype), gen_v))  # [B, R, T, Hkv, G, D]
    return out.reshape(n, t, hq, d).astype(q.dtype)


def _check(q, prompt_k, prompt_v, prompt_mask, generated_k, generated_v, generated_visible) -> None:
    if q.ndim != 4:
        raise ValueError(f"q must be [N, T, Hq, D]; got {q.shape=}")
    if prompt_k.ndim != 4 or prompt_k.shape != prompt_v.shape:
        raise ValueError(f"prompt_k and prompt_v must both be [B, Lp, Hkv, D]; got {prompt_k.shape}, {prompt_v.shape}")
    if generated_k.ndim != 4 or generated_k.shape != generated_v.shape:
        raise ValueError(f"generated_k and generated_v must both be [N, M, Hkv, D]; "
                         f"got {generated_k.shape}, {generated_v.shape}")
    n, t, hq, d = q.shape
    b, lp, hkv, _ = prompt_k.shape
    if n % b or generated_k.shape[0] != n:
        raise ValueError(f"{n} query rows must be a multiple of {b} prompts and match the generated cache's "
                         f"{generated_k.shape[0]} rows")
    if prompt_k.shape[3] != d or generated_k.shape[2:] != (hkv, d) or hq % hkv:
        raise ValueError(f"q {q.shape}, prompt cache {prompt_k.shape} and generated cache {generated_k.shape} "
                         "must share head_dim and kv heads dividing the query heads")
    if prompt_mask.shape != (b, lp):
        raise ValueError(f"{prompt_mask.shape=} must be [B, Lp] = {(b, lp)}")
    if generated_visible.shape != (n, t, generated_k.shape[1]):
        raise ValueError(f"{generated_visible.shape=} must be [N, T, M] = {(n, t, generated_k.shape[1])}")
