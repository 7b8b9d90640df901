"""Chunked cross-entropy against a dense numpy reference; it never builds [B, L, vocab] logits."""

from __future__ import annotations

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from vtjax.train.loss import chunked_cross_entropy, shift_targets

B, L, E, V = 2, 21, 8, 37  # L not a multiple of the chunk: the last chunk is padded


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(B, L, E)).astype(np.float32)
    head = rng.normal(size=(E, V)).astype(np.float32)
    targets = rng.integers(0, V, size=(B, L)).astype(np.int32)
    weights = (rng.random((B, L)) < 0.6).astype(np.float32)
    return hidden, head, targets, weights


def _numpy_ce(hidden, head, targets, weights):
    logits = hidden.astype(np.float64) @ head.astype(np.float64)  # [B, L, V]
    logits -= logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    return float(-(picked * weights).sum())


@pytest.mark.parametrize("chunk", [4, 7, 21, 64])
def test_matches_dense_reference(chunk):
    hidden, head, targets, weights = _inputs()
    got = chunked_cross_entropy(lambda h: h @ head, jnp.asarray(hidden), targets, weights, chunk)
    np.testing.assert_allclose(float(got), _numpy_ce(hidden, head, targets, weights), rtol=1e-5)


def test_gradients_match_dense_jax():
    hidden, head, targets, weights = _inputs(1)

    def dense(h, w):
        logp = jax.nn.log_softmax(h @ w, axis=-1)
        return -jnp.sum(jnp.take_along_axis(logp, targets[..., None], -1)[..., 0] * weights)

    def chunked(h, w):
        return chunked_cross_entropy(lambda x: x @ w, h, targets, weights, 4)

    want = jax.grad(dense, argnums=(0, 1))(hidden, head)
    got = jax.grad(chunked, argnums=(0, 1))(hidden, head)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_never_materialises_full_logits():
    hidden, head, targets, weights = _inputs()

    def loss(h, w):
        return chunked_cross_entropy(lambda x: x @ w, h, targets, weights, 4)

    jaxpr = jax.make_jaxpr(jax.value_and_grad(loss, argnums=(0, 1)))(hidden, head)
    shapes = set()

    def visit(jpr):
        for eqn in jpr.eqns:
            shapes.update(tuple(v.aval.shape) for v in eqn.outvars if hasattr(v.aval, "shape"))
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                visit(sub)

    visit(jaxpr.jaxpr)
    assert (B, 4, V) in shapes  # one chunk of logits
    assert not any(len(s) >= 2 and s[-1] == V and np.prod(s) >= B * L * V for s in shapes), sorted(shapes)


def test_shift_targets():
    ids = np.array([[5, 6, 7, 8]])
    mask = np.array([[False, False, True, True]])
    targets, weights = shift_targets(ids, mask)
    np.testing.assert_array_equal(targets, [[6, 7, 8, 0]])
    np.testing.assert_array_equal(weights, [[0, 1, 1, 0]])


def _logit_shapes(length, chunk, vocab=V):
    hidden = jnp.zeros((1, length, E))
    head = jnp.zeros((E, vocab))
    jaxpr = jax.make_jaxpr(lambda h: chunked_cross_entropy(lambda x: x @ head, h, jnp.zeros((1, length), jnp.int32),
                                                           jnp.ones((1, length)), chunk))(hidden)
    found = set()

    def visit(jpr):
        for eqn in jpr.eqns:
            found.update(tuple(v.aval.shape) for v in eqn.outvars if getattr(v.aval, "shape", ())[-1:] == (vocab,))
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                visit(sub)

    visit(jaxpr.jaxpr)
    return found


def test_the_length_splits_into_as_few_and_even_chunks_as_the_cap_allows():
    assert _logit_shapes(640, 512) == {(1, 320, V)}  # two chunks of 320, not 512 + 128 padded to 1024
    assert _logit_shapes(1280, 512) == {(1, 432, V)}  # three chunks: 427 rounded up to a multiple of 8
    assert _logit_shapes(300, 512) == {(1, 300, V)}  # one chunk: the whole length
    assert _logit_shapes(21, 4) == {(1, 4, V)}  # 6 chunks of ceil(21 / 6) = 4; 8 would exceed the cap
