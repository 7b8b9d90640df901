"""Training batches that mix image and video rows: logits equal transformers' on the same HF inputs."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh

from tests.parity.hf_reference import build_hf_model, hf_logits, params_from_hf, random_text, vision_run
from vtjax.data import batching, vision
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, compiled_logits
from vtjax.train.batch import BatchBuilder

CONFIG = Qwen25VLConfig.tiny()
# Rows: image, video, video, image (two micro-batches of two rows: one of each kind, then both kinds again).
KINDS = ["image", "video", "video", "image"]
GRIDS = [(1, 4, 6), (2, 4, 4), (3, 2, 4), (1, 6, 2)]


def _examples(rng: np.random.Generator) -> list[dict]:
    out = []
    for kind, grid in zip(KINDS, GRIDS, strict=True):
        ids = random_text(rng, 3) + vision_run(CONFIG, kind, grid) + random_text(rng, 5 + len(out))
        rows = int(np.prod(grid))
        out.append({"input_ids": np.asarray(ids, np.int32),
                    "patches": rng.integers(0, 256, (rows, vision.ROW_SIZE), dtype=np.uint8),
                    "grid_thw": np.asarray(grid, np.int64), "second_per_grid_t": 0.0 if kind == "image" else 1.5,
                    "is_image": kind == "image", "loss_mask": np.arange(len(ids)) >= len(ids) - 4})
    return out


def test_mixed_micro_batches_match_transformers():
    model = build_hf_model(CONFIG, seed=5)
    params = params_from_hf(CONFIG, model)
    batch = batching.collate(_examples(np.random.default_rng(0)), pad_id=CONFIG.pad_token_id, with_labels=True)
    mesh = Mesh(np.array(jax.devices()[:1]).reshape(1, 1, 1), ("data", "fsdp", "tensor"))
    builder = BatchBuilder(CONFIG, mesh, micro_batches=2)
    host = builder.host_batch(batch, builder.local_sizes(batch))
    logits = compiled_logits(CONFIG)
    for m, rows in enumerate(([0, 1], [2, 3])):
        ours = np.asarray(logits(params, jax.tree_util.tree_map(lambda x, m=m: x[m], host.inputs)))  # [2, L, V]
        part = {k: batch[k][rows] for k in ("input_ids", "attention_mask", "grid_thw", "second_per_grid_ts",
                                            "is_image")}
        part["vision_rows"] = np.concatenate([_rows_of(batch, r) for r in rows])
        hf, _ = batching.model_inputs(part)  # the HF processor's layout of these two rows
        assert ("pixel_values" in hf) and ("pixel_values_videos" in hf)  # both kinds in each micro-batch
        ref = hf_logits(model, **{**hf, "input_ids": hf["input_ids"].astype(np.int64),
                                  "attention_mask": hf["attention_mask"].astype(np.int64)})  # [2, l, V]
        mask = hf["attention_mask"].astype(bool)
        np.testing.assert_allclose(ours[:, :ref.shape[1]][mask], ref[mask], atol=1e-4, rtol=0)
        # The targets are the next tokens of the rows' loss positions.
        targets, weights = np.asarray(host.targets[m]), np.asarray(host.weights[m])
        for j, r in enumerate(rows):
            ids = batch["input_ids"][r]
            expected = ids[1:][batch["loss_mask"][r][1:]]
            np.testing.assert_array_equal(targets[j][weights[j] > 0], expected)


def _rows_of(batch: dict, r: int) -> np.ndarray:
    counts = np.prod(batch["grid_thw"], axis=1)
    start = int(counts[:r].sum())
    return batch["vision_rows"][start:start + int(counts[r])]
