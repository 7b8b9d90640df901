"""Attention dispatch: the one entry point every attention in vtjax goes through.

Masks are described, never materialised over the whole sequence:

* ``segment_ids``: query ``i`` may see key ``j`` only when both carry the same
  non-zero id. Id 0 marks padding: it sees nothing and is seen by nothing, and
  a query row with no visible key returns zeros (never NaN).
* ``causal``: key ``j`` is visible to query ``i`` only when ``j <= i``.
* In the XLA path a causal attention longer than ``CAUSAL_QUERY_BLOCK`` is
  block-causal: query block ``i`` is scored only against the keys up to its
  own end, so the masked blocks above the diagonal are never computed (about
  half of the dense square for long sequences).
* ``max_segment_len``: a static promise that every non-zero segment is one
  contiguous run of at most this many tokens (true for the vision tower's
  windows and frames, and for packed sequences). The XLA path then computes
  scores only inside a band of three blocks around each query block, so the
  cost is O(L * max_segment_len) instead of O(L^2).
* ``shared_prefix`` (``SharedPrefix``): prefix sharing inside a segment, as in
  a GRPO group laid out once as its prompt followed by its G completions. Its
  ``branch_ids`` give 0 to shared (prompt) tokens and k > 0 to the tokens of
  branch k; key ``j`` is visible to query ``i`` only when it is shared or in
  the query's own branch (on top of the segment and causal rules). The XLA
  path uses its static layout (shared tokens before ``prefix_len``, branches
  contiguous runs of at most ``max_branch_len`` after it): prefix queries run
  causal attention over the prefix, and each block of branch queries is
  scored against the prefix plus the window of ``max_branch_len`` keys
  before it, never the whole sequence.

GQA never materialises repeated K/V: queries are grouped as
``[B, L, kv_heads, group, D]`` and contracted against the shared kv head.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import flax.struct
import jax
import jax.numpy as jnp

AttentionImpl = Literal["xla", "pallas", "cudnn", "auto"]
IMPLS = ("xla", "pallas", "cudnn", "auto")

# Finite stand-in for -inf in masked logits, so masked rows never produce NaN.
_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)

# Query block (tokens) of the XLA path's block-causal attention; None computes the dense square.
CAUSAL_QUERY_BLOCK: int | None = 256
# Query block (tokens) of the branches in the XLA path's shared-prefix attention.
SHARED_QUERY_BLOCK = 128


@flax.struct.dataclass
class SharedPrefix:
    """Prefix sharing (module doc): a shared prefix, then branches that see it and themselves only."""

    branch_ids: jax.Array  # [B, L] int32: 0 = shared token, k > 0 = token of branch k
    prefix_len: int = flax.struct.field(pytree_node=False)  # shared tokens lie before it, branch tokens after
    max_branch_len: int = flax.struct.field(pytree_node=False)  # longest branch (each a contiguous run)


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    causal: bool,
    segment_ids: jax.Array | None = None,
    max_segment_len: int | None = None,
    shared_prefix: SharedPrefix | None = None,
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
      shared_prefix: branches after a shared prefix (module doc); needs ``causal``. "pallas" passes the
        branch ids to the kernels; "cudnn" runs the XLA path.
      impl: "xla", "pallas", "cudnn" or "auto" (Pallas on GPU/TPU, XLA on CPU).
      scale: logit scale, default ``D ** -0.5``.

    Returns:
      [B, L, Hq, D] in ``q.dtype``.
    """
    _check_shapes(q, k, v, segment_ids)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    impl = resolve_impl(impl)
    if shared_prefix is not None:
        if not causal or max_segment_len is not None:
            raise ValueError("shared_prefix attention is causal and takes no max_segment_len")
        if shared_prefix.branch_ids.shape != q.shape[:2]:
            raise ValueError(f"branch_ids {shared_prefix.branch_ids.shape} must be [B, L] = {q.shape[:2]}")
        if impl == "pallas":  # the kernels take the branch ids and skip the tiles they hide
            return _accelerated(impl, q, k, v, True, segment_ids, None, scale, shared_prefix.branch_ids)
        return _xla_shared_prefix(q, k, v, segment_ids, shared_prefix, scale)
    if impl == "xla":
        if max_segment_len is not None and max_segment_len < q.shape[1]:
            return _xla_banded(q, k, v, causal, segment_ids, int(max_segment_len), scale)
        if causal:
            return _xla_causal(q, k, v, segment_ids, scale)
        return _xla_dense(q, k, v, causal, segment_ids, scale)
    return _accelerated(impl, q, k, v, causal, segment_ids, max_segment_len, scale)


