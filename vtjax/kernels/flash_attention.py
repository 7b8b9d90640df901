"""Flash attention in Pallas: causal + segment-aware, GQA, forward and backward.

``flash_attention`` pads the sequence to whole tiles, works out which tiles
can meet (``tiles.py``), and calls the kernels of one backend family:
``flash_tpu`` (Mosaic) or ``flash_gpu`` (Triton). The backward pass is a
``jax.custom_vjp`` that recomputes the softmax from the log-sum-exp saved by
the forward (FlashAttention-2, Section 3.1.2), so memory stays linear in L.

Masking semantics match ``vtjax.ops.attention``: query i sees key j iff both
carry the same non-zero segment id (and j <= i when causal); a row that sees
nothing returns zeros and has zero gradient.

``reference_attention`` is the O(L^2) definition in plain jnp, for tests.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from vtjax.kernels import flash_gpu, flash_tpu, tiles
from vtjax.kernels.block_sizes import BACKENDS, GPU_MIN_BLOCK, TPU_LANES, Backend, BlockSizes
from vtjax.kernels.kernel_common import KernelConfig, KernelInputs, pack_branches

_FAMILIES = {"tpu": flash_tpu, "gpu": flash_gpu}


def flash_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    segment_ids: jax.Array | None = None,
    *,
    causal: bool,
    scale: float | None = None,
    max_segment_len: int | None = None,
    block_sizes: BlockSizes | None = None,
    backend: Backend | None = None,
    interpret: bool | None = None,
    branch_ids: jax.Array | None = None,
) -> jax.Array:
    """Fused scaled dot-product attention.

    Args:
      q: [B, L, Hq, D] queries (bf16 or f32; accumulation is always f32).
      k: [B, L, Hkv, D] keys, ``Hq % Hkv == 0``; never repeated per query head.
      v: [B, L, Hkv, D] values.
      segment_ids: [B, L] int, 0 = padding; None = one segment, no padding.
      causal: mask keys after the query position.
      scale: logit scale, default ``D ** -0.5``.
      max_segment_len: static promise that every non-zero segment is one
        contiguous run of at most this many tokens; bounds the TPU grid so
        window attention costs O(L * window) grid steps, not O(L^2 / tile^2).
      block_sizes: tile sizes; default ``BlockSizes.default(backend)``.
      backend: kernel family, "tpu" (Mosaic) or "gpu" (Triton); default from
        ``jax.default_backend()`` ("gpu" on a CPU host, interpreted).
      interpret: run in the Pallas interpreter; default True on a CPU host.
      branch_ids: [B, L] int, prefix sharing (``ops.attention.SharedPrefix``): 0 = shared token, k > 0 =
        branch k; a key is visible only when shared or in the query's branch. Needs ``causal``; tiles of
        other branches are never visited.

    Returns:
      [B, L, Hq, D] in ``q.dtype``.
    """
    _check_inputs(q, k, v, segment_ids, max_segment_len)
    if branch_ids is not None:
        if branch_ids.shape != q.shape[:2] or not causal:
            raise ValueError(f"branch_ids {branch_ids.shape} must be [B, L] = {q.shape[:2]}, with causal=True")
        if segment_ids is None:
            segment_ids = jnp.ones(q.shape[:2], jnp.int32)
    platform = jax.default_backend()
    if backend is None:
        backend = "tpu" if platform == "tpu" else "gpu"
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}")
    if interpret is None:
        interpret = platform == "cpu"
    batch, length, hq, head_dim = q.shape
    blocks = block_sizes or BlockSizes.default(backend)
    min_block = TPU_LANES if backend == "tpu" and not interpret else GPU_MIN_BLOCK
    blocks = blocks.fit(length, min_block)
    blocks.check_for(backend, interpret)

    padded = -(-length // blocks.seq_multiple) * blocks.seq_multiple
    if padded != length:
        pad = [(0, 0), (0, padded - length), (0, 0), (0, 0)]
        q, k, v = (jnp.pad(x, pad) for x in (q, k, v))
        if segment_ids is None:  # padding needs a mask even when the caller had none
            segment_ids = jnp.ones((batch, length), jnp.int32)
        segment_ids = jnp.pad(segment_ids.astype(jnp.int32), [(0, 0), (0, padded - length)])
        if branch_ids is not None:
            branch_ids = jnp.pad(branch_ids.astype(jnp.int32), [(0, 0), (0, padded - length)])

    meet = functools.partial(tiles.tiles_meet, segment_ids, batch=batch, seq_len=padded,
                             causal=causal, max_segment_len=max_segment_len, branch_ids=branch_ids)
    if branch_ids is not None:
        segment_ids = pack_branches(segment_ids, branch_ids)
    aux = KernelInputs(
        segment_ids=None if segment_ids is None else segment_ids.astype(jnp.int32),
        kv_ranges=tiles.visit_ranges(meet(block_q=blocks.block_q, block_k=blocks.block_k)),
        q_ranges=tiles.visit_ranges(
            jnp.swapaxes(meet(block_q=blocks.block_q_dkv, block_k=blocks.block_k_dkv), 1, 2)),
    )
    cfg = KernelConfig(
        backend=backend, interpret=bool(interpret), causal=bool(causal),
        scale=float(scale if scale is not None else 1.0 / math.sqrt(head_dim)),
        blocks=blocks, head_dim=head_dim, seq_len=padded, num_q_heads=hq,
        num_kv_heads=k.shape[2], segmented=segment_ids is not None, branched=branch_ids is not None,
        kv_steps=tiles.max_visits(padded // blocks.block_k, blocks.block_q, blocks.block_k,
                                  max_segment_len),
        q_steps=tiles.max_visits(padded // blocks.block_q_dkv, blocks.block_k_dkv,
                                 blocks.block_q_dkv, max_segment_len),
    )
    out = _flash(q, k, v, aux, cfg)
    return out[:, :length]


def _check_inputs(q, k, v, segment_ids, max_segment_len) -> None:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"q, k, v must be [B, L, H, D]; got {q.shape=}, {k.shape=}, {v.shape=}")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape; got {k.shape=}, {v.shape=}")
    if q.shape[0] != k.shape[0] or q.shape[1] != k.shape[1] or q.shape[3] != k.shape[3]:
        raise ValueError(f"q and k must share batch, length and head_dim; {q.shape=}, {k.shape=}")
    if q.shape[2] % k.shape[2]:
        raise ValueError(f"query heads {q.shape[2]} must be a multiple of kv heads {k.shape[2]}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v dtypes differ: {q.dtype=}, {k.dtype=}, {v.dtype=}")
    if q.dtype not in (jnp.bfloat16, jnp.float32, jnp.float16):
        raise ValueError(f"{q.dtype=} must be bfloat16, float16 or float32")
    if segment_ids is not None and segment_ids.shape != q.shape[:2]:
        raise ValueError(f"{segment_ids.shape=} must be [B, L] = {q.shape[:2]}")
    if max_segment_len is not None and (int(max_segment_len) != max_segment_len
                                        or max_segment_len < 1):
        raise ValueError(f"{max_segment_len=} must be a positive int (a static bound)")


def _family(cfg: KernelConfig):
    return _FAMILIES[cfg.backend]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _flash(q, k, v, aux: KernelInputs, cfg: KernelConfig):
    out, _ = _family(cfg).forward(q, k, v, aux, cfg)
    return out


def _flash_fwd(q, k, v, aux, cfg):
    out, lse = _family(cfg).forward(q, k, v, aux, cfg)  # lse: [B, Hq, Lp] f32
    return out, (q, k, v, aux, out, lse)


def _flash_bwd(cfg, residuals, d_out):
    q, k, v, aux, out, lse = residuals
    # delta_i = sum_d dO_id * O_id = sum_j P_ij dP_ij (FlashAttention-2, Algorithm 2, line 4).
    delta = jnp.einsum("blhd,blhd->bhl", out.astype(jnp.float32),
                       d_out.astype(jnp.float32))  # [B, Hq, Lp]
    dq, dk, dv = _family(cfg).backward(q, k, v, aux, lse, delta, d_out.astype(q.dtype), cfg)
    return dq, dk, dv, None


_flash.defvjp(_flash_fwd, _flash_bwd)


def reference_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    segment_ids: jax.Array | None = None,
    *,
    causal: bool,
    scale: float | None = None,
    branch_ids: jax.Array | None = None,
) -> jax.Array:
    """Attention straight from the definition, in float32, O(L^2) memory. For tests.

    Same shapes and masking semantics as ``flash_attention``; K/V are simply
    repeated per query head here. Differentiable, with zero gradient (no NaN)
    through rows that see no key.
    """
    _check_inputs(q, k, v, segment_ids, None)
    b, length, hq, d = q.shape
    group = hq // k.shape[2]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    f32 = jnp.float32
    k_rep = jnp.repeat(k.astype(f32), group, axis=2)  # [B, L, Hq, D]
    v_rep = jnp.repeat(v.astype(f32), group, axis=2)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q.astype(f32), k_rep,
                        precision=jax.lax.Precision.HIGHEST) * scale  # [B, Hq, L, L]
    visible = jnp.ones((b, length, length), bool)
    if segment_ids is not None:
        seg = segment_ids
        visible = (seg[:, :, None] == seg[:, None, :]) & (seg[:, :, None] != 0)
    if causal:
        visible &= jnp.tril(jnp.ones((length, length), bool))[None]
    if branch_ids is not None:  # a key is shared (branch 0) or in the query's branch
        visible &= (branch_ids[:, None, :] == 0) | (branch_ids[:, None, :] == branch_ids[:, :, None])
    visible = visible[:, None]  # [B, 1, L, L]
    row_max = jnp.max(jnp.where(visible, logits, -jnp.inf), axis=-1, keepdims=True)
    row_max = jax.lax.stop_gradient(jnp.where(jnp.isfinite(row_max), row_max, 0.0))
    # Masked logits are replaced before exp so neither value nor gradient can overflow.
    weights = jnp.where(visible, jnp.exp(jnp.where(visible, logits, row_max) - row_max), 0.0)
    total = jnp.sum(weights, axis=-1, keepdims=True)
    probs = weights / jnp.where(total == 0.0, 1.0, total)
    out = jnp.einsum("bhqk,bkhd->bqhd", probs, v_rep, precision=jax.lax.Precision.HIGHEST)
    return out.astype(q.dtype)
