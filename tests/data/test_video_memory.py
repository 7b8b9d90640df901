"""Decoding holds one full-resolution frame at a time: peak memory of a 4000x3000 video vs a 400x300 one."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from vtjax.data import resize, video

from .conftest import write_video

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A fresh interpreter that imports what a training data process imports (the grain pipeline,
# hence jax), decodes one video with the default backend at Video-Thinker's pixel budget, and
# prints its peak RSS (VmHWM) before and after.
_CHILD = r"""
import json, sys
import vtjax.data.pipeline
from vtjax.data import video

def hwm_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM"))

base = hwm_mb()
frames, _ = video.load_video(sys.argv[1], nframes=4, max_pixels=128 * 28 * 28)
print(json.dumps({"baseline_mb": base, "peak_mb": hwm_mb(), "shape": list(frames.shape)}))
"""


def _peak(path):
    out = subprocess.run([sys.executable, "-c", _CHILD, path], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM from /proc")
def test_a_4000x3000_video_costs_little_more_than_a_400x300_one(tmp_path):
    fast = {"preset": "ultrafast"}  # no B-frames, one reference frame: the decoder's own state stays small
    big = write_video(tmp_path / "big.mp4", frames=4, fps=2, width=4000, height=3000, codec_options=fast)
    small = write_video(tmp_path / "small.mp4", frames=4, fps=2, width=400, height=300, codec_options=fast)
    b, s = _peak(big), _peak(small)
    assert b["shape"] == s["shape"] == [4, 280, 364, 3]  # same budget (1.05 * 128*28*28), same aspect: same output
    # One 4000x3000 RGB frame is 36 MB; decoding all 4 before resizing (in float32 too) cost ~2.5x.
    assert b["peak_mb"] <= 1.5 * s["peak_mb"], (b, s)


@pytest.mark.parametrize("budget", [(28 * 28, 56 * 84), (128 * 28 * 28, 256 * 28 * 28)])  # shrink; grow
def test_frame_by_frame_resize_equals_resizing_the_whole_stack(video_factory, budget):
    path = video_factory("odd_size.mp4", frames=30, fps=15, width=100, height=58)
    raw, _, _ = video.read_frames(path, nframes=6, backend="pyav")
    min_pixels, max_pixels = budget
    frames, _ = video.load_video(path, nframes=6, min_pixels=min_pixels, max_pixels=max_pixels, backend="pyav")
    assert frames.shape[0] == 6 and frames.shape[1:3] != raw.shape[1:3]
    np.testing.assert_array_equal(frames, resize.resize_bicubic_antialias(raw, *frames.shape[1:3]))


def test_resize_in_column_strips_is_exact(monkeypatch):
    frames = np.random.default_rng(0).integers(0, 256, (2, 90, 70, 3), dtype=np.uint8)
    whole = resize.resize_bicubic_antialias(frames, 28, 56)
    monkeypatch.setattr(resize, "_CHUNK_FLOATS", 7 * 90)  # 7 columns per strip
    np.testing.assert_array_equal(resize.resize_bicubic_antialias(frames, 28, 56), whole)


def test_default_backend_is_pyav():
    assert video.default_backend() == "pyav"