def resolve_impl(impl: str) -> str:
    """Maps "auto" to the best implementation for the default backend."""
    if impl not in IMPLS:
        raise ValueError(f"attention impl={impl!r} is not one of {IMPLS}")
    if impl != "auto":
        return impl
    return "xla" if jax.default_backend() == "cpu" else "pallas"


def _accelerated(impl, q, k, v, causal, segment_ids, max_segment_len, scale, branch_ids=None):
    # Imported lazily: the kernels module pulls in Pallas, which plain XLA users never need.
    from vtjax.kernels import dispatch as kernel_dispatch

    return kernel_dispatch.attention(
        impl, q, k, v, causal=causal, segment_ids=segment_ids,
        max_segment_len=max_segment_len, scale=scale, branch_ids=branch_ids)


def _xla_causal(q, k, v, segment_ids, scale):
    """Causal XLA attention: block-causal past ``CAUSAL_QUERY_BLOCK`` tokens, else the dense square."""
    if CAUSAL_QUERY_BLOCK is not None and q.shape[1] > CAUSAL_QUERY_BLOCK:
        return _xla_block_causal(q, k, v, segment_ids, CAUSAL_QUERY_BLOCK, scale)
    return _xla_dense(q, k, v, True, segment_ids, scale)


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


def masked_softmax(logits: jax.Array, mask: jax.Array) -> jax.Array:
    """Softmax over the last axis of float32 ``logits`` where ``mask`` (broadcastable bool) holds.

    Masked entries get probability 0; rows whose mask is all False give exactly zero.
    """
    return _masked_softmax_lse(logits, mask)[0]


def _masked_softmax_lse(logits, mask):
    """``(probs, lse)``: masked softmax of [..., Lk] float32 logits and its row log-normaliser [..., 1].

    ``lse`` is 0 on rows with nothing visible, whose probabilities are all 0.
    """
    logits = jnp.where(mask, logits, _MASK_VALUE)
    row_max = jnp.max(logits, axis=-1, keepdims=True)
    probs = jnp.where(mask, jnp.exp(logits - row_max), 0.0)
    denom = jnp.sum(probs, axis=-1, keepdims=True)
    empty = denom == 0.0
    lse = jnp.where(empty, 0.0, row_max + jnp.log(jnp.where(empty, 1.0, denom)))
    return probs / jnp.where(empty, 1.0, denom), lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _attend(q, k, v, mask, scale):
    """Masked softmax attention on canonical layouts; ``...`` are shared batch axes.

    q: [..., G, Lq, D] (G query heads per kv head); k, v: [..., Lk, D];
    mask: bool, broadcastable to [..., G, Lq, Lk]. Returns [..., G, Lq, D].

    Every product is a batched matmul contracting one minor axis. The backward
    pass is flash attention's closed form (``dlogits = p * (dp - delta)`` with
    ``delta = sum(dout * out)``: one reduction over D, none over the scores),
    and forms the key/value gradients transposed, ``dk^T = q^T dlogits``, so the
    only transposes are of the small [.., L, D] operands, never of the scores.
    The probabilities are recomputed from the saved row log-normaliser rather
    than kept: one more q k^T matmul instead of an [..., G, Lq, Lk] residual
    (written, stacked over scanned layers, read back).
    """
    return _attend_fwd(q, k, v, mask, scale)[0]


def _logits(q, k, scale):
    return jnp.einsum("...gqd,...kd->...gqk", q, k, preferred_element_type=jnp.float32) * scale


