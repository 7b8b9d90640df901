"""The compiled sampler against transformers generate, teacher forcing and numpy filters."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

from tests.parity.hf_reference import random_pixels, vision_run
from tests.parity.test_logits import model_and_params
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, forward
from vtjax.sampling import filter_logits, generate

CONFIG = Qwen25VLConfig.tiny()
MAX_NEW = 10


def video_batch(padding_side: str):
    """Two video prompts of different lengths, padded on ``padding_side``."""
    rng = np.random.default_rng(5)
    grids = [(2, 8, 8), (3, 8, 12)]
    rows = [[1, 2, 3] + vision_run(CONFIG, "video", grids[0]) + [4, 5, 6, 7, 8],
            [9, 10] + vision_run(CONFIG, "video", grids[1]) + [11]]
    length = max(map(len, rows))
    ids = np.full((2, length), CONFIG.pad_token_id)
    mask = np.zeros((2, length), np.int64)
    for r, row in enumerate(rows):
        sl = slice(length - len(row), length) if padding_side == "left" else slice(0, len(row))
        ids[r, sl], mask[r, sl] = row, 1
    return dict(input_ids=ids, attention_mask=mask, pixel_values_videos=random_pixels(rng, CONFIG, grids),
                video_grid_thw=np.array(grids), second_per_grid_ts=np.array([1.0, 0.5], np.float32))


def hf_greedy(model, inputs, eos):
    with torch.no_grad():
        out = model.generate(**{k: torch.as_tensor(v) for k, v in inputs.items()}, max_new_tokens=MAX_NEW,
                             do_sample=False, eos_token_id=eos, pad_token_id=CONFIG.pad_token_id)
    return out[:, inputs["input_ids"].shape[1]:].numpy()


@pytest.mark.parametrize("our_padding", ["left", "right"])
def test_greedy_equals_transformers(our_padding):
    model, params = model_and_params("base")
    expected = hf_greedy(model, video_batch("left"), CONFIG.eos_token_id)
    ours = generate(CONFIG, params, **video_batch(our_padding), max_new_tokens=MAX_NEW)
    np.testing.assert_array_equal(ours["tokens"][:, :expected.shape[1]], expected)


def test_rows_stop_at_eos_and_are_padded_like_transformers():
    model, params = model_and_params("base")
    inputs = video_batch("left")
    free = generate(CONFIG, params, **inputs, max_new_tokens=MAX_NEW)["tokens"]
    eos = int(free[0, 3])  # a token row 0 emits at step 3 becomes the stop token
    expected = hf_greedy(model, inputs, eos)
    ours = generate(CONFIG, params, **inputs, max_new_tokens=MAX_NEW, eos_token_ids=[eos])
    stop = int(np.flatnonzero(free[0] == eos)[0])
    assert ours["lengths"][0] == stop + 1
    assert np.all(ours["tokens"][0, stop + 1:] == CONFIG.pad_token_id)
    assert np.all(ours["logprobs"][0, stop + 1:] == 0.0)
    width = expected.shape[1]
    np.testing.assert_array_equal(ours["tokens"][:, :width], expected)


def test_logprobs_equal_teacher_forcing():
    _, params = model_and_params("base")
    inputs = video_batch("left")
    out = generate(CONFIG, params, **inputs, max_new_tokens=MAX_NEW, num_samples=2, temperature=1.0, seed=3)
    prompt_len = inputs["input_ids"].shape[1]
    for row in range(out["tokens"].shape[0]):
        prompt = row // 2
        n = int(out["lengths"][row])
        ids = np.concatenate([inputs["input_ids"][prompt], out["tokens"][row, :n]])[None]
        mask = np.concatenate([inputs["attention_mask"][prompt], np.ones(n, np.int64)])[None]
        single = {k: inputs[k] for k in ("second_per_grid_ts",)}
        grid = inputs["video_grid_thw"][prompt:prompt + 1]
        rows_before = int(np.prod(inputs["video_grid_thw"][:prompt], axis=1).sum())
        pixels = inputs["pixel_values_videos"][rows_before:rows_before + int(np.prod(grid))]
        logits = forward(CONFIG, params, input_ids=ids, attention_mask=mask, pixel_values_videos=pixels,
                         video_grid_thw=grid, second_per_grid_ts=single["second_per_grid_ts"][prompt:prompt + 1])
        logp = jax.nn.log_softmax(logits[0, prompt_len - 1:prompt_len - 1 + n], axis=-1)
        expected = np.take_along_axis(np.asarray(logp), out["tokens"][row, :n, None], axis=-1)[:, 0]
        np.testing.assert_allclose(out["logprobs"][row, :n], expected, atol=1e-4)


def test_sampling_is_reproducible_per_seed_and_groups_vary():
    _, params = model_and_params("base")
    inputs = video_batch("left")
    kw = dict(max_new_tokens=MAX_NEW, num_samples=4, temperature=1.0, top_p=0.95)
    a = generate(CONFIG, params, **inputs, seed=11, **kw)
    b = generate(CONFIG, params, **inputs, seed=11, **kw)
    c = generate(CONFIG, params, **inputs, seed=12, **kw)
    np.testing.assert_array_equal(a["tokens"], b["tokens"])
    assert not np.array_equal(a["tokens"], c["tokens"])
    assert len({tuple(t) for t in a["tokens"][:4]}) > 1  # the 4 samples of prompt 0 differ
    greedy = generate(CONFIG, params, **inputs, max_new_tokens=MAX_NEW, num_samples=3)["tokens"]
    assert all(np.array_equal(greedy[i], greedy[0]) for i in range(3))


def numpy_allowed(logits, temperature, top_k, top_p):
    scaled = logits / temperature
    allowed = np.ones_like(scaled, bool)
    if top_k:
        kth = np.sort(scaled, axis=-1)[:, -top_k][:, None]
        allowed &= scaled >= kth
    if top_p < 1.0:
        for r in range(scaled.shape[0]):
            row = np.where(allowed[r], scaled[r], -np.inf)
            order = np.argsort(-row)
            p = np.exp(row[order] - row[order][0])
            p /= p.sum()
            mass_before = np.cumsum(p) - p
            keep = np.zeros_like(allowed[r])
            keep[order[mass_before < top_p]] = True
            allowed[r] &= keep
    return allowed


@pytest.mark.parametrize("top_k,top_p", [(3, 1.0), (0, 0.6), (5, 0.8)])
def test_filters_match_numpy_and_exclude_tokens(top_k, top_p):
    rng = np.random.default_rng(top_k)
    logits = rng.standard_normal((4, 50)).astype(np.float32) * 2
    filtered = np.asarray(filter_logits(logits, temperature=0.7, top_k=top_k, top_p=top_p))
    np.testing.assert_array_equal(np.isfinite(filtered), numpy_allowed(logits, 0.7, top_k, top_p))
    keys = jax.random.split(jax.random.PRNGKey(0), 2000)
    draws = jax.vmap(lambda k: jax.random.categorical(k, filtered))(keys)  # [2000, 4]
    for r in range(4):
        assert np.isfinite(filtered[r, np.asarray(draws[:, r])]).all()
