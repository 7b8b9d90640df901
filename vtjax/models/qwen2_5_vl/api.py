"""Convenience entry points: random init and the HF-shaped ``forward`` for Colab and parity tests."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vtjax.models.qwen2_5_vl.config import Qwen25VLConfig
from vtjax.models.qwen2_5_vl.inputs import prepare_inputs
from vtjax.models.qwen2_5_vl.model import ModelInputs, Qwen25VL


def dummy_inputs(config: Qwen25VLConfig) -> ModelInputs:
    """The smallest batch that touches every parameter: one 2x2-merged-token image."""
    m = config.vision.spatial_merge_size
    grid = np.array([[1, 2 * m, 2 * m]])
    ids = [config.vision_start_token_id] + [config.image_token_id] * 4 + [config.vision_end_token_id]
    pixels = np.zeros((int(grid.prod()), config.vision.patch_dim), np.float32)
    return prepare_inputs(config, input_ids=np.array([ids]), pixel_values=pixels, image_grid_thw=grid)


def _boxed_init(config: Qwen25VLConfig, rng: jax.Array):
    return Qwen25VL(config).init(rng, dummy_inputs(config))["params"]


def init_params(config: Qwen25VLConfig, rng: jax.Array | int = 0):
    """Random parameters (normal(0.02) weights, zero biases, unit norms) as a plain pytree."""
    if isinstance(rng, int):
        rng = jax.random.PRNGKey(rng)
    init = jax.jit(functools.partial(_boxed_init, config))
    return nn.meta.unbox(init(rng))


def abstract_params(config: Qwen25VLConfig):
    """Shapes and dtypes of the params (``jax.ShapeDtypeStruct``), allocating nothing."""
    return nn.meta.unbox(jax.eval_shape(functools.partial(_boxed_init, config), jax.random.PRNGKey(0)))


def param_logical_axes(config: Qwen25VLConfig):
    """The logical axis names of every parameter, as a pytree of ``PartitionSpec``."""
    boxed = jax.eval_shape(functools.partial(_boxed_init, config), jax.random.PRNGKey(0))
    return nn.get_partition_spec(boxed)


def unstack_layers(config: Qwen25VLConfig, params):
    """The decoder params of a layer-scanned config in the per-layer layout (``layers_{i}``) of
    ``config.replace(scan_layers=False)``; unchanged when the config does not scan (the decode layout)."""
    if not config.scan_layers:
        return params
    out = dict(params)
    stacked = out.pop("layers")  # the text decoder's; the vision tower's are under "visual"
    for i in range(config.text.num_hidden_layers):
        out[f"layers_{i}"] = jax.tree.map(lambda a, i=i: a[i], stacked)
    return out


@functools.lru_cache(maxsize=None)
def compiled_logits(config: Qwen25VLConfig):
    """A jitted ``(params, ModelInputs) -> float32 logits``, one per config (cached)."""
    model = Qwen25VL(config)

    def run(params, inputs):
        return model.apply({"params": params}, inputs).astype(jnp.float32)

    return jax.jit(run)


def forward(
    config: Qwen25VLConfig,
    params,
    *,
    input_ids,
    attention_mask=None,
    pixel_values=None,
    image_grid_thw=None,
    pixel_values_videos=None,
    video_grid_thw=None,
    second_per_grid_ts=None,
) -> np.ndarray:
    """Logits [B, L, vocab] (float32 numpy) for numpy inputs exactly as the HF processor produces them.

    Pads to shape buckets and runs a jitted forward underneath, so calls whose
    sizes fall in the same bucket reuse one compiled program. Logits at padded
    positions are meaningless.
    """
    batch, length = np.shape(input_ids)
    inputs = prepare_inputs(
        config, input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
        image_grid_thw=image_grid_thw, pixel_values_videos=pixel_values_videos,
        video_grid_thw=video_grid_thw, second_per_grid_ts=second_per_grid_ts)
    logits = compiled_logits(config)(params, inputs)
    return np.asarray(logits[:batch, :length], dtype=np.float32)