def _attend_fwd(q, k, v, mask, scale):
    probs, lse = _masked_softmax_lse(_logits(q, k, scale), mask)  # [..., G, Lq, Lk], [..., G, Lq, 1]
    out = jnp.einsum("...gqk,...kd->...gqd", probs.astype(v.dtype), v)  # [..., G, Lq, D]
    return out, (q, k, v, mask, lse, out)


def _transposed_grad(rows, scores):
    """``rows^T scores`` over the (G, Lq) rows, as [..., Lk, D]: ``(rows^T)`` is [..., D, G*Lq].

    The barrier keeps XLA from folding the small transpose into the matmul,
    which would instead transpose the [..., G*Lq, Lk] scores.
    """
    *batch, g, lq, d = rows.shape
    rows_t = jax.lax.optimization_barrier(jnp.swapaxes(rows.reshape(*batch, g * lq, d), -1, -2))
    grad_t = jnp.einsum("...dq,...qk->...dk", rows_t, scores.reshape(*batch, g * lq, scores.shape[-1]),
                        preferred_element_type=jnp.float32)  # [..., D, Lk]
    return jnp.swapaxes(grad_t, -1, -2)


def _probs_grad_minus_delta(d_out, out, v, d_lse=None):
    """``dp - delta`` ([..., G, Lq, Lk] float32): ``dp = dout v^T``, ``delta = sum(dout * out)`` per row.

    Computed as one matmul of ``[dout, delta]`` against ``[v, -1]``: XLA:CPU
    would otherwise fuse the delta reduction into the dp matmul's epilogue,
    which then runs ~2x slower (it re-reduces per score).
    """
    # A contraction, not sum(dout * out): XLA:CPU's fused reduce over a short minor axis is ~10x slower.
    delta = jnp.einsum("...d,...d->...", d_out, out, preferred_element_type=jnp.float32)[..., None]
    if d_lse is not None:  # lse's own cotangent: d logits += p * d_lse, i.e. delta -= d_lse
        delta = delta - d_lse.astype(jnp.float32)
    d_out_aug = jnp.concatenate([d_out.astype(jnp.float32), delta], axis=-1)  # [..., G, Lq, D+1]
    v_aug = jnp.concatenate([v.astype(jnp.float32), -jnp.ones((*v.shape[:-1], 1), jnp.float32)],
                            axis=-1)  # [..., Lk, D+1]
    return jnp.einsum("...gqd,...kd->...gqk", d_out_aug, v_aug, preferred_element_type=jnp.float32)


def _attend_grads(scale, residuals, d_out, d_lse=None):
    q, k, v, mask, lse, out = residuals
    probs = jnp.where(mask, jnp.exp(_logits(q, k, scale) - lse), 0.0).astype(v.dtype)  # [..., G, Lq, Lk]
    d_shifted = _probs_grad_minus_delta(d_out, out, v, d_lse)  # [..., G, Lq, Lk]
    d_logits = (probs.astype(jnp.float32) * d_shifted * scale).astype(q.dtype)  # [..., G, Lq, Lk]
    d_q = jnp.einsum("...gqk,...kd->...gqd", d_logits, k, preferred_element_type=jnp.float32)
    d_k = _transposed_grad(q, d_logits)
    d_v = _transposed_grad(d_out, probs)
    return d_q.astype(q.dtype), d_k.astype(k.dtype), d_v.astype(v.dtype), None


def _attend_bwd(scale, residuals, d_out):
    return _attend_grads(scale, residuals, d_out)


