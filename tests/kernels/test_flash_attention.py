"""Flash attention kernels (both families, Pallas interpreter) against the jnp reference.

Every case checks the forward output and the gradients of q, k, v under a
random cotangent. Tolerances (norm-wise relative error): float32 1e-5,
bfloat16 1e-2 against the float32 reference on the same bf16-rounded inputs.
Small tiles (16-64 rows) make even short sequences span several tiles, so
the online softmax, the tile visit ranges and the tail padding are all
exercised. Every case runs on the GPU (Triton) family, the CPU default; the
TPU (Mosaic) family runs the subset in TPU_CASES, chosen to cover GQA,
segments, windows, padding and both head dims at a lower interpreter cost.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vtjax.kernels.block_sizes import BlockSizes
from vtjax.kernels.flash_attention import flash_attention, reference_attention

from .conftest import FAST_COMPILE, random_qkv, relative_error, segments_from_lengths

# Tiles per family for the interpreter: the GPU family loops inside a program
# (cheap to interpret with tiny tiles); the TPU family runs one grid step per
# tile pair, so it gets somewhat larger tiles to keep the run time down.
TILES = {"gpu": BlockSizes(block_q=32, block_k=16, block_q_dkv=16, block_k_dkv=32),
         "tpu": BlockSizes(block_q=64, block_k=32, block_q_dkv=32, block_k_dkv=64)}
TOLERANCE = {jnp.float32: 1e-5, jnp.bfloat16: 1e-2}


def _many_runs(seed, length):
    """Random run lengths 1..30 filling all but the last 5 positions (then padding)."""
    rng = np.random.default_rng(seed)
    runs, total = [], 0
    while total < length - 35:
        runs.append(int(rng.integers(1, 31)))
        total += runs[-1]
    return runs


def _windows(length, window, offset):
    """``offset`` padding tokens, then windows of ``window`` tokens (the last may be short)."""
    body = length - offset
    return [window] * (body // window) + ([body % window] if body % window else [])


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    batch: int
    length: int
    q_heads: int
    kv_heads: int
    head_dim: int
    dtype: type
    causal: bool
    rows: tuple | None = None  # per batch row: (run lengths, left padding); None = no segment ids
    max_segment_len: int | None = None

    def segment_ids(self):
        if self.rows is None:
            return None
        return jnp.asarray(np.stack([segments_from_lengths(runs, self.length, pad)
                                     for runs, pad in self.rows]))


CASES = [
    Case("len1", 1, 1, 1, 1, 128, jnp.float32, causal=True),
    Case("len17_gqa4_d80", 2, 17, 4, 1, 80, jnp.float32, causal=False),
    Case("len17_gqa7_3seg_bf16", 1, 17, 7, 1, 80, jnp.bfloat16, causal=True,
         rows=(([5, 7, 3], 0),)),
    Case("len128_gqa7_bf16", 1, 128, 7, 1, 128, jnp.bfloat16, causal=True),
    Case("len128_left_padding", 2, 128, 2, 2, 128, jnp.float32, causal=True,
         rows=(([88], 40), ([128], 0))),
    Case("len128_windows_bf16", 1, 128, 4, 4, 80, jnp.bfloat16, causal=False,
         rows=((_windows(128, 16, 5), 5),), max_segment_len=16),
    Case("len300_3seg_mid_block", 1, 300, 2, 2, 80, jnp.float32, causal=False,
         rows=(([70, 130, 90], 0),)),
    Case("len300_many_gqa4_bf16", 2, 300, 4, 1, 128, jnp.bfloat16, causal=True,
         rows=((_many_runs(1, 300), 0), (_many_runs(2, 300), 3))),
    Case("len300_causal_f32", 1, 300, 1, 1, 128, jnp.float32, causal=True),
]


TPU_CASES = ("len17_gqa7_3seg_bf16", "len128_windows_bf16", "len300_3seg_mid_block",
             "len300_many_gqa4_bf16")
PARAMS = [pytest.param(c, "gpu", id=f"{c.name}-gpu") for c in CASES] + [
    pytest.param(c, "tpu", id=f"{c.name}-tpu") for c in CASES if c.name in TPU_CASES]


def _run(fn, q, k, v, cotangent):
    """Output and (dq, dk, dv), traced and compiled as one program (compiling
    op by op in eager mode would cost more than the kernels themselves)."""
    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def value_and_grads(q, k, v, cotangent):
        out, vjp = jax.vjp(fn, q, k, v)
        return out, vjp(cotangent)
    return value_and_grads(q, k, v, cotangent)


@pytest.mark.parametrize("case, backend", PARAMS)
def test_matches_reference(case: Case, backend):
    q, k, v = random_qkv(0, case.batch, case.length, case.q_heads, case.kv_heads,
                         case.head_dim, case.dtype)
    seg = case.segment_ids()
    cotangent = random_qkv(1, case.batch, case.length, case.q_heads, 1, 1, case.dtype)[0]
    cotangent = jnp.broadcast_to(cotangent, q.shape) * jnp.linspace(0.5, 1.5, case.head_dim)
    cotangent = cotangent.astype(case.dtype)

    def kernel(q, k, v):
        return flash_attention(q, k, v, seg, causal=case.causal, block_sizes=TILES[backend],
                               max_segment_len=case.max_segment_len, backend=backend,
                               interpret=True)

    def reference(q, k, v):
        return reference_attention(q, k, v, seg, causal=case.causal)

    out, grads = _run(kernel, q, k, v, cotangent)
    f32 = lambda x: x.astype(jnp.float32)
    ref_out, ref_grads = _run(reference, f32(q), f32(k), f32(v), f32(cotangent))

    assert out.shape == q.shape and out.dtype == q.dtype
    tol = TOLERANCE[case.dtype]
    for name, got, want in zip(("out", "dq", "dk", "dv"), (out, *grads), (ref_out, *ref_grads), strict=True):
        assert got.dtype == case.dtype, name
        assert bool(jnp.all(jnp.isfinite(f32(got)))), f"{name} has NaN/inf"
        err = relative_error(got, want)
        assert err <= tol, f"{name}: relative error {err:.2e} > {tol:.0e}"

    if seg is not None:  # padding rows see nothing: exactly zero output and query gradient
        padding = np.asarray(seg) == 0
        np.testing.assert_array_equal(np.asarray(f32(out))[padding], 0.0)
        np.testing.assert_array_equal(np.asarray(f32(grads[0]))[padding], 0.0)
