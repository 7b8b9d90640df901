"""Qwen2.5-VL: token embeddings with vision features spliced in, the decoder stack, the LM head.

``Qwen25VL`` is the Linen module (functional: params are an explicit pytree).
Its methods split the forward pass where trainers and the sampler need it:
``embed`` (tokens + vision), ``decode`` (layers + final norm) and ``logits``.
"""

from __future__ import annotations

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from vtjax.models.qwen2_5_vl.config import Qwen25VLConfig
from vtjax.models.qwen2_5_vl.layers import INIT_STD, dense, maybe_remat, run_layers
from vtjax.models.qwen2_5_vl.text import DecoderLayer
from vtjax.models.qwen2_5_vl.vision import VisionInputs, VisionTower
from vtjax.ops.norms import RMSNorm
from vtjax.ops.rope import multimodal_rotary


@flax.struct.dataclass
class ModelInputs:
    """One padded, bucketed batch (built on the host by ``inputs.prepare_inputs``)."""

    input_ids: jax.Array  # [B, L] int32
    segment_ids: jax.Array  # [B, L] int32, 0 = padding (the attention mask)
    position_ids: jax.Array  # [3, B, L] int32 multimodal rotary positions
    vision_gather: jax.Array  # [B, L] int32 row of the vision features placed here, -1 = text
    vision: VisionInputs | None = None  # images and videos of the batch, concatenated


class Qwen25VL(nn.Module):
    """The full vision-language model."""

    config: Qwen25VLConfig

    def setup(self):
        cfg = self.config
        kw = dict(dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype))
        self.embed_tokens = nn.Embed(
            cfg.text.vocab_size, cfg.text.hidden_size,
            embedding_init=nn.with_logical_partitioning(nn.initializers.normal(INIT_STD), ("vocab", "embed")),
            name="embed_tokens", **kw)
        self.visual = VisionTower(cfg.vision, scan_layers=cfg.scan_layers, remat_policy=cfg.remat_policy,
                                  name="visual", **kw)
        self.norm = RMSNorm(eps=cfg.text.rms_norm_eps, name="norm", **kw)
        if not cfg.text.tie_word_embeddings:
            self.lm_head = dense(cfg.text.vocab_size, ("embed", "vocab"), name="lm_head", use_bias=False, **kw)

    def __call__(self, inputs: ModelInputs) -> jax.Array:
        """Logits [B, L, vocab] in the compute dtype."""
        return self.logits(self.decode(self.embed(inputs), inputs.position_ids, inputs.segment_ids))

    def embed(self, inputs: ModelInputs) -> jax.Array:
        """Token embeddings with vision features at the image/video pad positions: [B, L, E]."""
        x = self.embed_tokens(inputs.input_ids)  # [B, L, E]
        if inputs.vision is not None:
            features = self.visual(inputs.vision).astype(x.dtype)  # [Mp, E]
            gathered = features[jnp.maximum(inputs.vision_gather, 0)]  # [B, L, E]
            x = jnp.where((inputs.vision_gather >= 0)[..., None], gathered, x)
        return x

    @nn.compact
    def _layers(self, x, cos, sin, segment_ids):
        cfg = self.config
        layer = maybe_remat(DecoderLayer, cfg.remat_policy, scanned=cfg.scan_layers)
        return run_layers(layer, x, (cos, sin, segment_ids), length=cfg.text.num_hidden_layers,
                          scan=cfg.scan_layers,
                          layer_kwargs=dict(config=cfg.text, dtype=jnp.dtype(cfg.dtype),
                                            param_dtype=jnp.dtype(cfg.param_dtype)))

    def decode(self, x, position_ids, segment_ids) -> jax.Array:
        """Decoder layers and the final norm: [B, L, E] -> [B, L, E]."""
        t = self.config.text
        cos, sin = multimodal_rotary(position_ids, t.head_dim, t.rope_theta, t.mrope_section)  # [B, L, Dh]
        return self.norm(self._layers(x, cos, sin, segment_ids))

    def logits(self, hidden: jax.Array) -> jax.Array:
        """LM head: [..., E] -> [..., vocab] (tied to the embedding when configured)."""
        if self.config.text.tie_word_embeddings:
            return self.embed_tokens.attend(hidden)
        return self.lm_head(hidden)
