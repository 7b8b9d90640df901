import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vtjax.ops.norms import RMSNorm


def reference(x, scale, eps):
    """Plain jnp RMSNorm (the pre-custom-VJP formula) for autodiff references."""
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return scale * normed.astype(x.dtype)


def test_forward_and_gradients_match_autodiff():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 5, 16)) * 3, jnp.float32)
    weights = jnp.asarray(rng.standard_normal((2, 5, 16)), jnp.float32)
    norm = RMSNorm(eps=1e-6)
    params = nn.meta.unbox(norm.init(jax.random.PRNGKey(0), x))
    params = jax.tree_util.tree_map(lambda p: p + jnp.asarray(rng.standard_normal(p.shape), p.dtype), params)
    scale = params["params"]["scale"]
    np.testing.assert_array_equal(norm.apply(params, x), reference(x, scale, 1e-6))

    got = jax.grad(lambda p, x: jnp.sum(weights * norm.apply(p, x)), (0, 1))(params, x)
    want = jax.grad(lambda s, x: jnp.sum(weights * reference(x, s, 1e-6)), (0, 1))(scale, x)
    np.testing.assert_allclose(got[0]["params"]["scale"], want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-5)
