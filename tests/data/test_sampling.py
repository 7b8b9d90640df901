"""Frame-count and index rules (qwen-vl-utils), hand-worked and swept."""

import fractions
import math

import numpy as np
import pytest

from vtjax.data import sampling


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
    # 16 frames: total budget is large, so VIDEO_MAX_PIXELS wins, then the caller's cap.
    assert sampling.frame_max_pixels(16) == 768 * 28 * 28
    assert sampling.frame_max_pixels(16, max_pixels=128 * 28 * 28) == 128 * 28 * 28
    # A small total budget spreads over the frames but never below 1.05 * min_pixels.
    assert sampling.frame_max_pixels(10, total_pixels=1_000_000) == 200_000
    assert sampling.frame_max_pixels(100, total_pixels=1_000_000) == int(128 * 28 * 28 * 1.05)
