"""RMSNorm as Qwen2 computes it: statistics in float32, cast back, then times the weight."""

from __future__ import annotations

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
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return scale.astype(self.dtype) * normed.astype(self.dtype)
