"""Conversion cost on a generated checkpoint: peak RSS against checkpoint size, seconds per GB.

Writes a random-valued HF checkpoint with the shapes of a preset (default 3B,
bfloat16 as on the Hub, 5 GB shards), then runs each direction of
``python -m vtjax.convert`` in its own process and reads that process's peak
resident memory from the kernel. Prints one JSON line per direction.

Usage: python scripts/bench_convert.py [--preset 3b] [--dtype bfloat16] [--workdir /tmp/vtjax_bench_convert]
Needs about 3x the checkpoint size of free disk (3B bf16: ~7.5 GB each).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from vtjax.convert.hf import MAX_SHARD_BYTES
from vtjax.convert.mapping import hf_shape, links
from vtjax.convert.safetensors_io import INDEX_FILE, plan_shards, shard_file_names, write_safetensors
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, abstract_params


def write_random_checkpoint(config: Qwen25VLConfig, directory: Path, dtype: np.dtype) -> int:
    """A checkpoint with the preset's tensors filled from a small random block; returns its bytes."""
    directory.mkdir(parents=True)
    shapes = abstract_params(config)
    specs = []
    for link in links(config):
        node = shapes
        for key in link.path:
            node = node[key]
        shape = node.shape[1:] if link.layer is not None else node.shape
        specs.append((link.hf_name, hf_shape(link, shape, config), dtype))
    block = (np.random.default_rng(0).standard_normal(1 << 20) * 0.02).astype(dtype)

    def produce(name):
        shape = next(s for n, s, _ in specs if n == name)
        size = int(np.prod(shape))
        return np.resize(block, size).reshape(shape)

    shards = plan_shards(specs, MAX_SHARD_BYTES)
    weight_map = {}
    for fname, shard in zip(shard_file_names(len(shards)), shards, strict=True):
        write_safetensors(directory / fname, shard, produce)
        weight_map.update({n: fname for n, _, _ in shard})
    total = sum(int(np.prod(s)) * d.itemsize for _, s, d in specs)
    if len(shards) > 1:
        (directory / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    (directory / "config.json").write_text(json.dumps(config.to_hf_dict()))
    return total


def run_measured(args: list[str]) -> tuple[float, int]:
    """Runs a command; returns (seconds, peak RSS bytes of that process)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed with status {status}")
    return seconds, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="3b", help="model preset whose shapes to generate")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"], help="checkpoint dtype")
    parser.add_argument("--workdir", default="/tmp/vtjax_bench_convert", type=Path, help="scratch directory")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()

    config = Qwen25VLConfig.preset(args.preset)
    dtype = np.dtype(jax.numpy.dtype(args.dtype))
    shutil.rmtree(args.workdir, ignore_errors=True)
    hf_dir, ckpt, out = args.workdir / "hf", args.workdir / "orbax", args.workdir / "hf_out"
    start = time.perf_counter()
    size = write_random_checkpoint(config, hf_dir, dtype)
    print(json.dumps({"bench": "generate", "preset": args.preset, "dtype": args.dtype, "gb": round(size / 1e9, 2),
                      "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    device = f"cpu, {os.cpu_count()} cores"
    commands = {
        "hf-to-orbax": ["hf-to-orbax", "--hf-dir", hf_dir, "--out", ckpt, "--dtype", args.dtype],
        "orbax-to-hf": ["orbax-to-hf", "--ckpt", ckpt, "--out", out],
    }
    try:
        for direction, cli_args in commands.items():
            seconds, peak = run_measured([sys.executable, "-m", "vtjax.convert", *map(str, cli_args), "--quiet"])
            print(json.dumps({
                "bench": "convert", "direction": direction, "preset": args.preset, "dtype": args.dtype,
                "checkpoint_gb": round(size / 1e9, 2), "peak_rss_gb": round(peak / 1e9, 2),
                "peak_rss_over_checkpoint": round(peak / size, 3), "seconds": round(seconds, 1),
                "seconds_per_gb": round(seconds / (size / 1e9), 2), "device": device}), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
