"""``python -m vtjax.convert``: checkpoints between Hugging Face, vtjax params and training runs.

Verbs are ``SOURCE-to-TARGET``: ``hf`` is a Hugging Face safetensors directory,
``orbax`` a vtjax params checkpoint (what ``model.init_from`` reads), ``workdir``
the ``--workdir`` of an SFT or GRPO run (its newest checkpoint, or ``--step``).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path

import jax
import numpy as np

from vtjax import errors
from vtjax.convert.files import atomic_output_dir, copy_side_files, refuse_overlap
from vtjax.convert.hf import MAX_SHARD_BYTES, load_hf, write_hf_files
from vtjax.convert.orbax_io import (ParamLeafReader, read_checkpoint_config, restore_params,
                                    write_params_checkpoint)
from vtjax.convert.peft_adapter import read_peft_adapter, write_peft_adapter
from vtjax.convert.verify import verify_against_transformers
from vtjax.models.qwen2_5_vl.lora import adapter_product, module_path
from vtjax.train import export

# The entry point is the top of the import graph: it may reach into vtjax.train (for workdir-to-*).


class VerificationFailed(errors.ConversionError):
    """The converted model's logits disagree with transformers beyond float32 rounding."""


def parse_size(text: str) -> int:
    """'5GB', '200MB', '64KiB' or a byte count."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", text, flags=re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"cannot read size {text!r}; use e.g. 5GB, 500MB or 1048576")
    unit = (match.group(2) or "B").upper()
    factor = {"B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}[unit]
    return int(float(match.group(1)) * factor)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vtjax.convert",
                                     description="Convert Qwen2.5-VL checkpoints between Hugging Face, vtjax params "
                                                 "checkpoints and vtjax training runs.")
    sub = parser.add_subparsers(dest="command", required=True)
    to_orbax = sub.add_parser("hf-to-orbax", help="HF safetensors directory -> vtjax Orbax params checkpoint")
    to_orbax.add_argument("--hf-dir", required=True, type=Path, help="directory with config.json and safetensors")
    to_orbax.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="params dtype")
    to_orbax.add_argument("--no-scan", action="store_true", help="store per-layer params (scan_layers=False)")
    to_orbax.add_argument("--peft-adapter", default=None, type=Path,
                          help="a PEFT LoRA adapter directory trained on this model: stored as vtjax adapters")
    to_hf = sub.add_parser("orbax-to-hf", help="vtjax Orbax params checkpoint -> HF safetensors directory")
    to_hf.add_argument("--ckpt", required=True, type=Path, help="vtjax params checkpoint directory")
    to_hf.add_argument("--lora", default=None, choices=["merge", "peft"],
                       help="a checkpoint with LoRA adapters: merge them into a plain HF checkpoint, or write "
                            "a PEFT adapter directory (adapter_config.json, adapter_model.safetensors)")
    to_hf.add_argument("--base-model", default="",
                       help="--lora peft: the base model's name or path recorded in adapter_config.json")
    run_to_orbax = sub.add_parser("workdir-to-orbax",
                                  help="a training run's params -> vtjax params checkpoint (for model.init_from)")
    run_to_hf = sub.add_parser("workdir-to-hf", help="a training run's params -> HF safetensors directory")
    for p in (run_to_orbax, run_to_hf):
        p.add_argument("--workdir", required=True, type=Path, help="the --workdir of an SFT or GRPO run")
        p.add_argument("--step", default=None, type=int, help="which checkpoint (default: the newest)")
    for p in (to_hf, run_to_hf):
        p.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                       help="tensor dtype (default: the params' dtype)")
        p.add_argument("--max-shard-size", default=MAX_SHARD_BYTES, type=parse_size,
                       help="largest safetensors shard (default 5GB)")
    for p in (to_orbax, to_hf, run_to_hf):
        p.add_argument("--verify", action="store_true",
                       help="compare logits with transformers (torch, CPU) and fail on a mismatch")
    for p in (to_orbax, to_hf, run_to_orbax, run_to_hf):
        p.add_argument("--out", required=True, type=Path, help="output directory (outside the input)")
        p.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.add_argument("--verbose", action="store_true", help="print the traceback of an error")
    return parser


def _input_dir(path: Path, flag: str) -> Path:
    """``path`` checked to be an existing directory (before any work)."""
    if not path.is_dir():
        what = "does not exist" if not os.path.lexists(path) else "is not a directory"
        raise errors.ConversionError(f"{flag} {path} {what}; pass the directory to convert")
    return path


def hf_to_orbax(args) -> None:
    refuse_overlap(_input_dir(args.hf_dir, "--hf-dir"), args.out, "--hf-dir")
    # Conversion needs no accelerator: params stay in host memory as CPU jax arrays.
    adapter_dir = None if args.peft_adapter is None else _input_dir(args.peft_adapter, "--peft-adapter")
    config, params = load_hf(args.hf_dir, dtype=args.dtype, scan_layers=not args.no_scan,
                             device=jax.devices("cpu")[0], progress=not args.quiet)
    adapted = ""
    if adapter_dir is not None:
        spec, adapters = read_peft_adapter(adapter_dir, config)
        config = config.replace(lora=spec)
        for path, value in adapters.items():
            node = params
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = jax.device_put(value.astype(config.param_dtype), jax.devices("cpu")[0])
        adapted = f", LoRA r={spec.rank} on {len(adapters) // 2} projections"
    with atomic_output_dir(args.out, overwrite=args.overwrite) as tmp:
        write_params_checkpoint(tmp, config, params)
        copied = copy_side_files(args.hf_dir, tmp)
        if args.verify:
            _check(verify_against_transformers(config, params, args.hf_dir, peft_adapter=adapter_dir))
    print(f"wrote {args.out} (params {config.param_dtype}{adapted}, side files: {', '.join(copied) or 'none'})")


def orbax_to_hf(args) -> None:
    refuse_overlap(_input_dir(args.ckpt, "--ckpt"), args.out, "--ckpt")
    config = read_checkpoint_config(args.ckpt)
    if (config.lora is None) != (args.lora is None):
        raise errors.ConversionError(
            f"{args.ckpt} holds LoRA adapters (r={config.lora.rank}): pass --lora merge (a plain HF checkpoint) "
            "or --lora peft (an adapter directory for peft)" if config.lora is not None else
            f"--lora {args.lora}: {args.ckpt} holds no LoRA adapters; leave --lora out")
    # --verify runs the whole model, so it restores everything; otherwise one parameter at a time.
    params = restore_params(args.ckpt) if args.verify else ParamLeafReader(args.ckpt)
    get = params if callable(params) else functools.partial(_leaf, params)
    with atomic_output_dir(args.out, overwrite=args.overwrite) as tmp:
        copy_side_files(args.ckpt, tmp)
        if args.lora == "peft":
            count = write_peft_adapter(tmp, config, get, base_model=args.base_model)
            if args.verify:  # the base as an HF checkpoint beside it, for peft to load the adapter onto
                with tempfile.TemporaryDirectory(dir=tmp.parent) as base_dir:
                    write_hf_files(config.replace(lora=None), get, Path(base_dir), progress=False)
                    _check(verify_against_transformers(config, params, base_dir, peft_adapter=tmp))
            print(f"wrote {args.out} (PEFT LoRA adapter, r={config.lora.rank}, {count} modules)")
            return
        plain = config.replace(lora=None)
        write_hf_files(plain, get if args.lora is None else merged_reader(config.lora, get), tmp, dtype=args.dtype,
                       max_shard_bytes=args.max_shard_size, progress=not args.quiet)
        if args.verify:  # the adapted vtjax model against the plain (merged) HF one
            _check(verify_against_transformers(config, params, tmp))
    print(f"wrote {args.out}{' (LoRA merged)' if args.lora else ''}")


def merged_reader(spec, get):
    """``get`` for the merged model: each adapted kernel read with its adapters and merged (W + scale * A B),
    the last one kept (callers ask for a stacked kernel's layers one after another)."""
    last: dict = {}

    def read(path):
        path = tuple(path)
        if path[-1] != "kernel" or not spec.selects(module_path(path[:-1])):
            return get(path)
        if path not in last:
            last.clear()
            a, b = np.asarray(get(path[:-1] + ("lora_a",))), np.asarray(get(path[:-1] + ("lora_b",)))
            kernel = np.asarray(get(path))
            last[path] = (kernel + spec.scale * np.asarray(adapter_product(a, b, kernel.shape))).astype(kernel.dtype)
        return last[path]

    return read


def _leaf(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def workdir_to_orbax(args) -> None:
    # export refuses an --out over the workdir or inside its checkpoints; WORKDIR/params is fine.
    _input_dir(args.workdir, "--workdir")
    out = export.export_params(args.workdir, args.out, step=args.step, overwrite=args.overwrite)
    print(f"wrote {out}; start a run from it with --config.model.init_from={out}")


def workdir_to_hf(args) -> None:
    _input_dir(args.workdir, "--workdir")
    check = (lambda config, params, directory: _check(verify_against_transformers(config, params, directory))
             ) if args.verify else None
    export.export_hf(args.workdir, args.out, step=args.step, dtype=args.dtype, max_shard_bytes=args.max_shard_size,
                     overwrite=args.overwrite, progress=not args.quiet, check=check)
    print(f"wrote {args.out}")


COMMANDS = {"hf-to-orbax": hf_to_orbax, "orbax-to-hf": orbax_to_hf, "workdir-to-orbax": workdir_to_orbax,
            "workdir-to-hf": workdir_to_hf}


def _check(report) -> None:
    print(report.summary())
    if not report.ok:
        raise VerificationFailed(report.summary())


def main(argv=None) -> int:
    """Runs one command; a user-fixable problem exits 2 (verification failure: 1) after one ``error:`` line."""
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except VerificationFailed:
        _print_error(args, "verification failed; nothing was written")
        return 1
    except errors.UserError as e:
        _print_error(args, str(e))
        return 2
    except OSError as e:
        if e.errno is None:  # not from the operating system: a bug, keep the traceback
            raise
        _print_error(args, f"{e}; --out {args.out} is unchanged (fix the cause, e.g. disk space or permissions, "
                           "and rerun)")
        return 2
    return 0


def _print_error(args, message: str) -> None:
    if args.verbose:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)
