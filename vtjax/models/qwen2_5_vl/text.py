"""The Qwen2 decoder layer: pre-norm GQA attention with multimodal rotary, then a SwiGLU MLP."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from vtjax.models.qwen2_5_vl.config import TextConfig
from vtjax.models.qwen2_5_vl.layers import SwiGLU, dense
from vtjax.ops.attention import attention
from vtjax.ops.norms import RMSNorm
from vtjax.ops.rope import apply_rotary


class DecoderLayer(nn.Module):
    """``x + attn(norm(x))`` then ``x + mlp(norm(x))``; q/k/v carry biases, o_proj does not."""

    config: TextConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, cos, sin, segment_ids):
        # x: [B, L, E]; cos, sin: [B, L, Dh]; segment_ids: [B, L] (0 = padding).
        cfg = self.config
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = RMSNorm(eps=cfg.rms_norm_eps, name="input_layernorm", **kw)(x)
        heads, kv_heads, head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        q = dense((heads, head_dim), ("embed", "heads", "head_dim"), name="q_proj", use_bias=True, **kw)(h)
        k = dense((kv_heads, head_dim), ("embed", "kv_heads", "head_dim"), name="k_proj", use_bias=True, **kw)(h)
        v = dense((kv_heads, head_dim), ("embed", "kv_heads", "head_dim"), name="v_proj", use_bias=True, **kw)(h)
        q = apply_rotary(q, cos, sin)  # [B, L, H, Dh]
        k = apply_rotary(k, cos, sin)  # [B, L, Hkv, Dh]
        out = attention(q, k, v, causal=True, segment_ids=segment_ids, impl=cfg.attention_impl)
        out = checkpoint_name(out, "attention_out")  # [B, L, H, Dh]
        x = x + dense(x.shape[-1], ("heads", "head_dim", "embed"), name="o_proj", use_bias=False,
                      contract_axes=(-2, -1), **kw)(out)
        h = RMSNorm(eps=cfg.rms_norm_eps, name="post_attention_layernorm", **kw)(x)
        x = x + SwiGLU(cfg.intermediate_size, use_bias=False, name="mlp", **kw)(h)
        return x, None
