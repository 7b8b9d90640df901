r"""Packed vs padded SFT on a length-skewed set: useful (non-padding) tokens per second, same run.

The set: video questions of 4-16 frames (112 px, 32-128 video tokens) with
answers of 20-400 tokens, log-uniform (most answers short, a long tail, as
in reasoning traces), in a fixed random order. Both layouts go through
the real data pipeline (``vtjax.data.pipeline``, already-built examples
standing in for decoded records) and the trainer's own batch builder and
jitted SFT step (small model, AdamW):

  padded  ``--batch`` examples per step, each row padded to the batch's length bucket
  packed  ``--rows`` rows of ``--token_budget`` tokens per step, filled first-fit

Every batch shape is compiled before timing. Each round times one pass over
the whole set per layout (layouts alternate, so machine load hits both
alike) and prints a JSON line; the summary line gives the medians, the
padding fraction of each layout and the packed/padded ratio of useful
tokens/s. Each round also times the vision tower alone (forward and
backward) over each layout's batches: vision work is the same per example in
both layouts, so it bounds the gain. ``ratio_at_equal_slot_cost`` is the
ratio if every text token slot of a packed step cost what a padded one does
(packed vision time + the padded pass's other time scaled to the packed
slots); attention over the longer packed rows makes a slot cost more in the
XLA path, which computes every row's attention in whole (block-causal).

  python scripts/bench_train.py --layout both    # the same as python scripts/bench_packing.py
  python scripts/bench_packing.py --examples 96 --rows 4 --token_budget 640 --rounds 3
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

LAYOUTS = ("padded", "packed")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layout", choices=(*LAYOUTS, "both"), default="both")
    p.add_argument("--examples", type=int, default=96, help="examples in the skewed set (one pass per round)")
    p.add_argument("--batch", type=int, default=4, help="padded: examples per step")
    p.add_argument("--rows", type=int, default=4, help="packed: rows per step")
    p.add_argument("--token_budget", type=int, default=640, help="packed: tokens per row")
    p.add_argument("--lookahead", type=int, default=16, help="packed: examples drawn beyond a full batch")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="the tiny test model instead of the small one (tests)")
    return p.parse_args(argv)


def skewed_examples(model_cfg, count: int, seed: int) -> list[dict]:
    """Built SFT examples: 40 prompt tokens around a video of 4-16 frames, then an answer of 20-400 tokens."""
    import numpy as np

    from vtjax.data import vision

    rng = np.random.default_rng(seed)
    unit = model_cfg.vision.merge_unit
    out = []
    for i in range(count):
        t = int(rng.integers(2, 9))  # temporal patches: 4-16 frames, two per patch
        grid = (t, 8, 8)  # 112 px frames
        video = [model_cfg.vision_start_token_id] + [model_cfg.video_token_id] * (t * 64 // unit) \
            + [model_cfg.vision_end_token_id]
        vocab = min(4000, model_cfg.text.vocab_size - 32)  # clear of the special ids at the end
        prompt = list(rng.integers(0, vocab, 20)) + video + list(rng.integers(0, vocab, 20))
        answer = list(rng.integers(0, vocab, int(round(20 * 20 ** rng.random()))))  # log-uniform in [20, 400]
        ids = np.asarray(prompt + answer, np.int32)
        out.append({"input_ids": ids, "loss_mask": np.arange(len(ids)) >= len(prompt),
                    "patches": rng.integers(0, 256, (t * 64, vision.ROW_SIZE), dtype=np.uint8),
                    "grid_thw": np.asarray(grid, np.int64), "second_per_grid_t": 1.0, "record_id": f"x{i}"})
    return out


class Prebuilt:
    """The pipeline's example builder for examples that are already built."""

    mode = "sft"

    def __init__(self, pad_id: int):
        self.tokenizer = type("Tokenizer", (), {"pad_id": pad_id})()

    def __call__(self, example: dict) -> dict:
        return example


def layout_batches(args, layout: str, model_cfg, exs) -> list[dict]:
    """One pass over ``exs`` as the pipeline batches it in ``layout``."""
    from vtjax.data import pipeline

    packed = layout == "packed"
    config = pipeline.PipelineConfig(batch_size=args.rows if packed else args.batch, shuffle=False, num_epochs=1,
                                     token_budget=args.token_budget if packed else 0, pack_lookahead=args.lookahead,
                                     drop_remainder=True)
    ds = pipeline.make_pipeline(exs, Prebuilt(model_cfg.pad_token_id), config, process_index=0, process_count=1)
    return list(ds)


