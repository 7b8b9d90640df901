"""``python -m vtjax.convert``: hf-to-orbax and orbax-to-hf, with optional verification."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import jax

from vtjax import errors
from vtjax.convert.files import OutputExistsError, atomic_output_dir, copy_side_files
from vtjax.convert.hf import MAX_SHARD_BYTES, load_hf, write_hf_files
from vtjax.convert.orbax_io import (ParamLeafReader, read_checkpoint_config, restore_params,
                                    write_params_checkpoint)
from vtjax.convert.safetensors_io import CheckpointError
from vtjax.convert.verify import verify_against_transformers
from vtjax.models.qwen2_5_vl import ConfigError


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
                                     description="Convert Qwen2.5-VL checkpoints between Hugging Face and vtjax.")
    sub = parser.add_subparsers(dest="command", required=True)
    to_orbax = sub.add_parser("hf-to-orbax", help="HF safetensors directory -> vtjax Orbax params checkpoint")
    to_orbax.add_argument("--hf-dir", required=True, type=Path, help="directory with config.json and safetensors")
    to_orbax.add_argument("--out", required=True, type=Path, help="output checkpoint directory")
    to_orbax.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="params dtype")
    to_orbax.add_argument("--no-scan", action="store_true", help="store per-layer params (scan_layers=False)")
    to_hf = sub.add_parser("orbax-to-hf", help="vtjax Orbax params checkpoint -> HF safetensors directory")
    to_hf.add_argument("--ckpt", required=True, type=Path, help="vtjax params checkpoint directory")
    to_hf.add_argument("--out", required=True, type=Path, help="output HF directory")
    to_hf.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                       help="tensor dtype (default: the params' dtype)")
    to_hf.add_argument("--max-shard-size", default=MAX_SHARD_BYTES, type=parse_size,
                       help="largest safetensors shard (default 5GB)")
    for p in (to_orbax, to_hf):
        p.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
        p.add_argument("--verify", action="store_true",
                       help="compare logits with transformers (torch, CPU) and fail on a mismatch")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def hf_to_orbax(args) -> None:
    # Conversion needs no accelerator: params stay in host memory as CPU jax arrays.
    config, params = load_hf(args.hf_dir, dtype=args.dtype, scan_layers=not args.no_scan,
                             device=jax.devices("cpu")[0], progress=not args.quiet)
    with atomic_output_dir(args.out, overwrite=args.overwrite) as tmp:
        write_params_checkpoint(tmp, config, params)
        copied = copy_side_files(args.hf_dir, tmp)
        if args.verify:
            _check(verify_against_transformers(config, params, args.hf_dir))
    print(f"wrote {args.out} (params {config.param_dtype}, side files: {', '.join(copied) or 'none'})")


def orbax_to_hf(args) -> None:
    config = read_checkpoint_config(args.ckpt)
    # --verify runs the whole model, so it restores everything; otherwise one parameter at a time.
    params = restore_params(args.ckpt) if args.verify else ParamLeafReader(args.ckpt)
    with atomic_output_dir(args.out, overwrite=args.overwrite) as tmp:
        copy_side_files(args.ckpt, tmp)
        write_hf_files(config, params, tmp, dtype=args.dtype, max_shard_bytes=args.max_shard_size,
                       progress=not args.quiet)
        if args.verify:
            _check(verify_against_transformers(config, params, tmp))
    print(f"wrote {args.out}")


def _check(report) -> None:
    print(report.summary())
    if not report.ok:
        raise VerificationFailed(report.summary())


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        {"hf-to-orbax": hf_to_orbax, "orbax-to-hf": orbax_to_hf}[args.command](args)
    except VerificationFailed:
        print("error: verification failed; nothing was written", file=sys.stderr)
        return 1
    except (CheckpointError, ConfigError, OutputExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
