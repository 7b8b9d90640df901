"""Decode attention against a float64 numpy reference and against full causal attention."""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from vtjax.ops.attention import attention
from vtjax.ops.decode_attention import decode_attention


def _numpy_reference(q, k, v, lengths, kv_mask=None):
    """Per row and head, softmax over visible cache entries, in float64, K/V repeated per group."""
    q, k, v = (np.asarray(jnp.asarray(x, jnp.float32), np.float64) for x in (q, k, v))
    b, hq, d = q.shape
    group = hq // k.shape[2]
    out = np.zeros((b, hq, d))
    for row in range(b):
        visible = np.arange(k.shape[1]) < lengths[row]
        if kv_mask is not None:
            visible &= kv_mask[row]
        if not visible.any():
            continue
        for h in range(hq):
            logits = k[row, visible, h // group] @ q[row, h] / np.sqrt(d)
            p = np.exp(logits - logits.max())
            out[row, h] = (p / p.sum()) @ v[row, visible, h // group]
    return out


def _inputs(seed, b, s, hq, hkv, d, dtype):
    rng = np.random.default_rng(seed)
    q = jnp.asarray(rng.standard_normal((b, hq, d)), dtype)
    k = jnp.asarray(rng.standard_normal((b, s, hkv, d)), dtype)
    v = jnp.asarray(rng.standard_normal((b, s, hkv, d)), dtype)
    return q, k, v


@pytest.mark.parametrize("hq, hkv", [(4, 4), (8, 2), (7, 1)])
@pytest.mark.parametrize("dtype, tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 1e-2)])
def test_matches_reference_with_ragged_lengths(hq, hkv, dtype, tol):
    b, s, d = 4, 300, 80
    q, k, v = _inputs(0, b, s, hq, hkv, d, dtype)
    lengths = np.array([1, 17, 300, 128])
    got = jax.jit(decode_attention)(q, k, v, jnp.asarray(lengths))
    want = _numpy_reference(q, k, v, lengths)
    assert got.shape == (b, hq, d) and got.dtype == dtype
    err = np.linalg.norm(np.asarray(got, np.float64) - want) / np.linalg.norm(want)
    assert err <= tol


def test_stale_entries_past_the_length_do_not_matter():
    """Whatever finite values a reused cache holds past ``lengths`` have no effect."""
    q, k, v = _inputs(1, 2, 64, 4, 2, 128, jnp.float32)
    lengths = jnp.asarray([10, 40])
    poisoned_k = k.at[0, 10:].set(1e4).at[1, 40:].set(-1e4)
    poisoned_v = v.at[0, 10:].set(1e30).at[1, 40:].set(-1e30)
    got = decode_attention(q, poisoned_k, poisoned_v, lengths)
    np.testing.assert_allclose(got, decode_attention(q, k, v, lengths), rtol=1e-6, atol=1e-6)


def test_left_padding_mask_and_empty_rows_give_zeros_not_nan():
    q, k, v = _inputs(2, 3, 32, 4, 1, 128, jnp.float32)
    lengths = np.array([20, 0, 32])
    kv_mask = np.ones((3, 32), bool)
    kv_mask[0, :6] = False  # six left-padding slots in row 0
    kv_mask[2, :] = False  # row 2 sees nothing at all
    got = decode_attention(q, k, v, jnp.asarray(lengths), kv_mask=jnp.asarray(kv_mask))
    assert np.isfinite(np.asarray(got)).all()
    np.testing.assert_array_equal(got[1:], 0.0)
    want = _numpy_reference(q, k, v, lengths, kv_mask)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_equals_last_row_of_full_causal_attention():
    """Decoding token L-1 against a cache of L entries is the last row of causal attention."""
    b, length, hq, hkv, d = 2, 48, 8, 2, 128
    rng = np.random.default_rng(3)
    q, k, v = (jnp.asarray(rng.standard_normal((b, length, h, d)), jnp.float32)
               for h in (hq, hkv, hkv))
    full = attention(q, k, v, causal=True, impl="xla")
    got = decode_attention(q[:, -1], k, v, jnp.full((b,), length))
    np.testing.assert_allclose(got, full[:, -1], rtol=1e-5, atol=1e-6)


def test_gqa_never_repeats_the_cache():
    """No intermediate is as large as the cache repeated per query head."""
    b, s, hq, hkv, d = 2, 4096, 28, 4, 128
    spec = jax.ShapeDtypeStruct
    jaxpr = jax.make_jaxpr(decode_attention)(
        spec((b, hq, d), jnp.bfloat16), spec((b, s, hkv, d), jnp.bfloat16),
        spec((b, s, hkv, d), jnp.bfloat16), spec((b,), jnp.int32)).jaxpr
    cache_elems = b * s * hkv * d
    sizes = [int(np.prod(v.aval.shape)) for eqn in jaxpr.eqns for v in eqn.outvars]
    assert max(sizes) <= cache_elems, f"an intermediate of {max(sizes)} elements > the cache"


@pytest.mark.parametrize("bad, message", [
    (dict(q_shape=(2, 1, 4, 64)), "one token per row"),
    (dict(lengths=np.array([3])), r"lengths.shape=\(1,\) must be \[B\]"),
    (dict(kv_heads=3), "multiple of kv heads"),
])
def test_bad_inputs_are_named(bad, message):
    q, k, v = _inputs(0, 2, 16, 4, bad.get("kv_heads", 2), 64, jnp.float32)
    if "q_shape" in bad:
        q = jnp.zeros(bad["q_shape"])
    with pytest.raises(ValueError, match=message):
        decode_attention(q, k, v, jnp.asarray(bad.get("lengths", np.array([3, 4]))))
