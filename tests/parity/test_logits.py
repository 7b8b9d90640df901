"""Logits and position ids of vtjax vs transformers 4.51.3 on tiny random models (float32, CPU)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
import torch

from tests.parity.hf_reference import (build_hf_model, hf_logits, params_from_hf, random_pixels,
                                       random_text, vision_run)
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, forward, get_rope_index
from vtjax.ops import attention as attention_module

TOL = 1e-4

BASE = Qwen25VLConfig.tiny()
CONFIGS = {
    "base": BASE,
    "loop": BASE.replace(scan_layers=False),
    "gqa_6_2": BASE.replace(text=dataclasses.replace(BASE.text, hidden_size=96, num_attention_heads=6,
                                                      num_key_value_heads=2),
                            vision=dataclasses.replace(BASE.vision, out_hidden_size=96)),
    "tied": BASE.replace(text=dataclasses.replace(BASE.text, tie_word_embeddings=True)),
}
_MODELS: dict = {}


def model_and_params(name: str):
    if name not in _MODELS:
        model = build_hf_model(CONFIGS[name], seed=len(_MODELS))
        _MODELS[name] = (model, params_from_hf(CONFIGS[name], model))
    return _MODELS[name]


def case_inputs(name: str, config: Qwen25VLConfig, rng: np.random.Generator) -> dict:
    """HF-processor-shaped inputs for one named case."""
    text = lambda n: random_text(rng, n)  # noqa: E731
    if name == "text":
        return dict(input_ids=np.array([text(13)]))
    if name == "image":
        grid = (1, 8, 12)
        return dict(input_ids=np.array([text(4) + vision_run(config, "image", grid) + text(6)]),
                    pixel_values=random_pixels(rng, config, [grid]), image_grid_thw=np.array([grid]))
    if name in ("video_fractional", "window_uneven", "window_exact"):
        grid = {"video_fractional": (4, 12, 20), "window_uneven": (2, 6, 10),
                "window_exact": (2, 16, 16)}[name]
        return dict(input_ids=np.array([text(5) + vision_run(config, "video", grid) + text(7)]),
                    pixel_values_videos=random_pixels(rng, config, [grid]),
                    video_grid_thw=np.array([grid]), second_per_grid_ts=np.array([1.25], np.float32))
    if name == "image_and_video":
        image, video = (1, 10, 6), (6, 8, 8)
        ids = text(3) + vision_run(config, "image", image) + text(4) + vision_run(config, "video", video) + text(5)
        return dict(input_ids=np.array([ids]), pixel_values=random_pixels(rng, config, [image]),
                    image_grid_thw=np.array([image]),
                    pixel_values_videos=random_pixels(rng, config, [video]),
                    video_grid_thw=np.array([video]), second_per_grid_ts=np.array([0.5], np.float32))
    if name in ("batch_left_pad", "batch_right_pad"):
        grids = [(2, 8, 8), (4, 6, 10)]
        rows = [text(3) + vision_run(config, "video", grids[0]) + text(9),
                text(6) + vision_run(config, "video", grids[1]) + text(2)]
        length = max(map(len, rows))
        ids = np.full((2, length), config.pad_token_id)
        mask = np.zeros((2, length), np.int64)
        for r, row in enumerate(rows):
            sl = slice(length - len(row), length) if name == "batch_left_pad" else slice(0, len(row))
            ids[r, sl], mask[r, sl] = row, 1
        return dict(input_ids=ids, attention_mask=mask,
                    pixel_values_videos=random_pixels(rng, config, grids), video_grid_thw=np.array(grids),
                    second_per_grid_ts=np.array([1.0, 2.0 / 3.0], np.float32))
    raise KeyError(name)


CASES = ["text", "image", "video_fractional", "image_and_video", "batch_left_pad", "batch_right_pad",
         "window_uneven", "window_exact"]
PAIRS = [(c, "base") for c in CASES] + [("image_and_video", "loop"), ("batch_left_pad", "loop"),
                                        ("video_fractional", "gqa_6_2"), ("image_and_video", "tied"),
                                        ("text", "tied")]


@pytest.mark.parametrize("case,config_name", PAIRS, ids=[f"{c}-{m}" for c, m in PAIRS])
def test_logits_match_transformers(case, config_name):
    config = CONFIGS[config_name]
    model, params = model_and_params(config_name)
    inputs = case_inputs(case, config, np.random.default_rng(hash(case) % 2**32))
    ours = forward(config, params, **inputs)
    theirs = hf_logits(model, **inputs)
    assert ours.shape == theirs.shape
    valid = inputs.get("attention_mask", np.ones(inputs["input_ids"].shape)).astype(bool)
    diff = np.abs(ours - theirs)[valid]
    assert diff.max() <= TOL, f"max |logit diff| {diff.max():.3g} (logit scale {np.abs(theirs).max():.3g})"


@pytest.mark.parametrize("case", ["image_and_video", "batch_left_pad"])
def test_block_causal_text_attention_matches_transformers(case, monkeypatch):
    """With the XLA path's causal query block at 16 tokens, the decoder's attention runs block-causal over
    these prompts (padding included) and the logits are still transformers'."""
    monkeypatch.setattr(attention_module, "CAUSAL_QUERY_BLOCK", 16)
    jax.clear_caches()  # the block size is read when a program is traced
    try:
        model, params = model_and_params("base")
        inputs = case_inputs(case, BASE, np.random.default_rng(hash(case) % 2**32))
        assert inputs["input_ids"].shape[1] > 3 * 16
        ours = forward(BASE, params, **inputs)
    finally:
        monkeypatch.undo()
        jax.clear_caches()
    theirs = hf_logits(model, **inputs)
    valid = inputs.get("attention_mask", np.ones(inputs["input_ids"].shape)).astype(bool)
    assert np.abs(ours - theirs)[valid].max() <= TOL


@pytest.mark.parametrize("case", CASES)
def test_rope_index_matches_transformers(case):
    config = CONFIGS["base"]
    model, _ = model_and_params("base")
    inputs = case_inputs(case, config, np.random.default_rng(7))
    args = {k: inputs.get(k) for k in ("input_ids", "attention_mask", "image_grid_thw", "video_grid_thw",
                                        "second_per_grid_ts")}
    ours_pos, ours_delta = get_rope_index(config, **args)
    t = {k: (torch.as_tensor(v) if v is not None else None) for k, v in args.items()}
    theirs_pos, theirs_delta = model.get_rope_index(t["input_ids"], t["image_grid_thw"], t["video_grid_thw"],
                                                    t["second_per_grid_ts"], t["attention_mask"])
    np.testing.assert_array_equal(ours_pos, theirs_pos.numpy())
    np.testing.assert_array_equal(ours_delta, theirs_delta.numpy().reshape(-1))


def test_rope_index_fractional_seconds_truncate_like_torch():
    """k * 1.25 * 2 truncates in float32: temporal positions 0, 2, 5, 7 (not rounded)."""
    config = CONFIGS["base"]
    grid = (4, 4, 4)
    ids = np.array([[7] + vision_run(config, "video", grid)])
    pos, _ = get_rope_index(config, ids, video_grid_thw=np.array([grid]), second_per_grid_ts=[1.25])
    video_t = pos[0, 0, 2:2 + 16]  # 4 temporal patches x 2x2 merged tokens
    start = 2  # one text token, then <|vision_start|>
    np.testing.assert_array_equal(np.unique(video_t) - start, [0, 2, 5, 7])
