"""Which frames to read and how large to make them: qwen-vl-utils' video rules.

Pure functions of the video's frame count and fps, tested against hand-worked
values; `load_video` applies them. The module constants are upstream
qwen-vl-utils'; Video-R1 (tulerfeng/Video-R1 @59d65c3, the stack Video-Thinker
follows) vendors the same code with the `VIDEO_R1_*` values below, which
vtjax's 7B configs use.
"""

from __future__ import annotations

import math

import numpy as np

FRAME_FACTOR = 2  # sampled frame counts are multiples of the temporal patch size.
FPS = 2.0  # default sampling rate.
FPS_MIN_FRAMES = 4
FPS_MAX_FRAMES = 768
VIDEO_MIN_PIXELS = 128 * 28 * 28  # per-frame pixel floor.
VIDEO_MAX_PIXELS = 768 * 28 * 28  # per-frame pixel ceiling.
# Whole-video pixel budget; qwen-vl-utils' default (its VIDEO_MAX_PIXELS env var), 90% of 128k tokens.
VIDEO_TOTAL_PIXELS = int(128000 * 28 * 28 * 0.9)
MIN_PIXELS_SLACK = 1.05  # the per-frame ceiling never drops below int(min_pixels * 1.05)

# Video-R1's vendored qwen-vl-utils: 2 fps, 4..16 frames, every frame at 128*28*28 pixels (+5%).
VIDEO_R1_MAX_FRAMES = 16
VIDEO_R1_MIN_PIXELS = 128 * 28 * 28
VIDEO_R1_MAX_PIXELS = 128 * 28 * 28


def _round_to(x: float, k: int) -> int:
    return round(x / k) * k  # Python round: half to even, as the reference.


def _ceil_to(x: float, k: int) -> int:
    return math.ceil(x / k) * k


def _floor_to(x: float, k: int) -> int:
    return math.floor(x / k) * k


def smart_nframes(
    total_frames: int,
    video_fps: float,
    *,
    nframes: int | None = None,
    fps: float = FPS,
    min_frames: int = FPS_MIN_FRAMES,
    max_frames: int = FPS_MAX_FRAMES,
) -> int:
    """Number of frames to sample from a video of `total_frames` at `video_fps`.

    With `nframes`: that count rounded to a multiple of 2. Otherwise
    `total_frames / video_fps * fps`, clamped to [min_frames (ceil to 2),
    max_frames (floor to 2)] and to `total_frames`, then floored to a multiple
    of 2. Raises ValueError when the result is not in [2, total_frames] (the
    video is too short for the request).
    """
    if nframes is not None:
        n = _round_to(nframes, FRAME_FACTOR)
    else:
        lo = _ceil_to(min_frames, FRAME_FACTOR)
        hi = _floor_to(min(max_frames, total_frames), FRAME_FACTOR)
        n = total_frames / video_fps * fps
        n = min(max(n, lo), hi, total_frames)
        n = _floor_to(n, FRAME_FACTOR)
    if not FRAME_FACTOR <= n <= total_frames:
        raise ValueError(
            f"cannot sample {n} frames from a video with {total_frames} frames "
            f"(need {FRAME_FACTOR} <= nframes <= total frames); ask for fewer frames "
            "or drop the video."
        )
    return int(n)


def frame_indices(total_frames: int, n: int) -> np.ndarray:
    """Uniform indices `linspace(0, total - 1, n).round()` (half to even), int64 [n]."""
    return np.round(np.linspace(0, total_frames - 1, n)).astype(np.int64)


def sample_fps(n: int, total_frames: int, video_fps: float) -> float:
    """Frame rate of the sampled frames: n / total * video_fps."""
    return n / max(total_frames, 1e-6) * video_fps


def frame_max_pixels(
    n: int,
    *,
    min_pixels: int = VIDEO_MIN_PIXELS,
    max_pixels: int | None = None,
    total_pixels: int = VIDEO_TOTAL_PIXELS,
) -> float:
    """Per-frame pixel ceiling for `n` sampled frames.

    `max(min(max_pixels, total_pixels / n * 2), int(min_pixels * 1.05))`, where
    `max_pixels` plays qwen-vl-utils' VIDEO_MAX_PIXELS (None: upstream's
    768*28*28). The floor wins over `max_pixels`: with Video-R1's min = max =
    128*28*28 every frame may hold 105,369 pixels (a 480x640 frame -> 280x364).
    """
    ceiling = VIDEO_MAX_PIXELS if max_pixels is None else max_pixels
    return max(min(ceiling, total_pixels / n * FRAME_FACTOR), int(min_pixels * MIN_PIXELS_SLACK))
