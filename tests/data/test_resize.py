"""Bicubic antialiased resize against torch's interpolate (what torchvision's tensor resize runs)."""

import numpy as np
import pytest

from vtjax.data import resize

torch = pytest.importorskip("torch")


def _torchvision_like(frames, h, w):
    # torchvision F.resize on uint8: float32 interpolate, clamp, round half-even, cast.
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    y = torch.nn.functional.interpolate(x, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
    return y.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _frames(seed, t, h, w):
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)
    ramp = np.broadcast_to(np.linspace(0, 255, w, dtype=np.float32)[None, None, :, None], (t, h, w, 3))
    noise[0] = ramp[0].astype(np.uint8)  # one smooth frame, one noisy
    return noise


@pytest.mark.parametrize(
    "h,w,oh,ow",
    [(480, 854, 224, 420), (64, 96, 28, 56), (57, 113, 56, 112), (30, 30, 56, 28), (100, 60, 140, 84), (33, 200, 28, 28)],
)
def test_matches_torch_within_rounding(h, w, oh, ow):
    frames = _frames(h * w, 2, h, w)
    ours = resize.resize_bicubic_antialias(frames, oh, ow)
    ref = _torchvision_like(frames, oh, ow)
    assert ours.shape == ref.shape == (2, oh, ow, 3) and ours.dtype == np.uint8
    diff = np.abs(ours.astype(np.int16) - ref)
    # Float32 summation order differs; only values on a .5 boundary may land one level apart.
    assert diff.max() <= 1
    assert (diff[1] > 0).mean() < 1e-3  # noise frame
    assert (diff[0] > 0).mean() < 1e-2  # linear ramp: many outputs sit exactly on x.5


def test_weights_are_a_partition_of_unity_and_cover_the_window():
    index, weight = resize.resample_taps(854, 420)
    np.testing.assert_allclose(weight.sum(axis=1), 1.0, rtol=1e-6)
    assert index.min() == 0 and index.max() == 853
    # Downscaling by ~2.03 stretches the 4-tap cubic to ~8-9 taps.
    assert index.shape[1] in (9, 10)


def test_same_size_is_identity():
    frames = _frames(0, 1, 28, 56)
    assert resize.resize_bicubic_antialias(frames, 28, 56) is frames
