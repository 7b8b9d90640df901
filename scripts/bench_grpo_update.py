r"""GRPO update cost per group: repeated-prompt rows vs the shared-prefix layout, same model, rollouts and run.

What a GRPO step pays after sampling, per group of G completions: the
reference policy's log-prob pass (``rl.beta`` > 0) and the update (forward,
backward, AdamW). The repeated layout runs G sequences of prompt +
completion; the shared-prefix layout one sequence of the prompt and its G
completions (``rl.shared_prefix``). Both get the same video prompts (the
step's vision features, computed once, as in training), the same completions
of random tokens with lengths drawn from ``--lengths`` and the same
advantages; the vision tower is frozen so both time the decoder alone.
Rounds alternate between the layouts. Each round prints one JSON line per
layout, then a summary line: median seconds per group of each, their ratio,
and the ratio of the tokens each layout runs through the decoder (the
speedup a purely token-bound pass would get; attention makes the real one
differ).

  python scripts/bench_grpo_update.py                 # G=8, ~1k-token video prompts, completions 100-700
  taskset -c 1 python scripts/bench_grpo_update.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--group", type=int, default=8, help="completions per prompt (G)")
    p.add_argument("--prompts", type=int, default=2, help="groups per step (one micro-batch each)")
    p.add_argument("--grid", default="8,16,28", help="video patch grid t,h,w (t*h*w/4 prompt tokens)")
    p.add_argument("--text", type=int, default=110, help="text tokens of each prompt besides the video")
    p.add_argument("--lengths", default="100,700", help="completion lengths: uniform in this inclusive range")
    p.add_argument("--max-new-tokens", type=int, default=768, help="the completion budget (T)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    return p.parse_args(argv)


def build(args):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from bench_train import small_config
    from vtjax.data import batching
    from vtjax.models.qwen2_5_vl import Qwen25VL, init_params
    from vtjax.sampling import prompt_batch
    from vtjax.train import grpo_config
    from vtjax.train.grpo_step import batch_logprobs_fn, make_grpo_step
    from vtjax.train.optimizer import make_optimizer
    from vtjax.train.rollout_batch import RolloutLayout, build_rollout_batch
    from vtjax.train.state import TrainState

    config = small_config()
    rng = np.random.default_rng(0)
    t, h, w = (int(x) for x in args.grid.split(","))
    video = [config.vision_start_token_id] + [config.video_token_id] * (t * h * w // config.vision.merge_unit) \
        + [config.vision_end_token_id]
    rows = [rng.integers(0, 4000, args.text // 2).tolist() + video
            + rng.integers(0, 4000, args.text - args.text // 2).tolist() for _ in range(args.prompts)]
    ids = np.asarray(rows)
    grids = np.asarray([(t, h, w)] * args.prompts)
    collated = dict(input_ids=ids, attention_mask=np.ones_like(ids),
                    vision_rows=rng.standard_normal((args.prompts * t * h * w, config.vision.patch_dim),
                                                    ).astype(np.float32),
                    grid_thw=grids, second_per_grid_ts=np.full(args.prompts, 2.0, np.float32),
                    is_image=np.zeros(args.prompts, bool))
    hf, _ = batching.model_inputs(collated)
    host = prompt_batch(config, ids, np.ones_like(ids), config.pad_token_id,
                        **{k: v for k, v in hf.items() if k not in ("input_ids", "attention_mask")})
    params = init_params(config, 0)
    features = Qwen25VL(config).apply({"params": params}, host.inputs.vision, method=Qwen25VL.encode_vision)

    n, budget = args.prompts * args.group, args.max_new_tokens
    low, high = (int(x) for x in args.lengths.split(","))
    lengths = rng.integers(low, high + 1, n)
    completions = rng.integers(0, 4000, (n, budget)).astype(np.int32)
    advantages = rng.standard_normal(n).astype(np.float32)

    c = grpo_config.grpo_defaults()
    train, rl = c.train, c.rl
    train.freeze = "vision,merger"
    train.loss_chunk = 512
    rl.max_new_tokens = budget
    tx = make_optimizer(train, jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params),
                        1000)
    step = jax.jit(make_grpo_step(config, tx, optax.constant_schedule(train.lr), train, rl))
    logprobs = batch_logprobs_fn(config, train.loss_chunk)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

    sides = {}
    for layout in RolloutLayout:
        batch = build_rollout_batch(config, host, collated, completions, lengths, advantages, group=args.group,
                                    micro_batches=args.prompts, layout=layout)
        batch = jax.device_put(batch)
        tokens = int(np.asarray(batch.inputs.input_ids).size) // args.prompts  # padded tokens per group

        def run(batch=batch):
            ref = logprobs(params, batch, features)  # the reference pass (the starting params as reference)
            new, metrics = step(state, batch.replace(ref_logp=ref), host.inputs.vision, features)
            jax.block_until_ready((new.params, metrics))
            return float(metrics["loss"])

        sides[layout.value] = dict(run=run, tokens_per_group=tokens,
                                   sequence_tokens=int(batch.inputs.input_ids.shape[-1]))
    info = dict(group=args.group, prompt_tokens=int(host.inputs.input_ids.shape[1]),
                completion_tokens_mean=float(lengths.mean()), budget=budget, groups=args.prompts)
    return sides, info


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                                   f"intra_op_parallelism_threads={args.threads}").strip()
    sides, info = build(args)
    losses = {}
    for name, side in sides.items():  # compile outside the timed rounds
        start = time.perf_counter()
        losses[name] = side["run"]()
        print(json.dumps({"layout": name, "compile_and_first_s": round(time.perf_counter() - start, 2),
                          "loss": losses[name]}), flush=True)
    times = {name: [] for name in sides}
    for round_ in range(args.rounds):
        for name, side in sides.items():
            start = time.perf_counter()
            side["run"]()
            seconds = (time.perf_counter() - start) / info["groups"]
            times[name].append(seconds)
            print(json.dumps({"round": round_, "layout": name, "seconds_per_group": round(seconds, 4)}), flush=True)
    repeated, shared = (statistics.median(times[k]) for k in ("repeated", "shared_prefix"))
    print(json.dumps({
        "summary": "update + reference log-probs per group", **info,
        "repeated_s": round(repeated, 4), "shared_prefix_s": round(shared, 4),
        "speedup": round(repeated / shared, 3),
        "repeated_tokens_per_group": sides["repeated"]["tokens_per_group"],
        "shared_prefix_tokens_per_group": sides["shared_prefix"]["tokens_per_group"],
        "token_ratio": round(sides["repeated"]["tokens_per_group"] / sides["shared_prefix"]["tokens_per_group"], 3),
        "loss_repeated": losses["repeated"], "loss_shared_prefix": losses["shared_prefix"]}), flush=True)


if __name__ == "__main__":
    main()
