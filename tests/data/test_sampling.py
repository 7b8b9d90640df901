"""Frame-count, index and pixel-budget rules (qwen-vl-utils, Video-R1's vendored copy), hand-worked and swept."""

import dataclasses
import fractions
import math
import os

import numpy as np
import pytest

from tests.data.conftest import write_video
from vtjax import main
from vtjax.data import examples, sampling, video

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize(
    "total,video_fps,kwargs,expected",
    [
        (300, 30.0, {}, 20),  # 10 s at 2 fps
        (300, 30.0, {"nframes": 16}, 16),
        (300, 30.0, {"nframes": 15}, 16),  # 7.5 -> 8 (half to even) -> 16
        (300, 30.0, {"nframes": 13}, 12),  # 6.5 -> 6 -> 12
        (30, 30.0, {}, 4),  # 1 s: 2 frames, raised to min_frames 4
        (5, 30.0, {}, 4),  # min 4 <= 5 frames; floor to even
        (3, 30.0, {}, 2),  # clamped to 3 frames, floored to 2
        (20000, 10.0, {}, 768),  # 4000 at 2 fps, capped by max_frames
        (301, 30.0, {"fps": 1.0}, 10),  # 10.03 -> 10
        (300, 30.0, {"fps": 1.0, "min_frames": 5}, 10),
        (300, 30.0, {"fps": 0.1, "min_frames": 5}, 6),  # min 5 ceil to 6
        (300, 30.0, {"fps": 8.0, "max_frames": 33}, 32),  # max 33 floor to 32
    ],
)
def test_smart_nframes_hand_worked(total, video_fps, kwargs, expected):
    assert sampling.smart_nframes(total, video_fps, **kwargs) == expected


@pytest.mark.parametrize("total,kwargs", [(10, {"nframes": 16}), (1, {}), (300, {"nframes": 1})])
def test_smart_nframes_too_few_frames(total, kwargs):
    with pytest.raises(ValueError, match="cannot sample"):
        sampling.smart_nframes(total, 30.0, **kwargs)


