"""Accelerated attention implementations behind ``vtjax.ops.attention``.

``attention("pallas", ...)`` picks the kernel family per lowering platform
with ``lax.platform_dependent``: Mosaic on TPU, Triton on CUDA/ROCm, and the
Pallas interpreter (Triton family) anywhere else, e.g. a CPU test run. So a
function exported or AOT-compiled for TPU from a CPU host still carries the
real TPU kernel.

``attention("cudnn", ...)`` is ``jax.nn.dot_product_attention`` with the
cuDNN backend. Segment ids become a dense [B, 1, L, L] mask there (cuDNN has
no segment-id input in this API), so it is O(L^2) in memory whenever
``segment_ids`` is given; plain causal attention passes no mask.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from vtjax.kernels.flash_attention import flash_attention

IMPLS = ("pallas", "cudnn")


def attention(
    impl: str,
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    causal: bool,
    segment_ids: jax.Array | None = None,
    max_segment_len: int | None = None,
    scale: float | None = None,
    branch_ids: jax.Array | None = None,
) -> jax.Array:
    """Attention with ``impl`` in ("pallas", "cudnn"); shapes as in ``vtjax.ops.attention``.

    ``branch_ids`` (prefix sharing, Pallas only): see ``flash_attention``.
    """
    if impl == "pallas":
        return _pallas(q, k, v, causal, segment_ids, max_segment_len, scale, branch_ids)
    if branch_ids is not None:
        raise ValueError("branch ids (prefix sharing) run on impl='pallas' or the XLA path, not cudnn")
    if impl == "cudnn":
        return _cudnn(q, k, v, causal, segment_ids, scale)
    raise ValueError(f"kernel impl={impl!r} is not one of {IMPLS}")


def _pallas(q, k, v, causal, segment_ids, max_segment_len, scale, branch_ids=None):
    if branch_ids is not None and segment_ids is None:
        segment_ids = jnp.ones(q.shape[:2], jnp.int32)

    def run(backend, interpret):
        def branch(q, k, v, *ids):
            return flash_attention(q, k, v, ids[0] if ids else None, causal=causal, scale=scale,
                                   max_segment_len=max_segment_len, backend=backend,
                                   interpret=interpret, branch_ids=ids[1] if len(ids) > 1 else None)
        return branch

    args = (q, k, v) if segment_ids is None else (q, k, v, segment_ids)
    if branch_ids is not None:
        args = (*args, branch_ids)
    return lax.platform_dependent(
        *args, tpu=run("tpu", False), cuda=run("gpu", False), rocm=run("gpu", False),
        default=run("gpu", True))


def _cudnn(q, k, v, causal, segment_ids, scale):
    if jax.default_backend() != "gpu":
        raise ValueError(
            f"attention impl='cudnn' needs an NVIDIA GPU with cuDNN; the default JAX backend "
            f"is {jax.default_backend()!r}. Use impl='pallas' or impl='xla' here.")
    if q.dtype not in (jnp.bfloat16, jnp.float16):
        raise ValueError(f"impl='cudnn' takes bfloat16 or float16 inputs; got {q.dtype=}")
    mask = None
    if segment_ids is not None:
        seg = segment_ids
        mask = ((seg[:, :, None] == seg[:, None, :]) & (seg[:, :, None] != 0))[:, None]  # [B,1,L,L]
    out = jax.nn.dot_product_attention(q, k, v, mask=mask, scale=scale, is_causal=causal,
                                       implementation="cudnn")
    if segment_ids is not None:
        # A padding row sees no key; give it the zeros the other implementations return.
        out = jnp.where((segment_ids != 0)[:, :, None, None], out, jnp.zeros_like(out))
    return out
