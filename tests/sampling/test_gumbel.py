"""The sampler's Gumbel noise against jax.random, bit for bit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vtjax.sampling.gumbel import gumbel, random_bits


@pytest.mark.parametrize("size", [1, 301, 8192])
def test_random_bits_are_jax_random_bits(size):
    for seed in range(5):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), 7 * seed)
        ours = jax.jit(random_bits, static_argnums=1)(key, size)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(jax.random.bits(key, (size,), jnp.uint32)))


def test_gumbel_is_jax_random_gumbel_for_raw_and_typed_keys():
    raw = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(11), i))(jnp.arange(16))  # [16, 2] uint32
    reference = np.asarray(jax.vmap(lambda k: jax.random.gumbel(k, (4099,), jnp.float32))(raw))
    np.testing.assert_array_equal(np.asarray(jax.jit(gumbel, static_argnums=1)(raw, 4099)), reference)
    typed = jax.random.wrap_key_data(raw)  # [16] typed keys, the same bits
    np.testing.assert_array_equal(np.asarray(jax.jit(gumbel, static_argnums=1)(typed, 4099)), reference)
    assert np.isfinite(reference).all()


def test_gumbel_equals_jax_random_over_many_draws():
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(jnp.arange(64))  # 4M draws
    reference = np.asarray(jax.vmap(lambda k: jax.random.gumbel(k, (65536,), jnp.float32))(keys))
    np.testing.assert_array_equal(np.asarray(jax.jit(gumbel, static_argnums=1)(keys, 65536)), reference)


def test_other_configurations_fall_back_to_jax_random():
    keys = jax.random.split(jax.random.PRNGKey(2), 4)
    low = np.asarray(gumbel(keys, 257))
    jax.config.update("jax_high_dynamic_range_gumbel", True)
    try:
        high = np.asarray(jax.vmap(lambda k: jax.random.gumbel(k, (257,), jnp.float32))(keys))
        np.testing.assert_array_equal(np.asarray(gumbel(keys, 257)), high)
    finally:
        jax.config.update("jax_high_dynamic_range_gumbel", False)
    assert not np.array_equal(low, high)  # the flag changes the draw, so the fallback was taken
    rbg = jax.random.split(jax.random.key(2, impl="rbg"), 4)
    reference = np.asarray(jax.vmap(lambda k: jax.random.gumbel(k, (257,), jnp.float32))(rbg))
    np.testing.assert_array_equal(np.asarray(gumbel(rbg, 257)), reference)
