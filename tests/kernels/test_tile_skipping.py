"""The kernels really skip tiles that cannot meet.

A masked score is set to zero weight, but a NaN in a visited tile still
poisons the matmuls (0 * NaN = NaN). So we fill one tile-aligned region with
NaN and check that everything that cannot see it stays finite and correct:
it can only stay finite if that region's tiles were never loaded into the
computation of anyone else.
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vtjax.kernels.block_sizes import BlockSizes
from vtjax.kernels.flash_attention import flash_attention, reference_attention

from .conftest import FAST_COMPILE, random_qkv, relative_error, value_and_grads

BLOCK = 16
TILES = BlockSizes(block_q=BLOCK, block_k=BLOCK, block_q_dkv=BLOCK, block_k_dkv=BLOCK)


def _poison(x, rows):
    return x.at[:, rows].set(jnp.nan)


@pytest.mark.parametrize("backend", ["gpu", "tpu"])
@pytest.mark.parametrize("max_segment_len", [None, 2 * BLOCK])
def test_other_segments_never_touch_a_poisoned_segment(backend, max_segment_len):
    length = 6 * BLOCK
    q, k, v = random_qkv(3, 1, length, 2, 1, 80, jnp.float32)
    cotangent = random_qkv(4, 1, length, 2, 1, 80, jnp.float32)[0]
    seg = jnp.asarray(np.repeat([1, 2, 3], 2 * BLOCK)[None])  # three segments of two tiles each
    poisoned = slice(2 * BLOCK, 4 * BLOCK)  # all of segment 2

    def kernel(q, k, v):
        return flash_attention(q, k, v, seg, causal=False, max_segment_len=max_segment_len,
                               block_sizes=TILES, backend=backend, interpret=True)

    got = value_and_grads(kernel, _poison(q, poisoned), _poison(k, poisoned),
                           _poison(v, poisoned), cotangent)
    clean = value_and_grads(lambda q, k, v: reference_attention(q, k, v, seg, causal=False),
                             q, k, v, cotangent)
    keep = np.r_[0:2 * BLOCK, 4 * BLOCK:length]
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, clean, strict=True):
        assert bool(jnp.all(jnp.isfinite(a[:, keep]))), f"{name}: a poisoned tile was visited"
        assert relative_error(a[:, keep], b[:, keep]) <= 1e-5, name


@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_causal_never_touches_tiles_above_the_diagonal(backend):
    length = 6 * BLOCK
    q, k, v = random_qkv(5, 1, length, 1, 1, 128, jnp.float32)
    last_tile = slice(5 * BLOCK, length)

    def kernel(q, k, v):
        return flash_attention(q, k, v, causal=True, block_sizes=TILES, backend=backend,
                               interpret=True)

    out = jax.jit(kernel, compiler_options=FAST_COMPILE)(q, _poison(k, last_tile), _poison(v, last_tile))
    want = reference_attention(q, k, v, causal=True)
    earlier = slice(0, 5 * BLOCK)
    assert bool(jnp.all(jnp.isfinite(out[:, earlier])))
    assert relative_error(out[:, earlier], want[:, earlier]) <= 1e-5
