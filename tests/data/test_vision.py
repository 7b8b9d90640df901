"""smart_resize and the patch layout against transformers 4.51.3's Qwen2-VL image processor."""

import itertools

import numpy as np
import pytest

from vtjax.data import vision

hf_ip = pytest.importorskip("transformers.models.qwen2_vl.image_processing_qwen2_vl")

SIDES = [28, 29, 41, 42, 55, 56, 57, 70, 100, 111, 224, 239, 240, 360, 479, 480, 720, 854, 1080, 1920, 3840]
BUDGETS = [
    (4 * 28 * 28, 16384 * 28 * 28),  # Qwen2.5-VL image defaults
    (56 * 56, 28 * 28 * 1280),  # transformers class defaults
    (128 * 28 * 28, 128 * 28 * 28),  # Video-Thinker frames: min == max
    (128 * 28 * 28, 768 * 28 * 28),  # qwen-vl-utils video defaults
    (16 * 28 * 28, 64 * 28 * 28),
]


def test_smart_resize_matches_transformers_sweep():
    compared = 0
    for (h, w), (lo, hi) in itertools.product(itertools.product(SIDES, SIDES), BUDGETS):
        if max(h, w) / min(h, w) > 200:
            continue
        ref = hf_ip.smart_resize(h, w, factor=28, min_pixels=lo, max_pixels=hi)
        if min(ref) == 0:  # transformers can floor a side to 0; we keep 28 (see docstring)
            assert min(vision.smart_resize(h, w, min_pixels=lo, max_pixels=hi)) == 28
            continue
        assert vision.smart_resize(h, w, min_pixels=lo, max_pixels=hi) == ref, (h, w, lo, hi)
        compared += 1
    assert compared > 2000


@pytest.mark.parametrize("h,w", [(28, 5600), (5600, 28), (30, 6000), (100, 19999)])
def test_smart_resize_aspect_ratio_edge(h, w):
    ours_ok = max(h, w) / min(h, w) <= 200
    if ours_ok:
        assert vision.smart_resize(h, w, max_pixels=10**9) == hf_ip.smart_resize(h, w, max_pixels=10**9)
    else:
        with pytest.raises(ValueError, match="aspect ratio"):
            vision.smart_resize(h, w)
        with pytest.raises(ValueError, match="aspect ratio"):
            hf_ip.smart_resize(h, w)


def test_smart_resize_hand_worked():
    # 480x854 at 128*28*28: rounded 476x840 is too large; beta = sqrt(480*854/100352) = 2.0211,
    # floor(480/2.0211/28) = 8 -> 224, floor(854/2.0211/28) = 15 -> 420.
    assert vision.smart_resize(480, 854, min_pixels=128 * 784, max_pixels=128 * 784) == (224, 420)
    # Half-to-even rounding: 42/28 = 1.5 -> 2 (56), 70/28 = 2.5 -> 2 (56).
    assert vision.smart_resize(42, 70, min_pixels=1, max_pixels=10**9) == (56, 56)
    # Smaller than the factor: qwen-vl-utils semantics, scaled up to the floor.
    assert vision.smart_resize(10, 20, min_pixels=56 * 56, max_pixels=10**9) == (56, 84)


def _hf_processor():
    return hf_ip.Qwen2VLImageProcessor()


@pytest.mark.parametrize("t,h,w", [(4, 56, 84), (3, 112, 56), (2, 28, 112), (16, 84, 140)])
def test_patchify_video_matches_hf(t, h, w):
    frames = np.random.default_rng(t * h + w).integers(0, 256, (t, h, w, 3), dtype=np.uint8)
    ref = _hf_processor()(images=None, videos=[frames], return_tensors="np")
    values, grid = vision.patchify_video(frames)
    np.testing.assert_array_equal(grid, ref["video_grid_thw"])
    assert values.shape == ref["pixel_values_videos"].shape == (grid.prod(), 1176)
    np.testing.assert_allclose(values, ref["pixel_values_videos"], atol=1e-6, rtol=0)


def test_patchify_image_matches_hf():
    image = np.random.default_rng(7).integers(0, 256, (84, 112, 3), dtype=np.uint8)
    ref = _hf_processor()(images=[image], return_tensors="np")
    values, grid = vision.patchify_image(image)
    np.testing.assert_array_equal(grid, ref["image_grid_thw"])
    assert tuple(grid[0]) == (1, 6, 8)
    np.testing.assert_allclose(values, ref["pixel_values"], atol=1e-6, rtol=0)


def test_raw_layout_then_normalise_equals_patchify():
    frames = np.random.default_rng(1).integers(0, 256, (5, 56, 56, 3), dtype=np.uint8)
    rows, grid = vision.patchify_video_raw(frames)
    assert rows.dtype == np.uint8 and tuple(grid) == (3, 4, 4)
    np.testing.assert_array_equal(vision.normalize_rows(rows), vision.patchify_video(frames)[0])


def test_patch_row_order_hand_worked():
    # One temporal patch of 28x28: four 14x14 patches in the order (h_in, w_in) = 00, 01, 10, 11;
    # within a row, channel-major then frame then pixel.
    frames = np.zeros((2, 28, 28, 3), np.uint8)
    frames[1, 14:, :14, 2] = 7  # frame 1, bottom-left patch, blue
    rows, _ = vision.patchify_video_raw(frames)
    nonzero = np.argwhere(rows)
    assert set(nonzero[:, 0]) == {2}  # third patch row: h_in=1, w_in=0
    cols = nonzero[:, 1]
    assert cols.min() == 2 * 392 + 196 and cols.max() == 3 * 392 - 1  # channel 2, frame 1


def test_odd_frames_repeat_last_and_bad_sizes_refused():
    frames = np.random.default_rng(2).integers(0, 256, (3, 28, 56, 3), dtype=np.uint8)
    padded = vision.pad_to_even_frames(frames)
    assert padded.shape[0] == 4 and np.array_equal(padded[3], frames[2])
    with pytest.raises(ValueError, match="multiple of 28"):
        vision.patchify_video(np.zeros((2, 30, 28, 3), np.uint8))


def test_second_per_grid_t_and_tokens():
    assert vision.second_per_grid_t(2.0) == 1.0
    assert vision.second_per_grid_t(0.5) == 4.0
    assert vision.num_vision_tokens((8, 16, 30)) == 960
