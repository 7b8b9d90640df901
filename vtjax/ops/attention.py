"""Attention dispatch: the one entry point every attention in vtjax goes through.

Masks are described, never materialised over the whole sequence:

* ``segment_ids``: query ``i`` may see key ``j`` only when both carry the same
  non-zero id. Id 0 marks padding: it sees nothing and is seen by nothing, and
  a query row with no visible key returns zeros (never NaN).
* ``causal``: key ``j`` is visible to query ``i`` only when ``j <= i``.
* ``max_segment_len``: a static promise that every non-zero segment is one
  contiguous run of at most this many tokens (true for the vision tower's
  windows and frames, and for packed sequences). The XLA path then computes
  scores only inside a band of three blocks around each query block, so the
  cost is O(L * max_segment_len) instead of O(L^2).

GQA never materialises repeated K/V: queries are grouped as
``[B, L, kv_heads, group, D]`` and contracted against the shared kv head.
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp

AttentionImpl = Literal["xla", "pallas", "cudnn", "auto"]
IMPLS = ("xla", "pallas", "cudnn", "auto")

# Finite stand-in for -inf in masked logits, so masked rows never produce NaN.
_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    causal: bool,
    segment_ids: jax.Array | None = None,
    max_segment_len: int | None = None,
    impl: AttentionImpl = "xla",
    scale: float | None = None,
) -> jax.Array:
    """Scaled dot-product attention with causal / segment masking.

    Args:
      q: [B, L, Hq, D] queries.
      k: [B, L, Hkv, D] keys; ``Hq % Hkv == 0``.
      v: [B, L, Hkv, D] values.
      causal: mask keys after the query position.
      segment_ids: [B, L] int; 0 is padding. None means one segment, no padding.
      max_segment_len: static bound on contiguous segment length (see module doc).
      impl: "xla", "pallas", "cudnn" or "auto" (Pallas on GPU/TPU, XLA on CPU).
      scale: logit scale, default ``D ** -0.5``.

    Returns:
      [B, L, Hq, D] in ``q.dtype``.
    """
    _check_shapes(q, k, v, segment_ids)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    impl = resolve_impl(impl)
    if impl == "xla":
        if max_segment_len is not None and max_segment_len < q.shape[1]:
            return _xla_banded(q, k, v, causal, segment_ids, int(max_segment_len), scale)
        return _xla_dense(q, k, v, causal, segment_ids, scale)
    return _accelerated(impl, q, k, v, causal, segment_ids, max_segment_len, scale)


def resolve_impl(impl: str) -> str:
    """Maps "auto" to the best implementation for the default backend."""
    if impl not in IMPLS:
        raise ValueError(f"attention impl={impl!r} is not one of {IMPLS}")
    if impl != "auto":
        return impl
    return "xla" if jax.default_backend() == "cpu" else "pallas"


def _accelerated(impl, q, k, v, causal, segment_ids, max_segment_len, scale):
    # Imported lazily: the kernels module pulls in Pallas, which plain XLA users never need.
    from vtjax.kernels import dispatch as kernel_dispatch

    return kernel_dispatch.attention(
        impl, q, k, v, causal=causal, segment_ids=segment_ids,
        max_segment_len=max_segment_len, scale=scale)


def _check_shapes(q, k, v, segment_ids) -> None:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"q, k, v must be [B, L, H, D]; got {q.shape}, {k.shape}, {v.shape}")
    if k.shape != v.shape:
        raise ValueError(f"k and v shapes differ: {k.shape} vs {v.shape}")
    if q.shape[0] != k.shape[0] or q.shape[1] != k.shape[1] or q.shape[3] != k.shape[3]:
        raise ValueError(f"q {q.shape} and k {k.shape} must share batch, length and head_dim")
    if q.shape[2] % k.shape[2]:
        raise ValueError(f"query heads {q.shape[2]} must be a multiple of kv heads {k.shape[2]}")
    if segment_ids is not None and segment_ids.shape != q.shape[:2]:
        raise ValueError(f"segment_ids {segment_ids.shape} must be [B, L] = {q.shape[:2]}")


def _masked_softmax_values(logits, mask, v_blocks, out_spec):
    """Softmax over the last axis of float32 ``logits`` under ``mask``, times V.

    Rows whose mask is all False give exactly zero.
    """
    logits = jnp.where(mask, logits, _MASK_VALUE)
    row_max = jnp.max(logits, axis=-1, keepdims=True)
    probs = jnp.where(mask, jnp.exp(logits - row_max), 0.0)
    denom = jnp.sum(probs, axis=-1, keepdims=True)
    probs = probs / jnp.where(denom == 0.0, 1.0, denom)
    return jnp.einsum(out_spec, probs.astype(v_blocks.dtype), v_blocks)


def _xla_dense(q, k, v, causal, segment_ids, scale):
    """O(L^2) reference path: one score matrix per (batch, head)."""
    b, length, hq, d = q.shape
    hkv = k.shape[2]
    q_grouped = q.reshape(b, length, hkv, hq // hkv, d)  # [B, L, Hkv, G, D]
    logits = jnp.einsum("bqhgd,bkhd->bhgqk", q_grouped, k,
                        preferred_element_type=jnp.float32) * scale  # [B, Hkv, G, Lq, Lk]
    mask = jnp.ones((b, length, length), dtype=bool)
    if segment_ids is not None:
        mask = (segment_ids[:, :, None] == segment_ids[:, None, :]) & (segment_ids[:, :, None] != 0)
    if causal:
        mask = mask & jnp.tril(jnp.ones((length, length), dtype=bool))[None]
    out = _masked_softmax_values(logits, mask[:, None, None], v, "bhgqk,bkhd->bqhgd")
    return out.reshape(b, length, hq, d).astype(q.dtype)


def _xla_banded(q, k, v, causal, segment_ids, block, scale):
    """Segment-local attention in O(L * block).

    The sequence is cut into blocks of ``block`` tokens. Because every segment
    is a contiguous run of at most ``block`` tokens, a query in block j only
    ever sees keys in blocks j-1, j and j+1, so each query block attends to a
    band of 3 * block keys.
    """
    b, length, hq, d = q.shape
    hkv = k.shape[2]
    group = hq // hkv
    if segment_ids is None:
        segment_ids = jnp.ones((b, length), jnp.int32)
    num_blocks = -(-length // block)
    padded = num_blocks * block

    def pad(x, before, after):
        widths = [(0, 0)] * x.ndim
        widths[1] = (before, after)
        return jnp.pad(x, widths)

    q_blocks = pad(q, 0, padded - length).reshape(b, num_blocks, block, hkv, group, d)
    seg_q = pad(segment_ids, 0, padded - length).reshape(b, num_blocks, block)
    pos_q = jnp.arange(padded).reshape(num_blocks, block)

    def band(x):
        # [B, padded, ...] -> [B, num_blocks, 3 * block, ...]: blocks j-1, j, j+1.
        x = pad(x, block, padded - length + block)
        x = x.reshape(b, num_blocks + 2, block, *x.shape[2:])
        return jnp.concatenate([x[:, :-2], x[:, 1:-1], x[:, 2:]], axis=2)

    k_band = band(k)  # [B, nb, 3C, Hkv, D]
    v_band = band(v)
    seg_k = band(segment_ids)  # [B, nb, 3C]
    pos_k = jnp.arange(-block, padded + block).reshape(num_blocks + 2, block)
    pos_k = jnp.concatenate([pos_k[:-2], pos_k[1:-1], pos_k[2:]], axis=1)  # [nb, 3C]

    logits = jnp.einsum("bnqhgd,bnkhd->bnhgqk", q_blocks, k_band,
                        preferred_element_type=jnp.float32) * scale  # [B, nb, Hkv, G, C, 3C]
    mask = (seg_q[..., :, None] == seg_k[..., None, :]) & (seg_q[..., :, None] != 0)
    if causal:
        mask = mask & (pos_k[:, None, :] <= pos_q[:, :, None])[None]
    out = _masked_softmax_values(logits, mask[:, :, None, None], v_band,
                                 "bnhgqk,bnkhd->bnqhgd")  # [B, nb, C, Hkv, G, D]
    out = out.reshape(b, padded, hq, d)[:, :length]
    return out.astype(q.dtype)
