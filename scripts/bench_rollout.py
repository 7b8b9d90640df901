"""Rollout throughput: vtjax.sampling.generate vs transformers generate(num_return_sequences=G), same run.

Same small Qwen2.5-VL as bench_forward (6 text layers of width 512, vision depth
4 width 256), float32; 2 video prompts (~60 text tokens each), G samples per
prompt, temperature 1.0. Workloads, one JSON line each with both sides:

  rollout      (a) 8 frames at 224x224, --new-tokens per sample (no EOS), top_p 0.95; also the vtjax
               prefill/decode split (compile time reported separately)
  small_video  (b) 8 frames at 112x112, 128 new tokens (no EOS), plain temperature sampling
  ragged       (c) as (b), but 128 of the 8192 token ids end a row: the random model samples almost
               uniformly, so a row stops with probability ~1/64 a step and lengths spread over the budget
               as GRPO's do; reports useful tokens/s (tokens before each row's EOS) and the share of
               computed row-steps spent on rows that had already ended; vtjax runs once per
               --rows-per-prompt R (R < G: continuous batching, a row whose sample ends takes the
               prompt's next pending sample), and once at R = G with compact_rows (the live rows gathered
               into fewer as samples end), all in the same run
  decode_floor vtjax's decode step (decode seconds / steps) against the floor: one step's weight-bound
               work alone, i.e. every decoder matmul and the LM head for the N = 2 * G rows, jitted as
               straight-line code (no cache, no attention, no sampling, no loop), median of repeats

Usage: python scripts/bench_rollout.py [--group 8] [--new-tokens 256] [--repeats 2] [--rows-per-prompt 8 4 2]
                                      [--bench rollout ragged ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from transformers import Qwen2_5_VLConfig as HFConfig
from transformers import Qwen2_5_VLForConditionalGeneration

from bench_forward import bench_config
from vtjax.convert import hf_to_params
from vtjax.models.qwen2_5_vl import abstract_params
from vtjax.sampling import generate, prompt_batch, sample, sampling_settings



@dataclasses.dataclass(frozen=True)
class Workload:
    """One rollout workload of the benchmark (see the module docstring)."""

    frame_size: int  # pixels a side
    new_tokens: int | None  # budget per sample; None: --new-tokens
    top_p: float  # 1.0: plain temperature sampling
    stop_ids: tuple[int, ...]  # token ids that end a row; () runs every row to the budget


WORKLOADS = {
    "rollout": Workload(frame_size=224, new_tokens=None, top_p=0.95, stop_ids=()),
    "small_video": Workload(frame_size=112, new_tokens=128, top_p=1.0, stop_ids=()),
    "ragged": Workload(frame_size=112, new_tokens=128, top_p=1.0, stop_ids=tuple(range(4000, 4128))),
}
BENCHES = (*WORKLOADS, "decode_floor")


def prompts(config, rng, frames: int = 8, text_tokens: int = 60, frame_size: int = 224) -> dict:
    side = frame_size // config.vision.patch_size
    grid = (frames // 2, side, side)
    visual = grid[0] * grid[1] * grid[2] // config.vision.merge_unit
    rows = []
    for extra in (0, 7):  # two prompts of different lengths
        rows.append(rng.integers(0, 8000, text_tokens // 2 + extra).tolist() + [config.vision_start_token_id]
                    + [config.video_token_id] * visual + [config.vision_end_token_id]
                    + rng.integers(0, 8000, text_tokens // 2).tolist())
    length = max(map(len, rows))
    ids = np.full((2, length), config.pad_token_id)
    mask = np.zeros((2, length), np.int64)
    for r, row in enumerate(rows):  # left padding, as transformers generate wants
        ids[r, length - len(row):], mask[r, length - len(row):] = row, 1
    pixels = rng.standard_normal((2 * grid[0] * side * side, config.vision.patch_dim)).astype(np.float32)
    return dict(input_ids=ids, attention_mask=mask, pixel_values_videos=pixels,
                video_grid_thw=np.array([grid, grid]), second_per_grid_ts=np.array([1.0, 1.0], np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", type=int, default=8, help="samples per prompt (G)")
    parser.add_argument("--new-tokens", type=int, default=256, help="tokens generated per sample")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per side (median)")
    parser.add_argument("--rows-per-prompt", type=int, nargs="+", default=[8, 4, 2],
                        help="decode rows per prompt tried on the ragged workload (values above G are skipped)")
    parser.add_argument("--bench", nargs="+", choices=BENCHES, default=BENCHES, help="which lines to measure")
    args = parser.parse_args()

    torch.set_num_threads(os.cpu_count() or 1)
    config = bench_config()
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(HFConfig(**config.to_hf_dict())).eval().float()
    params = jax.device_put(hf_to_params(config, {k: v.numpy() for k, v in model.state_dict().items()},
                                         abstract_params(config)))
    inputs = prompts(config, np.random.default_rng(0))
    device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}, {os.cpu_count()} cpu cores"
    for name, workload in WORKLOADS.items():
        if name in args.bench:
            print(json.dumps(rollout(name, workload, config, model, params, args, device)), flush=True)
    if "decode_floor" in args.bench:
        print(json.dumps(decode_floor(config, params, inputs, args, device)), flush=True)


def row_lengths(tokens: np.ndarray, stop_ids) -> tuple[np.ndarray, np.ndarray]:
    """(tokens computed per row up to and including its first stop token, whether the row stopped)."""
    stopped = np.isin(tokens, stop_ids) if stop_ids else np.zeros(tokens.shape, bool)
    ended = stopped.any(axis=1)
    lengths = np.where(ended, stopped.argmax(axis=1) + 1, tokens.shape[1])
    return lengths, ended


def ragged_stats(prefix: str, tokens: np.ndarray, stop_ids, seconds: float, computed_row_steps: int) -> dict:
    """Useful tokens/s (tokens before each row's stop) and the share of computed row-steps that were wasted.

    A row-step is one row's token choice; the useful ones are the tokens up to each row's stop.
    """
    lengths, ended = row_lengths(tokens, stop_ids)
    useful = int((lengths - ended).sum())
    return {f"{prefix}_useful_tokens_per_s": round(useful / seconds, 1),
            f"{prefix}_wasted_row_steps": round(1.0 - lengths.sum() / computed_row_steps, 3),
            f"{prefix}_length_percentiles_10_50_90": [int(x) for x in np.percentile(lengths, [10, 50, 90])]}


def rollout(name: str, workload: Workload, config, model, params, args, device) -> dict:
    """vtjax against transformers on one workload's whole rollout (prefill and decode)."""
    inputs = prompts(config, np.random.default_rng(0), frame_size=workload.frame_size)
    new_tokens = workload.new_tokens or args.new_tokens
    rows = 2 * args.group
    kw = dict(max_new_tokens=new_tokens, num_samples=args.group, temperature=1.0, top_p=workload.top_p,
              eos_token_ids=workload.stop_ids)

    def ours(seed, rows_per_prompt=0, compact_rows=False):
        out = generate(config, params, **inputs, seed=seed, rows_per_prompt=rows_per_prompt,
                       compact_rows=compact_rows, **kw)
        assert out["tokens"].shape == (rows, new_tokens)
        return out

    def timed(rows_per_prompt=0, compact_rows=False):  # (compile s, median s, the output of every timed seed)
        start = time.perf_counter()
        ours(0, rows_per_prompt, compact_rows)
        first = time.perf_counter() - start
        times, outs = [], []
        for seed in range(1, args.repeats + 1):
            start = time.perf_counter()
            outs.append(ours(seed, rows_per_prompt, compact_rows))
            times.append(time.perf_counter() - start)
        return first - statistics.median(times), statistics.median(times), outs

    compile_s, ours_s, ours_outs = timed()

    # The prefill share: the same call with one new token.
    generate(config, params, **inputs, **{**kw, "max_new_tokens": 1})
    start = time.perf_counter()
    generate(config, params, **inputs, **{**kw, "max_new_tokens": 1})
    prefill_s = time.perf_counter() - start

    torch_inputs = {k: torch.as_tensor(v) for k, v in inputs.items()}
    # transformers 4.51.3 expands this one as a list for num_return_sequences.
    torch_inputs["second_per_grid_ts"] = inputs["second_per_grid_ts"].tolist()
    stop = dict(eos_token_id=list(workload.stop_ids)) if workload.stop_ids else dict(min_new_tokens=new_tokens)
    theirs_times = []
    with torch.no_grad():
        for seed in range(args.repeats):
            torch.manual_seed(seed)
            start = time.perf_counter()
            out = model.generate(**torch_inputs, do_sample=True, temperature=1.0, top_p=workload.top_p, top_k=0,
                                 num_return_sequences=args.group, max_new_tokens=new_tokens,
                                 pad_token_id=config.pad_token_id, **stop)
            theirs_times.append(time.perf_counter() - start)
            assert out.shape[0] == rows
    theirs_s = statistics.median(theirs_times)
    theirs_tokens = out[:, inputs["input_ids"].shape[1]:].numpy()
    line = {
        "bench": name, "device": device, "prompts": 2, "group": args.group, "new_tokens": new_tokens,
        "frame_size": workload.frame_size, "top_p": workload.top_p, "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "speedup": round(theirs_s / ours_s, 2), "vtjax_s": round(ours_s, 2), "transformers_s": round(theirs_s, 2),
        "vtjax_prefill_s": round(prefill_s, 3), "vtjax_prefill_share": round(prefill_s / ours_s, 3),
        "vtjax_compile_s": round(compile_s, 1),
    }
    if not workload.stop_ids:
        line["vtjax_tokens_per_s"] = round(rows * new_tokens / ours_s, 1)
        line["transformers_tokens_per_s"] = round(rows * new_tokens / theirs_s, 1)
        return line
    # transformers runs every row until the longest ends (the first token from the prefill counts as a step).
    line.update(ragged_stats("transformers", theirs_tokens, workload.stop_ids, theirs_s,
                             rows * int(row_lengths(theirs_tokens, workload.stop_ids)[0].max())))
    line["vtjax_by_rows_per_prompt"] = {}
    variants = [(rows_per_prompt, False) for rows_per_prompt in
                sorted({r for r in args.rows_per_prompt if r <= args.group} | {args.group}, reverse=True)]
    for rows_per_prompt, compact_rows in [*variants, (args.group, True)]:
        plain = rows_per_prompt == args.group and not compact_rows
        compile_s, seconds, outs = (0.0, ours_s, ours_outs) if plain else timed(rows_per_prompt, compact_rows)
        # Every sample's first token from the prefill's hidden state, then the rows of each loop iteration.
        by_seed = [ragged_stats("vtjax", out["tokens"], workload.stop_ids, seconds,
                                rows + int(out["decode_row_steps"])) for out in outs]
        out, stats = outs[-1], by_seed[-1]
        key = f"{rows_per_prompt} compacted" if compact_rows else rows_per_prompt
        line["vtjax_by_rows_per_prompt"][key] = {
            "s": round(seconds, 2), "speedup": round(theirs_s / seconds, 2), "compile_s": round(compile_s, 1),
            "useful_tokens_per_s": stats["vtjax_useful_tokens_per_s"],
            "wasted_row_steps": stats["vtjax_wasted_row_steps"], "decode_iterations": int(out["decode_iterations"]),
            # The waste depends on the draw (how the lengths fall between prompts): every timed seed's.
            "wasted_row_steps_by_seed": [x["vtjax_wasted_row_steps"] for x in by_seed],
            "length_percentiles_10_50_90": stats["vtjax_length_percentiles_10_50_90"]}
    return line


def decode_floor(config, params, inputs, args, device) -> dict:
    """The decode step's time against the floor of its weight-bound work (see the module docstring)."""
    settings = sampling_settings(config, max_new_tokens=args.new_tokens, num_samples=args.group,
                                 temperature=1.0, top_p=0.95, eos_token_ids=())
    prompts = prompt_batch(config, inputs["input_ids"], inputs["attention_mask"], settings.pad_token_id,
                           **{k: inputs[k] for k in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")})
    rows = 2 * args.group
    layers = [jax.tree.map(lambda a, i=i: a[i], params["layers"]) for i in range(config.text.num_hidden_layers)]
    head = params["lm_head"]["kernel"] if "lm_head" in params else params["embed_tokens"]["embedding"].T
    floor_fn = jax.jit(weight_bound_step)
    x = jax.device_put(np.random.default_rng(0).standard_normal((rows, config.text.hidden_size)).astype(np.float32))
    jax.block_until_ready(floor_fn(layers, head, x))  # compile
    sample(config, params, prompts, settings, seed=0)["tokens"].block_until_ready()  # compile
    decode_s, floor_s, calls = [], [], 20
    for seed in range(1, max(5, args.repeats) + 1):  # alternated, so that both see the same machine
        timings = {}
        sample(config, params, prompts, settings, seed, timings=timings)
        decode_s.append(timings["decode_s"])
        start = time.perf_counter()
        for _ in range(calls):
            out = floor_fn(layers, head, x)
        jax.block_until_ready(out)
        floor_s.append((time.perf_counter() - start) / calls)
    # The loop runs new_tokens - 1 steps; the first token comes from the prefill's hidden state.
    step_ms = 1e3 * statistics.median(decode_s) / (args.new_tokens - 1)
    floor_ms = 1e3 * statistics.median(floor_s)
    return {"bench": "decode_floor", "device": device, "rows": rows, "prompt_tokens": int(inputs["input_ids"].shape[1]),
            "new_tokens": args.new_tokens, "decode_step_ms": round(step_ms, 2), "floor_ms": round(floor_ms, 2),
            "ratio": round(step_ms / floor_ms, 2)}


def weight_bound_step(layers, head, x):
    """Every decoder matmul of one decode step for the rows of ``x`` [N, E], then the LM head [N, V].

    The attention output is stood in for by the queries, and k / v feed a negligible term so that they are
    computed; each layer's weights arrive as separate arguments (no slicing of stacked arrays).
    """
    for w in layers:
        q = jnp.einsum("ne,ehd->nhd", x, w["q_proj"]["kernel"]) + w["q_proj"]["bias"]  # [N, H, Dh]
        k = jnp.einsum("ne,ehd->nhd", x, w["k_proj"]["kernel"]) + w["k_proj"]["bias"]  # [N, Hkv, Dh]
        v = jnp.einsum("ne,ehd->nhd", x, w["v_proj"]["kernel"]) + w["v_proj"]["bias"]
        x = x + jnp.einsum("nhd,hde->ne", q, w["o_proj"]["kernel"]) + 1e-6 * (k.sum((1, 2)) + v.sum((1, 2)))[:, None]
        mlp = w["mlp"]
        gated = jax.nn.silu(x @ mlp["gate_proj"]["kernel"]) * (x @ mlp["up_proj"]["kernel"])  # [N, I]
        x = x + gated @ mlp["down_proj"]["kernel"]
    return x @ head  # [N, V]


if __name__ == "__main__":
    main()
