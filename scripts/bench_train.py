r"""SFT step throughput: vtjax's jitted step vs transformers + torch AdamW, same model, batch and run.

Both sides train the same small Qwen2.5-VL (float32, same weights, same
synthetic video batch, AdamW with clipping) on this machine's CPU; each
prints one JSON line per measurement round, then a summary line with the
median steps/s of each and their ratio. Rounds alternate between the two
sides so machine load affects both alike.

  python scripts/bench_train.py                # batch 4 x (189 text + 64 video tokens), 8-frame 112px videos
  python scripts/bench_train.py --rounds 5 --steps 5
  taskset -c 1 python scripts/bench_train.py --threads 1 --rounds 5 --steps 5   # shared machine
  python scripts/bench_train.py --layout both   # packed vs padded SFT rows (scripts/bench_packing.py)

2026-11-21, shared 2-core CPU VM, one thread per side (the taskset command
above, three runs): vtjax 1.38-1.39 steps/s, transformers 1.13-1.15, ratio
1.21-1.23 (0.61-0.73 before the XLA:CPU fixes listed in docs/training.md).
Both sides use the library defaults (scanned
layers, remat "none" as set below, loss_chunk 512).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any, NamedTuple

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def small_config():
    """A few-million-parameter Qwen2.5-VL with the real structure (both sides build it from this)."""
    from vtjax.models.qwen2_5_vl import Qwen25VLConfig, TextConfig, VisionConfig

    return Qwen25VLConfig(
        vision=VisionConfig(depth=4, hidden_size=128, intermediate_size=256, num_heads=4,
                            fullatt_block_indexes=(1, 3), out_hidden_size=256, attention_impl="xla"),
        text=TextConfig(vocab_size=4096, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                        num_attention_heads=4, num_key_value_heads=2, mrope_section=(8, 12, 12),
                        attention_impl="xla"),
        image_token_id=4093, video_token_id=4094, vision_start_token_id=4091, vision_end_token_id=4092,
        bos_token_id=4088, eos_token_id=4090, pad_token_id=4088, remat_policy="none")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--text", type=int, default=189,
                   help="text tokens per example besides the video (189 + 3 + 64 = 256: no bucket padding)")
    p.add_argument("--grid", default="4,8,8", help="video patch grid t,h,w")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5, help="timed steps per side per round")
    p.add_argument("--attn", default="sdpa", help="transformers attention implementation")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads per side (0 = all cores); 1 is robust on a shared machine")
    return p.parse_args(argv)


class SingleDeviceTrainer(NamedTuple):
    """The trainer's own pieces on one device: mesh, state, its shardings, the step function, the batch builder."""
    mesh: Any
    state: Any
    shardings: Any
    step_fn: Any
    builder: Any


def constant_lr_train_config():
    """The SFT defaults with a constant learning rate of 1e-4 (as the torch side's AdamW)."""
    from vtjax.train import config as config_lib

    train = config_lib.sft_defaults().train
    train.lr, train.warmup_steps, train.warmup_ratio, train.end_lr_ratio = 1e-4, 0, 0.0, 1.0
    return train


def single_device_trainer(model_cfg, train, params):
    """Places `params` and a fresh AdamW state on the first device, as `vtjax.main` would on a 1-device mesh."""
    import jax
    import numpy as np

    from vtjax.sharding import make_mesh
    from vtjax.train.batch import BatchBuilder
    from vtjax.train.optimizer import lr_schedule, make_optimizer
    from vtjax.train.state import TrainState, state_shardings
    from vtjax.train.step import make_train_step

    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    tx = make_optimizer(train, params, 1000)
    shardings = state_shardings(model_cfg, tx, mesh)
    placed = jax.device_put(params, shardings.params)
    state = TrainState(step=jax.device_put(np.int32(0), shardings.step), params=placed,
                       opt_state=jax.jit(tx.init, out_shardings=shardings.opt_state)(placed))
    step_fn = make_train_step(model_cfg, tx, lr_schedule(train.lr, 1000, 0, 1.0), train, mesh)
    return SingleDeviceTrainer(mesh, state, shardings, step_fn, BatchBuilder(model_cfg, mesh, 1))


