"""Buckets and collation: static shapes, padding, labels."""

import numpy as np
import pytest

from vtjax.data import batching, vision


def _example(length, grid, seed, with_mask=True):
    rng = np.random.default_rng(seed)
    t, h, w = grid
    ex = {
        "input_ids": rng.integers(1, 50, length).astype(np.int32),
        "patches": rng.integers(0, 256, (t * h * w, vision.ROW_SIZE), dtype=np.uint8),
        "grid_thw": np.array(grid, np.int64),
        "second_per_grid_t": 1.25,
        "record_id": f"r{seed}",
    }
    if with_mask:
        ex["loss_mask"] = np.arange(length) >= length - 3
    return ex


@pytest.mark.parametrize("side", ["right", "left"])
def test_collate_shapes_padding_and_labels(side):
    exs = [_example(70, (1, 4, 6), 0), _example(40, (2, 2, 2), 1)]
    b = batching.collate(exs, pad_id=0, padding_side=side, with_labels=True)
    assert b["input_ids"].shape == (2, 80) and b["input_ids"].dtype == np.int32
    assert b["vision_rows"].shape == (256, 1176)  # 24 + 8 rows -> bucket 256
    np.testing.assert_array_equal(b["grid_thw"], [[1, 4, 6], [2, 2, 2]])
    np.testing.assert_array_equal(b["is_image"], [False, False])
    np.testing.assert_array_equal(b["second_per_grid_ts"], [1.25, 1.25])
    assert b["attention_mask"].sum(1).tolist() == [70, 40]
    row = b["input_ids"][1]
    real = row[:40] if side == "right" else row[-40:]
    np.testing.assert_array_equal(real, exs[1]["input_ids"])
    assert (b["input_ids"][b["attention_mask"] == 0] == 0).all()
    # Labels: the ids where the loss mask is set, -100 elsewhere (padding included).
    assert (b["labels"] != batching.IGNORE_INDEX).sum() == 6
    np.testing.assert_array_equal(b["labels"][b["loss_mask"]], b["input_ids"][b["loss_mask"]])
    # Pixels: each example's rows normalised, in order, then zero rows.
    np.testing.assert_array_equal(b["vision_rows"][:24], vision.normalize_rows(exs[0]["patches"]))
    np.testing.assert_array_equal(b["vision_rows"][24:32], vision.normalize_rows(exs[1]["patches"]))
    assert not b["vision_rows"][32:].any()
    assert b["record_id"] == ["r0", "r1"]


def test_collate_explicit_buckets_and_no_labels():
    exs = [_example(10, (1, 2, 2), 0, with_mask=False)]
    b = batching.collate(exs, pad_id=7, length_buckets=[16, 32], patch_buckets=[8], with_labels=False)
    assert b["input_ids"].shape == (1, 16) and b["vision_rows"].shape == (8, 1176)
    assert "labels" not in b and (b["input_ids"][0, 10:] == 7).all()


def test_model_inputs_strips_padding_rows():
    exs = [_example(70, (1, 4, 6), 0), _example(40, (2, 2, 2), 1)]
    b = batching.collate(exs, pad_id=0, with_labels=True)
    hf, pads = batching.model_inputs(b)
    assert set(hf) == {"input_ids", "attention_mask", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts"}
    assert hf["pixel_values_videos"].shape == (32, 1176)
    np.testing.assert_array_equal(hf["pixel_values_videos"], b["vision_rows"][:32])
    assert pads == {"pad_length": 80, "pad_patches": 256}


def test_mixed_batch_splits_into_the_hf_processor_layout():
    """Rows image, video, image, video: images and videos apart, each kind in row order (hand-worked)."""
    grids = [(1, 2, 2), (2, 2, 4), (1, 4, 2), (1, 2, 2)]
    exs = [_example(20, g, i) for i, g in enumerate(grids)]
    for i in (0, 2):
        exs[i].update(is_image=True, second_per_grid_t=0.0)
    b = batching.collate(exs, pad_id=0)
    np.testing.assert_array_equal(b["is_image"], [True, False, True, False])
    hf, _ = batching.model_inputs(b)
    assert set(hf) == {"input_ids", "attention_mask", "pixel_values", "image_grid_thw", "pixel_values_videos",
                       "video_grid_thw", "second_per_grid_ts"}
    rows = [vision.normalize_rows(e["patches"]) for e in exs]  # 4, 16, 8, 4 rows
    np.testing.assert_array_equal(hf["pixel_values"], np.concatenate([rows[0], rows[2]]))
    np.testing.assert_array_equal(hf["pixel_values_videos"], np.concatenate([rows[1], rows[3]]))
    np.testing.assert_array_equal(hf["image_grid_thw"], [grids[0], grids[2]])
    np.testing.assert_array_equal(hf["video_grid_thw"], [grids[1], grids[3]])
    np.testing.assert_array_equal(hf["second_per_grid_ts"], [1.25, 1.25])
    only_images = batching.hf_vision(b["grid_thw"][[0, 2]], b["second_per_grid_ts"][[0, 2]], [True, True])
    assert set(only_images) == {"image_grid_thw"}  # no pixels asked for, no video keys
    with pytest.raises(ValueError, match="31 patch rows for grids that need 32"):
        batching.hf_vision(b["grid_thw"], b["second_per_grid_ts"], b["is_image"], b["vision_rows"][:31])
