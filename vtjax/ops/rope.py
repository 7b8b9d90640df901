"""Rotary position embeddings: the ViT's 2D rotary and the decoder's multimodal (3-plane) rotary.

Angles are always computed in float32; ``apply_rotary`` rotates in float32 and
casts back to the input dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def inverse_frequencies(dim: int, theta: float) -> np.ndarray:
    """[dim/2] float32 ``1 / theta^(2i/dim)``, the standard rotary frequencies."""
    exponent = np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)
    return (np.float32(1.0) / np.power(np.float32(theta), exponent)).astype(np.float32)


def rotate_half(x: jax.Array) -> jax.Array:
    """[..., D] -> concat(-x[D/2:], x[:D/2])."""
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([-x2, x1], axis=-1)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates x [..., L, H, D] by angles whose cos/sin are [..., L, D] (broadcast over heads)."""
    x32 = x.astype(jnp.float32)
    cos, sin = cos[..., None, :], sin[..., None, :]
    return (x32 * cos + rotate_half(x32) * sin).astype(x.dtype)


def vision_rotary(coords: jax.Array, head_dim: int, theta: float = 10000.0):
    """cos, sin [N, head_dim] of the ViT's 2D rotary for patch coordinates [N, 2] (row, col).

    Each head splits into a row half and a column half of head_dim/4 frequencies
    each, ``[freqs(row), freqs(col)]``, duplicated for the rotate-half layout.
    """
    inv_freq = jnp.asarray(inverse_frequencies(head_dim // 2, theta))  # [head_dim/4]
    coords = coords.astype(jnp.float32)
    angles = jnp.concatenate([coords[:, :1] * inv_freq, coords[:, 1:2] * inv_freq], axis=-1)
    angles = jnp.concatenate([angles, angles], axis=-1)  # [N, head_dim]
    return jnp.cos(angles), jnp.sin(angles)


def mrope_plane_of_frequency(mrope_section) -> np.ndarray:
    """[sum(section)] plane (0 = t, 1 = h, 2 = w) that drives each rotary frequency."""
    return np.concatenate([np.full(n, plane) for plane, n in enumerate(mrope_section)]).astype(np.int32)


def multimodal_rotary(position_ids: jax.Array, head_dim: int, theta: float, mrope_section):
    """cos, sin [B, L, head_dim] of multimodal rotary for position ids [3, B, L].

    Frequency i is driven by plane ``plane_of_frequency[i]`` (the first
    ``section[0]`` by time, then height, then width), and the layout is
    duplicated for rotate-half, so dims i and i + head_dim/2 share a plane.
    """
    inv_freq = jnp.asarray(inverse_frequencies(head_dim, theta))  # [head_dim/2]
    planes = mrope_plane_of_frequency(mrope_section)  # [head_dim/2]
    positions = position_ids.astype(jnp.float32)[planes]  # [head_dim/2, B, L]
    angles = jnp.moveaxis(positions, 0, -1) * inv_freq  # [B, L, head_dim/2]
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)