def _reference_nframes(total, video_fps, nframes, fps):
    """The same rules in exact rational arithmetic, written independently."""
    if nframes is not None:
        q = fractions.Fraction(nframes, 2)
        n = 2 * round(q)  # Fraction rounds half to even
    else:
        lo, hi = 4, 2 * (min(768, total) // 2)
        want = fractions.Fraction(total) / fractions.Fraction(video_fps) * fractions.Fraction(fps)
        want = min(max(want, lo), hi, total)
        n = 2 * math.floor(want / 2)
    return n if 2 <= n <= total else None


def test_nframes_and_indices_sweep():
    # Indices are computed exactly (float64); qwen-vl-utils calls torch's float32 linspace, which
    # agrees up to ~18k-frame videos and can differ by one index beyond (see docs/data.md).
    torch = pytest.importorskip("torch")
    checked = 0
    for total in [2, 3, 4, 7, 16, 31, 60, 61, 89, 150, 299, 900, 1801, 5400, 9001]:
        for video_fps in [23.976, 24.0, 25.0, 29.97, 30.0, 60.0]:
            for nframes, fps in [(None, 2.0), (None, 1.0), (None, 0.5), (16, 2.0), (32, 2.0), (64, 2.0), (7, 2.0)]:
                ref = _reference_nframes(total, fractions.Fraction(video_fps).limit_denominator(1001), nframes, fps)
                if ref is None:
                    with pytest.raises(ValueError):
                        sampling.smart_nframes(total, video_fps, nframes=nframes, fps=fps)
                    continue
                n = sampling.smart_nframes(total, video_fps, nframes=nframes, fps=fps)
                assert n == ref, (total, video_fps, nframes, fps)
                idx = sampling.frame_indices(total, n)
                expected = torch.linspace(0, total - 1, n).round().long().numpy()  # qwen-vl-utils' call
                np.testing.assert_array_equal(idx, expected)
                assert sampling.sample_fps(n, total, video_fps) == pytest.approx(n / total * video_fps)
                checked += 1
    assert checked > 400


def test_indices_hand_worked():
    np.testing.assert_array_equal(sampling.frame_indices(10, 4), [0, 3, 6, 9])
    np.testing.assert_array_equal(sampling.frame_indices(4, 3), [0, 2, 3])  # 1.5 -> 2 (half to even)
    np.testing.assert_array_equal(sampling.frame_indices(6, 3), [0, 2, 5])  # 2.5 -> 2


def test_frame_max_pixels():
    # 16 frames: the total budget is large, so the VIDEO_MAX_PIXELS role (default upstream 768*28*28) wins.
    assert sampling.frame_max_pixels(16) == 768 * 28 * 28
    assert sampling.frame_max_pixels(16, max_pixels=200_000) == 200_000
    # Video-R1: min = max = 128*28*28 = 100352 -> the floor int(100352 * 1.05) = 105369 wins over max.
    assert sampling.frame_max_pixels(16, min_pixels=100352, max_pixels=100352) == 105369
    assert sampling.frame_max_pixels(2, min_pixels=100352, max_pixels=100352) == 105369
    # A max a little above the floor stays; one below it is raised to the floor.
    assert sampling.frame_max_pixels(16, min_pixels=100352, max_pixels=105370) == 105370
    assert sampling.frame_max_pixels(16, min_pixels=28 * 28, max_pixels=56 * 84) == 4704  # floor 823 < 4704
    # A small total budget spreads over the frames but never below 1.05 * min_pixels.
    assert sampling.frame_max_pixels(10, total_pixels=1_000_000) == 200_000
    assert sampling.frame_max_pixels(100, total_pixels=1_000_000) == int(128 * 28 * 28 * 1.05)


# Video-R1's vendored qwen-vl-utils: fps 2, min 4, max 16 (floor to even), each case worked by hand.
@pytest.mark.parametrize(
    "total,video_fps,expected",
    [
        (150, 30.0, 10),  # 5 s: 10 frames
        (125, 25.0, 10),  # 5 s at 25 fps: 10
        (147, 30.0, 8),  # 4.9 s: 9.8 -> floor to even 8
        (240, 30.0, 16),  # 8 s: exactly 16
        (255, 30.0, 16),  # 8.5 s: 17 -> capped at 16
        (18000, 30.0, 16),  # 10 min: capped at 16
        (30, 30.0, 4),  # 1 s: 2 -> raised to 4
        (7, 30.0, 4),  # 7 frames: raised to 4 (<= 7)
        (5, 30.0, 4),  # 5 frames: 4
        (3, 30.0, 2),  # 3 frames: clamped to 3, floored to 2
        (165, 30.0, 10),  # 5.5 s: 11 -> 10
        (180, 30.0, 12),  # 6 s: 12
        (100, 10.0, 16),  # 10 s at 10 fps: 20 -> 16
        (14, 2.0, 14),  # 7 s at 2 fps: 14 = every frame
        (15, 2.0, 14),  # 7.5 s at 2 fps: 15 -> 14
    ],
)
def test_video_r1_frame_counts(total, video_fps, expected):
    n = sampling.smart_nframes(total, video_fps, fps=2.0, min_frames=4, max_frames=sampling.VIDEO_R1_MAX_FRAMES)
    assert n == expected


CONFIGS = ["configs/qwen2_5_vl_7b_sft.py", "configs/qwen2_5_vl_7b_grpo.py", "configs/qwen2_5_vl_7b_eval.py"]


@pytest.fixture(scope="module")
def clip_5s_480x640(tmp_path_factory):
    fast = {"preset": "ultrafast"}
    path = tmp_path_factory.mktemp("clips") / "five_seconds.mp4"
    return write_video(path, frames=150, fps=30, width=640, height=480, codec_options=fast)


@pytest.mark.parametrize("config_path", CONFIGS)
def test_default_7b_configs_sample_like_video_r1(config_path, clip_5s_480x640):
    """5 s at 30 fps -> 10 frames; 480x640 -> 280x364 (the 1.05 floor: 252x364 without it)."""
    config = main.load_config_file(os.path.join(REPO, config_path))
    opts = examples.VideoOptions.from_config(config.data)
    assert opts.nframes is None and (opts.fps, opts.min_frames, opts.max_frames) == (2.0, 4, 16)
    assert examples.VideoOptions() == dataclasses.replace(opts, backend=None, threads=1)  # the defaults agree
    frames, sample_fps = video.load_video(
        clip_5s_480x640, nframes=opts.nframes, fps=opts.fps, min_frames=opts.min_frames,
        max_frames=opts.max_frames, min_pixels=opts.min_pixels, max_pixels=opts.max_pixels,
        total_pixels=opts.total_pixels,
    )
    assert frames.shape == (10, 280, 364, 3)
    assert sample_fps == pytest.approx(10 / 150 * 30)


def test_nframes_stays_an_option(clip_5s_480x640):
    config = main.load_config_file(os.path.join(REPO, CONFIGS[0]))
    config.data.nframes = 16
    opts = examples.VideoOptions.from_config(config.data)
    frames, _ = video.load_video(clip_5s_480x640, nframes=opts.nframes, min_pixels=opts.min_pixels,
                                 max_pixels=opts.max_pixels)
    assert frames.shape == (16, 280, 364, 3)
