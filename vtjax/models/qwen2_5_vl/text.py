"""The Qwen2 decoder layer: pre-norm GQA attention with multimodal rotary, then a SwiGLU MLP.

Three modes share one set of parameters:

* ``"train"``: the whole sequence, causal + segment attention, no cache;
* ``"prefill"``: the same attention over the prompt, also returning its keys
  and values (the prompt cache, [B, Lp, Hkv, Dh]);
* ``"decode"``: new tokens of N = B * G rows attend to their prompt's shared
  cache and to their own generated-token cache [N, M, Hkv, Dh], after writing
  their keys and values there at ``write_index``.
"""

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

MODES = ("train", "prefill", "decode")


class DecoderLayer(nn.Module):
    """``x + attn(norm(x))`` then ``x + mlp(norm(x))``; q/k/v carry biases, o_proj does not."""

    config: TextConfig
    mode: str = "train"  # train | prefill | decode (see module docstring)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, cos, sin, mask, write_index=None, k_prompt=None, v_prompt=None, k_gen=None,
                 v_gen=None):
        # x: [B, T, E] (decode: [N, T, E]); cos, sin: like x with Dh features.
        # mask: train/prefill: segment ids [B, T] (0 = padding);
        #       decode: (prompt_mask [B, Lp] bool, gen_visible [N, T, M] bool).
        # decode: k/v_prompt [B, Lp, Hkv, Dh] shared by the G rows of each prompt,
        #         k/v_gen [N, M, Hkv, Dh] per row, write_index [] slot of the new tokens.
        cfg = self.config
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = RMSNorm(eps=cfg.rms_norm_eps, name="input_layernorm", **kw)(x)
        heads, kv_heads, head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        q = dense((heads, head_dim), ("embed", "heads", "head_dim"), name="q_proj", use_bias=True, **kw)(h)
        k = dense((kv_heads, head_dim), ("embed", "kv_heads", "head_dim"), name="k_proj", use_bias=True, **kw)(h)
        v = dense((kv_heads, head_dim), ("embed", "kv_heads", "head_dim"), name="v_proj", use_bias=True, **kw)(h)
        q = apply_rotary(q, cos, sin)  # [B, T, H, Dh]
        k = apply_rotary(k, cos, sin)  # [B, T, Hkv, Dh]
        cache_out = None
        if self.mode == "decode":
            prompt_mask, gen_visible = mask
            k_gen = jax.lax.dynamic_update_slice_in_dim(k_gen, k.astype(k_gen.dtype), write_index, axis=1)
            v_gen = jax.lax.dynamic_update_slice_in_dim(v_gen, v.astype(v_gen.dtype), write_index, axis=1)
            out = shared_prompt_attention(q, k_prompt, v_prompt, prompt_mask, k_gen, v_gen, gen_visible)
            cache_out = (k_gen, v_gen)
        else:
            out = attention(q, k, v, causal=True, segment_ids=mask, impl=cfg.attention_impl)
            if self.mode == "prefill":
                cache_out = (k, v)
        out = checkpoint_name(out, "attention_out")  # [B, T, H, Dh]
        x = x + dense(x.shape[-1], ("heads", "head_dim", "embed"), name="o_proj", use_bias=False,
                      contract_axes=(-2, -1), **kw)(out)
        h = RMSNorm(eps=cfg.rms_norm_eps, name="post_attention_layernorm", **kw)(x)
        x = x + SwiGLU(cfg.intermediate_size, use_bias=False, name="mlp", **kw)(h)
        return x, cache_out


def shared_prompt_attention(q, k_prompt, v_prompt, prompt_mask, k_gen, v_gen, gen_visible):
    """Decode attention of N = B * G rows over their prompt's shared cache plus their own cache.

    q: [N, T, H, Dh]; k/v_prompt: [B, Lp, Hkv, Dh]; prompt_mask: [B, Lp] bool;
    k/v_gen: [N, M, Hkv, Dh]; gen_visible: [N, T, M] bool. One softmax spans both
    caches. GQA groups queries per kv head; nothing is repeated. Returns [N, T, H, Dh].
    """
    n, t, hq, d = q.shape
    b, _, hkv, _ = k_prompt.shape
    g, j = n // b, hq // hkv
    qg = q.reshape(b, g, t, hkv, j, d)  # [B, G, T, Hkv, J, Dh]
    scale = d ** -0.5
    logits_p = jnp.einsum("bgthjd,bshd->bghjts", qg, k_prompt, preferred_element_type=jnp.float32) * scale
    logits_g = jnp.einsum("bgthjd,bgshd->bghjts", qg, k_gen.reshape(b, g, -1, hkv, d),
                          preferred_element_type=jnp.float32) * scale
    see_p = prompt_mask[:, None, None, None, None, :]  # [B, 1, 1, 1, 1, Lp]
    see_g = gen_visible.reshape(b, g, 1, 1, t, -1)  # [B, G, 1, 1, T, M]
    logits_p = jnp.where(see_p, logits_p, -jnp.inf)
    logits_g = jnp.where(see_g, logits_g, -jnp.inf)
    top = jnp.maximum(logits_p.max(-1, keepdims=True), logits_g.max(-1, keepdims=True))
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    p_p = jnp.where(see_p, jnp.exp(logits_p - top), 0.0)
    p_g = jnp.where(see_g, jnp.exp(logits_g - top), 0.0)
    denom = p_p.sum(-1, keepdims=True) + p_g.sum(-1, keepdims=True)
    denom = jnp.where(denom == 0.0, 1.0, denom)
    out = (jnp.einsum("bghjts,bshd->bgthjd", (p_p / denom).astype(v_prompt.dtype), v_prompt)
           + jnp.einsum("bghjts,bgshd->bgthjd", (p_g / denom).astype(v_gen.dtype), v_gen.reshape(b, g, -1, hkv, d)))
    return out.reshape(n, t, hq, d).astype(q.dtype)