_attend.defvjp(_attend_fwd, _attend_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _attend_with_lse(q, k, v, mask, scale):
    """``_attend`` that also returns the row log-normaliser ``lse`` [..., G, Lq, 1] (0 on rows that see
    nothing), differentiable in both: for merging attention over disjoint key sets (``_merge``)."""
    out, residuals = _attend_fwd(q, k, v, mask, scale)
    return out, residuals[4]


def _attend_with_lse_fwd(q, k, v, mask, scale):
    out, residuals = _attend_fwd(q, k, v, mask, scale)
    return (out, residuals[4]), residuals


def _attend_with_lse_bwd(scale, residuals, cotangents):
    d_out, d_lse = cotangents
    return _attend_grads(scale, residuals, d_out, d_lse)


_attend_with_lse.defvjp(_attend_with_lse_fwd, _attend_with_lse_bwd)


def _merge(parts):
    """Attention over the union of disjoint key sets from each set's ``(out, lse, sees)``.

    out: [..., D]; lse: [..., 1]; sees: [..., 1] bool, whether the row saw any key of that set.
    Rows that saw nothing anywhere get zeros.
    """
    m = functools.reduce(jnp.maximum, [jnp.where(sees, lse, -jnp.inf) for _, lse, sees in parts])
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    weights = [jnp.where(sees, jnp.exp(jnp.where(sees, lse - m, 0.0)), 0.0) for _, lse, sees in parts]
    total = functools.reduce(jnp.add, weights)
    out = functools.reduce(jnp.add, [w * o.astype(jnp.float32) for w, (o, _, _) in zip(weights, parts, strict=True)])
    return out / jnp.where(total == 0.0, 1.0, total)


def _xla_dense(q, k, v, causal, segment_ids, scale):
    """O(L^2) reference path: one score matrix per (batch, head)."""
    b, length, hq, d = q.shape
    hkv = k.shape[2]
    q_grouped = q.reshape(b, length, hkv, hq // hkv, d).transpose(0, 2, 3, 1, 4)  # [B, Hkv, G, L, D]
    mask = jnp.ones((b, length, length), dtype=bool)
    if segment_ids is not None:
        mask = (segment_ids[:, :, None] == segment_ids[:, None, :]) & (segment_ids[:, :, None] != 0)
    if causal:
        mask = mask & jnp.tril(jnp.ones((length, length), dtype=bool))[None]
    out = _attend(q_grouped, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3), mask[:, None, None],
                  scale)  # [B, Hkv, G, L, D]
    return out.transpose(0, 3, 1, 2, 4).reshape(b, length, hq, d).astype(q.dtype)


def _xla_block_causal(q, k, v, segment_ids, block, scale):
    """Causal attention in query blocks of ``block`` tokens, each scored against the keys up to its end.

    Block ``i`` (queries ``[i*block, e)``) sees keys ``[0, e)`` only, so the score blocks above the
    diagonal, all masked, are skipped: n blocks cost (n + 1) / 2n of the dense square. Each query row's
    softmax spans the same visible keys as the dense path's.
    """
    b, length, hq, d = q.shape
    hkv = k.shape[2]
    q_grouped = q.reshape(b, length, hkv, hq // hkv, d).transpose(0, 2, 3, 1, 4)  # [B, Hkv, G, L, D]
    k_t, v_t = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, Hkv, L, D]
    positions = jnp.arange(length)
    outs = []
    for start in range(0, length, block):
        end = min(start + block, length)
        mask = positions[None, :end] <= positions[start:end, None]  # [Lq, Lk]
        if segment_ids is not None:
            seg_q, seg_k = segment_ids[:, start:end, None], segment_ids[:, None, :end]
            mask = mask[None] & (seg_q == seg_k) & (seg_q != 0)  # [B, Lq, Lk]
        else:
            mask = mask[None]
        outs.append(_attend(q_grouped[..., start:end, :], k_t[..., :end, :], v_t[..., :end, :],
                            mask[:, None, None], scale))  # [B, Hkv, G, Lq, D]
    out = jnp.concatenate(outs, axis=3)  # [B, Hkv, G, L, D]
    return out.transpose(0, 3, 1, 2, 4).reshape(b, length, hq, d).astype(q.dtype)


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
    q_blocks = _pad_axis1(q, 0, padded - length).reshape(b, num_blocks, block, hkv, group, d)
    seg_q = _pad_axis1(segment_ids, 0, padded - length).reshape(b, num_blocks, block)
    pos_q = jnp.arange(padded).reshape(num_blocks, block)

    k_band = _band(k, block)  # [B, nb, 3C, Hkv, D]
    v_band = _band(v, block)
    seg_k = _band(segment_ids, block)  # [B, nb, 3C]
    pos_k = _band_positions(num_blocks, block)  # [nb, 3C]

    mask = (seg_q[..., :, None] == seg_k[..., None, :]) & (seg_q[..., :, None] != 0)
    if causal:
        mask = mask & (pos_k[:, None, :] <= pos_q[:, :, None])[None]
    out = _attend(q_blocks.transpose(0, 1, 3, 4, 2, 5),  # [B, nb, Hkv, G, C, D]
                  k_band.transpose(0, 1, 3, 2, 4), v_band.transpose(0, 1, 3, 2, 4),  # [B, nb, Hkv, 3C, D]
                  mask[:, :, None, None], scale)  # [B, nb, Hkv, G, C, D]
    out = out.transpose(0, 1, 4, 2, 3, 5).reshape(b, padded, hq, d)[:, :length]
    return out.astype(q.dtype)


def _pad_axis1(x, before, after):
    widths = [(0, 0)] * x.ndim
    widths[1] = (before, after)
    return jnp.pad(x, widths)


def _band(x, block, before=1, after=1):
    """[B, L, ...] -> [B, nb, (before + 1 + after) * block, ...]: for each block j of ``block`` tokens,
    blocks j - before .. j + after (zero-padded past both ends; nb = ceil(L / block))."""
    b, length = x.shape[:2]
    num_blocks = -(-length // block)
    x = _pad_axis1(x, before * block, num_blocks * block - length + after * block)
    x = x.reshape(b, num_blocks + before + after, block, *x.shape[2:])
    return jnp.concatenate([x[:, i:i + num_blocks] for i in range(before + 1 + after)], axis=2)


def _band_positions(num_blocks, block, before=1, after=1):
    """[nb, (before + 1 + after) * block] token position of every key of ``_band``'s bands (negative or
    past the end for the padding)."""
    pos = jnp.arange(-before * block, (num_blocks + after) * block).reshape(num_blocks + before + after, block)
    return jnp.concatenate([pos[i:i + num_blocks] for i in range(before + 1 + after)], axis=1)


def shared_prefix_visible(segment_ids: jax.Array | None, branch_ids: jax.Array) -> jax.Array:
    """[B, L, L] bool, query by key: the dense mask of causal attention with ``SharedPrefix`` branches."""
    b, length = branch_ids.shape
    seg = jnp.ones((b, length), jnp.int32) if segment_ids is None else segment_ids
    same = (seg[:, :, None] == seg[:, None, :]) & (seg[:, :, None] != 0)
    branch = (branch_ids[:, None, :] == 0) | (branch_ids[:, None, :] == branch_ids[:, :, None])
    return same & branch & jnp.tril(jnp.ones((length, length), bool))[None]


def _xla_shared_prefix(q, k, v, segment_ids, shared: SharedPrefix, scale):
    """Causal attention of a shared prefix and its branches, computing only the tiles they can see.

    Prefix queries (before ``prefix_len``) attend causally within the prefix. Branch queries attend to the
    prefix's keys (one rectangle) and, in blocks of Q tokens, to a causal window of branch keys: their
    block and the blocks covering the C - 1 tokens before it (C = ``max_branch_len``; a query's branch
    starts inside it); the two softmaxes merge by their log-normalisers. That is
    O(Lp^2 / 2 + Lb * (Lp + C + Q)) scores instead of the dense O((Lp + Lb)^2 / 2), and no key is copied
    per query block.
    """
    b, length, hq, d = q.shape
    hkv = k.shape[2]
    prefix, longest = shared.prefix_len, shared.max_branch_len
    if not 0 < prefix <= length or longest < 1:
        raise ValueError(f"shared prefix of {prefix} tokens, branches of {longest}, in a sequence of {length}")
    seg = jnp.ones((b, length), jnp.int32) if segment_ids is None else segment_ids
    branch = shared.branch_ids
    prefix_seg = seg[:, :prefix]
    prefix_out = _xla_causal(q[:, :prefix], k[:, :prefix], v[:, :prefix], prefix_seg, scale)
    if prefix == length:
        return prefix_out
    rest = length - prefix
    group = hq // hkv
    block = min(SHARED_QUERY_BLOCK, longest)
    reach = -(-(longest - 1) // block)  # earlier blocks a branch query may need: its branch starts <= C-1 back
    num_blocks = -(-rest // block)
    padded = num_blocks * block
    seg_q, branch_q = seg[:, prefix:], branch[:, prefix:]  # [B, Lb]

    # Every branch query against the prefix keys: one [Lb, Lp] rectangle per head, no key copied.
    q_rest = q[:, prefix:].reshape(b, rest, hkv, group, d).transpose(0, 2, 3, 1, 4)  # [B, Hkv, G, Lb, D]
    sees_prefix = ((seg_q[:, :, None] != 0) & (seg_q[:, :, None] == prefix_seg[:, None, :])
                   & (branch[:, None, :prefix] == 0))  # [B, Lb, Lp]
    out_prefix, lse_prefix = _attend_with_lse(q_rest, k[:, :prefix].transpose(0, 2, 1, 3),
                                              v[:, :prefix].transpose(0, 2, 1, 3), sees_prefix[:, None, None],
                                              scale)  # [B, Hkv, G, Lb, D], [B, Hkv, G, Lb, 1]

    # Blocks of Q branch queries against their causal window of branch keys (blocks j - reach .. j).
    def window(x):  # [B, Lb, ...] -> [B, nb, W, ...]
        return _band(x, block, before=reach, after=0)

    q_blocks = _pad_axis1(q[:, prefix:], 0, padded - rest).reshape(b, num_blocks, block, hkv, group, d)
    seg_blocks = _pad_axis1(seg_q, 0, padded - rest).reshape(b, num_blocks, block)
    branch_blocks = _pad_axis1(branch_q, 0, padded - rest).reshape(b, num_blocks, block)
    pos_q = jnp.arange(padded).reshape(num_blocks, block)
    seg_k, branch_k = window(seg_q), window(branch_q)  # [B, nb, W]
    pos_k = _band_positions(num_blocks, block, before=reach, after=0)  # [nb, W]
    sees_window = ((seg_blocks[..., None] != 0) & (seg_blocks[..., None] == seg_k[:, :, None, :])
                   & ((branch_k[:, :, None, :] == 0) | (branch_k[:, :, None, :] == branch_blocks[..., None]))
                   & (pos_k[:, None, :] <= pos_q[:, :, None])[None])  # [B, nb, Q, W]
    out_window, lse_window = _attend_with_lse(
        q_blocks.transpose(0, 1, 3, 4, 2, 5),  # [B, nb, Hkv, G, Q, D]
        window(k[:, prefix:]).transpose(0, 1, 3, 2, 4), window(v[:, prefix:]).transpose(0, 1, 3, 2, 4),
        sees_window[:, :, None, None], scale)  # [B, nb, Hkv, G, Q, D], [B, nb, Hkv, G, Q, 1]

    def query_major(x):  # [B, nb, Hkv, G, Q, X] -> [B, Hkv, G, Lb, X]
        return x.transpose(0, 2, 3, 1, 4, 5).reshape(b, hkv, group, padded, x.shape[-1])[:, :, :, :rest]

    sees_any_window = jnp.any(sees_window, axis=-1).reshape(b, padded)[:, :rest]  # [B, Lb]
    out = _merge([(out_prefix, lse_prefix, jnp.any(sees_prefix, axis=-1)[:, None, None, :, None]),
                  (query_major(out_window), query_major(lse_window), sees_any_window[:, None, None, :, None])])
    out = out.transpose(0, 3, 1, 2, 4).reshape(b, rest, hq, d).astype(q.dtype)  # [B, Lb, Hq, D]
    return jnp.concatenate([prefix_out, out], axis=1)
