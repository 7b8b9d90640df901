"""The Qwen2 decoder layer: pre-norm GQA attention with multimodal rotary, then a SwiGLU MLP.

One set of parameters runs in three modes (``cache.LayerMode``):

* ``TRAIN``: the whole sequence, causal + segment attention, no cache;
* ``PREFILL``: the same attention over the prompt, also returning its keys
  and values (one layer's ``KVCache`` [B, Lp, Hkv, Dh]);
* ``DECODE``: new tokens of N = B * R rows attend to their prompt's shared
  cache [B, Hkv, Lp, Dh] and to their own generated-token cache
  [N, Hkv, M, Dh], after writing their keys and values there
  (``ops.decode_attention``).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from vtjax.models.qwen2_5_vl.cache import DecodeView, KVCache, LayerMode
from vtjax.models.qwen2_5_vl.config import TextConfig
from vtjax.models.qwen2_5_vl.layers import SwiGLU, dense
from vtjax.ops.attention import SharedPrefix, attention
from vtjax.ops.decode_attention import decode_attention
from vtjax.ops.norms import RMSNorm
from vtjax.ops.rope import apply_rotary


class DecoderLayer(nn.Module):
    """``x + attn(norm(x))`` then ``x + mlp(norm(x))``; q/k/v carry biases, o_proj does not."""

    config: TextConfig
    mode: LayerMode = LayerMode.TRAIN
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, cos, sin, visibility, shared_prefix: SharedPrefix | None = None,
                 prompt: KVCache | None = None, generated: KVCache | None = None):
        """One layer; returns ``(x, cache)``.

        x: [B, T, E] (DECODE: [N, T, E]); cos, sin: like x with Dh features.
        visibility: TRAIN / PREFILL: segment ids [B, T] (0 = padding); DECODE: a ``DecodeView``.
        shared_prefix (TRAIN only): branches after a shared prompt (``ops.attention.SharedPrefix``), or None.
        prompt, generated (DECODE only): this layer's prompt cache [B, Hkv, Lp, Dh] and generated cache
        [N, Hkv, M, Dh]. cache: PREFILL the prompt's ``KVCache``; DECODE the updated generated one; else None.
        """
        cfg = self.config
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = RMSNorm(eps=cfg.rms_norm_eps, name="input_layernorm", **kw)(x)
        heads, kv_heads, head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        q = dense((heads, head_dim), ("embed", "heads", "head_dim"), name="q_proj", use_bias=True, **kw)(h)
        k = dense((kv_heads, head_dim), ("embed", "kv_heads", "head_dim"), name="k_proj", use_bias=True, **kw)(h)
        v = dense((kv_heads, head_dim), ("embed", "kv_heads", "head_dim"), name="v_proj", use_bias=True, **kw)(h)
        q = apply_rotary(q, cos, sin)  # [B, T, H, Dh]
        k = apply_rotary(k, cos, sin)  # [B, T, Hkv, Dh]
        cache = None
        if self.mode == LayerMode.DECODE:
            view: DecodeView = visibility
            out = decode_attention(q, k, v, prompt.k, prompt.v, view.prompt_mask, generated.k, generated.v,
                                   view.generated_visible)

            def write(slots, new):  # [N, Hkv, M, Dh] <- [N, T, Hkv, Dh] at slots write_index ..
                new = new.transpose(0, 2, 1, 3).astype(slots.dtype)  # [N, Hkv, T, Dh]
                if view.write_index.ndim == 0:  # every row at the same slot: one slice update
                    return jax.lax.dynamic_update_slice_in_dim(slots, new, view.write_index, axis=2)
                row_write = functools.partial(jax.lax.dynamic_update_slice_in_dim, axis=1)  # [Hkv, M, Dh] per row
                return jax.vmap(row_write)(slots, new, view.write_index)  # a scatter, in place

            cache = KVCache(k=write(generated.k, k), v=write(generated.v, v))  # after the read: in place
        else:
            out = attention(q, k, v, causal=True, segment_ids=visibility, shared_prefix=shared_prefix,
                            impl=cfg.attention_impl)
            if self.mode == LayerMode.PREFILL:
                cache = KVCache(k=k, v=v)
        out = checkpoint_name(out, "attention_out")  # [B, T, H, Dh]
        x = x + dense(x.shape[-1], ("heads", "head_dim", "embed"), name="o_proj", use_bias=False,
                      contract_axes=(-2, -1), **kw)(out)
        h = RMSNorm(eps=cfg.rms_norm_eps, name="post_attention_layernorm", **kw)(x)
        x = x + SwiGLU(cfg.intermediate_size, use_bias=False, name="mlp", **kw)(h)
        return x, cache
