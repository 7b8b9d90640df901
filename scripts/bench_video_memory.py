"""Peak memory of decoding a 4000x3000 video vs a 400x300 one, each in a fresh process.

    .venv/bin/python scripts/bench_video_memory.py [--frames 8] [--nframes 8] [--baseline pipeline]

Writes two H.264 clips (same content and length, 4000x3000 and 400x300) to a
temp dir. Each measurement is a fresh subprocess that imports what a training
data process imports (`--baseline pipeline`: vtjax.data.pipeline, which pulls
in grain and jax; `bare`: vtjax.data.video only), notes its peak RSS, runs
`load_video` at Video-Thinker's budget (<= 128*28*28 pixels per frame) and
reports its peak RSS again (VmHWM). Prints one JSON line per (backend, size)
and one per backend with the big/small ratios of peak RSS and of the memory
added by decoding (peak minus the post-import peak).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile

import av
import numpy as np

SIZES = {"4000x3000": (4000, 3000), "400x300": (400, 300)}
_CHILD = r"""
import importlib, json, sys
importlib.import_module(sys.argv[1])
from vtjax.data import video

def hwm_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM"))

base = hwm_mb()
frames, _ = video.load_video(sys.argv[2], nframes=int(sys.argv[3]), backend=sys.argv[4], max_pixels=128 * 28 * 28)
print(json.dumps({"baseline_mb": round(base, 1), "peak_mb": round(hwm_mb(), 1), "frames": list(frames.shape)}))
"""
BASELINES = {"pipeline": "vtjax.data.pipeline", "bare": "vtjax.data.video"}


def write_clip(path: str, width: int, height: int, frames: int, fps: int = 4) -> str:
    """A moving bar over a gradient, libx264 ultrafast (no B-frames, one reference frame)."""
    container = av.open(path, "w")
    stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    ramp = np.linspace(0, 255, width).astype(np.uint8)[None, :]  # [1, W]
    for i in range(frames):
        img = np.zeros((height, width, 3), np.uint8)
        img[..., 0] = (i * 9) % 256
        img[..., 2] = ramp
        x = (i * width // 20) % width
        img[:, x : x + width // 50 + 1, 1] = 230
        for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def measure(path: str, backend: str, nframes: int, baseline: str) -> dict:
    """Runs one decode in a fresh interpreter; its own VmHWM before and after."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, BASELINES[baseline], path, str(nframes), backend],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8, help="frames in each clip")
    parser.add_argument("--nframes", type=int, default=8, help="frames sampled per decode")
    parser.add_argument("--baseline", choices=sorted(BASELINES), default="pipeline", help="what each process imports")
    parser.add_argument("--backends", default="pyav,decord", help="comma-separated; decord is skipped if missing")
    args = parser.parse_args()
    decord = importlib.util.find_spec("decord") is not None
    backends = [b for b in args.backends.split(",") if b != "decord" or decord]
    device = f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: write_clip(os.path.join(tmp, f"{name}.mp4"), w, h, args.frames) for name, (w, h) in SIZES.items()}
        for backend in backends:
            rows = {}
            for name, path in paths.items():
                rows[name] = measure(path, backend, args.nframes, args.baseline)
                print(json.dumps({"bench": "video_decode_peak_rss", "backend": backend, "video": name,
                                  "nframes": args.nframes, "imports": args.baseline, **rows[name],
                                  "device": device}), flush=True)
            big, small = rows["4000x3000"], rows["400x300"]
            print(json.dumps({
                "bench": "video_decode_peak_rss_ratio", "backend": backend, "imports": args.baseline,
                "peak_ratio": round(big["peak_mb"] / small["peak_mb"], 3),
                "added_mb": [round(big["peak_mb"] - big["baseline_mb"], 1),
                             round(small["peak_mb"] - small["baseline_mb"], 1)],
                "device": device,
            }), flush=True)


if __name__ == "__main__":
    main()
