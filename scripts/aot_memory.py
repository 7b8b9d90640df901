r"""Per-device memory and compile time of the real SFT or GRPO step, compiled ahead of time on fake CPU devices.

No weights and no data: params, optimizer state and the batch are abstract
(shapes, dtypes, shardings), so a 72B step compiles on a laptop. Prints one
JSON line per configuration with the compiled program's memory analysis; for
a GRPO config (mode=grpo) one line per program of the step (vision pass,
prefill, decode, reference log-probs, update) with its own peak and the step
peak while it runs (plus what stays resident across the step), then a summary.

  python scripts/aot_memory.py --config configs/qwen2_5_vl_7b_sft.py --mesh fsdp=8
  python scripts/aot_memory.py --config configs/qwen2_5_vl_7b_sft.py --mesh fsdp=8 --preset 72b
  python scripts/aot_memory.py --config configs/qwen2_5_vl_7b_grpo.py --mesh fsdp=8
  python scripts/aot_memory.py --config configs/qwen2_5_vl_7b_grpo.py --mesh fsdp=8 --lora 64 [--lora_base_dtype bfloat16]

Numbers are XLA's buffer assignment for the CPU backend: parameter, optimizer
and activation (temporary) bytes of one device. Accelerator backends assign
buffers differently (and use the Pallas attention instead of the XLA path),
so treat them as estimates within tens of percent, not as a guarantee.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import runpy
import sys



def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="experiment config file[:arg]")
    p.add_argument("--mesh", default="fsdp=8", help="axis sizes, e.g. fsdp=8 or data=2,fsdp=4,tensor=2")
    p.add_argument("--preset", default=None, help="model size to compile instead of the config's (3b|7b|72b)")
    p.add_argument("--frames", type=int, default=16, help="video frames per example")
    p.add_argument("--frame_patches", type=int, default=512, help="14px patches per frame (128*28*28 px = 512)")
    p.add_argument("--tokens", type=int, default=4096, help="sequence length per example (SFT)")
    p.add_argument("--prompt_text", type=int, default=400, help="text tokens of a GRPO prompt around its video")
    p.add_argument("--budget_gib", type=float, default=80.0, help="device memory the GRPO summary checks against")
    p.add_argument("--batch", type=int, default=None, help="global batch (default: the config's)")
    p.add_argument("--micro_batches", type=int, default=None, help="gradient accumulation slices")
    p.add_argument("--remat", default=None, help="remat policy override")
    p.add_argument("--lora", type=int, default=0,
                   help="LoRA rank: train adapters (alpha = 2 * rank, the config's targets) instead of the model")
    p.add_argument("--lora_base_dtype", default="", help="with --lora: the frozen base's dtype (e.g. bfloat16)")
    p.add_argument("--shared_prefix", default="", help="GRPO: rl.shared_prefix (auto | on | off) to plan with")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    mesh_sizes = {"data": 1, "fsdp": 1, "tensor": 1}
    for item in args.mesh.split(","):
        name, value = item.split("=")
        mesh_sizes[name.strip()] = int(value)
    devices = math.prod(mesh_sizes.values())
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax  # pylint: disable=import-outside-toplevel

    from vtjax.train import aot  # pylint: disable=import-outside-toplevel

    path, _, arg = args.config.partition(":")
    config = runpy.run_path(path)["get_config"](arg)
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = (mesh_sizes[a] for a in ("data", "fsdp", "tensor"))
    if args.preset:
        config.model.preset = args.preset
    config.model.init_from = ""
    if args.batch:
        config.train.batch_size = args.batch
    if args.micro_batches:
        config.train.micro_batches = args.micro_batches
    if args.remat:
        config.model.remat_policy = args.remat
    if args.lora:
        config.train.lora.enabled, config.train.lora.rank, config.train.lora.alpha = True, args.lora, 2.0 * args.lora
        config.train.lora.base_dtype = args.lora_base_dtype
    if args.shared_prefix:
        config.rl.shared_prefix = args.shared_prefix
    if config.mode == "grpo":
        from vtjax.train import aot_grpo  # pylint: disable=import-outside-toplevel

        reports = aot_grpo.grpo_report(config, frames=args.frames, frame_patches=args.frame_patches,
                                       prompt_text=args.prompt_text)
        for report in reports:
            report.update(preset=config.model.preset, device=jax.devices()[0].device_kind, devices=devices,
                          mesh=mesh_sizes)
            print(json.dumps(report), flush=True)
        peak = max(r["step_peak_gib"] for r in reports)
        summary = {"summary": "grpo_step", "preset": config.model.preset, "mesh": mesh_sizes, "lora": args.lora,
                   "layout": reports[0]["layout"], "micro_batches": config.train.micro_batches,
                   "step_peak_gib": peak, "at": max(reports, key=lambda r: r["step_peak_gib"])["program"],
                   "budget_gib": args.budget_gib, "fits": peak <= args.budget_gib,
                   "compile_s": sum(r["compile_s"] + r["lower_s"] for r in reports)}
        print(json.dumps(summary), flush=True)
        return summary
    report = aot.compile_report(config, frames=args.frames, frame_patches=args.frame_patches,
                                tokens=args.tokens)
    report.update(device=jax.devices()[0].device_kind, devices=devices, mesh=mesh_sizes, lora=args.lora)
    print(json.dumps(report), flush=True)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
