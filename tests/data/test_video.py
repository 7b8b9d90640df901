"""load_video: decord and PyAV agree frame for frame; sampling; resizing; bad files."""

import os

import numpy as np
import pytest

from vtjax.data import resize, sampling, video

decord = pytest.importorskip("decord")

ENCODINGS = {
    "short": dict(frames=24, fps=12),
    "gop5_bframes": dict(frames=90, fps=30, gop=5, bframes=2),
    "long_gop": dict(frames=150, fps=25, gop=250),
    "mpeg4": dict(frames=40, fps=20, gop=8, codec="mpeg4"),
    "odd_size": dict(frames=30, fps=15, width=100, height=58),
    "mkv": dict(frames=40, fps=25, gop=10, ext=".mkv"),  # no frame count in the header
    "webm_vp9": dict(frames=20, fps=10, codec="libvpx-vp9", ext=".webm"),
}


def _make(video_factory, name):
    spec = dict(ENCODINGS[name])
    return video_factory(name + spec.pop("ext", ".mp4"), **spec)


@pytest.mark.parametrize("name", sorted(ENCODINGS))
@pytest.mark.parametrize("nframes", [4, 16, None])
def test_backends_return_identical_frames(video_factory, name, nframes):
    path = _make(video_factory, name)
    a, ia, fa = video.read_frames(path, nframes=nframes, backend="decord")
    b, ib, fb = video.read_frames(path, nframes=nframes, backend="pyav")
    np.testing.assert_array_equal(ia, ib)
    assert fa == fb
    assert a.dtype == b.dtype == np.uint8 and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def test_indices_and_fps_follow_the_formula(video_factory):
    spec = ENCODINGS["gop5_bframes"]
    path = video_factory("gop5_bframes.mp4", **spec)
    total, fps = spec["frames"], spec["fps"]
    for kwargs in [{"nframes": 16}, {"nframes": 7}, {"fps": 2.0}, {"fps": 1.0, "min_frames": 8}]:
        _, idx, sfps = video.read_frames(path, backend="pyav", **kwargs)
        n = sampling.smart_nframes(total, fps, **kwargs)
        np.testing.assert_array_equal(idx, np.round(np.linspace(0, total - 1, n)))
        assert sfps == pytest.approx(n / total * fps)


def test_sampled_frames_are_the_right_frames(video_factory):
    # Decode everything sequentially with PyAV and pick by index: the seeking reader must agree.
    import av

    path = video_factory("gop5_bframes.mp4", **ENCODINGS["gop5_bframes"])
    with av.open(path) as c:
        every = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    frames, idx, _ = video.read_frames(path, nframes=16, backend="pyav")
    np.testing.assert_array_equal(frames, every[idx])


def test_pyav_decodes_only_what_the_samples_need(video_factory):
    path = video_factory("gop5_long.mp4", frames=300, fps=30, gop=5)
    reader = video._PyAVReader(path, threads=1)
    try:
        frames = list(reader.iter_frames(sampling.frame_indices(300, 4)))
        assert len(frames) == 4 and frames[0].shape == (64, 96, 3)
        # 4 samples, each at most one 5-frame GOP away from a keyframe.
        assert reader.frames_decoded <= 4 * 5 + 4
    finally:
        reader.close()


def test_load_video_resizes_with_the_frame_budget(video_factory):
    path = video_factory("odd_size.mp4", **ENCODINGS["odd_size"])
    raw, _, _ = video.read_frames(path, nframes=4, backend="pyav")
    frames, sfps = video.load_video(path, nframes=4, min_pixels=28 * 28, max_pixels=56 * 84, backend="pyav")
    # 58x100 with max 56*84 pixels: rounded 56x112 is too large; beta = sqrt(5800/4704),
    # floor(58/1.110/28)*28 = 28 and floor(100/1.110/28)*28 = 84.
    assert frames.shape == (4, 28, 84, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, resize.resize_bicubic_antialias(raw, 28, 84))
    assert sfps == pytest.approx(4 / 30 * 15)


def test_load_video_default_frame_budget(video_factory):
    path = video_factory("short.mp4", **ENCODINGS["short"])
    frames, _ = video.load_video(path, fps=2.0)  # 2 s at 2 fps -> 4 frames
    # Default min_pixels = 128*28*28 forces an upscale of the 64x96 clip: beta = sqrt(100352 / 6144)
    # = 4.04, ceil(64*4.04/28) = 10 -> 280, ceil(96*4.04/28) = 14 -> 392.
    assert frames.shape == (4, 280, 392, 3)
    assert video.default_backend() == "pyav" and video.decord_installed()
    np.testing.assert_array_equal(video.load_video(path, fps=2.0, backend="decord")[0], frames)


@pytest.fixture(scope="module")
def bad_files(video_factory, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    good = video_factory("short.mp4", **ENCODINGS["short"])
    data = open(good, "rb").read()
    (root / "empty.mp4").write_bytes(b"")
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    indexed = open(video_factory("faststart.mp4", frames=120, fps=30, faststart=True), "rb").read()
    (root / "truncated_indexed.mp4").write_bytes(indexed[: len(indexed) // 2])  # index intact, frames cut
    (root / "garbage.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return {
        "missing": os.fspath(root / "missing.mp4"),
        "empty": os.fspath(root / "empty.mp4"),
        "truncated": os.fspath(root / "truncated.mp4"),
        "truncated_indexed": os.fspath(root / "truncated_indexed.mp4"),
        "garbage": os.fspath(root / "garbage.mp4"),
        "too_short": good,  # 24 frames, 32 requested
    }


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize(
    "kind,message",
    [
        ("missing", "file not found"),
        ("empty", "empty"),
        ("truncated", "could not decode"),
        ("truncated_indexed", "could not decode"),
        ("garbage", "could not decode"),
        ("too_short", "too few frames"),
    ],
)
def test_bad_videos_raise_video_error(bad_files, backend, kind, message):
    with pytest.raises(video.VideoError, match=message) as info:
        video.load_video(bad_files[kind], nframes=32, backend=backend)
    assert info.value.path == bad_files[kind]


def test_unknown_backend():
    with pytest.raises(ValueError, match="not one of"):
        video._open("x.mp4", "opencv", 1)
