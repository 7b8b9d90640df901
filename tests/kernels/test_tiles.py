"""Tile visit ranges: never drop a visible (query, key) pair, and skip what cannot meet."""

import jax.numpy as jnp
import numpy as np
import pytest

from vtjax.kernels import tiles

from .conftest import segments_from_lengths


def _element_visibility(seg, causal):
    """[B, L, L] brute-force visibility from the definition."""
    seg = np.asarray(seg)
    vis = (seg[:, :, None] == seg[:, None, :]) & (seg[:, :, None] != 0)
    if causal:
        vis &= np.tril(np.ones(vis.shape[1:], bool))[None]
    return vis


def _needed_tiles(vis, block_q, block_k):
    """[B, nq, nk]: tile pairs holding at least one visible pair."""
    b, length, _ = vis.shape
    blocks = vis.reshape(b, length // block_q, block_q, length // block_k, block_k)
    return blocks.any(axis=(2, 4))


def _random_segments(rng, batch, length, max_run):
    rows = []
    for _ in range(batch):
        runs, total = [], int(rng.integers(0, 9))  # some left padding
        pad = total
        while total < length - max_run:
            runs.append(int(rng.integers(1, max_run + 1)))
            total += runs[-1]
        rows.append(segments_from_lengths(runs, length, pad))
    return np.stack(rows)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("block_q, block_k", [(16, 16), (32, 8), (8, 32)])
def test_ranges_cover_every_visible_pair(causal, block_q, block_k):
    rng = np.random.default_rng(block_q * 100 + block_k + causal)
    length, max_run = 256, 20
    seg = _random_segments(rng, 3, length, max_run)
    needed = _needed_tiles(_element_visibility(seg, causal), block_q, block_k)
    for max_segment_len in (None, max_run):
        meet = np.asarray(tiles.tiles_meet(
            jnp.asarray(seg), batch=3, seq_len=length, block_q=block_q, block_k=block_k,
            causal=causal, max_segment_len=max_segment_len))
        assert not (needed & ~meet).any(), "a needed tile pair was marked as skippable"
        # Contiguous, increasing segment ids: the id-range test is exact.
        np.testing.assert_array_equal(meet, needed)

        kv = tiles.visit_ranges(jnp.asarray(meet))
        qr = tiles.visit_ranges(jnp.asarray(meet).swapaxes(1, 2))
        nq, nk = length // block_q, length // block_k
        j = np.arange(nk)[None, None, :]
        in_kv = _in_runs(kv, j)
        assert not (needed & ~in_kv).any()
        i = np.arange(nq)[None, None, :]
        in_q = _in_runs(qr, i)
        assert not (needed.swapaxes(1, 2) & ~in_q).any()
        if max_segment_len is not None:  # the static grid bound holds
            assert int(np.max(kv.count)) <= tiles.max_visits(nk, block_q, block_k, max_run)
            assert int(np.max(qr.count)) <= tiles.max_visits(nq, block_k, block_q, max_run)


def test_band_bound_survives_unsorted_segment_ids():
    """Ids that revisit old values make the id-range test loose; the band keeps ranges bounded."""
    length, block = 128, 16
    seg = np.repeat(np.array([5, 1, 9, 2, 7, 3, 8, 4]), 16)[None]  # contiguous runs, shuffled ids
    needed = _needed_tiles(_element_visibility(seg, False), block, block)
    meet = np.asarray(tiles.tiles_meet(jnp.asarray(seg), batch=1, seq_len=length, block_q=block,
                                       block_k=block, causal=False, max_segment_len=16))
    assert not (needed & ~meet).any()
    ranges = tiles.visit_ranges(jnp.asarray(meet))
    assert not (needed & ~_in_runs(ranges, np.arange(length // block)[None, None, :])).any()
    assert int(np.max(ranges.count)) <= tiles.max_visits(length // block, block, block, 16)


def test_window_attention_visits_linear_number_of_tiles():
    """16k tokens in 64-token windows with 128-row tiles: about one tile per query tile, not 128."""
    length, block = 16384, 128
    seg = jnp.asarray(np.repeat(np.arange(1, length // 64 + 1), 64)[None])
    meet = tiles.tiles_meet(seg, batch=1, seq_len=length, block_q=block, block_k=block,
                            causal=False, max_segment_len=64)
    ranges = tiles.visit_ranges(meet)
    assert int(jnp.sum(ranges.count)) == length // block  # diagonal tiles only
    assert tiles.max_visits(length // block, block, block, 64) == 3


def test_causal_visits_lower_triangle_and_padding_tiles_nothing():
    length, block = 256, 32
    seg = jnp.asarray(segments_from_lengths([100], length, pad_left=60)[None])  # pad, 100, pad
    meet = np.asarray(tiles.tiles_meet(seg, batch=1, seq_len=length, block_q=block,
                                       block_k=block, causal=True, max_segment_len=None))
    ranges = tiles.visit_ranges(jnp.asarray(meet))
    lo, hi = np.asarray(ranges.lo[0]), np.asarray(ranges.hi[0])
    # Tokens 60..159 live in tiles 1..4; tile 0 and tiles 5..7 hold only padding.
    np.testing.assert_array_equal(hi - lo, [0, 1, 2, 3, 4, 0, 0, 0])
    np.testing.assert_array_equal(lo[1:5], 1)


def _in_runs(ranges, index):
    """[B, n, m] bool: whether tile ``index`` (broadcast [1, 1, m]) lies in either visit run of each row."""
    def inside(lo, hi):
        return (index >= np.asarray(lo)[..., None]) & (index < np.asarray(hi)[..., None])
    return inside(ranges.lo, ranges.hi) | inside(ranges.lo2, ranges.hi2)


def test_segment_range_per_tile_ignores_padding():
    seg = jnp.asarray([[0, 0, 3, 4, 0, 0, 0, 0]])
    low, high = tiles.segment_range_per_tile(seg, 4)
    np.testing.assert_array_equal(low, [[3, np.iinfo(np.int32).max]])
    np.testing.assert_array_equal(high, [[4, -1]])
