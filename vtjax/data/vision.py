"""Qwen2.5-VL vision preprocessing: sizes, normalisation and the HF patch layout.

Everything here is numpy on the host. The row layout and `grid_thw` are the
ones `transformers`' `Qwen2VLImageProcessor` produces, so arrays built here can
be fed to the PyTorch reference and to vtjax's model alike:

    frames (T, H, W, C) -> (T/2, 2, C, H/28, 2, 14, W/28, 2, 14)
    rows ordered (t, h_block, w_block, h_in, w_in), each row (C, temporal, ph, pw)
"""

from __future__ import annotations

import math

import numpy as np

PATCH_SIZE = 14  # ViT patch side in pixels.
TEMPORAL_PATCH_SIZE = 2  # frames per temporal patch.
MERGE_SIZE = 2  # 2x2 patches merge into one LLM token.
FACTOR = PATCH_SIZE * MERGE_SIZE  # 28: every resized side is a multiple of this.
MAX_RATIO = 200  # longest/shortest side limit (both reference implementations).

# Image defaults of the published Qwen2.5-VL preprocessor_config.json (and qwen-vl-utils).
IMAGE_MIN_PIXELS = 4 * 28 * 28
IMAGE_MAX_PIXELS = 16384 * 28 * 28

# OpenAI CLIP statistics used by Qwen2-VL / Qwen2.5-VL.
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)

ROW_SIZE = 3 * TEMPORAL_PATCH_SIZE * PATCH_SIZE * PATCH_SIZE  # 1176 values per patch row.


def smart_resize(
        height: int,
        width: int,
        factor: int = FACTOR,
        min_pixels: int = IMAGE_MIN_PIXELS,
        max_pixels: int = IMAGE_MAX_PIXELS,
) -> tuple[int, int]:
    """Target (height, width): multiples of `factor`, area near [min, max], aspect kept.

    Each side is rounded to the nearest multiple (Python `round`, half to even);
    if the area is above `max_pixels` both sides shrink by sqrt(area / max) and
    floor, if below `min_pixels` both grow and ceil. Equal to transformers'
    `smart_resize` wherever that returns a valid size; like qwen-vl-utils, a
    side never drops below `factor` (transformers raises for inputs smaller than
    `factor` and can return 0 for extreme aspect ratios).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"smart_resize needs positive sides, got {height=} {width=}.")
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_RATIO:
        raise ValueError(
            f"absolute aspect ratio must be at most {MAX_RATIO}, got {ratio:.1f} for "
            f"{height}x{width}; crop or pad the input first."
        )
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def normalize(pixels_u8: np.ndarray, channel_axis: int = -1) -> np.ndarray:
    """`(x / 255 - mean) / std` per channel, float32, bit-identical to the HF processor.

    The HF processor rescales in float64, casts to float32, then normalises in
    float32; we do the same operations in the same order.
    """
    shape = [1] * pixels_u8.ndim
    shape[channel_axis] = 3
    mean = np.asarray(IMAGE_MEAN, np.float32).reshape(shape)
    std = np.asarray(IMAGE_STD, np.float32).reshape(shape)
    x = (pixels_u8.astype(np.float64) * (1 / 255)).astype(np.float32)
    return (x - mean) / std


def pad_to_even_frames(frames: np.ndarray) -> np.ndarray:
    """Repeat the last frame until T is a multiple of the temporal patch size."""
    t = frames.shape[0]
    extra = (-t) % TEMPORAL_PATCH_SIZE
    if extra == 0:
        return frames
    return np.concatenate([frames, np.repeat(frames[-1:], extra, axis=0)], axis=0)


def patchify_video_raw(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HF row layout without normalisation; dtype is kept (uint8 in, uint8 out).

    Args:
        frames: [T, H, W, 3] with H and W multiples of 28.

    Returns:
        rows [T'/2 * H/14 * W/14, 1176] and grid_thw int64 [3] = (T'/2, H/14, W/14),
        where T' is T rounded up to even by repeating the last frame.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got shape {frames.shape}.")
    _, height, width, _ = frames.shape
    if height % FACTOR or width % FACTOR:
        raise ValueError(
            f"frame size {height}x{width} is not a multiple of {FACTOR}; resize with "
            "smart_resize first (load_video does)."
        )
    frames = pad_to_even_frames(frames)
    gt = frames.shape[0] // TEMPORAL_PATCH_SIZE
    gh, gw = height // PATCH_SIZE, width // PATCH_SIZE
    m, p, tp = MERGE_SIZE, PATCH_SIZE, TEMPORAL_PATCH_SIZE
    # [T, H, W, C] -> [gt, tp, gh/m, m, p, gw/m, m, p, C]
    x = frames.reshape(gt, tp, gh // m, m, p, gw // m, m, p, 3)
    # -> [gt, gh/m, gw/m, m(h_in), m(w_in), C, tp, p(ph), p(pw)]
    x = x.transpose(0, 2, 5, 3, 6, 8, 1, 4, 7)
    rows = np.ascontiguousarray(x).reshape(gt * gh * gw, ROW_SIZE)
    return rows, np.array([gt, gh, gw], np.int64)


def normalize_rows(rows_u8: np.ndarray) -> np.ndarray:
    """Normalise raw patch rows [N, 1176]; the channel of column j is j // 392."""
    per_channel = TEMPORAL_PATCH_SIZE * PATCH_SIZE * PATCH_SIZE
    x = rows_u8.reshape(rows_u8.shape[0], 3, per_channel)  # [N, C, tp*p*p]
    return normalize(x, channel_axis=1).reshape(rows_u8.shape[0], ROW_SIZE)


def patchify_video(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames [T, H, W, 3] -> (pixel_values_videos float32 [N, 1176], grid_thw [1, 3]).

    H and W must already be multiples of 28 (`load_video` resizes). Odd T
    repeats the last frame, as the HF processor does.
    """
    rows, grid = patchify_video_raw(frames)
    return normalize_rows(rows), grid[None]


def patchify_image(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 image [H, W, 3] -> (pixel_values float32 [N, 1176], image_grid_thw [1, 3]).

    An image is a one-frame video whose frame is repeated to fill the temporal
    patch, exactly as the HF image processor does; grid_t is 1.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be [H, W, 3], got shape {image.shape}.")
    return patchify_video(image[None])


def second_per_grid_t(sample_fps: float) -> float:
    """Seconds covered by one temporal patch: temporal_patch_size / fps of the sampled frames."""
    if sample_fps <= 0:
        raise ValueError(f"sample_fps must be positive, got {sample_fps}.")
    return TEMPORAL_PATCH_SIZE / sample_fps


def num_vision_tokens(grid_thw) -> int:
    """LLM tokens for one grid after the 2x2 merge: t * h * w / 4."""
    t, h, w = (int(v) for v in grid_thw)
    return t * h * w // (MERGE_SIZE * MERGE_SIZE)
