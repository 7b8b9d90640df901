"""`load_video`: sample frames from a file the way qwen-vl-utils does, then resize.

Two decoders return identical frames for the same indices: PyAV (the
default: portable, as fast, and its memory does not grow with the frame
size beyond one frame and the codec's reference frames) and decord. Both read only what the sampled frames
need: decord seeks per frame, and the PyAV reader demuxes the packet index
(no decoding), then seeks to the keyframe before each wanted frame unless it
is cheaper to decode forward from where it is.

Frames are resized one at a time as they are decoded, so a 4000x3000 video
never holds more than one full-resolution frame (the resize is the same
function applied per frame, so the pixels equal a resize of the whole stack).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator

import numpy as np

from vtjax import errors
from vtjax.data import resize, sampling, vision

BACKENDS = ("decord", "pyav")


class VideoError(errors.DataError):
    """A video that cannot be used: missing, empty, truncated, undecodable or too short."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def default_backend() -> str:
    """PyAV: as fast as decord on 480p, and decord keeps several RGB copies of each full-size frame."""
    return "pyav"


def decord_installed() -> bool:
    """Whether backend="decord" can be used here."""
    return importlib.util.find_spec("decord") is not None


class _DecordReader:
    """Frame-indexed access through decord.VideoReader."""

    def __init__(self, path: str, threads: int):
        import decord  # pylint: disable=import-outside-toplevel

        self._vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
        self.num_frames = len(self._vr)
        self.fps = float(self._vr.get_avg_fps())

    def iter_frames(self, indices: np.ndarray) -> Iterator[np.ndarray]:
        """Yields frame `i` uint8 [H, W, 3] for each of the increasing `indices`, one decoded at a time."""
        for i in indices:
            yield self._vr.get_batch([int(i)]).asnumpy()[0]

    def close(self):
        del self._vr


