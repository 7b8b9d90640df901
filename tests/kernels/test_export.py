"""The compiled (non-interpreted) kernels lower for TPU and CUDA from this CPU host.

``jax.export`` runs the Pallas -> Mosaic / Triton lowering, which rejects
block shapes the TPU tiling cannot take, ops without a lowering, and code
that only works in the interpreter. Production shapes, abstract inputs only
(``jax.ShapeDtypeStruct``): nothing of that size is allocated.
"""

import re

import jax
import jax.numpy as jnp
import pytest
from jax import export

from vtjax.kernels.flash_attention import flash_attention
from vtjax.ops.attention import attention

# Triton kernels are custom calls without a serialization-compatibility
# guarantee; exporting them is fine for this check (we never deserialize).
TRITON_TARGET = "__gpu$xla.gpu.triton"
KERNEL_TARGET = {"tpu": "tpu_custom_call", "cuda": TRITON_TARGET}
SHAPES = {  # batch, length, q heads, kv heads, head_dim, causal, max_segment_len
    "text_32k": (1, 32768, 28, 4, 128, True, None),
    "vision_16k_windows": (1, 16384, 16, 16, 80, False, 64),
}


def _abstract(batch, length, hq, hkv, d):
    spec = jax.ShapeDtypeStruct
    return (spec((batch, length, hq, d), jnp.bfloat16), spec((batch, length, hkv, d), jnp.bfloat16),
            spec((batch, length, hkv, d), jnp.bfloat16), spec((batch, length), jnp.int32))


def _kernel_calls(exported, platform) -> int:
    return len(re.findall(re.escape(KERNEL_TARGET[platform]), exported.mlir_module()))


def _export(fn, platform, args):
    checks = [export.DisabledSafetyCheck.custom_call(TRITON_TARGET)]
    return export.export(jax.jit(fn), platforms=[platform], disabled_checks=checks)(*args)


def _fwd_and_grad(attend):
    def loss(q, k, v, seg):
        return jnp.sum(attend(q, k, v, seg).astype(jnp.float32) ** 2)
    return attend, jax.grad(loss, argnums=(0, 1, 2))


@pytest.mark.parametrize("platform", ["tpu", "cuda"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_kernels_lower_for_accelerators(platform, shape):
    batch, length, hq, hkv, d, causal, max_len = SHAPES[shape]
    backend = "tpu" if platform == "tpu" else "gpu"

    def attend(q, k, v, seg):
        return flash_attention(q, k, v, seg, causal=causal, max_segment_len=max_len,
                               backend=backend, interpret=False)

    fwd, grad = _fwd_and_grad(attend)
    args = _abstract(batch, length, hq, hkv, d)
    exported_fwd = _export(fwd, platform, args)
    assert _kernel_calls(exported_fwd, platform) == 1
    assert exported_fwd.out_avals[0].shape == (batch, length, hq, d)
    exported_grad = _export(grad, platform, args)
    assert _kernel_calls(exported_grad, platform) == 3  # forward, dq, dk/dv
    assert [a.shape for a in exported_grad.out_avals] == [x.shape for x in args[:3]]


@pytest.mark.parametrize("platform", ["tpu", "cuda"])
def test_model_dispatch_carries_the_real_kernel_per_platform(platform):
    """ops.attention(impl="pallas") traced on a CPU host still exports the compiled kernel."""
    batch, length, hq, hkv, d, causal, max_len = SHAPES["vision_16k_windows"]

    def attend(q, k, v, seg):
        return attention(q, k, v, causal=causal, segment_ids=seg, max_segment_len=max_len,
                         impl="pallas")

    fwd, grad = _fwd_and_grad(attend)
    args = _abstract(batch, length, hq, hkv, d)
    assert _kernel_calls(_export(fwd, platform, args), platform) == 1
    assert _kernel_calls(_export(grad, platform, args), platform) == 3
