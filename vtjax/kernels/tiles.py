"""Which tiles of the score matrix the kernels visit, computed up front in XLA.

A (query tile, key tile) pair is visited only when some query in the one can
see some key in the other. From the segment ids we take, per tile, the
smallest and largest non-zero id; two tiles can meet only when those id
ranges overlap. Causal masking drops tiles above the diagonal, and a static
``max_segment_len`` drops tiles further apart than one segment can reach.

With branch ids (prefix sharing, ``ops.attention.SharedPrefix``) a key tile
is seen by a query tile only when it holds shared (branch 0) tokens or the
two tiles' branch ranges overlap.

The visited key tiles of query tile ``i`` are summarised as at most two
half-open runs, ``[lo, hi)`` and ``[lo2, hi2)`` (the first run of meeting
tiles, then the next meeting tile to the last), and the visited query tiles
of key tile ``j`` likewise. The kernels loop over those runs only, so window
attention over N tokens costs O(N * window), causal attention half of the
full square, and a branch after a shared prompt visits the prompt's tiles
and its own, never another branch's.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

_INT32_MAX = jnp.iinfo(jnp.int32).max


class VisitRanges(NamedTuple):
    """Two half-open tile runs per tile, int32; empty runs are (0, 0). Visit order: run 1, then run 2."""

    lo: jax.Array  # [B, num_tiles] first visited tile along the other axis
    hi: jax.Array  # [B, num_tiles] one past the last tile of the first run
    lo2: jax.Array  # [B, num_tiles] first tile of the second run
    hi2: jax.Array  # [B, num_tiles] one past the last visited tile (second run)

    @property
    def count(self) -> jax.Array:
        """[B, num_tiles] tiles visited."""
        return self.hi - self.lo + self.hi2 - self.lo2


def segment_range_per_tile(segment_ids: jax.Array, block: int) -> tuple[jax.Array, jax.Array]:
    """Smallest and largest non-zero segment id in each tile of ``block`` tokens.

    Args:
      segment_ids: [B, L] int, L a multiple of ``block``.

    Returns:
      (low, high), each [B, L // block] int32. A tile holding only padding gets
      the empty range (INT32_MAX, -1), which overlaps nothing.
    """
    b, length = segment_ids.shape
    tiles = segment_ids.astype(jnp.int32).reshape(b, length // block, block)
    real = tiles > 0
    low = jnp.min(jnp.where(real, tiles, _INT32_MAX), axis=-1)
    high = jnp.max(jnp.where(real, tiles, -1), axis=-1)
    return low, high


def tiles_meet(
    segment_ids: jax.Array | None,
    *,
    batch: int,
    seq_len: int,
    block_q: int,
    block_k: int,
    causal: bool,
    max_segment_len: int | None,
    branch_ids: jax.Array | None = None,
) -> jax.Array:
    """[B, nq, nk] bool: may query tile i see anything in key tile j?

    ``branch_ids`` [B, L] (with ``segment_ids``): 0 = shared token, k > 0 = branch k (module doc).

    ``seq_len`` must be a multiple of both blocks. The answer is conservative
    (True may still hide an all-masked tile; the kernel masks per element),
    but False is exact: no visible (query, key) pair is ever dropped.
    """
    nq, nk = seq_len // block_q, seq_len // block_k
    q_first = jnp.arange(nq)[:, None] * block_q  # [nq, 1] first query position of tile i
    q_last = q_first + block_q - 1
    k_first = jnp.arange(nk)[None, :] * block_k  # [1, nk] first key position of tile j
    k_last = k_first + block_k - 1
    meet = jnp.ones((nq, nk), dtype=bool)
    if causal:
        meet &= k_first <= q_last
    if max_segment_len is not None:
        reach = max_segment_len - 1  # a segment spans at most this many positions past a token
        meet &= (k_first <= q_last + reach) & (k_last >= q_first - reach)
    meet = jnp.broadcast_to(meet[None], (batch, nq, nk))
    if segment_ids is not None:
        q_low, q_high = segment_range_per_tile(segment_ids, block_q)  # [B, nq]
        k_low, k_high = segment_range_per_tile(segment_ids, block_k)  # [B, nk]
        meet &= (q_low[:, :, None] <= k_high[:, None, :]) & (k_low[:, None, :] <= q_high[:, :, None])
    if branch_ids is not None:
        real = segment_ids if segment_ids is not None else jnp.ones_like(branch_ids)
        shared = ((real != 0) & (branch_ids == 0)).reshape(batch, nk, block_k).any(axis=-1)  # [B, nk]
        branch = jnp.where(real != 0, branch_ids, 0)
        q_low, q_high = segment_range_per_tile(branch, block_q)  # non-zero branches of each tile
        k_low, k_high = segment_range_per_tile(branch, block_k)
        overlap = (q_low[:, :, None] <= k_high[:, None, :]) & (k_low[:, None, :] <= q_high[:, :, None])
        meet &= shared[:, None, :] | overlap
    return meet


def visit_ranges(meet: jax.Array) -> VisitRanges:
    """The meeting tiles along the last axis of ``meet`` [B, n, m] as two runs per row: the first run of
    True, then from the next True to the last (a superset of the True tiles; exact for two runs)."""
    m = meet.shape[-1]
    tile = jnp.arange(m)
    any_meet = jnp.any(meet, axis=-1)
    first = jnp.argmax(meet, axis=-1)  # [B, n]
    gap = ~meet & (tile >= first[..., None])
    end = jnp.where(jnp.any(gap, axis=-1), jnp.argmax(gap, axis=-1), m)  # first False after the first run
    rest = meet & (tile >= end[..., None])
    has_rest = jnp.any(rest, axis=-1)
    last = m - 1 - jnp.argmax(meet[..., ::-1], axis=-1)
    lo = jnp.where(any_meet, first, 0).astype(jnp.int32)
    hi = jnp.where(any_meet, end, 0).astype(jnp.int32)
    lo2 = jnp.where(has_rest, jnp.argmax(rest, axis=-1), 0).astype(jnp.int32)
    hi2 = jnp.where(has_rest, last + 1, 0).astype(jnp.int32)
    return VisitRanges(lo, hi, lo2, hi2)


def visited_tile(ranges_lo, ranges_hi, ranges_lo2, ranges_hi2, step):
    """(tile, active) of visit ``step`` of one row: run 1's tiles, then run 2's; a step past the end
    repeats the last visited tile (so a blocked pipeline issues no new copy) and is not active.
    Scalars in, scalars out (usable in kernels and block index maps)."""
    first = ranges_hi - ranges_lo
    count = first + ranges_hi2 - ranges_lo2
    clamped = jnp.minimum(step, jnp.maximum(count - 1, 0))
    tile = jnp.where(clamped < first, ranges_lo + clamped, ranges_lo2 + clamped - first)
    return tile, step < count


def max_visits(num_other: int, own_block: int, other_block: int,
               max_segment_len: int | None) -> int:
    """Static bound on ``hi - lo`` for one tile: the grid extent of the inner axis.

    Without ``max_segment_len`` a tile may meet every tile of the other axis.
    With it, the tiles visited by one tile of ``own_block`` rows lie inside a
    window of ``own_block + 2 * (max_segment_len - 1)`` positions, which
    touches at most ``(width - 1) // other_block + 2`` tiles of ``other_block``.
    """
    if max_segment_len is None:
        return num_other
    width = own_block + 2 * (max_segment_len - 1)
    return max(1, min(num_other, (width - 1) // other_block + 2))