class _PyAVReader:
    """Frame-indexed access through PyAV, frame i = i-th packet in presentation order."""

    def __init__(self, path: str, threads: int):
        import av  # pylint: disable=import-outside-toplevel

        self._container = av.open(path)
        if not self._container.streams.video:
            raise ValueError("no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._stream.thread_count = threads
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        # Packet index without decoding: presentation timestamps and keyframes.
        pts, keys = [], []
        for packet in self._container.demux(self._stream):
            if packet.pts is None:
                continue  # the flush packet at the end, or a stream without timestamps
            pts.append(packet.pts)
            if packet.is_keyframe:
                keys.append(packet.pts)
        self._pts = np.sort(np.asarray(pts, np.int64))
        self._keys = np.sort(np.asarray(keys, np.int64))
        self.num_frames = int(self._stream.frames) or len(self._pts)  # container count first, like decord
        self._decoder = None  # frame generator, valid from the last seek on
        self._last_pts = None  # timestamp of the last decoded frame
        self.frames_decoded = 0  # frames pulled from the decoder (tests check we skip work)

    def iter_frames(self, indices: np.ndarray) -> Iterator[np.ndarray]:
        """Yields frame `i` uint8 [H, W, 3] for each of the increasing `indices`, one decoded at a time."""
        if len(self._pts) == 0 or len(self._keys) == 0:
            raise ValueError("no decodable packets")
        if int(indices.max()) >= len(self._pts):
            raise ValueError(
                f"truncated: frame {int(indices.max())} requested, only {len(self._pts)} frames "
                f"readable of {self.num_frames} in the header"
            )
        for i in indices:
            yield self._frame_at(int(self._pts[i]))

    def _frame_at(self, target: int) -> np.ndarray:
        """Decodes forward from the current position, seeking when a keyframe lies between."""
        key = int(self._keys[max(np.searchsorted(self._keys, target, side="right") - 1, 0)])
        last = self._last_pts
        if last is None or last >= target or key > last:
            self._container.seek(target, backward=True, any_frame=False, stream=self._stream)
            self._decoder = self._container.decode(self._stream)
        for frame in self._decoder:
            if frame.pts is None:
                raise ValueError("decoded frame without a timestamp")
            self._last_pts = frame.pts
            self.frames_decoded += 1
            if frame.pts == target:
                return frame.to_ndarray(format="rgb24")  # [H, W, 3] uint8
            if frame.pts > target:
                raise ValueError(f"seek overshot: wanted pts {target}, decoder is at {frame.pts}")
        raise ValueError(f"stream ended before pts {target}")

    def close(self):
        self._container.close()


def _open(path: str, backend: str, threads: int):
    if backend == "decord":
        return _DecordReader(path, threads)
    if backend == "pyav":
        return _PyAVReader(path, threads)
    raise ValueError(f"backend={backend!r} is not one of {BACKENDS}.")


def read_frames(
    path: str,
    *,
    nframes: int | None = None,
    fps: float = sampling.FPS,
    min_frames: int = sampling.FPS_MIN_FRAMES,
    max_frames: int = sampling.FPS_MAX_FRAMES,
    backend: str | None = None,
    threads: int = 1,
    size: Callable[[int, int, int], tuple[int, int]] | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Decodes the sampled frames one at a time, resizing each as it arrives.

    Args:
      size: (sampled frame count, height, width) of the video -> (height,
        width) to resize every frame to (bicubic, antialiased); None keeps
        the original size. A ValueError from it becomes a VideoError.

    Returns:
      frames uint8 [n, H, W, 3] (H, W from `size`), indices int64 [n], sample_fps.

    Raises:
      VideoError: the file is missing, empty, unreadable or too short.
    """
    path = os.fspath(path)
    backend = backend or default_backend()
    if not os.path.isfile(path):
        raise VideoError(path, "file not found; check the record's path and the video root")
    if os.path.getsize(path) == 0:
        raise VideoError(path, "file is empty")
    reader = None
    try:
        reader = _open(path, backend, threads)
        total, video_fps = reader.num_frames, reader.fps
        if total <= 0 or video_fps <= 0:
            raise VideoError(path, f"no frames or no frame rate ({total=}, fps={video_fps})")
        try:
            n = sampling.smart_nframes(
                total, video_fps, nframes=nframes, fps=fps, min_frames=min_frames, max_frames=max_frames
            )
        except ValueError as e:
            raise VideoError(path, f"too few frames: {e}") from e
        indices = sampling.frame_indices(total, n)
        unique, inverse = np.unique(indices, return_inverse=True)  # decode a repeated index once
        target = None if size is None else (lambda h, w: size(n, h, w))
        frames = _decode_resized(path, backend, reader.iter_frames(unique), len(unique), target)
    except VideoError:
        raise
    except Exception as e:  # decoder libraries raise their own types; report them uniformly
        raise VideoError(path, f"{backend} could not decode: {type(e).__name__}: {e}") from e
    finally:
        if reader is not None:
            reader.close()
    if len(unique) != n:
        frames = frames[inverse.reshape(-1)]
    return frames, indices, sampling.sample_fps(n, total, video_fps)


def _decode_resized(
    path: str, backend: str, decoded: Iterator[np.ndarray], n: int, size: Callable[[int, int], tuple[int, int]] | None
) -> np.ndarray:
    """Stacks `n` decoded frames into uint8 [n, h, w, 3], resizing each before the next is decoded."""
    out, shape, count = None, None, 0
    for i, frame in enumerate(decoded):  # frame: uint8 [H, W, 3] at the video's resolution
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise VideoError(path, f"{backend} returned a frame of shape {frame.shape}, expected [H, W, 3]")
        if out is None:
            shape = frame.shape
            new_h, new_w = shape[:2]
            if size is not None:
                try:
                    new_h, new_w = size(*shape[:2])
                except ValueError as e:
                    raise VideoError(path, str(e)) from e
            out = np.empty((n, new_h, new_w, 3), np.uint8)
        elif frame.shape != shape:
            raise VideoError(path, f"sampled frame {i} is {frame.shape[:2]}, the first was {shape[:2]}; "
                                   "re-encode the video at one size")
        out[i] = resize.resize_bicubic_antialias(frame[None], new_h, new_w)[0]
        del frame  # drop the full-resolution frame before the decoder makes the next one
        count += 1
    if count != n:
        raise VideoError(path, f"{backend} returned {count} frames, expected {n}")
    return out


def load_video(
    path: str,
    *,
    nframes: int | None = None,
    fps: float = sampling.FPS,
    min_frames: int = sampling.FPS_MIN_FRAMES,
    max_frames: int = sampling.FPS_MAX_FRAMES,
    min_pixels: int = sampling.VIDEO_MIN_PIXELS,
    max_pixels: int | None = None,
    total_pixels: int = sampling.VIDEO_TOTAL_PIXELS,
    backend: str | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, float]:
    """Samples and resizes a video as qwen-vl-utils' `fetch_video` does.

    Args:
      path: video file.
      nframes: exact frame count (rounded to even); overrides `fps`.
      fps: sampling rate when `nframes` is None, clamped to [min_frames, max_frames].
      min_pixels, max_pixels, total_pixels: per-frame pixel budget (see
        `sampling.frame_max_pixels`); the frame is resized with `smart_resize`.
      backend: "pyav" or "decord"; None picks PyAV.
      threads: decoder threads (1 suits one process per core).

    Returns:
      frames uint8 [T, H, W, 3] with H, W multiples of 28 and T even, and
      sample_fps (frames per second of the sampled frames).
    """
    def size(n: int, height: int, width: int) -> tuple[int, int]:
        budget = sampling.frame_max_pixels(n, min_pixels=min_pixels, max_pixels=max_pixels, total_pixels=total_pixels)
        return vision.smart_resize(height, width, min_pixels=min_pixels, max_pixels=budget)

    frames, _, fps_out = read_frames(
        path, nframes=nframes, fps=fps, min_frames=min_frames, max_frames=max_frames,
        backend=backend, threads=threads, size=size,
    )
    return frames, fps_out