def build(args):
    import numpy as np
    import torch
    from transformers import Qwen2_5_VLConfig as HFConfig
    from transformers import Qwen2_5_VLForConditionalGeneration

    from vtjax.convert import hf_to_params
    from vtjax.data import batching
    from vtjax.data.batching import IGNORE_INDEX
    from vtjax.models.qwen2_5_vl import abstract_params
    from vtjax.train.step import jit_train_step
    from vtjax.train.synthetic import SyntheticIterator

    model_cfg = small_config()
    train = constant_lr_train_config()
    train.max_grad_norm, train.loss_chunk = 1.0, 512

    torch.manual_seed(0)
    hf_config = HFConfig(**model_cfg.to_hf_dict())
    hf_config._attn_implementation = args.attn
    hf_config.vision_config._attn_implementation = args.attn
    hf_model = Qwen2_5_VLForConditionalGeneration(hf_config).float().train()
    state_dict = {k: v.detach().numpy() for k, v in hf_model.state_dict().items()}
    params = hf_to_params(model_cfg, state_dict, abstract_params(model_cfg))  # the same weights

    grid = tuple(int(x) for x in args.grid.split(","))
    data = SyntheticIterator(model_cfg, global_batch=args.batch, shard=0, num_shards=1, seed=0,
                             num_examples=args.batch, text=args.text, grid=grid)
    raw = next(data)

    # vtjax: one device, the trainer's own step
    trainer = single_device_trainer(model_cfg, train, params)
    batch = trainer.builder(raw)
    step = jit_train_step(trainer.step_fn, trainer.shardings, trainer.builder.shardings(batch), trainer.mesh)
    state = trainer.state

    # transformers: the same batch in the HF processor's layout
    hf_inputs, _ = batching.model_inputs(raw)
    hf_batch = {k: torch.from_numpy(np.asarray(v).astype(np.int64) if k in ("input_ids", "attention_mask")
                                    else np.asarray(v)) for k, v in hf_inputs.items()}
    hf_batch |= {
        "labels": torch.from_numpy(np.where(raw["loss_mask"], raw["input_ids"], IGNORE_INDEX).astype(np.int64)),
    }
    decay = [p for n, p in hf_model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in hf_model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": train.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-4, betas=(train.b1, train.b2),
                            eps=train.eps)

    def torch_step():
        loss = hf_model(**hf_batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf_model.parameters(), train.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    box = {"state": state}

    def jax_step():
        box["state"], metrics = step(box["state"], batch)
        return float(metrics["loss"])

    tokens = int(raw["attention_mask"].sum())
    return jax_step, torch_step, tokens


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if any(a.startswith("--layout") for a in argv):  # packed vs padded SFT rows: scripts/bench_packing.py
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import bench_packing

        return bench_packing.main(argv)
    args = parse_args(argv)
    if args.threads == 1:  # must precede jax's backend start
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                                   " intra_op_parallelism_threads=1").strip()
    import jax
    import torch

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    jax_step, torch_step, tokens = build(args)
    first = {"vtjax": jax_step(), "transformers": torch_step()}  # compiles / warms up; same weights -> same loss
    print(json.dumps({"bench": "sft_step", "first_loss": first, "tokens_per_step": tokens,
                      "device": jax.devices()[0].device_kind, "torch_threads": torch.get_num_threads()}))
    jax_step(), torch_step()
    rates = {"vtjax": [], "transformers": []}
    for r in range(args.rounds):
        for name, fn in (("vtjax", jax_step), ("transformers", torch_step)):
            start = time.perf_counter()
            for _ in range(args.steps):
                loss = fn()
            rate = args.steps / (time.perf_counter() - start)
            rates[name].append(rate)
            print(json.dumps({"bench": "sft_step", "side": name, "round": r, "steps_per_s": rate,
                              "tokens_per_s": rate * tokens, "loss": loss}))
    summary = {k: statistics.median(v) for k, v in rates.items()}
    print(json.dumps({"bench": "sft_step", "summary": True, "batch": args.batch, "text": args.text,
                      "threads": args.threads or os.cpu_count(),
                      "grid": args.grid, "vtjax_steps_per_s": summary["vtjax"],
                      "transformers_steps_per_s": summary["transformers"],
                      "speedup": summary["vtjax"] / summary["transformers"]}))


if __name__ == "__main__":
    main()
