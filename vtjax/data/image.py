"""`load_image`: read and size an image record's file the way qwen-vl-utils' `fetch_image` does.

Video-R1 (@59d65c3) trains on image records through its vendored
qwen-vl-utils: the file is opened with Pillow, RGBA is composited onto white
(other modes converted to RGB), the size comes from `smart_resize` with
min_pixels 4*28*28 and max_pixels 256*28*28, and Pillow's `resize` (bicubic,
antialiased, on uint8) makes the pixels. The HF image processor that follows
sees a size that is already a multiple of 28, so it does not resample again.
We call the same Pillow functions, so the pixels are the reference's.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, UnidentifiedImageError

from vtjax import errors
from vtjax.data import vision

# Video-R1's vendored qwen-vl-utils (MIN_PIXELS, MAX_PIXELS); upstream's ceiling is 16384*28*28.
VIDEO_R1_IMAGE_MIN_PIXELS = 4 * 28 * 28
VIDEO_R1_IMAGE_MAX_PIXELS = 256 * 28 * 28


class ImageError(errors.DataError):
    """An image that cannot be used: missing, unreadable, or of an unusable size."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy; transparent pixels of an RGBA image become white, as qwen-vl-utils' `to_rgb`."""
    if image.mode == "RGBA":
        white = Image.new("RGB", image.size, (255, 255, 255))
        white.paste(image, mask=image.split()[3])
        return white
    return image.convert("RGB")


def load_image(
    path: str,
    *,
    min_pixels: int = VIDEO_R1_IMAGE_MIN_PIXELS,
    max_pixels: int = VIDEO_R1_IMAGE_MAX_PIXELS,
) -> np.ndarray:
    """uint8 [H, W, 3] with H, W multiples of 28 and H*W near [min_pixels, max_pixels].

    Raises ImageError (with the path and the reason) for a file that cannot be used.
    """
    try:
        with Image.open(path) as opened:
            rgb = to_rgb(opened)
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageError(path, f"cannot read the image ({type(e).__name__}: {e})") from e
    width, height = rgb.size
    try:
        new_h, new_w = vision.smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)
    except ValueError as e:
        raise ImageError(path, str(e)) from e
    resized = rgb.resize((new_w, new_h), Image.Resampling.BICUBIC)  # [W, H] order in Pillow
    return np.asarray(resized, np.uint8)  # [H, W, 3]
