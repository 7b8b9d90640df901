"""The sampler's token draw against jax.random.categorical and jnp.argmax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vtjax.sampling.filters import categorical, choose_tokens, filter_logits, first_argmax, nucleus_cutoff, order_code


def test_first_argmax_is_argmax_with_ties_and_masked_entries():
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 3, (64, 37)).astype(np.float32)  # many ties: the first index must win
    x[5] = -np.inf  # a fully masked row: argmax says 0
    x[6, :20] = -np.inf
    x[7, [3, 9]] = np.nan  # argmax: the first NaN
    np.testing.assert_array_equal(np.asarray(jax.jit(first_argmax)(x)), np.argmax(x, axis=-1))


def test_categorical_draws_the_tokens_of_jax_random_categorical():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((8, 301)).astype(np.float32) * 3
    filtered = filter_logits(jnp.asarray(logits), temperature=0.9, top_k=0, top_p=0.7)  # -inf outside the nucleus
    keys = jax.random.split(jax.random.PRNGKey(3), 8)
    for round_ in range(20):
        round_keys = jax.vmap(lambda k, r=round_: jax.random.fold_in(k, r))(keys)
        ours = jax.jit(categorical)(round_keys, filtered)
        reference = jax.vmap(jax.random.categorical)(round_keys, filtered)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(reference))


def test_choose_tokens_greedy_and_sampled_match_the_jax_reference():
    rng = np.random.default_rng(2)
    logits = jnp.asarray(rng.standard_normal((6, 97)).astype(np.float32))
    keys = jax.random.split(jax.random.PRNGKey(0), 6)
    greedy, greedy_lp = choose_tokens(logits, keys, temperature=0.0, top_k=0, top_p=1.0)
    np.testing.assert_array_equal(np.asarray(greedy), np.argmax(np.asarray(logits), -1))
    sampled, lp = choose_tokens(logits, keys, temperature=1.0, top_k=5, top_p=1.0)
    filtered = filter_logits(logits, temperature=1.0, top_k=5, top_p=1.0)
    np.testing.assert_array_equal(np.asarray(sampled), np.asarray(jax.vmap(jax.random.categorical)(keys, filtered)))
    log_softmax = np.asarray(jax.nn.log_softmax(logits, -1))
    np.testing.assert_allclose(np.asarray(lp), log_softmax[np.arange(6), np.asarray(sampled)], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(greedy_lp), log_softmax[np.arange(6), np.asarray(greedy)], rtol=1e-6)


def sorted_cutoff(row: np.ndarray, top_p: float) -> float:
    """The least likely logit of the top-p nucleus by a full sort (the HF rule: keep a token while the mass
    before it is below top_p)."""
    order = np.argsort(-row, kind="stable")
    finite = row[order][np.isfinite(row[order])]
    p = np.exp(finite.astype(np.float64) - finite[0])
    mass_before = np.cumsum(p / p.sum()) - p / p.sum()
    return float(finite[mass_before < top_p][-1])


@pytest.mark.parametrize("top_p", [0.05, 0.5, 0.9, 0.95, 0.999])
def test_nucleus_cutoff_is_the_sorted_cut(top_p):
    rng = np.random.default_rng(int(top_p * 1000))
    logits = np.concatenate([rng.standard_normal((6, 4096)) * 4, rng.standard_normal((2, 4096)) * 0.01,
                             -50 + rng.standard_normal((2, 4096))]).astype(np.float32)
    logits[1, 100:] = -np.inf  # a top-k filtered row
    logits[2, :5] = 30.0  # the top tokens alone hold almost all the mass
    cut = np.asarray(jax.jit(nucleus_cutoff, static_argnums=1)(jnp.asarray(logits), top_p))[:, 0]
    expected = [sorted_cutoff(row, top_p) for row in logits]
    np.testing.assert_array_equal(cut, np.asarray(expected, np.float32))


def test_order_code_keeps_the_order_of_floats():
    x = np.asarray([-np.inf, -3e38, -1.5, -1e-30, -0.0, 0.0, 1e-30, 2.0, 3e38, np.inf], np.float32)
    codes = np.asarray(order_code(jnp.asarray(x))).astype(np.int64)
    assert (np.diff(codes) > 0).all()
