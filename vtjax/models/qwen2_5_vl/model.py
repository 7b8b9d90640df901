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

from vtjax.models.qwen2_5_vl.cache import DecodeCache, KVCache, LayerMode, decode_view
from vtjax.models.qwen2_5_vl.config import Qwen25VLConfig
from vtjax.models.qwen2_5_vl.layers import INIT_STD, dense, maybe_remat, run_layers
from vtjax.models.qwen2_5_vl.lora import adapted
from vtjax.models.qwen2_5_vl.text import DecoderLayer
from vtjax.models.qwen2_5_vl.vision import VisionInputs, VisionTower
from vtjax.ops.attention import SharedPrefix
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
    shared_prefix: SharedPrefix | None = None  # branches after a shared prompt (GRPO groups laid out once)


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

    @adapted
    def __call__(self, inputs: ModelInputs) -> jax.Array:
        """Logits [B, L, vocab] in the compute dtype."""
        return self.logits(self.decode(self.embed(inputs), inputs.position_ids, inputs.segment_ids,
                                       inputs.shared_prefix))

    @adapted
    def encode_vision(self, vision: VisionInputs) -> jax.Array:
        """The vision tower alone: merged features [Mp, E] of a batch's images and videos."""
        return self.visual(vision)

    @adapted
    def embed(self, inputs: ModelInputs, features: jax.Array | None = None) -> jax.Array:
        """Token embeddings with vision features at the image/video pad positions: [B, L, E].

        ``features`` [Mp, E] (from ``encode_vision``) replaces running the tower on ``inputs.vision``:
        ``vision_gather`` then indexes them.
        """
        x = self.embed_tokens(inputs.input_ids)  # [B, L, E]
        if features is None and inputs.vision is not None:
            features = self.visual(inputs.vision)  # [Mp, E]
        if features is not None:
            gathered = features.astype(x.dtype)[jnp.maximum(inputs.vision_gather, 0)]  # [B, L, E]
            x = jnp.where((inputs.vision_gather >= 0)[..., None], gathered, x)
        return x

    @nn.compact
    def _layers(self, x, cos, sin, visibility, mode: LayerMode = LayerMode.TRAIN, cache: DecodeCache | None = None,
                shared_prefix: SharedPrefix | None = None):
        cfg = self.config
        layer = maybe_remat(DecoderLayer, cfg.remat_policy, scanned=cfg.scan_layers)
        kwargs = dict(config=cfg.text, mode=mode, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype))
        if mode != LayerMode.DECODE:
            return run_layers(layer, x, (cos, sin, visibility, shared_prefix), length=cfg.text.num_hidden_layers,
                              scan=cfg.scan_layers, layer_kwargs=kwargs, return_outputs=mode == LayerMode.PREFILL)
        if cfg.scan_layers:
            raise ValueError("decode runs layer by layer: apply a config with scan_layers=False to "
                             "unstack_layers(config, params)")
        generated = []
        for i in range(cfg.text.num_hidden_layers):  # each layer's weights and caches are separate arrays
            x, written = DecoderLayer(**kwargs, name=f"layers_{i}")(x, cos, sin, visibility, prompt=cache.prompt[i],
                                                                    generated=cache.generated[i])
            generated.append(written)
        return x, tuple(generated)

    @adapted
    def decode(self, x, position_ids, segment_ids, shared_prefix: SharedPrefix | None = None) -> jax.Array:
        """Decoder layers and the final norm: [B, L, E] -> [B, L, E] (``shared_prefix``: see ``ModelInputs``)."""
        return self.norm(self._layers(x, *self._rotary(position_ids), segment_ids, shared_prefix=shared_prefix))

    @adapted
    def prefill(self, inputs: ModelInputs, features: jax.Array | None = None) -> tuple[jax.Array, KVCache]:
        """Runs the prompt and returns (hidden of its last position [B, E], the prompt's ``KVCache``).

        The cache is [layers, B, L, Hkv, Dh]. Prompts must be left-padded so that position L-1 is every
        row's last token. ``features``: as in ``embed``. ``cache.init_cache`` turns it into a decode cache.
        """
        x = self.embed(inputs, features)
        cos, sin = self._rotary(inputs.position_ids)
        x, cache = self._layers(x, cos, sin, inputs.segment_ids, LayerMode.PREFILL)
        return self.norm(x[:, -1]), cache

    @adapted
    def decode_step(self, tokens, position_ids, cache: DecodeCache, write_index) -> tuple[jax.Array, DecodeCache]:
        """One step of cached decoding for N = B * R rows.

        tokens: [N, T], fed back into generated-cache slots ``write_index .. write_index + T - 1`` (write_index:
        one slot for every row, or [N] one per row);
        position_ids: [3, N, T] (``positions.decode_position_ids``). Returns (hidden [N, T, E], the cache
        with those slots written). Runs layer by layer: the config must have ``scan_layers=False`` and the
        params that layout (``api.unstack_layers``), so that no step slices a stacked weight or cache.
        """
        x = self.embed_tokens(tokens)
        cos, sin = self._rotary(position_ids)
        view = decode_view(cache, write_index, tokens.shape[1])
        x, generated = self._layers(x, cos, sin, view, LayerMode.DECODE, cache)
        return self.norm(x), cache.replace(generated=generated)

    def _rotary(self, position_ids):
        t = self.config.text
        return multimodal_rotary(position_ids, t.head_dim, t.rope_theta, t.mrope_section)  # [B, L, Dh] each

    @adapted
    def logits(self, hidden: jax.Array) -> jax.Array:
        """LM head: [..., E] -> [..., vocab] (tied to the embedding when configured)."""
        if self.config.text.tie_word_embeddings:  # one 2-D matmul, as in ops.linear.flat_dot_general
            return self.embed_tokens.attend(hidden.reshape(-1, hidden.shape[-1])).reshape(*hidden.shape[:-1], -1)
        return self.lm_head(hidden)
