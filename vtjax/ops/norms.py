"""RMSNorm as Qwen2 computes it: statistics in float32, cast back, then times the weight."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp


class RMSNorm(nn.Module):
    """``scale * (x / sqrt(mean(x^2) + eps))`` with the statistics in float32."""

    eps: float = 1e-6  # added to the mean square before the rsqrt
    dtype: jnp.dtype = jnp.float32  # output / compute dtype
    param_dtype: jnp.dtype = jnp.float32  # storage dtype of ``scale``
    axis_name: str = "embed"  # logical axis of ``scale``

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # [..., D] -> [..., D]
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, (self.axis_name,)),
                           (x.shape[-1],), self.param_dtype)
        return rms_norm(x, scale.astype(self.dtype), self.eps, self.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def rms_norm(x: jax.Array, scale: jax.Array, eps: float, dtype) -> jax.Array:
    """``scale * normed(x)`` in ``dtype``; x: [..., D], scale: [D].

    The custom VJP keeps only ``x`` (already kept by the residual stream) and
    the [..., 1] inverse RMS, and recomputes the normalised activations in the
    backward pass instead of saving a second [..., D] copy of them.
    """
    return _rms_norm_fwd(x, scale, eps, dtype)[0]


def _inverse_rms(x32, eps):
    return jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)  # [..., 1]


def _rms_norm_fwd(x, scale, eps, dtype):
    x32 = x.astype(jnp.float32)
    inv = _inverse_rms(x32, eps)
    return scale * (x32 * inv).astype(dtype), (x, scale, inv)


def _rms_norm_bwd(eps, dtype, residuals, d_out):
    x, scale, inv = residuals
    normed = x.astype(jnp.float32) * inv  # [..., D]
    d_out32 = d_out.astype(jnp.float32)
    d_scale = jnp.sum((d_out32 * normed).reshape(-1, normed.shape[-1]), axis=0)  # [D]
    d_normed = d_out32 * scale.astype(jnp.float32)
    # d/dx of x * rsqrt(mean(x^2)): inv * (dn - normed * mean(dn * normed))
    d_x = inv * (d_normed - normed * jnp.mean(d_normed * normed, axis=-1, keepdims=True))
    return d_x.astype(x.dtype), d_scale.astype(scale.dtype)


rms_norm.defvjp(_rms_norm_fwd, _rms_norm_bwd)
