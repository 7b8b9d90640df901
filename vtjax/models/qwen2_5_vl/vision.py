"""The Qwen2.5-VL vision tower: a ViT with window attention and a patch merger.

Pixels arrive as rows of C*T*P*P values (the HF processor's ``pixel_values``).
The tower embeds them, permutes merged tokens into window order, runs blocks
that attend either within a window (most blocks) or within one temporal patch
(``fullatt_block_indexes``), merges 2x2 patches into LLM tokens and undoes the
permutation. Both attention kinds are block-diagonal, expressed as segment ids,
so cost grows linearly with the number of frames.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from vtjax.models.qwen2_5_vl.config import VisionConfig
from vtjax.models.qwen2_5_vl.layers import SwiGLU, dense, maybe_remat, run_layers
from vtjax.ops.attention import attention
from vtjax.ops.norms import RMSNorm
from vtjax.ops.rope import apply_rotary, vision_rotary

VISION_NORM_EPS = 1e-6  # fixed in the reference implementation


@flax.struct.dataclass
class VisionInputs:
    """Padded, bucketed inputs of the tower (built on the host by ``inputs.prepare_inputs``).

    Np = bucketed patch count, Mp = Np / merge_unit merged tokens.
    """

    patches: jax.Array  # [Np, C*T*P*P] pixel rows in processor order, zero padded
    window_index: jax.Array  # [Mp] int32 original merged token at each window-order slot
    reverse_index: jax.Array  # [Mp] int32 window-order slot of each original merged token
    window_segment_ids: jax.Array  # [Np] int32 window id per patch (window order), 0 = padding
    frame_segment_ids: jax.Array  # [Np] int32 temporal-patch id per patch (window order), 0 = padding
    rotary_coords: jax.Array  # [Np, 2] int32 (row, col) per patch (window order)
    frame_len: int = flax.struct.field(pytree_node=False, default=64)  # bucketed max patches per frame


class VisionBlock(nn.Module):
    """Pre-norm ViT block: window or per-frame attention with 2D rotary, then a SwiGLU MLP."""

    config: VisionConfig
    frame_len: int  # static bound on per-frame segment length
    attention_kind: str = "dynamic"  # "window", "full", or "dynamic" (chosen by a per-layer flag)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, cos, sin, window_segment_ids, frame_segment_ids, is_full=None):
        # x: [N, E]; cos, sin: [N, head_dim]; segment ids: [N]; is_full: [] bool (dynamic kind).
        cfg = self.config
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = RMSNorm(eps=VISION_NORM_EPS, name="norm1", **kw)(x)
        qkv = dense((3, cfg.num_heads, cfg.head_dim), ("embed", None, "heads", "head_dim"),
                    name="qkv", use_bias=True, **kw)(h)  # [N, 3, H, Dh]
        q = apply_rotary(qkv[:, 0], cos, sin)  # [N, H, Dh]
        k = apply_rotary(qkv[:, 1], cos, sin)
        v = qkv[:, 2]

        def attend(segment_ids, max_len):
            out = attention(q[None], k[None], v[None], causal=False, segment_ids=segment_ids[None],
                            max_segment_len=max_len, impl=cfg.attention_impl)
            return out[0]  # [N, H, Dh]

        def window():
            return attend(window_segment_ids, cfg.window_patches)

        def full():
            return attend(frame_segment_ids, self.frame_len)

        if self.attention_kind == "window":
            out = window()
        elif self.attention_kind == "full":
            out = full()
        else:
            out = jax.lax.cond(is_full, full, window)
        out = checkpoint_name(out, "attention_out")
        x = x + dense(x.shape[-1], ("heads", "head_dim", "embed"), name="proj", use_bias=True,
                      contract_axes=(-2, -1), **kw)(out)
        h = RMSNorm(eps=VISION_NORM_EPS, name="norm2", **kw)(x)
        x = x + SwiGLU(cfg.intermediate_size, use_bias=True, name="mlp", **kw)(h)
        return x, None


class PatchMerger(nn.Module):
    """RMSNorm, fold merge_unit consecutive patches into one vector, then a 2-layer GELU MLP."""

    config: VisionConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):  # [N, E] -> [N / merge_unit, out_hidden]
        cfg = self.config
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = RMSNorm(eps=VISION_NORM_EPS, name="ln_q", **kw)(x)
        x = x.reshape(-1, cfg.merge_unit * cfg.hidden_size)  # [M, 4E]
        x = dense(x.shape[-1], ("embed", "mlp"), name="fc1", use_bias=True, **kw)(x)
        x = nn.gelu(x, approximate=False)
        return dense(cfg.out_hidden_size, ("mlp", "embed"), name="fc2", use_bias=True, **kw)(x)


class VisionTower(nn.Module):
    """Patch rows in processor order -> merged LLM tokens in processor order."""

    config: VisionConfig
    scan_layers: bool = True  # nn.scan over blocks (the attention kind becomes a per-layer flag)
    remat_policy: str = "none"  # see layers.maybe_remat
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, inputs: VisionInputs) -> jax.Array:  # -> [Mp, out_hidden]
        cfg = self.config
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        num_patches = inputs.patches.shape[0]
        # Conv3d with kernel == stride is a matmul over the (C, T, P, P) row.
        x = dense(cfg.hidden_size, ("patch", "embed"), name="patch_embed", use_bias=False,
                  **kw)(inputs.patches.astype(self.dtype))  # [Np, E]
        x = x.reshape(-1, cfg.merge_unit, cfg.hidden_size)[inputs.window_index]
        x = x.reshape(num_patches, cfg.hidden_size)  # [Np, E] window order
        cos, sin = vision_rotary(inputs.rotary_coords, cfg.head_dim)  # [Np, Dh]

        block = maybe_remat(VisionBlock, self.remat_policy, scanned=self.scan_layers)
        full_set = set(cfg.fullatt_block_indexes)
        is_full = jnp.asarray([i in full_set for i in range(cfg.depth)])  # [depth]
        x = run_layers(
            block, x, (cos, sin, inputs.window_segment_ids, inputs.frame_segment_ids),
            length=cfg.depth, scan=self.scan_layers, per_layer=is_full if self.scan_layers else None,
            layer_kwargs=dict(config=cfg, frame_len=inputs.frame_len, **kw),
            loop_layer_kwargs=lambda i: dict(attention_kind="full" if i in full_set else "window"))
        x = PatchMerger(cfg, name="merger", **kw)(x)  # [Mp, out] window order
        return x[inputs.reverse_index]
