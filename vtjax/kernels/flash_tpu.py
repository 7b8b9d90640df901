"""Flash attention kernels for TPU (Pallas Mosaic): forward, dq and dk/dv passes.

Layout: heads-major [B, H, L, D] so that a tile is a dense [rows, D] slab.
Each pass is a 4-D grid whose last axis walks the visited tiles of the other
operand sequentially ("arbitrary"), accumulating in VMEM scratch
(FlashAttention-2, Algorithm 1 for the forward, Algorithm 2 for the
backward). The visit runs (``tiles.VisitRanges``, two per tile) are
scalar-prefetched into SMEM; the block index maps clamp a step past the end
of its runs to the last visited tile, so a skipped step issues no new DMA and
computes nothing.

Per-row softmax statistics live lane-replicated in [rows, 128] tiles, the
native layout for a value that is constant along the lane axis.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from vtjax.kernels.block_sizes import TPU_LANES
from vtjax.kernels.kernel_common import (
    EMPTY_ROW_LSE, MASK_VALUE, NN, NT, KernelConfig, KernelInputs, tile_visibility)
from vtjax.kernels.tiles import visited_tile

SUBLANES = 8


def _lanes(stat, width: int):
    """Widens a lane-replicated [rows, 128] statistic to [rows, width]."""
    if width % TPU_LANES == 0:
        return jnp.tile(stat, (1, width // TPU_LANES))
    return stat[:, :width]  # only in interpret mode: narrower tiles than a vreg


def _visit(run_refs, row, step):
    """(tile, active) of visit ``step`` of tile ``row`` from the four prefetched run arrays
    (``tiles.visited_tile``: a step past the end repeats the last visited tile, inactive)."""
    return visited_tile(*(ref[row] for ref in run_refs), step)


def _clamped(run_refs, row, step):
    """Tile index of visit ``step`` of ``row`` (block index maps)."""
    return _visit(run_refs, row, step)[0]


def _mask(cfg: KernelConfig, q_first, k_first, rows: int, cols: int, qseg_ref, kseg_ref):
    """[rows, cols] visibility of the current tile, or None when the call has no masking."""
    if not cfg.masked:
        return None
    q_pos = q_first + lax.broadcasted_iota(jnp.int32, (rows, cols), 0)
    k_pos = k_first + lax.broadcasted_iota(jnp.int32, (rows, cols), 1)
    q_seg = k_seg = None
    if cfg.segmented:
        q_seg = _lanes(qseg_ref[...], cols)  # [rows, cols] from [rows, 128]
        k_seg = kseg_ref[...][:1, :]  # [1, cols] from [8, cols]
    return tile_visibility(q_pos, k_pos, q_seg, k_seg, cfg.causal, cfg.branched)


def _split_refs(cfg: KernelConfig, refs, n_before: int):
    """Splits kernel refs into (before-segments, qseg, kseg, after-segments)."""
    if cfg.segmented:
        return refs[:n_before], refs[n_before], refs[n_before + 1], refs[n_before + 2:]
    return refs[:n_before], None, None, refs[n_before:]


# ----------------------------------------------------------------------------- forward

def _forward_kernel(*refs, cfg: KernelConfig):
    runs, refs = refs[:4], refs[4:]
    (q_ref, k_ref, v_ref), qseg_ref, kseg_ref, rest = _split_refs(cfg, refs, 3)
    o_ref, lse_ref, m_scr, l_scr, acc_scr = rest
    # q_ref, o_ref: [bq, D]; k_ref, v_ref: [bk, D]; lse_ref, m_scr, l_scr: [bq, 128]; acc: [bq, D] f32
    bq, bk = cfg.blocks.block_q, cfg.blocks.block_k
    b, i, j = pl.program_id(0), pl.program_id(2), pl.program_id(3)
    row = b * (cfg.seq_len // bq) + i
    kv_tile, active = _visit(runs, row, j)

    @pl.when(j == 0)
    def _init():
        m_scr[...] = jnp.full(m_scr.shape, MASK_VALUE, jnp.float32)
        l_scr[...] = jnp.zeros(l_scr.shape, jnp.float32)
        acc_scr[...] = jnp.zeros(acc_scr.shape, jnp.float32)

    @pl.when(active)
    def _step():
        s = lax.dot_general(q_ref[...], k_ref[...], NT,
                            preferred_element_type=jnp.float32) * cfg.scale  # [bq, bk]
        mask = _mask(cfg, i * bq, kv_tile * bk, bq, bk, qseg_ref, kseg_ref)
        if mask is not None:
            s = jnp.where(mask, s, MASK_VALUE)
        m_prev = m_scr[...]  # [bq, 128]
        m_next = jnp.maximum(m_prev, jnp.max(s, axis=1, keepdims=True))  # [bq, 128]
        p = jnp.exp(s - _lanes(m_next, bk))  # [bq, bk]
        if mask is not None:
            p = jnp.where(mask, p, 0.0)  # rows with nothing visible yet have m = MASK_VALUE
        alpha = jnp.exp(m_prev - m_next)  # [bq, 128] rescales what was accumulated so far
        l_scr[...] = alpha * l_scr[...] + jnp.sum(p, axis=1, keepdims=True)
        m_scr[...] = m_next
        pv = lax.dot_general(p.astype(v_ref.dtype), v_ref[...], NN,
                             preferred_element_type=jnp.float32)  # [bq, D]
        acc_scr[...] = acc_scr[...] * alpha[:, :1] + pv

    @pl.when(j == pl.num_programs(3) - 1)
    def _finish():
        l = l_scr[...]  # [bq, 128]
        empty = l == 0.0  # the row saw no key: output 0, not 0/0
        inv = jnp.where(empty, 0.0, 1.0 / jnp.where(empty, 1.0, l))
        o_ref[...] = (acc_scr[...] * inv[:, :1]).astype(o_ref.dtype)
        lse_ref[...] = jnp.where(empty, EMPTY_ROW_LSE, m_scr[...] + jnp.log(jnp.where(empty, 1.0, l)))


def _seg_inputs(cfg: KernelConfig, aux: KernelInputs):
    """Segment ids in the layouts the kernels tile: [B, Lp, 128] (rows) and [B, 8, Lp] (columns)."""
    if not cfg.segmented:
        return []
    seg = aux.segment_ids.astype(jnp.int32)
    b, length = seg.shape
    return [jax.lax.broadcast_in_dim(seg, (b, length, TPU_LANES), (0, 1)),
            jax.lax.broadcast_in_dim(seg, (b, SUBLANES, length), (0, 2))]


def _params(*semantics):
    return pltpu.CompilerParams(dimension_semantics=semantics)


def forward(q, k, v, aux: KernelInputs, cfg: KernelConfig):
    """q [B, Lp, Hq, D], k/v [B, Lp, Hkv, D] -> (out [B, Lp, Hq, D], lse [B, Hq, Lp] f32)."""
    batch, length, hq, d = q.shape
    bq, bk, group = cfg.blocks.block_q, cfg.blocks.block_k, cfg.group
    nq = length // bq
    runs = [x.reshape(-1) for x in aux.kv_ranges]  # 4 x [B * nq]

    def kv_map(b, h, i, j, *run_refs):
        return b, lax.div(h, group), _clamped(run_refs, b * nq + i, j), 0

    in_specs = [
        pl.BlockSpec((None, None, bq, d), lambda b, h, i, j, *_: (b, h, i, 0)),  # q
        pl.BlockSpec((None, None, bk, d), kv_map),  # k
        pl.BlockSpec((None, None, bk, d), kv_map),  # v
    ]
    if cfg.segmented:
        in_specs += [
            pl.BlockSpec((None, bq, TPU_LANES), lambda b, h, i, j, *_: (b, i, 0)),
            pl.BlockSpec((None, SUBLANES, bk), lambda b, h, i, j, *run_refs: (
                b, 0, _clamped(run_refs, b * nq + i, j))),
        ]
    out_specs = [
        pl.BlockSpec((None, None, bq, d), lambda b, h, i, j, *_: (b, h, i, 0)),
        pl.BlockSpec((None, None, bq, TPU_LANES), lambda b, h, i, j, *_: (b, h, i, 0)),
    ]
    out_shape = [jax.ShapeDtypeStruct((batch, hq, length, d), q.dtype),
                 jax.ShapeDtypeStruct((batch, hq, length, TPU_LANES), jnp.float32)]
    grid_spec = pltpu.PrefetchScalarGridSpec(
        num_scalar_prefetch=4, grid=(batch, hq, nq, cfg.kv_steps),
        in_specs=in_specs, out_specs=out_specs,
        scratch_shapes=[pltpu.VMEM((bq, TPU_LANES), jnp.float32),  # running max m
                        pltpu.VMEM((bq, TPU_LANES), jnp.float32),  # running sum l
                        pltpu.VMEM((bq, d), jnp.float32)])  # unnormalised output
    out, lse = pl.pallas_call(
        functools.partial(_forward_kernel, cfg=cfg), grid_spec=grid_spec, out_shape=out_shape,
        compiler_params=_params("parallel", "parallel", "parallel", "arbitrary"),
        interpret=cfg.interpret, name="vtjax_flash_fwd_tpu",
    )(*runs, _heads_major(q), _heads_major(k), _heads_major(v), *_seg_inputs(cfg, aux))
    return _heads_major(out), lse[..., 0]


def _heads_major(x):
    """[B, L, H, D] <-> [B, H, L, D]."""
    return jnp.transpose(x, (0, 2, 1, 3))


# ----------------------------------------------------------------------------- backward

def _dq_kernel(*refs, cfg: KernelConfig):
    runs, refs = refs[:4], refs[4:]
    (q_ref, k_ref, v_ref), qseg_ref, kseg_ref, rest = _split_refs(cfg, refs, 3)
    lse_ref, delta_ref, do_ref, dq_ref, dq_scr = rest
    # q, do, dq: [bq, D]; k, v: [bk, D]; lse, delta: [bq, 128]; dq_scr: [bq, D] f32
    bq, bk = cfg.blocks.block_q, cfg.blocks.block_k
    b, i, j = pl.program_id(0), pl.program_id(2), pl.program_id(3)
    row = b * (cfg.seq_len // bq) + i
    kv_tile, active = _visit(runs, row, j)

    @pl.when(j == 0)
    def _init():
        dq_scr[...] = jnp.zeros(dq_scr.shape, jnp.float32)

    @pl.when(active)
    def _step():
        k = k_ref[...]
        s = lax.dot_general(q_ref[...], k, NT,
                            preferred_element_type=jnp.float32) * cfg.scale  # [bq, bk]
        p = jnp.exp(s - _lanes(lse_ref[...], bk))  # softmax recomputed from the saved lse
        mask = _mask(cfg, i * bq, kv_tile * bk, bq, bk, qseg_ref, kseg_ref)
        if mask is not None:
            p = jnp.where(mask, p, 0.0)
        dp = lax.dot_general(do_ref[...], v_ref[...], NT,
                             preferred_element_type=jnp.float32)  # [bq, bk]
        ds = p * (dp - _lanes(delta_ref[...], bk))
        dq_scr[...] += lax.dot_general(ds.astype(k.dtype), k, NN,
                                       preferred_element_type=jnp.float32)

    @pl.when(j == pl.num_programs(3) - 1)
    def _finish():
        dq_ref[...] = (dq_scr[...] * cfg.scale).astype(dq_ref.dtype)


def _dkv_kernel(*refs, cfg: KernelConfig):
    runs, refs = refs[:4], refs[4:]
    (q_ref, k_ref, v_ref), qseg_ref, kseg_ref, rest = _split_refs(cfg, refs, 3)
    lse_ref, delta_ref, do_ref, dk_ref, dv_ref, dk_scr, dv_scr = rest
    # q, do: [bq, D]; k, v, dk, dv: [bk, D]; lse, delta: [bq, 128]; scratch: [bk, D] f32
    bq, bk = cfg.blocks.block_q_dkv, cfg.blocks.block_k_dkv
    b, j, t = pl.program_id(0), pl.program_id(2), pl.program_id(3)
    row = b * (cfg.seq_len // bk) + j
    q_tile, active = _visit(runs, row, lax.rem(t, cfg.q_steps))  # t walks (query head of the group, tile)

    @pl.when(t == 0)
    def _init():
        dk_scr[...] = jnp.zeros(dk_scr.shape, jnp.float32)
        dv_scr[...] = jnp.zeros(dv_scr.shape, jnp.float32)

    @pl.when(active)
    def _step():
        q, do = q_ref[...], do_ref[...]
        s = lax.dot_general(q, k_ref[...], NT,
                            preferred_element_type=jnp.float32) * cfg.scale  # [bq, bk]
        p = jnp.exp(s - _lanes(lse_ref[...], bk))
        mask = _mask(cfg, q_tile * bq, j * bk, bq, bk, qseg_ref, kseg_ref)
        if mask is not None:
            p = jnp.where(mask, p, 0.0)
        dv_scr[...] += lax.dot_general(p.T.astype(do.dtype), do, NN,
                                       preferred_element_type=jnp.float32)  # [bk, D]
        dp = lax.dot_general(do, v_ref[...], NT, preferred_element_type=jnp.float32)  # [bq, bk]
        ds = p * (dp - _lanes(delta_ref[...], bk))
        dk_scr[...] += lax.dot_general(ds.T.astype(q.dtype), q, NN,
                                       preferred_element_type=jnp.float32)  # [bk, D]

    @pl.when(t == pl.num_programs(3) - 1)
    def _finish():
        dk_ref[...] = (dk_scr[...] * cfg.scale).astype(dk_ref.dtype)
        dv_ref[...] = dv_scr[...].astype(dv_ref.dtype)


def _dq(q_t, k_t, v_t, segs, lse_w, delta_w, do_t, aux, cfg):
    batch, hq, length, d = q_t.shape
    bq, bk, group = cfg.blocks.block_q, cfg.blocks.block_k, cfg.group
    nq = length // bq
    runs = [x.reshape(-1) for x in aux.kv_ranges]  # 4 x [B * nq]

    def kv_map(b, h, i, j, *run_refs):
        return b, lax.div(h, group), _clamped(run_refs, b * nq + i, j), 0

    def q_map(b, h, i, j, *_):
        return b, h, i, 0

    in_specs = [pl.BlockSpec((None, None, bq, d), q_map),
                pl.BlockSpec((None, None, bk, d), kv_map),
                pl.BlockSpec((None, None, bk, d), kv_map)]
    if cfg.segmented:
        in_specs += [
            pl.BlockSpec((None, bq, TPU_LANES), lambda b, h, i, j, *_: (b, i, 0)),
            pl.BlockSpec((None, SUBLANES, bk), lambda b, h, i, j, *run_refs: (
                b, 0, _clamped(run_refs, b * nq + i, j))),
        ]
    in_specs += [pl.BlockSpec((None, None, bq, TPU_LANES), q_map),  # lse
                 pl.BlockSpec((None, None, bq, TPU_LANES), q_map),  # delta
                 pl.BlockSpec((None, None, bq, d), q_map)]  # do
    grid_spec = pltpu.PrefetchScalarGridSpec(
        num_scalar_prefetch=4, grid=(batch, hq, nq, cfg.kv_steps), in_specs=in_specs,
        out_specs=pl.BlockSpec((None, None, bq, d), q_map),
        scratch_shapes=[pltpu.VMEM((bq, d), jnp.float32)])
    return pl.pallas_call(
        functools.partial(_dq_kernel, cfg=cfg), grid_spec=grid_spec,
        out_shape=jax.ShapeDtypeStruct(q_t.shape, q_t.dtype),
        compiler_params=_params("parallel", "parallel", "parallel", "arbitrary"),
        interpret=cfg.interpret, name="vtjax_flash_dq_tpu",
    )(*runs, q_t, k_t, v_t, *segs, lse_w, delta_w, do_t)


def _dkv(q_t, k_t, v_t, segs, lse_w, delta_w, do_t, aux, cfg):
    batch, hkv, length, d = k_t.shape
    bq, bk, group, steps = cfg.blocks.block_q_dkv, cfg.blocks.block_k_dkv, cfg.group, cfg.q_steps
    nk = length // bk
    runs = [x.reshape(-1) for x in aux.q_ranges]  # 4 x [B * nk]

    def q_map(b, h, j, t, *run_refs):  # h is the kv head; t walks (group member, tile)
        return b, h * group + lax.div(t, steps), _clamped(run_refs, b * nk + j, lax.rem(t, steps)), 0

    def kv_map(b, h, j, t, *_):
        return b, h, j, 0

    in_specs = [pl.BlockSpec((None, None, bq, d), q_map),
                pl.BlockSpec((None, None, bk, d), kv_map),
                pl.BlockSpec((None, None, bk, d), kv_map)]
    if cfg.segmented:
        in_specs += [
            pl.BlockSpec((None, bq, TPU_LANES), lambda b, h, j, t, *run_refs: (
                b, _clamped(run_refs, b * nk + j, lax.rem(t, steps)), 0)),
            pl.BlockSpec((None, SUBLANES, bk), lambda b, h, j, t, *_: (b, 0, j)),
        ]
    in_specs += [pl.BlockSpec((None, None, bq, TPU_LANES), q_map),  # lse
                 pl.BlockSpec((None, None, bq, TPU_LANES), q_map),  # delta
                 pl.BlockSpec((None, None, bq, d), q_map)]  # do
    grid_spec = pltpu.PrefetchScalarGridSpec(
        num_scalar_prefetch=4, grid=(batch, hkv, nk, group * steps), in_specs=in_specs,
        out_specs=[pl.BlockSpec((None, None, bk, d), kv_map)] * 2,
        scratch_shapes=[pltpu.VMEM((bk, d), jnp.float32), pltpu.VMEM((bk, d), jnp.float32)])
    return pl.pallas_call(
        functools.partial(_dkv_kernel, cfg=cfg), grid_spec=grid_spec,
        out_shape=[jax.ShapeDtypeStruct(k_t.shape, k_t.dtype),
                   jax.ShapeDtypeStruct(v_t.shape, v_t.dtype)],
        compiler_params=_params("parallel", "parallel", "parallel", "arbitrary"),
        interpret=cfg.interpret, name="vtjax_flash_dkv_tpu",
    )(*runs, q_t, k_t, v_t, *segs, lse_w, delta_w, do_t)


def backward(q, k, v, aux: KernelInputs, lse, delta, do, cfg: KernelConfig):
    """Gradients (dq, dk, dv) in the [B, Lp, H, D] layout; lse, delta: [B, Hq, Lp] f32."""
    q_t, k_t, v_t, do_t = (_heads_major(x) for x in (q, k, v, do))
    lse_w = jnp.broadcast_to(lse[..., None], (*lse.shape, TPU_LANES))  # [B, Hq, Lp, 128]
    delta_w = jnp.broadcast_to(delta[..., None], (*delta.shape, TPU_LANES))
    segs = _seg_inputs(cfg, aux)
    dq = _dq(q_t, k_t, v_t, segs, lse_w, delta_w, do_t, aux, cfg)
    dk, dv = _dkv(q_t, k_t, v_t, segs, lse_w, delta_w, do_t, aux, cfg)
    return _heads_major(dq), _heads_major(dk), _heads_major(dv)
