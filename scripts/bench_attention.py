"""Attention benchmark: pallas vs cudnn vs xla, forward and forward+backward.

    python scripts/bench_attention.py            # full sizes (on a GPU or TPU)
    python scripts/bench_attention.py --quick    # tiny sizes, runs on a CPU in seconds

Two workloads (as in issue #5):
* text: causal, 28 query / 4 kv heads, head_dim 128, bf16, L = 4k .. 64k;
* vision: window attention (64-patch windows, non-causal, 16 heads,
  head_dim 80) over 16, 64 and 256 frames (512 patches per temporal patch
  of two frames, Video-Thinker's 128*28*28-pixel frames).

Prints one JSON line per (workload, size, impl, pass) with ms (median),
TFLOP/s, the compiled program's temporary memory and, where the device
reports it, the device's peak bytes in use. FLOPs count only the visible
part of the score matrix: the causal half for text, the windows for vision;
forward+backward counts 3.5x the forward (two matmuls forward, five back).
Implementations that cannot run here get a line with "skipped" and why.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from vtjax.ops.attention import attention

IMPLS = ("pallas", "cudnn", "xla")


def _device() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{d.device_kind}"


def _emit(**fields) -> None:
    print(json.dumps({"device": _device(), **fields}), flush=True)


def _skip_reason(impl: str, quick: bool, length: int) -> str | None:
    """Why ``impl`` cannot run on this host, or None."""
    platform = jax.default_backend()
    if impl == "cudnn" and platform != "gpu":
        return f"cuDNN needs an NVIDIA GPU; default backend is {platform}"
    if impl == "pallas" and platform == "cpu" and not quick:
        return "on CPU the Pallas kernel only runs in the interpreter; use --quick"
    if impl == "xla" and platform == "cpu" and length > 8192:
        return f"dense XLA attention at L={length} is too slow on CPU"
    return None


def _workloads(quick: bool, lengths, frames):
    """Yields (name, size label, batch, length, q heads, kv heads, head_dim, causal, window, flops)."""
    text_heads, vision_heads, patches_per_tp = ((4, 1), 2, 64) if quick else ((28, 4), 16, 512)
    for length in lengths:
        hq, hkv = text_heads
        flops = 4 * length * length * hq * 128 / 2  # causal half of QK^T and PV
        yield "text_causal", f"L={length}", 1, length, hq, hkv, 128, True, None, flops
    for n_frames in frames:
        length = n_frames // 2 * patches_per_tp  # two frames per temporal patch
        window = 64
        flops = 4 * length * window * vision_heads * 80  # every patch sees its own window
        yield "vision_windows", f"frames={n_frames}", 1, length, vision_heads, vision_heads, 80, \
            False, window, flops


def _inputs(batch, length, hq, hkv, d, window, seed=0):
    rng = np.random.default_rng(seed)
    shape_q, shape_kv = (batch, length, hq, d), (batch, length, hkv, d)
    q = jnp.asarray(rng.standard_normal(shape_q), jnp.bfloat16)
    k = jnp.asarray(rng.standard_normal(shape_kv), jnp.bfloat16)
    v = jnp.asarray(rng.standard_normal(shape_kv), jnp.bfloat16)
    seg = None
    if window is not None:
        seg = jnp.asarray(np.repeat(np.arange(1, length // window + 1), window)[None], jnp.int32)
    return q, k, v, seg


def _programs(impl, causal, window, seg):
    def fwd(q, k, v):
        return attention(q, k, v, causal=causal, segment_ids=seg, max_segment_len=window,
                         impl=impl)

    def loss(q, k, v):
        return jnp.sum(fwd(q, k, v).astype(jnp.float32))

    return {"fwd": jax.jit(fwd), "fwd+bwd": jax.jit(jax.grad(loss, argnums=(0, 1, 2)))}


def _time(fn, args, iters: int) -> float:
    jax.block_until_ready(fn(*args))  # compile + warm up
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _sig(x: float) -> float:
    """Four significant digits (tiny CPU runs measure thousandths of a TFLOP/s)."""
    return float(f"{x:.4g}")


def _peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def run(quick: bool, impls, lengths, frames, iters: int) -> None:
    for name, size, batch, length, hq, hkv, d, causal, window, flops in _workloads(
            quick, lengths, frames):
        q, k, v, seg = _inputs(batch, length, hq, hkv, d, window)
        common = dict(workload=name, size=size, batch=batch, length=length, q_heads=hq,
                      kv_heads=hkv, head_dim=d, dtype="bfloat16")
        for impl in impls:
            reason = _skip_reason(impl, quick, length)
            if reason:
                _emit(**common, impl=impl, skipped=reason)
                continue
            for pass_name, fn in _programs(impl, causal, window, seg).items():
                labels = {**common, "impl": impl, "pass": pass_name}
                try:
                    compiled = fn.lower(q, k, v).compile()
                    ms = _time(compiled, (q, k, v), iters)
                except jax.errors.JaxRuntimeError as err:
                    if "RESOURCE_EXHAUSTED" not in str(err):
                        raise
                    _emit(**labels, skipped=f"out of memory: {str(err).splitlines()[0][:200]}")
                    continue
                temp = compiled.memory_analysis()
                total = flops * (3.5 if pass_name == "fwd+bwd" else 1.0) * batch
                _emit(**labels, ms=_sig(ms), tflops=_sig(total / (ms * 1e-3) / 1e12),
                      temp_bytes=None if temp is None else int(temp.temp_size_in_bytes),
                      device_peak_bytes=_peak_bytes())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (runs on a CPU)")
    parser.add_argument("--impls", default=",".join(IMPLS), help="comma list of pallas,cudnn,xla")
    parser.add_argument("--lengths", default=None, help="text lengths, comma list")
    parser.add_argument("--frames", default=None, help="vision frame counts, comma list")
    parser.add_argument("--iters", type=int, default=None, help="timed iterations per program")
    args = parser.parse_args(argv)
    impls = [i for i in args.impls.split(",") if i]
    unknown = sorted(set(impls) - set(IMPLS))
    if unknown:
        parser.error(f"--impls {unknown} not in {IMPLS}")
    default_lengths, default_frames = ("256,512", "4,8") if args.quick else \
        ("4096,8192,16384,32768,65536", "16,64,256")
    lengths = [int(x) for x in (args.lengths or default_lengths).split(",") if x]
    frames = [int(x) for x in (args.frames or default_frames).split(",") if x]
    if any(f % 2 for f in frames):
        parser.error(f"--frames {frames} must be even (two frames per temporal patch)")
    run(args.quick, impls, lengths, frames, args.iters or (2 if args.quick else 10))


if __name__ == "__main__":
    main()
