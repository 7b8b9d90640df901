"""XLA attention paths (dense, block-causal and segment-banded) against a numpy reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vtjax.ops import attention as attention_module
from vtjax.ops.attention import attention


def numpy_attention(q, k, v, causal, segment_ids):
    """Straightforward per-head softmax attention in float64."""
    length = q.shape[1]
    visible = []
    for seg in segment_ids:
        mask = (seg[:, None] == seg[None, :]) & (seg[:, None] != 0)
        if causal:
            mask &= np.tril(np.ones((length, length), bool))
        visible.append(mask)
    return numpy_masked_attention(q, k, v, np.stack(visible))


def numpy_masked_attention(q, k, v, visible):
    """Float64 softmax attention where ``visible`` [B, Lq, Lk] says which keys each query sees (rows that
    see nothing give 0)."""
    b, length, hq, d = q.shape
    group = hq // k.shape[2]
    out = np.zeros(q.shape, np.float64)
    for bi in range(b):
        for h in range(hq):
            s = q[bi, :, h].astype(np.float64) @ k[bi, :, h // group].astype(np.float64).T / np.sqrt(d)
            mask = visible[bi]
            for i in range(length):
                if mask[i].any():
                    w = np.exp(s[i, mask[i]] - s[i, mask[i]].max())
                    out[bi, i, h] = (w / w.sum()) @ v[bi, mask[i], h // group]
    return out


def contiguous_segments(rng, length, max_len, pad_tail):
    ids, seg = [], 1
    while len(ids) < length - pad_tail:
        ids += [seg] * int(rng.integers(1, max_len + 1))
        seg += 1
    ids = ids[:length - pad_tail] + [0] * pad_tail
    return np.array(ids, np.int32)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("hq,hkv", [(2, 2), (4, 1), (6, 2)])
def test_banded_and_dense_match_reference(causal, hq, hkv):
    rng = np.random.default_rng(hq * 10 + hkv + causal)
    b, length, d, max_len = 2, 150, 8, 24
    q = rng.standard_normal((b, length, hq, d)).astype(np.float32)
    k = rng.standard_normal((b, length, hkv, d)).astype(np.float32)
    v = rng.standard_normal((b, length, hkv, d)).astype(np.float32)
    seg = np.stack([contiguous_segments(rng, length, max_len, pad) for pad in (0, 13)])
    expected = numpy_attention(q, k, v, causal, seg)
    dense = attention(q, k, v, causal=causal, segment_ids=seg)
    banded = attention(q, k, v, causal=causal, segment_ids=seg, max_segment_len=max_len)
    np.testing.assert_allclose(dense, expected, atol=2e-5)
    np.testing.assert_allclose(banded, expected, atol=2e-5)


def test_fully_masked_rows_are_zero_not_nan():
    q = k = v = jnp.ones((1, 8, 2, 4))
    seg = jnp.array([[1, 1, 0, 0, 2, 2, 0, 0]])
    for max_len in (None, 2):
        out = np.asarray(attention(q, k, v, causal=True, segment_ids=seg, max_segment_len=max_len))
        assert not np.isnan(out).any()
        np.testing.assert_array_equal(out[0, [2, 3, 6, 7]], 0.0)


def test_banded_gradients_match_dense():
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal((1, 40, 2, 8)), jnp.float32) for _ in range(3))
    seg = jnp.asarray(contiguous_segments(rng, 40, 8, 3))[None]

    def loss(q, k, v, max_len):
        return jnp.sum(jnp.sin(attention(q, k, v, causal=False, segment_ids=seg, max_segment_len=max_len)))

    g_dense = jax.grad(loss, argnums=(0, 1, 2))(q, k, v, None)
    g_band = jax.grad(loss, argnums=(0, 1, 2))(q, k, v, 8)
    for a, b in zip(g_dense, g_band, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def autodiff_attention(q, k, v, causal, segment_ids):
    """Plain jnp attention (repeated K/V, where-masked softmax) for autodiff references."""
    group = q.shape[2] // k.shape[2]
    k, v = jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2)
    s = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    mask = (segment_ids[:, :, None] == segment_ids[:, None, :]) & (segment_ids[:, :, None] != 0)
    if causal:
        mask &= jnp.tril(jnp.ones(mask.shape[1:], bool))
    mask = mask[:, None]
    s = jnp.where(mask, s, -1e30)
    p = jnp.where(mask, jnp.exp(s - jax.lax.stop_gradient(s.max(-1, keepdims=True))), 0.0)
    p = p / jnp.maximum(p.sum(-1, keepdims=True), 1e-30)
    return jnp.einsum("bhqk,bkhd->bqhd", p, v)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("hq,hkv", [(2, 2), (6, 2)])
def test_gradients_match_autodiff_reference(causal, hq, hkv):
    """The closed-form backward (dense and banded) against autodiff of plain attention, padding included."""
    rng = np.random.default_rng(hq + causal)
    b, length, d, max_len = 2, 40, 8, 8
    q = jnp.asarray(rng.standard_normal((b, length, hq, d)), jnp.float32)
    k, v = (jnp.asarray(rng.standard_normal((b, length, hkv, d)), jnp.float32) for _ in range(2))
    seg = jnp.asarray(np.stack([contiguous_segments(rng, length, max_len, pad) for pad in (0, 5)]))
    weights = jnp.asarray(rng.standard_normal((b, length, hq, d)), jnp.float32)

    def loss(fn):
        return lambda q, k, v: jnp.sum(weights * fn(q, k, v))

    expected = jax.grad(loss(lambda q, k, v: autodiff_attention(q, k, v, causal, seg)), (0, 1, 2))(q, k, v)
    for max_len_arg in (None, max_len):
        got = jax.grad(loss(lambda q, k, v, m=max_len_arg: attention(q, k, v, causal=causal, segment_ids=seg,
                                                                   max_segment_len=m)), (0, 1, 2))(q, k, v)
        for a, e in zip(got, expected, strict=True):
            assert not np.isnan(np.asarray(a)).any()
            np.testing.assert_allclose(a, e, atol=2e-5)


@pytest.mark.parametrize("block,hq,hkv", [(32, 2, 2), (37, 6, 2)])
def test_block_causal_matches_reference(monkeypatch, block, hq, hkv):
    """Causal attention longer than the query block (a multiple of it or not) skips the blocks above the
    diagonal and still equals the reference, padding and packed segments included, values and gradients."""
    monkeypatch.setattr(attention_module, "CAUSAL_QUERY_BLOCK", block)
    rng = np.random.default_rng(block + hq)
    b, length, d = 2, 150, 8
    q = rng.standard_normal((b, length, hq, d)).astype(np.float32)
    k, v = (rng.standard_normal((b, length, hkv, d)).astype(np.float32) for _ in range(2))
    seg = np.stack([np.ones(length, np.int32), contiguous_segments(rng, length, 60, 17)])
    causal = jax.jit(lambda q, k, v, seg=None: attention(q, k, v, causal=True, segment_ids=seg))
    np.testing.assert_allclose(causal(q, k, v, seg), numpy_attention(q, k, v, True, seg), atol=2e-5)
    no_padding = np.ones((b, length), np.int32)
    np.testing.assert_allclose(causal(q, k, v), numpy_attention(q, k, v, True, no_padding), atol=2e-5)

    weights = jnp.asarray(rng.standard_normal((b, length, hq, d)), jnp.float32)
    seg = jnp.asarray(seg)

    def loss(fn):
        return lambda q, k, v: jnp.sum(weights * fn(q, k, v))

    expected = jax.jit(jax.grad(loss(lambda q, k, v: autodiff_attention(q, k, v, True, seg)), (0, 1, 2)))(q, k, v)
    got = jax.jit(jax.grad(loss(lambda q, k, v: attention(q, k, v, causal=True, segment_ids=seg)), (0, 1, 2)))(
        q, k, v)
    for a, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, e, atol=2e-5)


def test_block_causal_computes_about_half_the_square(monkeypatch):
    """The compiled block-causal program's FLOPs (XLA's cost analysis) against the dense square's:
    8 query blocks cost (8 + 1) / 16 of it."""
    q = k = v = jax.ShapeDtypeStruct((1, 2048, 4, 64), jnp.float32)

    def flops(block):
        monkeypatch.setattr(attention_module, "CAUSAL_QUERY_BLOCK", block)
        compiled = jax.jit(lambda q, k, v: attention(q, k, v, causal=True)).lower(q, k, v).compile()
        analysis = compiled.cost_analysis()
        return (analysis[0] if isinstance(analysis, list) else analysis)["flops"]

    ratio = flops(256) / flops(None)
    assert 0.5 < ratio < 0.6, ratio


def test_bad_shapes_are_reported():
    q = jnp.zeros((1, 4, 3, 8))
    kv = jnp.zeros((1, 4, 2, 8))
    with pytest.raises(ValueError, match="multiple of kv heads"):
        attention(q, kv, kv, causal=True)
    with pytest.raises(ValueError, match="impl"):
        attention(kv, kv, kv, causal=True, impl="flash")
