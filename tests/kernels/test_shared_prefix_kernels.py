"""Prefix sharing in the Pallas kernels (interpret mode): values and gradients against the reference and
the XLA path, and the tiles of other branches never visited."""


import jax.numpy as jnp
import numpy as np
import pytest

from vtjax.kernels import tiles
from vtjax.kernels.block_sizes import BlockSizes
from vtjax.kernels.flash_attention import flash_attention, reference_attention
from vtjax.ops.attention import SharedPrefix, attention

from .conftest import random_qkv, relative_error, value_and_grads

BLOCK = 16
TILES = BlockSizes(block_q=BLOCK, block_k=BLOCK, block_q_dkv=BLOCK, block_k_dkv=BLOCK)


def _layout(prefix, lengths, total, pad_left=0):
    """(segment ids, branch ids) [1, total]: left padding, a prompt, the branches back to back, padding."""
    seg, branch = np.zeros(total, np.int32), np.zeros(total, np.int32)
    seg[pad_left:prefix] = 1
    start = prefix
    for k, n in enumerate(lengths, start=1):
        seg[start:start + n], branch[start:start + n] = 1, k
        start += n
    return jnp.asarray(seg[None]), jnp.asarray(branch[None])


@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_shared_prefix_kernels_match_the_reference_and_the_xla_path(backend):
    """Unaligned branches (a tile holds the end of one and the start of the next), GQA, left padding."""
    length, prefix = 6 * BLOCK, 27
    seg, branch = _layout(prefix, [13, 20, 9, 17], length, pad_left=3)
    q, k, v = random_qkv(7, 1, length, 4, 2, 64, jnp.float32)
    cotangent = random_qkv(8, 1, length, 4, 2, 64, jnp.float32)[0]
    kernel = value_and_grads(lambda q, k, v: flash_attention(
        q, k, v, seg, causal=True, block_sizes=TILES, backend=backend, interpret=True, branch_ids=branch),
        q, k, v, cotangent)
    reference = value_and_grads(lambda q, k, v: reference_attention(q, k, v, seg, causal=True, branch_ids=branch),
                                 q, k, v, cotangent)
    xla = value_and_grads(lambda q, k, v: attention(q, k, v, causal=True, segment_ids=seg, shared_prefix=SharedPrefix(
        branch_ids=branch, prefix_len=prefix, max_branch_len=20)), q, k, v, cotangent)
    for name, a, r, x in zip(("out", "dq", "dk", "dv"), kernel, reference, xla, strict=True):
        assert relative_error(a, r) <= 1e-5, name
        assert relative_error(a, x) <= 1e-5, name


@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_a_poisoned_branch_is_never_visited_by_the_others(backend):
    """Branch 2 fills tiles 2-3 with NaN. The prompt (tiles 0-1) and branches 1 and 3 stay finite and exact:
    branch 3's queries visit the prompt's tiles, then their own, skipping branch 2's in between. (The
    prompt's dk/dv take branch 2's queries, so only its values and dq are checked.)"""
    length = 6 * BLOCK
    seg, branch = _layout(2 * BLOCK, [0, 2 * BLOCK, 2 * BLOCK], length)  # branch 1 is empty
    branch = jnp.where(branch == 3, 1, branch)  # branches: prompt 0, then 2 (tiles 2-3), then 1 (tiles 4-5)
    q, k, v = random_qkv(9, 1, length, 2, 1, 64, jnp.float32)
    cotangent = random_qkv(10, 1, length, 2, 1, 64, jnp.float32)[0]
    poisoned = slice(2 * BLOCK, 4 * BLOCK)

    def poison(x):
        return x.at[:, poisoned].set(jnp.nan)

    got = value_and_grads(lambda q, k, v: flash_attention(
        q, k, v, seg, causal=True, block_sizes=TILES, backend=backend, interpret=True, branch_ids=branch),
        poison(q), poison(k), poison(v), cotangent)
    clean = value_and_grads(lambda q, k, v: reference_attention(q, k, v, seg, causal=True, branch_ids=branch),
                             q, k, v, cotangent)
    prompt, other = np.r_[0:2 * BLOCK], np.r_[4 * BLOCK:length]
    for name, a, b, rows in zip(("out", "dq", "dk", "dv"), got, clean,
                                (np.r_[prompt, other], np.r_[prompt, other], other, other), strict=True):
        assert bool(jnp.all(jnp.isfinite(a[:, rows]))), f"{name}: a poisoned tile was visited"
        assert relative_error(a[:, rows], b[:, rows]) <= 1e-5, name


def test_branch_tiles_visit_the_prompt_and_their_own_only():
    """The visit runs of a 4-tile prompt and 4 branches of 2 tiles each: a branch's query tiles visit
    the prompt's 4 tiles and its own (causal) tiles, in two runs; a prompt key tile is visited by every
    later query tile, a branch key tile only by its branch's."""
    length, block = 12 * BLOCK, BLOCK
    seg, branch = _layout(4 * BLOCK, [2 * BLOCK] * 4, length)
    meet = tiles.tiles_meet(seg, batch=1, seq_len=length, block_q=block, block_k=block, causal=True,
                            max_segment_len=None, branch_ids=branch)
    kv = tiles.visit_ranges(meet)
    last_branch_tile = 11  # branch 4: tiles 10-11
    assert (int(kv.lo[0, last_branch_tile]), int(kv.hi[0, last_branch_tile])) == (0, 4)
    assert (int(kv.lo2[0, last_branch_tile]), int(kv.hi2[0, last_branch_tile])) == (10, 12)
    assert int(jnp.sum(kv.count)) == sum(range(1, 5)) + 8 * 4 + 4 * (1 + 2)
    qr = tiles.visit_ranges(jnp.swapaxes(meet, 1, 2))
    np.testing.assert_array_equal(np.asarray(qr.count[0, :4]), [12, 11, 10, 9])
    np.testing.assert_array_equal(np.asarray(qr.count[0, 4:]), [2, 1] * 4)
