"""Video data throughput: decord vs PyAV, one worker, 16 frames from a 30 s 480p clip.

    .venv/bin/python scripts/bench_data.py [--reps 5] [--seconds 30]

Writes its own clip (854x480, 30 fps, H.264, x264's default 250-frame GOP)
in a temp dir, then for each backend times `load_video` (16 frames, <=
128*28*28 pixels per frame: Video-Thinker's setting) plus `patchify_video`,
single-threaded in one process, as one grain worker does. Prints one JSON
line per backend with videos/s and the time split.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import av
import numpy as np

from vtjax.data import resize, sampling, video, vision


def write_clip(path: str, seconds: int, fps: int = 30, width: int = 854, height: int = 480) -> str:
    """A moving-gradient clip with some texture, so the encoder does real work."""
    container = av.open(path, "w")
    stream = container.add_stream("libx264", rate=fps, options={"preset": "veryfast"})
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    noise = np.random.default_rng(0).integers(0, 40, (height, width), dtype=np.uint8)
    for i in range(seconds * fps):
        img = np.empty((height, width, 3), np.uint8)
        img[..., 0] = ((xx + 4 * i) % 256).astype(np.uint8)
        img[..., 1] = ((yy + 2 * i) % 256).astype(np.uint8)
        img[..., 2] = noise + (i % 200)
        for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def bench(path: str, backend: str, reps: int, nframes: int, max_pixels: int) -> dict:
    decode_s = resize_s = patch_s = 0.0
    for rep in range(reps + 1):  # the first pass warms file caches and imports
        t0 = time.perf_counter()
        frames, indices, fps = video.read_frames(path, nframes=nframes, backend=backend, threads=1)
        t1 = time.perf_counter()
        n, h, w, _ = frames.shape
        budget = sampling.frame_max_pixels(n, max_pixels=max_pixels)
        rh, rw = vision.smart_resize(h, w, min_pixels=sampling.VIDEO_MIN_PIXELS, max_pixels=budget)
        frames = resize.resize_bicubic_antialias(frames, rh, rw)
        t2 = time.perf_counter()
        values, grid = vision.patchify_video(frames)
        t3 = time.perf_counter()
        if rep:
            decode_s, resize_s, patch_s = decode_s + t1 - t0, resize_s + t2 - t1, patch_s + t3 - t2
    total = decode_s + resize_s + patch_s
    return {
        "bench": "video_decode_preprocess",
        "backend": backend,
        "videos_per_s_per_worker": round(reps / total, 3),
        "s_per_video": round(total / reps, 4),
        "decode_s": round(decode_s / reps, 4),
        "resize_s": round(resize_s / reps, 4),
        "patchify_s": round(patch_s / reps, 4),
        "frames": int(nframes),
        "resized_hw": [rh, rw],
        "grid_thw": [int(v) for v in grid[0]],
        "rows": int(values.shape[0]),
        "clip": "854x480 30fps h264 gop250",
        "clip_seconds": round(len(indices) / fps, 2),
        "reps": reps,
        "device": f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 thread",
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per backend")
    parser.add_argument("--seconds", type=int, default=30, help="clip length")
    parser.add_argument("--nframes", type=int, default=16, help="frames sampled per video")
    parser.add_argument("--max-pixels", type=int, default=128 * 28 * 28, help="per-frame pixel cap")
    args = parser.parse_args()
    backends = ["decord", "pyav"] if video.decord_installed() else ["pyav"]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_clip(os.path.join(tmp, "clip.mp4"), args.seconds)
        for backend in backends:
            print(json.dumps(bench(path, backend, args.reps, args.nframes, args.max_pixels)), flush=True)


if __name__ == "__main__":
    main()
