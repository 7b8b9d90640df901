"""vtjax.ops.attention(impl="pallas" | "cudnn") through vtjax.kernels.dispatch, and input checks."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from vtjax.kernels import dispatch
from vtjax.kernels.block_sizes import BlockSizes
from vtjax.kernels.flash_attention import flash_attention
from vtjax.ops.attention import attention

from .conftest import random_qkv, relative_error, segments_from_lengths, value_and_grads


@pytest.mark.parametrize("causal, max_segment_len", [(True, None), (False, 12)])
def test_pallas_impl_matches_xla_impl(causal, max_segment_len):
    """Default tiles, the CPU interpreter path, values and gradients, against the XLA path."""
    length = 40
    q, k, v = random_qkv(7, 2, length, 4, 2, 80, jnp.float32)
    cotangent = random_qkv(8, 2, length, 4, 2, 80, jnp.float32)[0]
    seg = jnp.asarray(np.stack([segments_from_lengths([12, 12, 9], length, pad_left=3),
                                segments_from_lengths([10, 12, 12, 6], length)]))
    results = {}
    for impl in ("pallas", "xla"):
        def attend(q, k, v, impl=impl):
            return attention(q, k, v, causal=causal, segment_ids=seg,
                             max_segment_len=max_segment_len, impl=impl)
        results[impl] = value_and_grads(attend, q, k, v, cotangent)
    for name, got, want in zip(("out", "dq", "dk", "dv"), results["pallas"], results["xla"], strict=True):
        assert relative_error(got, want) <= 1e-5, name


def test_cudnn_without_a_gpu_says_so():
    q, k, v = random_qkv(0, 1, 8, 2, 2, 64, jnp.bfloat16)
    with pytest.raises(ValueError, match="cudnn.*default JAX backend is 'cpu'"):
        attention(q, k, v, causal=True, impl="cudnn")


def test_unknown_kernel_impl_is_rejected():
    q, k, v = random_qkv(0, 1, 8, 2, 2, 64, jnp.float32)
    with pytest.raises(ValueError, match="'triton' is not one of"):
        dispatch.attention("triton", q, k, v, causal=True)


def test_interpret_default_follows_the_host_platform():
    """On this CPU host the default is the interpreter; the result equals an explicit call."""
    q, k, v = random_qkv(1, 1, 20, 2, 1, 128, jnp.float32)
    implicit = flash_attention(q, k, v, causal=True)
    explicit = flash_attention(q, k, v, causal=True, backend="gpu", interpret=True)
    np.testing.assert_array_equal(implicit, explicit)


@pytest.mark.parametrize("kwargs, message", [
    (dict(k_heads=4), "multiple of kv heads"),
    (dict(k_dtype=jnp.bfloat16), "dtypes differ"),
    (dict(max_segment_len=0), "max_segment_len=0 must be a positive int"),
    (dict(backend="metal"), "backend='metal' is not one of"),
    (dict(block_sizes=BlockSizes(64, 64, 64, 64), backend="tpu", interpret=False),
     "multiples of 128"),
])
def test_bad_inputs_are_named(kwargs, message):
    kwargs = dict(kwargs)
    hkv = kwargs.pop("k_heads", 2)
    q, k, v = random_qkv(0, 1, 256, 6, hkv, 64, jnp.float32)
    k = k.astype(kwargs.pop("k_dtype", jnp.float32))
    with pytest.raises(ValueError, match=message):
        flash_attention(q, k, v, causal=False, **kwargs)


def test_block_sizes_must_be_powers_of_two_and_shrink_for_short_inputs():
    with pytest.raises(ValueError, match="block_k=48 must be a power of two"):
        BlockSizes(block_q=64, block_k=48, block_q_dkv=64, block_k_dkv=64)
    fitted = BlockSizes.default("tpu").fit(17, min_block=16)
    assert dataclasses.astuple(fitted)[:4] == (32, 32, 32, 32)
    assert BlockSizes.default("tpu").fit(17, min_block=128).block_q == 128
    assert BlockSizes.default("gpu").fit(100_000, min_block=16) == BlockSizes.default("gpu")
