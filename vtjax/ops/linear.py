"""Projections as one 2-D matmul: ``[..., K] x [K, F] -> [..., F]`` with every leading axis folded.

``lax.dot_general`` over a [B, L, E] activation is differentiated into weight
gradients that contract *two* axes (B and L) of both operands. XLA:CPU lowers
those to a slow generic dot fed by transposed, fused elementwise copies (about
2x the forward's cost per weight gradient). Folding the leading axes first
makes every forward and backward dot a plain [N, K] x [K, F] matmul that the
CPU backend's fast GEMM path takes. The reshapes are free (row-major bitcasts)
and the products are the same, so numerics do not change.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp


def _is_trailing_projection(lhs_ndim: int, rhs_ndim: int, dimension_numbers) -> bool:
    """True when lhs contracts its last n axes against rhs's first n axes, in order, with no batch axes."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    n = len(lhs_contract)
    return (not lhs_batch and not rhs_batch and n > 0
            and tuple(a % lhs_ndim for a in lhs_contract) == tuple(range(lhs_ndim - n, lhs_ndim))
            and tuple(a % rhs_ndim for a in rhs_contract) == tuple(range(n)))


def flat_dot_general(lhs: jax.Array, rhs: jax.Array, dimension_numbers, precision=None,
                     preferred_element_type=None) -> jax.Array:
    """``lax.dot_general`` that folds a trailing projection into one [N, K] x [K, F] matmul.

    lhs: [..., K1..Kn]; rhs: [K1..Kn, F1..Fm] -> [..., F1..Fm]. Any other
    contraction pattern goes to ``lax.dot_general`` unchanged (drop-in for
    ``nn.DenseGeneral(dot_general=...)``).
    """
    if not _is_trailing_projection(lhs.ndim, rhs.ndim, dimension_numbers):
        return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                                   preferred_element_type=preferred_element_type)
    n = len(dimension_numbers[0][0])
    return _flat_matmul(lhs, rhs, n, precision, preferred_element_type)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _flat_matmul(lhs, rhs, n, precision, preferred_element_type):
    """[..., K1..Kn] x [K1..Kn, F...] as one [N, K] x [K, F] matmul.

    The custom VJP keeps ``lhs`` itself as the residual (not its 2-D reshape),
    so projections of one activation (q/k/v, gate/up) share a single saved
    copy, also when scanned layers stack their residuals.
    """
    lead, contract, features = lhs.shape[:lhs.ndim - n], rhs.shape[:n], rhs.shape[n:]
    out = jnp.dot(lhs.reshape(math.prod(lead), math.prod(contract)),  # [N, K]
                  rhs.reshape(math.prod(contract), math.prod(features)),  # [K, F]
                  precision=precision, preferred_element_type=preferred_element_type)  # [N, F]
    return out.reshape(*lead, *features)


def _flat_matmul_fwd(lhs, rhs, n, precision, preferred_element_type):
    return _flat_matmul(lhs, rhs, n, precision, preferred_element_type), (lhs, rhs)


def _flat_matmul_bwd(n, precision, preferred_element_type, residuals, d_out):
    lhs, rhs = residuals
    k = math.prod(rhs.shape[:n])
    lhs2, rhs2 = lhs.reshape(-1, k), rhs.reshape(k, -1)  # [N, K], [K, F]
    d_out2 = d_out.reshape(lhs2.shape[0], rhs2.shape[1])  # [N, F]
    d_lhs = jnp.dot(d_out2, rhs2.T, precision=precision, preferred_element_type=jnp.float32)
    d_rhs = jnp.dot(lhs2.T, d_out2, precision=precision, preferred_element_type=jnp.float32)
    return d_lhs.reshape(lhs.shape).astype(lhs.dtype), d_rhs.reshape(rhs.shape).astype(rhs.dtype)


_flat_matmul.defvjp(_flat_matmul_fwd, _flat_matmul_bwd)
