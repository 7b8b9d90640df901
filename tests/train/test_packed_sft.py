"""Packed SFT batches through the trainer's own path (collate_packed -> BatchBuilder -> loss_and_grads):
the loss and gradients equal the unpacked batch's for the same examples, with token or per-example weighting,
and with the rows split into micro-batches."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests.parity.hf_reference import random_text, vision_run
from vtjax.data import batching, vision
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, init_params
from vtjax.sharding import make_mesh
from vtjax.train.batch import BatchBuilder
from vtjax.train.flops import train_step_flops
from vtjax.train.loss import LossWeighting
from vtjax.train.step import loss_and_grads

CONFIG = Qwen25VLConfig.tiny()


def pipeline_example(rng, n: int, grid, is_image: bool = False) -> dict:
    """An example as the data pipeline's ExampleBuilder makes it: prompt, one image or video, answer."""
    kind = "image" if is_image else "video"
    prompt = random_text(rng, 3 + n) + vision_run(CONFIG, kind, grid) + random_text(rng, 2)
    answer = random_text(rng, 4 + 3 * n)
    ids = np.asarray(prompt + answer, np.int32)
    t, h, w = grid
    return {"input_ids": ids, "loss_mask": np.arange(len(ids)) >= len(prompt),
            "patches": rng.integers(0, 256, (t * h * w, vision.ROW_SIZE), dtype=np.uint8),
            "grid_thw": np.asarray(grid, np.int64), "second_per_grid_t": 0.0 if is_image else 1.0 + 0.25 * n,
            "is_image": is_image, "record_id": f"e{n}"}


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    grids = [((2, 4, 8), False), ((1, 8, 12), True), ((4, 8, 8), False), ((2, 4, 4), False),
             ((2, 8, 8), False), ((1, 4, 4), True)]
    exs = [pipeline_example(rng, n, grid, is_image) for n, (grid, is_image) in enumerate(grids)]
    params = init_params(CONFIG, jax.random.key(0))
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    return exs, params, mesh


def run_loss(params, mesh, raw, micro_batches, weighting):
    builder = BatchBuilder(CONFIG, mesh, micro_batches, loss_weighting=weighting)
    host = builder.host_batch(raw, builder.local_sizes(raw))
    fn = jax.jit(loss_and_grads(CONFIG, None, loss_chunk=64))
    loss, grads = fn(params, jax.tree_util.tree_map(np.asarray, host))
    return float(loss), grads, host


def assert_grads_close(a, b, rtol):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        scale = max(float(np.abs(y).max()), 1e-12)
        assert float(np.abs(x - y).max()) <= rtol * scale, jax.tree_util.keystr(path)


@pytest.mark.parametrize("weighting", list(LossWeighting))
def test_packed_rows_give_the_unpacked_loss_and_gradients(setup, weighting):
    exs, params, mesh = setup
    unpacked = batching.collate(exs, pad_id=CONFIG.pad_token_id, with_labels=True)
    rows = [[exs[0], exs[1], exs[3]], [exs[2], exs[4], exs[5]]]  # images and videos of several grids per row
    order = [0, 1, 3, 2, 4, 5]
    packed = batching.collate_packed(rows, pad_id=CONFIG.pad_token_id, token_budget=256, with_labels=True)
    assert packed["record_id"] == [f"e{i}" for i in order]
    np.testing.assert_array_equal(packed["example_row"], [0, 0, 0, 1, 1, 1])
    loss_u, grads_u, host_u = run_loss(params, mesh, unpacked, 1, weighting)
    loss_p, grads_p, host_p = run_loss(params, mesh, packed, 1, weighting)
    assert host_p.inputs.input_ids.shape == (1, 2, 256)
    # The same examples carry the same targets: no target across two examples of a row.
    assert int((host_p.weights > 0).sum()) == int((host_u.weights > 0).sum()) == sum(int(e["loss_mask"].sum())
                                                                                      for e in exs)
    np.testing.assert_allclose(loss_p, loss_u, rtol=1e-5)
    assert_grads_close(grads_p, grads_u, 1e-5)
    if weighting is LossWeighting.EXAMPLE:
        # The mean over examples of each example's token mean, from single-example losses.
        alone = [run_loss(params, mesh, batching.collate([e], pad_id=CONFIG.pad_token_id, with_labels=True), 1,
                          LossWeighting.TOKEN)[0] for e in exs]
        np.testing.assert_allclose(loss_p, np.mean(alone), rtol=1e-5)


def test_packed_rows_split_into_micro_batches(setup):
    """Each micro-batch takes the vision items of its own rows (three examples in one, one in the other)."""
    exs, params, mesh = setup
    rows = [[exs[0], exs[1], exs[3]], [exs[4]]]
    packed = batching.collate_packed(rows, pad_id=CONFIG.pad_token_id, token_budget=256, with_labels=True)
    whole = run_loss(params, mesh, packed, 1, LossWeighting.TOKEN)
    split = run_loss(params, mesh, packed, 2, LossWeighting.TOKEN)
    assert split[2].inputs.input_ids.shape == (2, 1, 256)
    np.testing.assert_allclose(split[0], whole[0], rtol=1e-5)
    assert_grads_close(split[1], whole[1], 1e-5)


def test_a_row_over_the_budget_is_refused(setup):
    exs, _, _ = setup
    with pytest.raises(ValueError, match="more than token_budget=64"):
        batching.collate_packed([[exs[2]]], pad_id=0, token_budget=64)


def test_model_flops_of_a_packed_batch_count_each_example_alone(setup):
    """Attention FLOPs follow each example's own length, so packing the same examples changes no count."""
    exs, _, _ = setup
    unpacked = batching.collate(exs, pad_id=CONFIG.pad_token_id, with_labels=True)
    packed = batching.collate_packed([[exs[0], exs[1], exs[3]], [exs[2], exs[4], exs[5]]],
                                     pad_id=CONFIG.pad_token_id, token_budget=256, with_labels=True)
    assert train_step_flops(CONFIG, packed) == pytest.approx(train_step_flops(CONFIG, unpacked), rel=1e-12)
    # Read as one sequence per row, the same batch would count attention across examples.
    as_rows = train_step_flops(CONFIG, {**packed, "segment_ids": packed["attention_mask"]})
    assert as_rows > train_step_flops(CONFIG, packed)
