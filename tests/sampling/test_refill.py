"""Continuous batching in the decode loop: rows refilled with their prompt's pending samples, and live rows
compacted into fewer as samples end.

The reference for every sample is the one-row-per-sample loop (tokens equal, log-probs to float rounding)
and teacher forcing; the loop's iteration count and its computed rows are checked against a numpy list
schedule of the lengths.
"""

from __future__ import annotations

import heapq

import jax
import numpy as np
import pytest

from tests.parity.test_logits import model_and_params
from tests.sampling.test_sampler import CONFIG, video_batch
from vtjax.models.qwen2_5_vl import forward
from vtjax.sampling import generate, sampling_settings
from vtjax.sampling.sampler import cache_widths, row_levels

GROUP = 6
MAX_NEW = 24
# A twelfth of the vocabulary ends a sample, so the tiny random model stops after 1 to 24 tokens; the vision
# tokens do too, so they can only be a completion's last token (which teacher forcing never feeds back).
VISION_TOKENS = (CONFIG.image_token_id, CONFIG.video_token_id, CONFIG.vision_start_token_id,
                 CONFIG.vision_end_token_id)
RAGGED = dict(max_new_tokens=MAX_NEW, num_samples=GROUP, temperature=1.0,
              eos_token_ids=tuple(range(0, CONFIG.text.vocab_size, 12)) + VISION_TOKENS, seed=3)


def list_schedule_iterations(lengths: np.ndarray, rows_per_prompt: int) -> int:
    """Loop iterations when each prompt's R rows take its samples in order as rows free up.

    A sample of length L needs L - 1 iterations (its first token comes from the prefill); length-1 samples
    need none and take no row. All prompts share the loop, so it runs until the busiest prompt is done.
    """
    busiest = 0
    for group in lengths.reshape(-1, GROUP):
        free_at = [0] * rows_per_prompt
        for length in group:
            if length > 1:
                start = heapq.heappop(free_at)
                heapq.heappush(free_at, start + int(length) - 1)
        busiest = max(busiest, max(free_at))
    return busiest


