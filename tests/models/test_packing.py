"""Packed rows: several examples (text, images, videos, several grids) in one row, each seeing only itself
and with its own positions, give each example's logits run alone; a token-mean loss and its gradient equal
the unpacked batch's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tests.parity.hf_reference import random_pixels, random_text, vision_run
from vtjax.models.qwen2_5_vl import Qwen25VL, Qwen25VLConfig, get_rope_index, init_params, prepare_inputs

CONFIG = Qwen25VLConfig.tiny()


def examples(rng) -> list[dict]:
    """Five examples: text only, an image, a video, an image and a video, two videos of different grids."""
    text = lambda n: random_text(rng, n)  # noqa: E731
    image, video, small = (1, 8, 12), (4, 8, 8), (2, 4, 8)
    specs = [[], [("image", image)], [("video", video)], [("image", (1, 4, 4)), ("video", small)],
             [("video", small), ("video", video)]]
    out = []
    for n, items in enumerate(specs):
        ids = text(3 + n)
        for kind, grid in items:
            ids += vision_run(CONFIG, kind, grid) + text(2)
        out.append(dict(ids=np.array(ids), items=[(kind, grid, random_pixels(rng, CONFIG, [grid]))
                                                  for kind, grid in items],
                        seconds=[1.0 + 0.5 * n for _ in items]))
    return out


def vision_kwargs(items_in_order) -> dict:
    """HF-processor vision kwargs of (kind, grid, pixels, seconds) items in order of appearance."""
    out = {}
    for kind, key, grid_key in (("image", "pixel_values", "image_grid_thw"),
                                ("video", "pixel_values_videos", "video_grid_thw")):
        chosen = [x for x in items_in_order if x[0] == kind]
        if chosen:
            out[key] = np.concatenate([x[2] for x in chosen])
            out[grid_key] = np.array([x[1] for x in chosen])
            if kind == "video":
                out["second_per_grid_ts"] = np.array([x[3] for x in chosen], np.float32)
    return out


def items_of(example):
    return [(kind, grid, pixels, sec) for (kind, grid, pixels), sec in
            zip(example["items"], example["seconds"], strict=True)]


def packed_inputs(rows: list[list[dict]], length: int):
    """One packed row per list of examples: ids back to back, segment ids 1, 2, ..., right padding."""
    ids = np.full((len(rows), length), CONFIG.pad_token_id, np.int64)
    segments = np.zeros((len(rows), length), np.int64)
    spans, items = [], []
    for r, row in enumerate(rows):
        start = 0
        for s, example in enumerate(row, start=1):
            n = len(example["ids"])
            ids[r, start:start + n], segments[r, start:start + n] = example["ids"], s
            spans.append((r, start, n))
            items += items_of(example)
            start += n
    return prepare_inputs(CONFIG, input_ids=ids, segment_ids=segments, pad_length=length,
                          **vision_kwargs(items)), spans


def test_packed_rows_give_every_example_its_own_logits():
    rng = np.random.default_rng(0)
    params = init_params(CONFIG, 3)
    model = Qwen25VL(CONFIG)
    exs = examples(rng)
    inputs, spans = packed_inputs([[exs[0], exs[1], exs[2]], [exs[3], exs[4]]], length=512)
    packed = np.asarray(jax.jit(lambda p, x: model.apply({"params": p}, x))(params, inputs))
    for example, (row, start, n) in zip(exs, spans, strict=True):
        alone = prepare_inputs(CONFIG, input_ids=example["ids"][None], **vision_kwargs(items_of(example)))
        want = np.asarray(model.apply({"params": params}, alone))[0, :n]
        np.testing.assert_allclose(packed[row, start:start + n], want, atol=1e-5, rtol=0)


def test_packed_positions_restart_per_example():
    """get_rope_index of a packed row equals each example's own positions, text and vision runs alike."""
    rng = np.random.default_rng(1)
    exs = examples(rng)
    inputs, spans = packed_inputs([exs[1:4]], length=384)
    for example, (row, start, n) in zip(exs[1:4], spans, strict=True):
        kwargs = {k: v for k, v in vision_kwargs(items_of(example)).items() if not k.startswith("pixel")}
        want, _ = get_rope_index(CONFIG, example["ids"][None], **kwargs)
        np.testing.assert_array_equal(np.asarray(inputs.position_ids)[:, row, start:start + n], want[:, 0])


def test_packed_loss_and_gradient_equal_the_unpacked_batch():
    """Token-mean cross-entropy over the examples' own next tokens: packed rows vs one example per row
    (right-padded), loss and every parameter's gradient within relative 1e-5."""
    rng = np.random.default_rng(2)
    params = init_params(CONFIG, 4)
    model = Qwen25VL(CONFIG)
    exs = examples(rng)
    packed, spans = packed_inputs([[exs[0], exs[1], exs[2]], [exs[3], exs[4]]], length=512)
    longest = max(len(e["ids"]) for e in exs)
    padded = np.full((len(exs), longest), CONFIG.pad_token_id, np.int64)
    mask = np.zeros_like(padded)
    for i, e in enumerate(exs):
        padded[i, :len(e["ids"])], mask[i, :len(e["ids"])] = e["ids"], 1
    unpacked = prepare_inputs(CONFIG, input_ids=padded, attention_mask=mask,
                              **vision_kwargs([x for e in exs for x in items_of(e)]))

    def targets_of(inputs, pieces):  # next token and weight at each position, inside its example only
        ids = np.asarray(inputs.input_ids)
        targets, weights = np.zeros_like(ids), np.zeros(ids.shape, np.float32)
        for row, start, n in pieces:
            targets[row, start:start + n - 1] = ids[row, start + 1:start + n]
            weights[row, start:start + n - 1] = 1.0
        return jnp.asarray(targets), jnp.asarray(weights)

    def loss_fn(inputs, targets, weights):
        def loss(p):
            logits = model.apply({"params": p}, inputs).astype(jnp.float32)
            logp = jax.nn.log_softmax(logits)
            picked = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
            return -jnp.sum(picked * weights) / jnp.sum(weights)
        return jax.jit(jax.value_and_grad(loss))

    packed_loss, packed_grad = loss_fn(packed, *targets_of(packed, spans))(params)
    plain_spans = [(i, 0, len(e["ids"])) for i, e in enumerate(exs)]
    plain_loss, plain_grad = loss_fn(unpacked, *targets_of(unpacked, plain_spans))(params)
    np.testing.assert_allclose(float(packed_loss), float(plain_loss), rtol=1e-5)
    flat = lambda g: np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree_util.tree_leaves(g)])  # noqa: E731
    a, b = flat(packed_grad), flat(plain_grad)
    assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(b), np.linalg.norm(a - b) / np.linalg.norm(b)
