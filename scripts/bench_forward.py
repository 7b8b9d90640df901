"""Prefill benchmark: vtjax (jitted) vs transformers 4.51.3 on the same small Qwen2.5-VL, same run.

Input: one 16-frame 224x224 video (8 x 16 x 16 patches, 512 visual tokens) plus
~200 text tokens. Model: 6 text layers of width 512, vision depth 4 width 256.
Both sides run float32 on whatever device this process has (torch on the CPU).

Prints JSON lines:
  {"bench": "prefill", ...}        tokens/s of both, the ratio, vtjax compile time
  {"bench": "vision_frames", ...}  vision tower time at 16 and 64 frames, both sides
  {"bench": "prefill_frames", ...} vtjax's whole prefill at 16 and 64 frames, with the text decoder's
                                   causal attention block-causal (the default) and dense, and the
                                   largest logit difference between the two

Usage: python scripts/bench_forward.py [--repeats 5] [--frames 16 64] [--bench prefill_frames ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time

import jax
import numpy as np
import torch
from transformers import Qwen2_5_VLConfig as HFConfig
from transformers import Qwen2_5_VLForConditionalGeneration

from vtjax.convert import hf_to_params
from vtjax.models.qwen2_5_vl import (Qwen25VLConfig, TextConfig, VisionConfig, abstract_params, forward,
                                     prepare_inputs)
from vtjax.models.qwen2_5_vl.vision import VisionTower
from vtjax.ops import attention as attention_module


def bench_config() -> Qwen25VLConfig:
    tiny = Qwen25VLConfig.tiny()
    return dataclasses.replace(
        tiny,
        vision=VisionConfig(depth=4, hidden_size=256, intermediate_size=512, num_heads=4,
                            fullatt_block_indexes=(1, 3), out_hidden_size=512),
        text=TextConfig(vocab_size=8192, hidden_size=512, intermediate_size=1408, num_hidden_layers=6,
                        num_attention_heads=8, num_key_value_heads=2, mrope_section=(8, 12, 12)),
        image_token_id=8185, video_token_id=8186, vision_start_token_id=8183, vision_end_token_id=8184,
        bos_token_id=8180, eos_token_id=8182, pad_token_id=8180)


def video_inputs(config: Qwen25VLConfig, frames: int, text_tokens: int, rng) -> dict:
    grid = (frames // 2, 16, 16)  # 224 / 14 = 16 patches a side
    visual = grid[0] * grid[1] * grid[2] // config.vision.merge_unit
    half = text_tokens // 2
    ids = (rng.integers(0, 8000, half).tolist() + [config.vision_start_token_id]
           + [config.video_token_id] * visual + [config.vision_end_token_id]
           + rng.integers(0, 8000, text_tokens - half).tolist())
    pixels = rng.standard_normal((grid[0] * 256, config.vision.patch_dim)).astype(np.float32)
    return dict(input_ids=np.array([ids]), pixel_values_videos=pixels, video_grid_thw=np.array([grid]),
                second_per_grid_ts=np.array([1.0], np.float32))


BENCHES = ("prefill", "vision_frames", "prefill_frames")


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed steady-state runs per side")
    parser.add_argument("--frames", type=int, nargs=2, default=(16, 64), help="frame counts for the vision scaling line")
    parser.add_argument("--text-tokens", type=int, default=200, help="text tokens around the video")
    parser.add_argument("--bench", nargs="+", choices=BENCHES, default=BENCHES, help="which lines to measure")
    args = parser.parse_args()

    torch.set_num_threads(os.cpu_count() or 1)
    config = bench_config()
    torch.manual_seed(0)
    hf_config = HFConfig(**config.to_hf_dict())
    model = Qwen2_5_VLForConditionalGeneration(hf_config).eval().float()
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    params = jax.device_put(hf_to_params(config, state, abstract_params(config)))
    rng = np.random.default_rng(0)
    device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}, {os.cpu_count()} cpu cores"

    if "prefill" in args.bench:
        prefill(config, params, model, args, rng, device)
    if "vision_frames" in args.bench:
        vision_frames(config, params, model, args, rng, device)
    if "prefill_frames" in args.bench:
        print(json.dumps(prefill_frames(config, params, args, rng, device)), flush=True)


def prefill(config, params, model, args, rng, device) -> None:
    """vtjax against transformers on one prefill at the first frame count."""
    inputs = video_inputs(config, args.frames[0], args.text_tokens, rng)
    torch_inputs = {k: torch.as_tensor(v) for k, v in inputs.items()}
    tokens = inputs["input_ids"].shape[1]

    start = time.perf_counter()
    ours_logits = forward(config, params, **inputs)
    first_call = time.perf_counter() - start
    ours_times = timed(lambda: forward(config, params, **inputs), args.repeats)
    with torch.no_grad():
        theirs_logits = model(**torch_inputs).logits.numpy()  # warm-up
        theirs_times = timed(lambda: model(**torch_inputs), args.repeats)
    ours_s, theirs_s = statistics.median(ours_times), statistics.median(theirs_times)
    print(json.dumps({
        "bench": "prefill", "device": device, "tokens": tokens, "frames": args.frames[0],
        "vtjax_tokens_per_s": round(tokens / ours_s, 1), "transformers_tokens_per_s": round(tokens / theirs_s, 1),
        "speedup": round(theirs_s / ours_s, 2), "vtjax_ms": round(1e3 * ours_s, 1),
        "transformers_ms": round(1e3 * theirs_s, 1), "vtjax_compile_s": round(first_call - ours_s, 2),
        "max_abs_logit_diff": float(np.abs(ours_logits - theirs_logits).max()),
    }), flush=True)


def vision_frames(config, params, model, args, rng, device) -> None:
    """The vision tower alone at both frame counts, both sides: cost should grow ~linearly with frames."""
    tower = VisionTower(config.vision)
    apply = jax.jit(lambda p, v: tower.apply({"params": p}, v))
    line = {"bench": "vision_frames", "device": device}
    for frames in args.frames:
        v_inputs = video_inputs(config, frames, args.text_tokens, rng)
        vision = prepare_inputs(config, **v_inputs).vision
        apply(params["visual"], vision).block_until_ready()
        ours = statistics.median(timed(lambda vision=vision: apply(params["visual"], vision).block_until_ready(), args.repeats))
        pixels = torch.as_tensor(v_inputs["pixel_values_videos"])
        grid = torch.as_tensor(v_inputs["video_grid_thw"])
        with torch.no_grad():
            model.visual(pixels, grid_thw=grid)
            theirs = statistics.median(timed(lambda pixels=pixels, grid=grid: model.visual(pixels, grid_thw=grid), args.repeats))
        line[f"vtjax_ms_{frames}f"] = round(1e3 * ours, 1)
        line[f"transformers_ms_{frames}f"] = round(1e3 * theirs, 1)
    lo, hi = args.frames
    line["frames_ratio"] = hi / lo
    line["vtjax_time_ratio"] = round(line[f"vtjax_ms_{hi}f"] / line[f"vtjax_ms_{lo}f"], 2)
    line["transformers_time_ratio"] = round(line[f"transformers_ms_{hi}f"] / line[f"transformers_ms_{lo}f"], 2)
    print(json.dumps(line), flush=True)


def prefill_frames(config, params, args, rng, device) -> dict:
    """vtjax's prefill time at both frame counts, block-causal text attention against the dense square."""
    line = {"bench": "prefill_frames", "device": device}
    inputs = {frames: video_inputs(config, frames, args.text_tokens, rng) for frames in args.frames}
    logits = {}
    block = attention_module.CAUSAL_QUERY_BLOCK
    for name, query_block in (("block_causal", block), ("dense", None)):
        attention_module.CAUSAL_QUERY_BLOCK = query_block
        jax.clear_caches()  # the block is read when the program is traced
        for frames, frame_inputs in inputs.items():
            logits[name, frames] = forward(config, params, **frame_inputs)  # compile
            ms = 1e3 * statistics.median(timed(lambda i=frame_inputs: forward(config, params, **i), args.repeats))
            line[f"{name}_ms_{frames}f"] = round(ms, 1)
            line[f"tokens_{frames}f"] = int(frame_inputs["input_ids"].shape[1])
    attention_module.CAUSAL_QUERY_BLOCK = block
    lo, hi = args.frames
    line["causal_query_block"] = block
    line["tokens_ratio"] = round(line[f"tokens_{hi}f"] / line[f"tokens_{lo}f"], 2)
    for name in ("block_causal", "dense"):
        line[f"{name}_time_ratio"] = round(line[f"{name}_ms_{hi}f"] / line[f"{name}_ms_{lo}f"], 2)
    line[f"speedup_{hi}f"] = round(line[f"dense_ms_{hi}f"] / line[f"block_causal_ms_{hi}f"], 2)
    line["max_abs_logit_diff_vs_dense"] = max(
        float(np.abs(logits["block_causal", f] - logits["dense", f]).max()) for f in args.frames)
    return line


if __name__ == "__main__":
    main()