def list_schedule_live_rows(lengths: np.ndarray, rows_per_prompt: int) -> np.ndarray:
    """[iterations, B] the samples each prompt has in progress at every loop iteration of the list schedule."""
    spans = []  # (prompt, first iteration, iterations) of every sample that takes a row
    for prompt, group in enumerate(lengths.reshape(-1, GROUP)):
        free_at = [0] * rows_per_prompt
        for length in group:
            if length > 1:
                start = heapq.heappop(free_at)
                heapq.heappush(free_at, start + int(length) - 1)
                spans.append((prompt, start, int(length) - 1))
    live = np.zeros((list_schedule_iterations(lengths, rows_per_prompt), lengths.size // GROUP), int)
    for prompt, start, span in spans:
        live[start:start + span, prompt] += 1
    return live


@pytest.fixture(scope="module")
def ragged_runs():
    _, params = model_and_params("base")
    inputs = video_batch("left")
    return params, inputs, {r: generate(CONFIG, params, **inputs, rows_per_prompt=r, **RAGGED) for r in (GROUP, 4, 1)}


@pytest.mark.parametrize("rows", [GROUP, 1])
def test_a_growing_generated_cache_gives_the_same_samples(ragged_runs, rows):
    """Generated caches of 8, then 16, then 24 slots (three decode loops) against one loop over all 24."""
    params, inputs, runs = ragged_runs
    assert cache_widths(MAX_NEW, 8) == (8, 16, 24) and cache_widths(MAX_NEW) == (MAX_NEW,)
    grown = generate(CONFIG, params, **inputs, rows_per_prompt=rows, cache_growth=8, **RAGGED)
    assert runs[GROUP]["lengths"].max() > 16  # the last loop runs
    np.testing.assert_array_equal(grown["tokens"], runs[GROUP]["tokens"])
    np.testing.assert_array_equal(grown["lengths"], runs[GROUP]["lengths"])
    np.testing.assert_allclose(grown["logprobs"], runs[GROUP]["logprobs"], atol=2e-6)
    assert int(grown["decode_iterations"]) == int(runs[rows]["decode_iterations"])


def test_refilled_rows_give_every_sample_the_same_tokens_and_logprobs(ragged_runs):
    _, _, runs = ragged_runs
    reference = runs[GROUP]
    assert len(set(reference["lengths"].tolist())) >= 6, reference["lengths"]  # the workload is ragged
    for rows in (4, 1):
        np.testing.assert_array_equal(runs[rows]["tokens"], reference["tokens"])
        np.testing.assert_array_equal(runs[rows]["lengths"], reference["lengths"])
        np.testing.assert_allclose(runs[rows]["logprobs"], reference["logprobs"], atol=2e-6)


@pytest.mark.parametrize("rows", [GROUP, 4, 1])
def test_loop_runs_the_list_schedule_of_the_lengths(ragged_runs, rows):
    _, _, runs = ragged_runs
    lengths = runs[GROUP]["lengths"]
    assert int(runs[rows]["decode_iterations"]) == list_schedule_iterations(lengths, rows)
    if rows == GROUP:
        assert int(runs[rows]["decode_iterations"]) == lengths.max() - 1  # every row waits for the longest


def test_row_levels_by_hand():
    assert row_levels(8) == (8, 6, 4, 2, 1)
    assert row_levels(GROUP) == (6, 5, 3, 2, 1)
    assert row_levels(3) == (3, 2, 1) and row_levels(1) == (1,)


@pytest.mark.parametrize("rows,growth", [(GROUP, 0), (GROUP, 12), (4, 0)])
def test_compacted_rows_give_the_same_samples_on_fewer_rows(ragged_runs, rows, growth):
    """compact_rows against the loop without it: the same tokens, lengths, log-probs (to float rounding) and
    iterations; each iteration computes B * (the smallest row level >= the busiest prompt's live samples)
    rows of the list schedule, against B * R without compaction. growth 12: two cache widths, so the
    phases switch on both the width and the level."""
    params, inputs, runs = ragged_runs
    compacted = generate(CONFIG, params, **inputs, rows_per_prompt=rows, cache_growth=growth, compact_rows=True,
                         **RAGGED)
    np.testing.assert_array_equal(compacted["tokens"], runs[rows]["tokens"])
    np.testing.assert_array_equal(compacted["lengths"], runs[rows]["lengths"])
    np.testing.assert_allclose(compacted["logprobs"], runs[rows]["logprobs"], atol=2e-6)
    iterations = int(runs[rows]["decode_iterations"])
    assert int(compacted["decode_iterations"]) == iterations
    prompts = len(inputs["input_ids"])
    assert int(runs[rows]["decode_row_steps"]) == prompts * rows * iterations
    live = list_schedule_live_rows(runs[GROUP]["lengths"], rows)  # [iterations, B]
    levels = np.array(row_levels(rows))
    expected = sum(prompts * levels[levels >= most].min() for most in live.max(axis=1))
    assert int(compacted["decode_row_steps"]) == expected < prompts * rows * iterations


def test_refilled_logprobs_equal_teacher_forcing(ragged_runs):
    """Every sample's prompt + completion in one batched forward (prompts are left-padded: they all end at
    the same column), its log-softmax at the completion's tokens against the refilled loop's log-probs."""
    params, inputs, runs = ragged_runs
    out = runs[1]
    completion_mask = np.arange(MAX_NEW)[None, :] < out["lengths"][:, None]  # [B * G, M]
    fed_back = np.arange(MAX_NEW)[None, :] < out["lengths"][:, None] - 1  # the last token is never an input
    ids = np.concatenate([np.repeat(inputs["input_ids"], GROUP, axis=0), out["tokens"]], axis=1)
    mask = np.concatenate([np.repeat(inputs["attention_mask"], GROUP, axis=0), fed_back], axis=1)
    grids = inputs["video_grid_thw"]
    patches = np.cumsum([0] + [int(np.prod(g)) for g in grids])
    pixels = np.concatenate([inputs["pixel_values_videos"][patches[b]:patches[b + 1]]
                             for b in range(len(grids)) for _ in range(GROUP)])
    logits = forward(CONFIG, params, input_ids=ids, attention_mask=mask.astype(np.int64), pixel_values_videos=pixels,
                     video_grid_thw=np.repeat(grids, GROUP, axis=0),
                     second_per_grid_ts=np.repeat(inputs["second_per_grid_ts"], GROUP, axis=0))
    prompt_len = inputs["input_ids"].shape[1]
    logp = np.asarray(jax.nn.log_softmax(logits[:, prompt_len - 1:-1], axis=-1))  # [B * G, M, V]
    forced = np.take_along_axis(logp, out["tokens"][..., None], axis=-1)[..., 0]
    np.testing.assert_allclose(out["logprobs"][completion_mask], forced[completion_mask], atol=1e-4)


def test_rows_per_prompt_and_cache_growth_are_checked():
    with pytest.raises(ValueError, match="rows_per_prompt=7"):
        sampling_settings(CONFIG, max_new_tokens=4, num_samples=GROUP, rows_per_prompt=7)
    with pytest.raises(ValueError, match="cache_growth=-1"):
        sampling_settings(CONFIG, max_new_tokens=4, num_samples=GROUP, cache_growth=-1)
    assert sampling_settings(CONFIG, max_new_tokens=4, num_samples=GROUP).rows_per_prompt == GROUP
