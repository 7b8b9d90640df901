"""Flash attention kernels for GPU (Pallas Triton lowering): forward, dq and dk/dv passes.

Layout: the model's [B, L, H, D], untouched. Each program owns one output
tile and loops over the visited tiles of the other operand with a
``fori_loop`` whose bounds come from the precomputed visit ranges
(FlashAttention-2, Algorithms 1 and 2). Triton tensors must have
power-of-two shapes, so a head_dim of 80 is handled as 128 lanes with masked
loads and stores (``D_pad``).

GQA: the forward and dq programs read kv head ``h // group``; the dk/dv
program of one kv head loops over the ``group`` query heads that share it,
so dk/dv are summed in registers, never materialised per query head.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from vtjax.kernels.kernel_common import (
    EMPTY_ROW_LSE, MASK_VALUE, NN, NT, KernelConfig, KernelInputs, tile_visibility)
from vtjax.kernels.tiles import visited_tile


def _padded_head_dim(d: int) -> int:
    return pl.next_power_of_2(d)


def _params(cfg: KernelConfig):
    warps = cfg.blocks.num_warps or (4 if cfg.head_dim <= 64 else 8)
    return plgpu.CompilerParams(num_warps=warps, num_stages=cfg.blocks.num_stages)


def _load(ref, dmask):
    """Loads a [rows, D_pad] tile; lanes past head_dim read as 0."""
    return plgpu.load(ref, mask=dmask, other=0.0)


def _mask(cfg: KernelConfig, q_first, k_first, rows: int, cols: int, q_seg, seg_ref):
    """[rows, cols] visibility of one tile, or None when the call has no masking."""
    if not cfg.masked:
        return None
    q_pos = q_first + lax.broadcasted_iota(jnp.int32, (rows, cols), 0)
    k_pos = k_first + lax.broadcasted_iota(jnp.int32, (rows, cols), 1)
    k_seg = None
    if cfg.segmented:
        k_seg = seg_ref[pl.ds(k_first, cols)][None, :]  # [1, cols]
        q_seg = q_seg[:, None]  # [rows, 1]
    return tile_visibility(q_pos, k_pos, q_seg, k_seg, cfg.causal, cfg.branched)


def _split(cfg: KernelConfig, refs, n_before: int):
    """Splits refs into (before, seg_ref or None, after)."""
    if cfg.segmented:
        return refs[:n_before], refs[n_before], refs[n_before + 1:]
    return refs[:n_before], None, refs[n_before:]


# ----------------------------------------------------------------------------- forward

def _forward_kernel(lo_ref, hi_ref, lo2_ref, hi2_ref, *refs, cfg: KernelConfig):
    (q_ref, k_ref, v_ref), seg_ref, (o_ref, lse_ref) = _split(cfg, refs, 3)
    # lo/hi, lo2/hi2: [nq] the two runs of key tiles; q, o: [bq, D_pad]; k, v: [Lp, D_pad]; seg: [Lp];
    # lse: [bq]
    bq, bk = cfg.blocks.block_q, cfg.blocks.block_k
    i = pl.program_id(0)
    dmask = (jnp.arange(q_ref.shape[-1]) < cfg.head_dim)[None, :]
    q = _load(q_ref, dmask)
    q_seg = seg_ref[pl.ds(i * bq, bq)] if cfg.segmented else None

    def body(j, carry):
        acc, m_prev, l_prev = carry  # [bq, D_pad] f32, [bq], [bq]
        k = _load(k_ref.at[pl.ds(j * bk, bk), :], dmask)  # [bk, D_pad]
        s = lax.dot_general(q, k, NT, preferred_element_type=jnp.float32) * cfg.scale
        mask = _mask(cfg, i * bq, j * bk, bq, bk, q_seg, seg_ref)
        if mask is not None:
            s = jnp.where(mask, s, MASK_VALUE)
        m_next = jnp.maximum(m_prev, jnp.max(s, axis=1))
        p = jnp.exp(s - m_next[:, None])  # [bq, bk]
        if mask is not None:
            p = jnp.where(mask, p, 0.0)  # rows with nothing visible yet have m = MASK_VALUE
        alpha = jnp.exp(m_prev - m_next)
        v = _load(v_ref.at[pl.ds(j * bk, bk), :], dmask)
        pv = lax.dot_general(p.astype(v.dtype), v, NN, preferred_element_type=jnp.float32)
        return acc * alpha[:, None] + pv, m_next, alpha * l_prev + jnp.sum(p, axis=1)

    init = (jnp.zeros((bq, q_ref.shape[-1]), jnp.float32),
            jnp.full((bq,), MASK_VALUE, jnp.float32), jnp.zeros((bq,), jnp.float32))
    carry = lax.fori_loop(lo_ref[i], hi_ref[i], body, init)  # the first run of key tiles, then the second
    acc, m, l = lax.fori_loop(lo2_ref[i], hi2_ref[i], body, carry)
    empty = l == 0.0  # the row saw no key: output 0, not 0/0
    safe_l = jnp.where(empty, 1.0, l)
    out = acc * jnp.where(empty, 0.0, 1.0 / safe_l)[:, None]
    plgpu.store(o_ref, out.astype(o_ref.dtype), mask=dmask)
    lse_ref[...] = jnp.where(empty, EMPTY_ROW_LSE, m + jnp.log(safe_l))


def forward(q, k, v, aux: KernelInputs, cfg: KernelConfig):
    """q [B, Lp, Hq, D], k/v [B, Lp, Hkv, D] -> (out [B, Lp, Hq, D], lse [B, Hq, Lp] f32)."""
    batch, length, hq, d = q.shape
    bq, group, dp = cfg.blocks.block_q, cfg.group, _padded_head_dim(d)
    nq = length // bq
    in_specs = [
        pl.BlockSpec((None, nq), lambda i, b, h: (b, 0)),  # kv_lo
        pl.BlockSpec((None, nq), lambda i, b, h: (b, 0)),  # kv_hi
        pl.BlockSpec((None, nq), lambda i, b, h: (b, 0)),  # kv_lo2
        pl.BlockSpec((None, nq), lambda i, b, h: (b, 0)),  # kv_hi2
        pl.BlockSpec((None, bq, None, dp), lambda i, b, h: (b, i, h, 0)),  # q
        pl.BlockSpec((None, length, None, dp), lambda i, b, h: (b, 0, lax.div(h, group), 0)),  # k
        pl.BlockSpec((None, length, None, dp), lambda i, b, h: (b, 0, lax.div(h, group), 0)),  # v
    ]
    if cfg.segmented:
        in_specs.append(pl.BlockSpec((None, length), lambda i, b, h: (b, 0)))
    segs = [aux.segment_ids.astype(jnp.int32)] if cfg.segmented else []
    out, lse = pl.pallas_call(
        functools.partial(_forward_kernel, cfg=cfg), grid=(nq, batch, hq),
        in_specs=in_specs,
        out_specs=[pl.BlockSpec((None, bq, None, dp), lambda i, b, h: (b, i, h, 0)),
                   pl.BlockSpec((None, None, bq), lambda i, b, h: (b, h, i))],
        out_shape=[jax.ShapeDtypeStruct(q.shape, q.dtype),
                   jax.ShapeDtypeStruct((batch, hq, length), jnp.float32)],
        compiler_params=_params(cfg), interpret=cfg.interpret, name="vtjax_flash_fwd_gpu",
    )(*aux.kv_ranges, q, k, v, *segs)
    return out, lse


# ----------------------------------------------------------------------------- backward

def _dq_kernel(lo_ref, hi_ref, lo2_ref, hi2_ref, *refs, cfg: KernelConfig):
    (q_ref, k_ref, v_ref), seg_ref, rest = _split(cfg, refs, 3)
    lse_ref, delta_ref, do_ref, dq_ref = rest
    # q, do, dq: [bq, D_pad]; k, v: [Lp, D_pad]; lse, delta: [bq]; seg: [Lp]
    bq, bk = cfg.blocks.block_q, cfg.blocks.block_k
    i = pl.program_id(0)
    dmask = (jnp.arange(q_ref.shape[-1]) < cfg.head_dim)[None, :]
    q, do = _load(q_ref, dmask), _load(do_ref, dmask)
    lse, delta = lse_ref[...], delta_ref[...]
    q_seg = seg_ref[pl.ds(i * bq, bq)] if cfg.segmented else None

    def body(j, dq):
        k = _load(k_ref.at[pl.ds(j * bk, bk), :], dmask)
        v = _load(v_ref.at[pl.ds(j * bk, bk), :], dmask)
        s = lax.dot_general(q, k, NT, preferred_element_type=jnp.float32) * cfg.scale
        p = jnp.exp(s - lse[:, None])  # softmax recomputed from the saved lse
        mask = _mask(cfg, i * bq, j * bk, bq, bk, q_seg, seg_ref)
        if mask is not None:
            p = jnp.where(mask, p, 0.0)
        dp = lax.dot_general(do, v, NT, preferred_element_type=jnp.float32)  # [bq, bk]
        ds = p * (dp - delta[:, None])
        return dq + lax.dot_general(ds.astype(k.dtype), k, NN, preferred_element_type=jnp.float32)

    dq = lax.fori_loop(lo_ref[i], hi_ref[i], body, jnp.zeros((bq, q_ref.shape[-1]), jnp.float32))
    dq = lax.fori_loop(lo2_ref[i], hi2_ref[i], body, dq)
    plgpu.store(dq_ref, (dq * cfg.scale).astype(dq_ref.dtype), mask=dmask)


def _dkv_kernel(lo_ref, hi_ref, lo2_ref, hi2_ref, *refs, cfg: KernelConfig):
    (q_ref, k_ref, v_ref), seg_ref, rest = _split(cfg, refs, 3)
    lse_ref, delta_ref, do_ref, dk_ref, dv_ref = rest
    # q, do: [Lp, G, D_pad] (the group's query heads); k, v, dk, dv: [bk, D_pad];
    # lse, delta: [G, Lp]; seg: [Lp]
    bq, bk = cfg.blocks.block_q_dkv, cfg.blocks.block_k_dkv
    j = pl.program_id(0)
    dmask = (jnp.arange(k_ref.shape[-1]) < cfg.head_dim)[None, :]
    k, v = _load(k_ref, dmask), _load(v_ref, dmask)
    runs = (lo_ref[j], hi_ref[j], lo2_ref[j], hi2_ref[j])
    num_tiles = runs[1] - runs[0] + runs[3] - runs[2]

    def body(t, carry):  # t walks (query head g of the group, the t % num_tiles-th visited query tile)
        dk, dv = carry  # [bk, D_pad] f32 each
        g = lax.div(t, num_tiles)
        first = visited_tile(*runs, lax.rem(t, num_tiles))[0] * bq
        rows = pl.ds(first, bq)
        q = _load(q_ref.at[rows, g, :], dmask)  # [bq, D_pad]
        do = _load(do_ref.at[rows, g, :], dmask)
        lse, delta = lse_ref[g, rows], delta_ref[g, rows]  # [bq]
        s = lax.dot_general(q, k, NT, preferred_element_type=jnp.float32) * cfg.scale
        p = jnp.exp(s - lse[:, None])  # [bq, bk]
        q_seg = seg_ref[rows] if cfg.segmented else None
        mask = _mask(cfg, first, j * bk, bq, bk, q_seg, seg_ref)
        if mask is not None:
            p = jnp.where(mask, p, 0.0)
        dv = dv + lax.dot_general(p.astype(do.dtype).T, do, NN,
                                  preferred_element_type=jnp.float32)
        dp = lax.dot_general(do, v, NT, preferred_element_type=jnp.float32)  # [bq, bk]
        ds = p * (dp - delta[:, None])
        dk = dk + lax.dot_general(ds.astype(q.dtype).T, q, NN,
                                  preferred_element_type=jnp.float32)
        return dk, dv

    zeros = jnp.zeros((bk, k_ref.shape[-1]), jnp.float32)
    dk, dv = lax.fori_loop(0, cfg.group * num_tiles, body, (zeros, zeros))
    plgpu.store(dk_ref, (dk * cfg.scale).astype(dk_ref.dtype), mask=dmask)
    plgpu.store(dv_ref, dv.astype(dv_ref.dtype), mask=dmask)


def backward(q, k, v, aux: KernelInputs, lse, delta, do, cfg: KernelConfig):
    """Gradients (dq, dk, dv) in the [B, Lp, H, D] layout; lse, delta: [B, Hq, Lp] f32."""
    batch, length, hq, d = q.shape
    hkv, group, dp = k.shape[2], cfg.group, _padded_head_dim(d)
    segs = [aux.segment_ids.astype(jnp.int32)] if cfg.segmented else []
    seg_spec = lambda grid_map: [pl.BlockSpec((None, length), grid_map)] if cfg.segmented else []

    bq = cfg.blocks.block_q
    nq = length // bq
    q_tile = pl.BlockSpec((None, bq, None, dp), lambda i, b, h: (b, i, h, 0))
    kv_all = pl.BlockSpec((None, length, None, dp), lambda i, b, h: (b, 0, lax.div(h, group), 0))
    row_stat = pl.BlockSpec((None, None, bq), lambda i, b, h: (b, h, i))
    ranges = pl.BlockSpec((None, nq), lambda i, b, h: (b, 0))
    dq = pl.pallas_call(
        functools.partial(_dq_kernel, cfg=cfg), grid=(nq, batch, hq),
        in_specs=[ranges, ranges, ranges, ranges, q_tile, kv_all, kv_all,
                  *seg_spec(lambda i, b, h: (b, 0)), row_stat, row_stat, q_tile],
        out_specs=q_tile, out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
        compiler_params=_params(cfg), interpret=cfg.interpret, name="vtjax_flash_dq_gpu",
    )(*aux.kv_ranges, q, k, v, *segs, lse, delta, do)

    bk = cfg.blocks.block_k_dkv
    nk = length // bk
    grouped = lambda x: x.reshape(batch, length, hkv, group, d)  # [B, Lp, Hkv, G, D], free
    q_group = pl.BlockSpec((None, length, None, group, dp), lambda j, b, h: (b, 0, h, 0, 0))
    kv_tile = pl.BlockSpec((None, bk, None, dp), lambda j, b, h: (b, j, h, 0))
    stat_group = pl.BlockSpec((None, None, group, length), lambda j, b, h: (b, h, 0, 0))
    ranges = pl.BlockSpec((None, nk), lambda j, b, h: (b, 0))
    stats = lambda x: x.reshape(batch, hkv, group, length)  # [B, Hkv, G, Lp]
    dk, dv = pl.pallas_call(
        functools.partial(_dkv_kernel, cfg=cfg), grid=(nk, batch, hkv),
        in_specs=[ranges, ranges, ranges, ranges, q_group, kv_tile, kv_tile,
                  *seg_spec(lambda j, b, h: (b, 0)), stat_group, stat_group, q_group],
        out_specs=[kv_tile, kv_tile],
        out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
        compiler_params=_params(cfg), interpret=cfg.interpret, name="vtjax_flash_dkv_gpu",
    )(*aux.q_ranges, grouped(q), k, v, *segs, stats(lse), stats(delta),
      grouped(do))
    return dq, dk, dv
