"""GRPO step time with the step's vision features shared vs re-encoded by every pass, same run.

Same small Qwen2.5-VL and prompts as bench_rollout (2 video prompts of 8 frames at 224x224), G samples
each, N new tokens, reference KL on (beta > 0), one device. Both sides run the same vtjax programs:

- shared: the tower runs once (``encode_fn``); the sampler, the reference log-probs (when the tower is
  frozen) and the update take its features; a training tower's backward goes through its pullback;
- per pass: the sampler's prefill, the reference pass and the update each run the tower on the pixels
  themselves (what vtjax did before, less its extra passes per micro-batch).

Prints one JSON line per (tower, side) with the median step seconds and the tower passes per step, then
the saving. ``vision_pass_s`` (the shared side's one pass) is what each extra pass of the per-pass side
costs, so per_pass - shared should be near (extra passes) x vision_pass_s.

Usage: python scripts/bench_grpo_vision.py [--group 8] [--new-tokens 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import ml_collections
import numpy as np

from bench_forward import bench_config
from bench_rollout import prompts
from vtjax.sampling import prompt_batch, sample, sampling_settings
from vtjax.train.grpo_step import batch_logprobs_fn, encode_fn, make_grpo_step
from vtjax.train.optimizer import make_optimizer
from vtjax.train.rollout_batch import build_rollout_batch
from vtjax.sharding import make_mesh
from vtjax.train.state import init_state, param_shapes
from vtjax.train.update import jit_update
from jax.sharding import NamedSharding, PartitionSpec as P


def train_config(freeze: str) -> ml_collections.ConfigDict:
    t = ml_collections.ConfigDict(dict(lr=1e-5, max_grad_norm=5.0, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01,
                                       decay_all_params=False, warmup_steps=0, warmup_ratio=0.0, end_lr_ratio=0.0,
                                       freeze=freeze, loss_chunk=128))
    r = ml_collections.ConfigDict(dict(clip=True, clip_eps_low=0.2, clip_eps_high=0.2, beta=0.04,
                                       loss_agg="seq-mean-token-mean", max_new_tokens=0))
    return t, r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", type=int, default=8, help="samples per prompt (G)")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per sample")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per side (median)")
    args = parser.parse_args()

    config = bench_config()
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    raw = prompts(config, np.random.default_rng(0))
    host = prompt_batch(config, raw["input_ids"], raw["attention_mask"], config.pad_token_id,
                        **{k: v for k, v in raw.items() if k not in ("input_ids", "attention_mask")})
    collated = {"grid_thw": raw["video_grid_thw"], "second_per_grid_ts": raw["second_per_grid_ts"],
                "is_image": np.zeros(2, bool)}
    settings = sampling_settings(config, max_new_tokens=args.new_tokens, num_samples=args.group,
                                 temperature=1.0, top_p=0.95, eos_token_ids=())
    device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}, {os.cpu_count()} cpu cores"
    for tower in ("frozen", "trained"):
        results = {side: bench_tower(config, mesh, host, collated, settings, args, tower, shared=side == "shared")
                   for side in ("shared", "per_pass")}
        for side, (seconds, vision_s, passes) in results.items():
            print(json.dumps({"bench": "grpo_vision", "tower": tower, "side": side, "device": device,
                              "group": args.group, "new_tokens": args.new_tokens, "step_s": round(seconds, 4),
                              "vision_pass_s": round(vision_s, 4) if side == "shared" else None,
                              "tower_passes_per_step": passes}))
        saved = results["per_pass"][0] - results["shared"][0]
        print(json.dumps({"bench": "grpo_vision", "tower": tower, "saved_s": round(saved, 4),
                          "saved_fraction": round(saved / results["per_pass"][0], 4)}))


def bench_tower(config, mesh, host, collated, settings, args, tower: str, shared: bool):
    """(median step seconds, median seconds of the shared vision pass, tower passes per step) of one side."""
    rows = NamedSharding(mesh, P(("data", "fsdp")))
    t, r = train_config("vision,merger" if tower == "frozen" else "")
    r.max_new_tokens = args.new_tokens
    tx = make_optimizer(t, param_shapes(config), 1000)
    state = init_state(config, tx, mesh, seed=0)
    reference = jax.tree_util.tree_map(lambda x: x.copy(), state.params)
    trains = tower == "trained"
    encode = encode_fn(config, t.freeze, rows, with_pullback=False)
    encode_back = encode_fn(config, t.freeze, rows, with_pullback=True)
    logprobs = batch_logprobs_fn(config, t.loss_chunk)
    step_fn = make_grpo_step(config, tx, lambda count: t.lr, t, r)
    advantages = np.linspace(-1, 1, 2 * args.group).astype(np.float32)
    updates = {}

    def one_step(state, seed: int):
        start = time.perf_counter()
        features = pullback = None
        if shared:  # one pass; its features (and pullback) go to every consumer
            out = encode_back(state.params, host.inputs.vision) if trains else encode(state.params,
                                                                                     host.inputs.vision)
            features, pullback = out if trains else (out, None)
            jax.block_until_ready(features)
        vision_s = time.perf_counter() - start
        rollout = sample(config, state.params, host, settings, seed, features=features)  # None: prefill encodes
        batch = build_rollout_batch(config, host, collated, np.asarray(rollout["tokens"]),
                                    np.asarray(rollout["lengths"]), advantages, group=args.group, micro_batches=2)
        step_features = features if shared else encode(state.params, host.inputs.vision)
        ref_features = step_features if (shared and not trains) else encode(reference, host.inputs.vision)
        batch = batch.replace(ref_logp=logprobs(reference, batch, ref_features))
        inputs = (batch, host.inputs.vision, step_features, pullback)  # pullback None: the update encodes
        key = jax.tree_util.tree_structure(inputs)
        if key not in updates:
            shardings = jax.tree_util.tree_map(lambda x: NamedSharding(mesh, P()), inputs)
            updates[key] = jit_update(step_fn, jax.tree_util.tree_map(lambda x: x.sharding, state), shardings,
                                      mesh)
        state, metrics = updates[key](state, *inputs)
        jax.block_until_ready(metrics)
        return state, time.perf_counter() - start, vision_s

    state, _, _ = one_step(state, 0)  # compiles
    times, vision = [], []
    for seed in range(1, args.repeats + 1):
        state, seconds, vision_s = one_step(state, seed)
        times.append(seconds)
        vision.append(vision_s)
    passes = (2 if trains else 1) if shared else (4 if trains else 3)
    return statistics.median(times), statistics.median(vision), passes


if __name__ == "__main__":
    main()
