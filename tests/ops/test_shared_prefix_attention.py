"""Prefix-sharing attention (a prompt, then branches that see it and themselves) against references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.ops.test_attention import numpy_masked_attention
from vtjax.ops import attention as attention_module
from vtjax.ops.attention import SharedPrefix, attention


def group_layout(rng, prefix, lengths, pad_left, pad_tail):
    """Segment and branch ids of one row: ``pad_left`` padding, a prompt, the branches, ``pad_tail`` padding."""
    seg = [0] * pad_left + [1] * (prefix - pad_left)
    branch = [0] * prefix
    for k, n in enumerate(lengths, start=1):
        seg += [1] * n
        branch += [k] * n
    seg += [0] * pad_tail
    branch += [0] * pad_tail
    return np.array(seg, np.int32), np.array(branch, np.int32)


def numpy_shared_attention(q, k, v, seg, branch):
    """Float64 softmax attention with the mask written from its definition, query by query."""
    b, length = seg.shape
    visible = np.zeros((b, length, length), bool)
    for bi in range(b):
        for i in range(length):
            for j in range(i + 1):
                visible[bi, i, j] = (seg[bi, i] != 0 and seg[bi, j] == seg[bi, i]
                                     and (branch[bi, j] == 0 or branch[bi, j] == branch[bi, i]))
    return numpy_masked_attention(q, k, v, visible)


def example(rng, hq=4, hkv=2, d=8):
    prefix, lengths = 23, [[7, 12, 3, 9], [12, 1, 12, 5]]
    rows = [group_layout(rng, prefix, lens, pad_left=pad, pad_tail=45 - sum(lens))
            for lens, pad in zip(lengths, (0, 6), strict=True)]
    seg, branch = (np.stack(x) for x in zip(*rows, strict=True))
    length = seg.shape[1]
    q = rng.standard_normal((2, length, hq, d)).astype(np.float32)
    k, v = (rng.standard_normal((2, length, hkv, d)).astype(np.float32) for _ in range(2))
    return q, k, v, seg, branch, SharedPrefix(branch_ids=jnp.asarray(branch), prefix_len=prefix, max_branch_len=12)


@pytest.mark.parametrize("query_block,branch_block", [(None, 128), (8, 5)])
def test_shared_prefix_matches_reference(monkeypatch, query_block, branch_block):
    """Values, padding rows (zeros) included; with query blocks shorter than the prompt and the branches
    too (a branch query's window then spans several blocks)."""
    monkeypatch.setattr(attention_module, "CAUSAL_QUERY_BLOCK", query_block)
    monkeypatch.setattr(attention_module, "SHARED_QUERY_BLOCK", branch_block)
    rng = np.random.default_rng(3)
    q, k, v, seg, branch, shared = example(rng)
    got = jax.jit(lambda q, k, v: attention(q, k, v, causal=True, segment_ids=jnp.asarray(seg),
                                            shared_prefix=shared))(q, k, v)
    np.testing.assert_allclose(got, numpy_shared_attention(q, k, v, seg, branch), atol=2e-5)


def test_shared_prefix_gradients_match_autodiff_of_the_dense_mask():
    rng = np.random.default_rng(4)
    q, k, v, seg, branch, shared = example(rng, hq=6, hkv=2)
    q, k, v, seg = (jnp.asarray(x) for x in (q, k, v, seg))
    mask = attention_module.shared_prefix_visible(seg, jnp.asarray(branch))[:, None]  # [B, 1, L, L]
    weights = jnp.asarray(rng.standard_normal(q.shape), jnp.float32)

    def dense(q, k, v):  # repeated K/V, where-masked softmax: plain autodiff
        kr, vr = jnp.repeat(k, 3, axis=2), jnp.repeat(v, 3, axis=2)
        s = jnp.where(mask, jnp.einsum("bqhd,bkhd->bhqk", q, kr) / np.sqrt(q.shape[-1]), -1e30)
        p = jnp.where(mask, jnp.exp(s - jax.lax.stop_gradient(s.max(-1, keepdims=True))), 0.0)
        return jnp.einsum("bhqk,bkhd->bqhd", p / jnp.maximum(p.sum(-1, keepdims=True), 1e-30), vr)

    def loss(fn):
        return lambda q, k, v: jnp.sum(weights * fn(q, k, v))

    expected = jax.grad(loss(dense), (0, 1, 2))(q, k, v)
    got = jax.jit(jax.grad(loss(lambda q, k, v: attention(q, k, v, causal=True, segment_ids=seg,
                                                          shared_prefix=shared)), (0, 1, 2)))(q, k, v)
    for a, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, e, atol=2e-5)


def test_shared_prefix_skips_what_the_branches_cannot_see(monkeypatch):
    """XLA's cost analysis of the compiled program: a 1k prompt and 8 branches of at most 512 tokens cost
    well under the dense causal square of the same row, and under the 8 repeated prompt+branch rows."""
    monkeypatch.setattr(attention_module, "CAUSAL_QUERY_BLOCK", 256)
    prefix, branches, branch_len, heads, d = 1024, 8, 512, 2, 64
    length = prefix + branches * 384  # the branches' tokens packed after the prompt

    def flops(fn, *shapes):
        compiled = jax.jit(fn).lower(*shapes).compile()
        analysis = compiled.cost_analysis()
        return (analysis[0] if isinstance(analysis, list) else analysis)["flops"]

    row = jax.ShapeDtypeStruct((1, length, heads, d), jnp.float32)
    ids = jax.ShapeDtypeStruct((1, length), jnp.int32)
    shared = flops(lambda q, k, v, b: attention(q, k, v, causal=True, shared_prefix=SharedPrefix(
        branch_ids=b, prefix_len=prefix, max_branch_len=branch_len)), row, row, row, ids)
    dense = flops(lambda q, k, v: attention(q, k, v, causal=True), row, row, row)
    repeated_row = jax.ShapeDtypeStruct((branches, prefix + branch_len, heads, d), jnp.float32)
    repeated = flops(lambda q, k, v: attention(q, k, v, causal=True), repeated_row, repeated_row, repeated_row)
    assert shared < 0.75 * dense, (shared, dense)
    assert shared < 0.75 * repeated, (shared, repeated)


def test_shared_prefix_arguments_are_checked():
    x = jnp.zeros((1, 8, 2, 4))
    shared = SharedPrefix(branch_ids=jnp.zeros((1, 8), jnp.int32), prefix_len=4, max_branch_len=2)
    with pytest.raises(ValueError, match="causal"):
        attention(x, x, x, causal=False, shared_prefix=shared)
    with pytest.raises(ValueError, match="branch_ids"):
        attention(x, x, x, causal=True, shared_prefix=shared.replace(branch_ids=jnp.zeros((1, 7), jnp.int32)))
