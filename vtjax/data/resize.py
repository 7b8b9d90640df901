"""Bicubic resize with antialiasing, as torchvision's tensor `resize` does it.

qwen-vl-utils resizes uint8 video frames with
`torchvision.transforms.functional.resize(..., BICUBIC, antialias=True)`:
the frames are cast to float32, resampled by `torch.nn.functional.interpolate`
(mode="bicubic", antialias=True, align_corners=False), clamped to [0, 255] and
rounded half-to-even back to uint8. The antialiased kernel is PIL's: Keys'
cubic with a = -0.5, stretched by the downscale factor so every input pixel
contributes. We build the per-axis weights in numpy and apply them as sparse
matrices (a 480p -> 224p pass touches ~9 inputs per output). Results equal
torchvision's up to float32 summation order: at most 1 grey level, on a few
pixels in ten thousand that sit on a rounding boundary.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

_CUBIC_A = -0.5  # Keys' coefficient used by PIL and torch's antialiased bicubic.
_CHUNK_FLOATS = 1 << 20  # float32 values converted at once in the vertical pass (4 MiB)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel, support [-2, 2], in float32."""
    x = np.abs(x).astype(np.float32)
    a = np.float32(_CUBIC_A)
    near = ((a + 2) * x - (a + 3)) * x * x + 1  # |x| < 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # 1 <= |x| < 2
    return np.where(x < 1, near, np.where(x < 2, far, np.float32(0))).astype(np.float32)


def resample_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-output input indices and weights for one axis.

    Follows the reference's float32 arithmetic (scale, centre and weights are
    float32, the +0.5 offsets float64), which keeps rounding-boundary
    disagreements ten times rarer than float64 weights would.

    Returns:
      index int64 [out_size, K] and weight float32 [out_size, K]; taps past an
      output's window have weight 0 and a valid (clamped) index.
    """
    f32 = np.float32
    scale = f32(in_size) / f32(out_size)
    invscale = f32(1) / scale if scale >= 1 else f32(1)
    support = f32(2) * scale if scale >= 1 else f32(2)  # cubic radius, stretched when shrinking
    centers = (np.float64(scale) * (np.arange(out_size) + 0.5)).astype(f32)  # [O]
    # int() truncation toward zero, as the reference does, then clamp to the image.
    start = np.maximum(np.trunc(centers - np.float64(support) + 0.5), 0).astype(np.int64)  # [O]
    stop = np.minimum(np.trunc(centers + np.float64(support) + 0.5), in_size).astype(np.int64)  # [O]
    taps = int((stop - start).max())
    index = start[:, None] + np.arange(taps)[None, :]  # [O, K]
    offset = (index - centers[:, None]).astype(f32).astype(np.float64) + 0.5  # [O, K]
    weight = _cubic((offset * np.float64(invscale)).astype(f32)) * (index < stop[:, None])
    total = np.zeros(out_size, f32)
    for k in range(taps):  # sequential float32 sum, as the reference normalises
        total = total + weight[:, k]
    return np.minimum(index, in_size - 1), (weight / total[:, None]).astype(f32)


def _axis_matrix(in_size: int, out_size: int) -> scipy.sparse.csr_matrix:
    """Sparse [out_size, in_size] resampling matrix for one axis."""
    index, weight = resample_taps(in_size, out_size)
    rows = np.repeat(np.arange(out_size), index.shape[1])
    # Duplicate (clamped) indices carry weight 0, so summing duplicates is harmless.
    return scipy.sparse.csr_matrix(
        (weight.ravel(), (rows, index.ravel())), shape=(out_size, in_size)
    )


def resize_bicubic_antialias(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resizes uint8 frames [T, H, W, C] to [T, height, width, C] (uint8).

    Vertical pass, then horizontal, in float32 sparse matmuls; then clamp and
    round half to even, like torchvision on uint8 tensors. The vertical pass
    converts a strip of columns at a time, so a large frame is never held in
    float32 (each output is the same ordered sum either way).
    """
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise TypeError(
            f"resize_bicubic_antialias expects uint8 [T, H, W, C], got {frames.dtype} {frames.shape}."
        )
    t, h, w, c = frames.shape
    if (h, w) == (height, width):
        return frames
    x = frames
    if h != height:
        mh = _axis_matrix(h, height)
        step = max(1, _CHUNK_FLOATS // h)  # columns per strip
        xh = np.empty((t, height, w * c), np.float32)
        for i, f in enumerate(x):
            f = f.reshape(h, w * c)
            for j in range(0, w * c, step):
                # [height, h] @ [h, step] -> [height, step]
                xh[i, :, j : j + step] = mh @ f[:, j : j + step].astype(np.float32)
        x = xh.reshape(t, height, w, c)
    if w != width:
        mw = _axis_matrix(w, width)
        xw = np.ascontiguousarray(x.transpose(2, 0, 1, 3)).reshape(w, -1)  # [w, t*height*c]
        xw = (mw @ xw.astype(np.float32, copy=False)).reshape(width, t, height, c)
        x = xw.transpose(1, 2, 0, 3)  # [t, height, width, c]
    return np.round(np.clip(x, 0, 255)).astype(np.uint8)
