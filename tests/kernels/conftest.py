"""Shared helpers for the kernel tests: random inputs, segment layouts, error metrics."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

# The interpreted kernels are big while loops that XLA:CPU spends most of a
# test optimising; they run for milliseconds, so compile them cheaply
# (pass as ``jax.jit(..., compiler_options=FAST_COMPILE)``).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def relative_error(actual, expected) -> float:
    """Norm-wise relative error ||a - e|| / ||e||, computed in float64 on the host.

    An exactly zero reference has no relative error: the absolute ||a|| is returned. (dq of a row that
    sees one key is 0 by the math, p = 1 whatever the logit; the kernel's dp - delta rounds to about
    1e-7, which divided by a 1e-30 floor read as an error of 1e24 or as 0, depending on how XLA
    happened to order the two dot products.)
    """
    a = np.asarray(jnp.asarray(actual, jnp.float32), np.float64)
    e = np.asarray(jnp.asarray(expected, jnp.float32), np.float64)
    norm = np.linalg.norm(e)
    return float(np.linalg.norm(a - e) / (norm if norm > 0 else 1.0))


def random_qkv(seed, batch, length, q_heads, kv_heads, head_dim, dtype):
    """Unit-normal q, k, v in ``dtype``."""
    rng = np.random.default_rng(seed)
    shapes = [(batch, length, q_heads, head_dim), (batch, length, kv_heads, head_dim),
              (batch, length, kv_heads, head_dim)]
    return tuple(jnp.asarray(rng.standard_normal(s), dtype) for s in shapes)


def segments_from_lengths(lengths, total, pad_left=0):
    """[total] int32: ``pad_left`` zeros, then runs of ids 1, 2, ... of the given lengths, then zeros."""
    ids = np.zeros(total, np.int32)
    pos = pad_left
    for index, run in enumerate(lengths, start=1):
        ids[pos:pos + run] = index
        pos += run
    assert pos <= total, (lengths, total)
    return ids



def value_and_grads(attend, q, k, v, cotangent):
    """(out, dq, dk, dv) of ``attend(q, k, v)`` with output cotangent ``cotangent``, jitted cheaply."""
    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def run(q, k, v, cotangent):
        out, vjp = jax.vjp(attend, q, k, v)
        return (out, *vjp(cotangent))
    return run(q, k, v, cotangent)
