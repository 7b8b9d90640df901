"""The HF-shaped forward: one compile per shape bucket, linear-cost vision attention, layouts, errors."""

from __future__ import annotations

import itertools

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from tests.parity.hf_reference import random_pixels, vision_run
from vtjax.models.qwen2_5_vl import (Qwen25VL, Qwen25VLConfig, bucket_size, compiled_logits, forward,
                                     init_params, prepare_inputs)
from vtjax.models.qwen2_5_vl.inputs import MIN_PATCH_BUCKET, MIN_TEXT_BUCKET
from vtjax.models.qwen2_5_vl.vision import VisionTower

CONFIG = Qwen25VLConfig.tiny()


def video_prompt(config, grid, rng):
    ids = [1, 2, 3, 4, 5] + vision_run(config, "video", grid) + [6, 7, 8]
    return dict(input_ids=np.array([ids]), pixel_values_videos=random_pixels(rng, config, [grid]),
                video_grid_thw=np.array([grid]), second_per_grid_ts=np.array([1.0], np.float32))


def bucket_key(config, grid):
    t, h, w = grid
    length = 8 + 2 + t * h * w // config.vision.merge_unit
    return (bucket_size(length, MIN_TEXT_BUCKET), bucket_size(t * h * w, MIN_PATCH_BUCKET),
            bucket_size(h * w, config.vision.window_patches))


def test_ten_grids_in_one_bucket_compile_once():
    grids = [g for g in itertools.product(range(1, 9), range(4, 34, 2), range(4, 34, 2))]
    by_key: dict = {}
    for g in grids:
        by_key.setdefault(bucket_key(CONFIG, g), []).append(g)
    chosen = max(by_key.values(), key=len)[:10]
    assert len(set(chosen)) == 10
    params = init_params(CONFIG)
    fn = compiled_logits(CONFIG)
    before = fn._cache_size()
    rng = np.random.default_rng(0)
    for grid in chosen:
        logits = forward(CONFIG, params, **video_prompt(CONFIG, grid, rng))
        assert np.isfinite(logits).all()
    assert fn._cache_size() == before + 1, f"grids {chosen} compiled {fn._cache_size() - before} times"


def _all_shapes(jaxpr):
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            yield tuple(getattr(var.aval, "shape", ()))
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            yield from _all_shapes(sub)


def test_vision_attention_never_forms_patch_by_patch_scores():
    """64 frames of 16x16 patches: no intermediate has two axes as long as the patch sequence."""
    grid = (32, 16, 16)
    rng = np.random.default_rng(0)
    inputs = prepare_inputs(CONFIG, **video_prompt(CONFIG, grid, rng)).vision
    tower = VisionTower(CONFIG.vision)
    params = jax.eval_shape(tower.init, jax.random.PRNGKey(0), inputs)
    jaxpr = jax.make_jaxpr(tower.apply)(params, inputs).jaxpr
    num_patches = inputs.patches.shape[0]
    quadratic = [s for s in _all_shapes(jaxpr) if sum(d >= num_patches for d in s) >= 2]
    assert not quadratic, f"intermediates quadratic in the {num_patches} patches: {quadratic[:3]}"


def test_scan_and_loop_layouts_agree():
    rng = np.random.default_rng(1)
    inputs = video_prompt(CONFIG, (2, 8, 12), rng)
    scanned = init_params(CONFIG)
    reference = forward(CONFIG, scanned, **inputs)
    loop_config = CONFIG.replace(scan_layers=False)
    unstacked = {k: v for k, v in scanned.items() if k not in ("layers", "visual")}
    unstacked.update({f"layers_{i}": jax.tree_util.tree_map(lambda x, i=i: x[i], scanned["layers"])
                      for i in range(CONFIG.text.num_hidden_layers)})
    visual = {k: v for k, v in scanned["visual"].items() if k != "layers"}
    visual.update({f"layers_{i}": jax.tree_util.tree_map(lambda x, i=i: x[i], scanned["visual"]["layers"])
                   for i in range(CONFIG.vision.depth)})
    unstacked["visual"] = visual
    np.testing.assert_allclose(forward(loop_config, unstacked, **inputs), reference, atol=1e-5)


def test_remat_policies_leave_gradients_unchanged():
    rng = np.random.default_rng(1)
    inputs = video_prompt(CONFIG, (2, 8, 8), rng)
    scanned = init_params(CONFIG)
    remat_config = CONFIG.replace(remat_policy="dots")
    model_inputs = prepare_inputs(remat_config, **inputs)

    def loss(params, config):
        return jnp.mean(Qwen25VL(config).apply({"params": params}, model_inputs) ** 2)

    g_plain = jax.grad(loss)(scanned, CONFIG)
    g_remat = jax.grad(loss)(scanned, remat_config)
    for a, b in zip(jax.tree_util.tree_leaves(g_plain), jax.tree_util.tree_leaves(g_remat), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_bfloat16_compute_stays_close_to_float32():
    rng = np.random.default_rng(2)
    inputs = video_prompt(CONFIG, (2, 8, 8), rng)
    params = init_params(CONFIG)
    f32 = forward(CONFIG, params, **inputs)
    bf16 = forward(CONFIG.replace(dtype="bfloat16"), params, **inputs)
    assert np.abs(bf16 - f32).max() <= 0.05 * np.abs(f32).max() + 1e-2


def test_mismatched_vision_tokens_are_reported():
    rng = np.random.default_rng(3)
    inputs = video_prompt(CONFIG, (2, 8, 8), rng)
    inputs["video_grid_thw"] = np.array([(2, 8, 12)])
    inputs["pixel_values_videos"] = random_pixels(rng, CONFIG, [(2, 8, 12)])
    with pytest.raises(ValueError, match="video features and video tokens do not match"):
        forward(CONFIG, None, **inputs)  # rejected on the host, before params are touched
    inputs["pixel_values_videos"] = inputs["pixel_values_videos"][:-4]
    with pytest.raises(ValueError, match="pixel values have shape"):
        forward(CONFIG, None, **inputs)
