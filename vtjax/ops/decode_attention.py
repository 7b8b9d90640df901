"""Decode-time attention: the sampler's new tokens against their prompt's shared cache and their own.

N = B * R rows decode at once: R samples of each of B prompts. A prompt's keys
and values are cached once, ``[B, Hkv, Lp, D]``, and shared by its R rows
(never repeated); each row also owns a cache of its generated tokens
``[N, Hkv, M, D]``. One softmax spans both caches and the new tokens' own
keys, which come in apart so that the caller writes them into the cache
after the read (in place). The caches are head-major so
that both products are plain batched matmuls over (prompt, sample, kv head):
no cache is transposed at any step.

Einsum letters, as in ``ops/attention.py``: ``b`` prompt, ``r`` sample of a
prompt, ``t`` new token, ``k`` cached key, ``h`` kv head, ``g`` query head of a
GQA group, ``d`` head dim, ``s`` new token as a key. GQA contracts each group of query heads against its
kv head, so K/V are read once.

One decode step is memory-bound (it reads the caches once), so a plain XLA
einsum - softmax - einsum is the right shape here; the logits are only
``[B, R, Hkv, T, G, Lp + M + T]`` float32. Each product is written in its dot's
natural output order (batch axes first), so XLA:CPU transposes no logits or
probabilities (BENCHMARKS.md, "Decode step against its floor").
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def decode_attention(
    q: jax.Array,
    new_k: jax.Array,
    new_v: jax.Array,
    prompt_k: jax.Array,
    prompt_v: jax.Array,
    prompt_mask: jax.Array,
    generated_k: jax.Array,
    generated_v: jax.Array,
    generated_visible: jax.Array,
    *,
    scale: float | None = None,
) -> jax.Array:
    """Attention of T new tokens per row over the row's prompt cache, its generated-token cache and the new
    tokens themselves (causally).

    The new tokens' keys and values come in apart from the cache, so a caller can write them into the cache
    after this read: the cache update then has one user and happens in place.

    Args:
      q: [N, T, Hq, D] queries, N = B * R (row ``b * R + r`` is sample r of prompt b).
      new_k, new_v: [N, T, Hkv, D], ``Hq % Hkv == 0``; new token t sees new tokens <= t.
      prompt_k, prompt_v: [B, Hkv, Lp, D].
      prompt_mask: [B, Lp] bool, False at prompt padding.
      generated_k, generated_v: [N, Hkv, M, D]; hidden slots must be finite (zeros).
      generated_visible: [N, T, M] bool, the slots written before this step that each new token sees.
      scale: logit scale, default ``D ** -0.5``.

    Returns:
      [N, T, Hq, D] in ``q.dtype``.
    """
    _check(q, new_k, new_v, prompt_k, prompt_v, prompt_mask, generated_k, generated_v, generated_visible)
    n, t, hq, d = q.shape
    b, hkv, _, _ = prompt_k.shape
    r, g = n // b, hq // hkv
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    q_grouped = q.reshape(b, r, t, hkv, g, d)  # [B, R, T, Hkv, G, D]
    own_k = new_k.reshape(b, r, t, hkv, d)  # [B, R, S=T, Hkv, D]
    own_v = new_v.reshape(b, r, t, hkv, d)
    gen_k = generated_k.reshape(b, r, hkv, -1, d)  # [B, R, Hkv, M, D]
    gen_v = generated_v.reshape(b, r, hkv, -1, d)
    # Every product keeps the dot's own output order (batch axes, then the free axes in operand order), so
    # that no logits or probabilities are transposed: the prompt part is batched over (b, h), the rest over
    # (b, r, h). Only the [.., 1] row maxima and sums change order.
    logits_p = jnp.einsum("brthgd,bhkd->bhrtgk", q_grouped, prompt_k,
                          preferred_element_type=jnp.float32) * scale  # [B, Hkv, R, T, G, Lp]
    logits_g = jnp.einsum("brthgd,brhkd->brhtgk", q_grouped, gen_k,
                          preferred_element_type=jnp.float32) * scale  # [B, R, Hkv, T, G, M]
    logits_n = jnp.einsum("brthgd,brshd->brhtgs", q_grouped, own_k,
                          preferred_element_type=jnp.float32) * scale  # [B, R, Hkv, T, G, S]
    logits_p = jnp.where(prompt_mask.astype(bool)[:, None, None, None, None, :], logits_p, -jnp.inf)
    logits_g = jnp.where(generated_visible.reshape(b, r, 1, t, 1, -1), logits_g, -jnp.inf)
    logits_n = jnp.where(jnp.tril(jnp.ones((t, t), bool))[:, None, :], logits_n, -jnp.inf)  # causal [T, 1, S]
    to_rows = (0, 2, 1, 3, 4, 5)  # [B, Hkv, R, ...] <-> [B, R, Hkv, ...]
    top = jnp.maximum(jnp.maximum(logits_p.max(-1, keepdims=True).transpose(to_rows), logits_g.max(-1, keepdims=True)),
                      logits_n.max(-1, keepdims=True))  # [B, R, Hkv, T, G, 1], finite: a token always sees itself
    p_p = jnp.exp(logits_p - top.transpose(to_rows))  # masked logits give exactly 0
    p_g = jnp.exp(logits_g - top)
    p_n = jnp.exp(logits_n - top)
    denom = p_p.sum(-1).transpose(to_rows[:-1]) + p_g.sum(-1) + p_n.sum(-1)  # [B, R, Hkv, T, G]
    out = (jnp.einsum("bhrtgk,bhkd->bhrtgd", p_p.astype(prompt_v.dtype), prompt_v).transpose(to_rows)
           + jnp.einsum("brhtgk,brhkd->brhtgd", p_g.astype(gen_v.dtype), gen_v)
           + jnp.einsum("brhtgs,brshd->brhtgd", p_n.astype(own_v.dtype), own_v))  # [B, R, Hkv, T, G, D] unnormalised
    out = out / denom[..., None]  # normalised once per output, not once per logit
    return out.transpose(0, 1, 3, 2, 4, 5).reshape(n, t, hq, d).astype(q.dtype)


def _check(q, new_k, new_v, prompt_k, prompt_v, prompt_mask, generated_k, generated_v, generated_visible) -> None:
    if q.ndim != 4:
        raise ValueError(f"q must be [N, T, Hq, D]; got {q.shape=}")
    n, t, hq, d = q.shape
    if new_k.shape != new_v.shape or new_k.ndim != 4 or new_k.shape[:2] != (n, t):
        raise ValueError(f"new_k and new_v must both be [N, T, Hkv, D] = {(n, t)} + (Hkv, D); "
                         f"got {new_k.shape}, {new_v.shape}")
    if prompt_k.ndim != 4 or prompt_k.shape != prompt_v.shape:
        raise ValueError(f"prompt_k and prompt_v must both be [B, Hkv, Lp, D]; got {prompt_k.shape}, {prompt_v.shape}")
    if generated_k.ndim != 4 or generated_k.shape != generated_v.shape:
        raise ValueError(f"generated_k and generated_v must both be [N, Hkv, M, D]; "
                         f"got {generated_k.shape}, {generated_v.shape}")
    b, hkv, lp, _ = prompt_k.shape
    if n % b or generated_k.shape[0] != n:
        raise ValueError(f"{n} query rows must be a multiple of {b} prompts and match the generated cache's "
                         f"{generated_k.shape[0]} rows")
    if (prompt_k.shape[3] != d or generated_k.shape[1] != hkv or generated_k.shape[3] != d
            or new_k.shape[2:] != (hkv, d) or hq % hkv):
        raise ValueError(f"q {q.shape}, new keys {new_k.shape}, prompt cache {prompt_k.shape} and generated cache "
                         f"{generated_k.shape} must share head_dim and kv heads dividing the query heads")
    if prompt_mask.shape != (b, lp):
        raise ValueError(f"{prompt_mask.shape=} must be [B, Lp] = {(b, lp)}")
    if generated_visible.shape != (n, t, generated_k.shape[2]):
        raise ValueError(f"{generated_visible.shape=} must be [N, T, M] = {(n, t, generated_k.shape[2])}")