def build(args):
    """(model config, {layout: (step fn over one pass, useful tokens, token slots, steps)})."""
    import jax
    import numpy as np

    import jax.numpy as jnp
    from bench_train import constant_lr_train_config, single_device_trainer, small_config

    from vtjax.models.qwen2_5_vl import Qwen25VL, Qwen25VLConfig, init_params
    from vtjax.train.step import jit_train_step

    model_cfg = Qwen25VLConfig.tiny() if args.tiny else small_config()
    trainer = single_device_trainer(model_cfg, constant_lr_train_config(), init_params(model_cfg, 0))
    builder = trainer.builder
    model = Qwen25VL(model_cfg)
    vision_grads = jax.jit(jax.grad(lambda p, inputs: jnp.sum(model.apply(
        {"params": p}, inputs.vision, method=Qwen25VL.encode_vision).astype(jnp.float32) ** 2)))
    exs = skewed_examples(model_cfg, args.examples, args.seed)
    layouts = (args.layout,) if args.layout != "both" else LAYOUTS
    runs = {}
    box = {"state": trainer.state}
    for layout in layouts:
        raws = layout_batches(args, layout, model_cfg, exs)
        batches = [builder(raw) for raw in raws]
        compiled = {}
        for batch in batches:  # one compile per batch shape, before any timing
            key = jax.tree_util.tree_structure(batch), tuple(x.shape for x in jax.tree_util.tree_leaves(batch))
            if key not in compiled:
                compiled[key] = jit_train_step(trainer.step_fn, trainer.shardings, builder.shardings(batch),
                                               trainer.mesh)
                box["state"], metrics = compiled[key](box["state"], batch)
                jax.block_until_ready(metrics)
        fns = [compiled[jax.tree_util.tree_structure(b), tuple(x.shape for x in jax.tree_util.tree_leaves(b))]
               for b in batches]

        def one_pass(fns=fns, batches=batches):
            for fn, batch in zip(fns, batches, strict=True):
                box["state"], metrics = fn(box["state"], batch)
            jax.block_until_ready(metrics)

        def vision_pass(batches=batches):  # the vision tower and merger, forward and backward, alone
            for batch in batches:
                grads = vision_grads(box["state"].params, jax.tree_util.tree_map(lambda leaf: leaf[0], batch.inputs))
            jax.block_until_ready(grads)

        vision_pass()  # compiles
        useful = sum(int(np.asarray(raw["attention_mask"]).sum()) for raw in raws)
        slots = sum(int(np.asarray(raw["attention_mask"]).size) for raw in raws)
        examples = sum(len(raw["record_id"]) for raw in raws)
        runs[layout] = dict(one_pass=one_pass, vision_pass=vision_pass, useful=useful, slots=slots, steps=len(raws),
                            examples=examples, shapes=len(compiled))
    return runs


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import jax

    runs = build(args)
    times = {layout: [] for layout in runs}
    vision_times = {layout: [] for layout in runs}
    for r in range(args.rounds):
        for layout, run in runs.items():
            start = time.perf_counter()
            run["one_pass"]()
            seconds = time.perf_counter() - start
            start = time.perf_counter()
            run["vision_pass"]()
            vision_times[layout].append(time.perf_counter() - start)
            times[layout].append(seconds)
            print(json.dumps({"bench": "sft_layout", "layout": layout, "round": r, "seconds": seconds,
                              "vision_seconds": vision_times[layout][-1],
                              "useful_tokens_per_s": run["useful"] / seconds}))
    summary = {"bench": "sft_layout", "summary": True, "device": jax.devices()[0].device_kind,
               "examples": args.examples, "batch": args.batch, "rows": args.rows, "token_budget": args.token_budget,
               "lookahead": args.lookahead}
    for layout, run in runs.items():
        seconds = statistics.median(times[layout])
        summary[layout] = {"useful_tokens_per_s": run["useful"] / seconds, "padding_fraction": 1 - run["useful"] /
                           run["slots"], "steps": run["steps"], "examples": run["examples"],
                           "useful_tokens": run["useful"], "compiled_shapes": run["shapes"], "seconds": seconds,
                           "vision_seconds": statistics.median(vision_times[layout])}
    if len(runs) == 2:
        summary["packed_over_padded"] = (summary["packed"]["useful_tokens_per_s"]
                                         / summary["padded"]["useful_tokens_per_s"])
        # The floor of the packed pass: its own vision work plus the padded pass's other work scaled to the
        # packed token slots (every slot costing what a padded one does). Vision work is the same per example
        # in both layouts, so it bounds the gain.
        padded, packed = summary["padded"], summary["packed"]
        text = padded["seconds"] - padded["vision_seconds"]
        floor = packed["vision_seconds"] + text * runs["packed"]["slots"] / runs["padded"]["slots"]
        summary["ratio_at_equal_slot_cost"] = (packed["useful_tokens"] / floor) / padded["useful_tokens_per_s"]
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
