"""Streaming safetensors I/O: read one tensor at a time, write shards tensor by tensor.

The format is an 8-byte little-endian header length, a JSON header mapping
names to ``{"dtype", "shape", "data_offsets"}``, then the raw bytes. Reading
uses positioned reads (no memory map), so only the tensor in hand occupies
host memory; writing plans every offset up front and streams the bytes, so a
shard is never assembled in memory.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Callable, Iterable, Iterator

import ml_dtypes
import numpy as np

from vtjax import errors

DTYPES = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype(np.int64), "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16), "I8": np.dtype(np.int8), "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
_MAX_HEADER = 100 * 1024 * 1024


class CheckpointError(errors.CheckpointError):
    """A checkpoint directory or file is missing, malformed or unsafe; the message says which."""


class SafetensorsFile:
    """Header of one .safetensors file plus positioned reads of its tensors."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                raw = f.read(8)
                if len(raw) < 8:
                    raise CheckpointError(f"{self.path}: file too short to be safetensors")
                (header_len,) = struct.unpack("<Q", raw)
                if header_len > _MAX_HEADER:
                    raise CheckpointError(f"{self.path}: header length {header_len} is not plausible")
                header = json.loads(f.read(header_len))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{self.path}: cannot read safetensors header ({e})") from e
        header.pop("__metadata__", None)
        self.data_start = 8 + header_len
        self.size = self.path.stat().st_size
        self.entries = header
        for name, entry in header.items():
            if entry.get("dtype") not in DTYPES:
                raise CheckpointError(f"{self.path}: tensor {name} has unsupported dtype {entry.get('dtype')}")
            start, end = entry["data_offsets"]
            if self.data_start + end > self.size:
                raise CheckpointError(f"{self.path}: tensor {name} runs past the end of the file (truncated?)")

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.entries[name]["shape"])

    def read(self, name: str) -> np.ndarray:
        entry = self.entries[name]
        start, end = entry["data_offsets"]
        with open(self.path, "rb") as f:
            f.seek(self.data_start + start)
            raw = f.read(end - start)
        return np.frombuffer(raw, DTYPES[entry["dtype"]]).reshape(entry["shape"])


class CheckpointReader:
    """All tensors of an HF checkpoint directory (single file or sharded with an index)."""

    def __init__(self, directory: str | os.PathLike):
        directory = Path(directory)
        if not directory.is_dir():
            raise CheckpointError(f"{directory} is not a directory")
        self.directory = directory
        index = directory / INDEX_FILE
        single = directory / SINGLE_FILE
        if index.exists():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as e:
                raise CheckpointError(f"{index}: not a valid safetensors index ({e})") from e
            files = sorted(set(weight_map.values()))
            missing = [f for f in files if not (directory / f).exists()]
            if missing:
                raise CheckpointError(f"{index} points at missing shard(s): {missing}")
        elif single.exists():
            files, weight_map = [SINGLE_FILE], None
        else:
            pickles = [p.name for pattern in PICKLE_PATTERNS for p in directory.glob(pattern)]
            if pickles:
                raise CheckpointError(
                    f"{directory} holds only pickle checkpoints {pickles}; vtjax reads safetensors only "
                    "(pickles can run code when loaded). Convert them once in a trusted environment: "
                    "Qwen2_5_VLForConditionalGeneration.from_pretrained(dir).save_pretrained(out, "
                    "safe_serialization=True)")
            raise CheckpointError(f"{directory} has neither {SINGLE_FILE} nor {INDEX_FILE}")
        self.files = {f: SafetensorsFile(directory / f) for f in files}
        self.location: dict[str, str] = {}
        for fname, sf in self.files.items():
            for name in sf.entries:
                self.location[name] = fname
        if weight_map is not None:
            absent = sorted(n for n, f in weight_map.items() if n not in self.files[f].entries)
            if absent:
                raise CheckpointError(f"{index} lists tensors not found in their shards: {absent[:10]}")

    def names(self) -> list[str]:
        return list(self.location)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.files[self.location[name]].shape(name)

    def read(self, name: str) -> np.ndarray:
        return self.files[self.location[name]].read(name)

    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())


def plan_shards(tensors: Iterable[tuple[str, tuple[int, ...], np.dtype]], max_shard_bytes: int
                ) -> list[list[tuple[str, tuple[int, ...], np.dtype]]]:
    """Groups (name, shape, dtype) in order into shards of at most ``max_shard_bytes`` (one tensor may exceed it)."""
    shards, current, size = [], [], 0
    for name, shape, dtype in tensors:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append((name, tuple(shape), np.dtype(dtype)))
        size += nbytes
    if current:
        shards.append(current)
    return shards


def write_safetensors(path: Path, specs: list[tuple[str, tuple[int, ...], np.dtype]],
                      produce: Callable[[str], np.ndarray], metadata: dict | None = None) -> None:
    """Writes one file whose tensors ``specs`` are produced one at a time by ``produce(name)``."""
    header, offset = {}, 0
    for name, shape, dtype in specs:
        nbytes = int(np.prod(shape)) * dtype.itemsize
        header[name] = {"dtype": DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = metadata or {"format": "pt"}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # keep tensor data 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for name, shape, dtype in specs:
            array = np.ascontiguousarray(produce(name))
            if array.shape != shape or array.dtype != dtype:
                raise CheckpointError(f"{name}: produced {array.shape} {array.dtype}, planned {shape} {dtype}")
            f.write(memoryview(array.reshape(-1).view(np.uint8)))  # no bytes copy of the tensor


def shard_file_names(count: int) -> Iterator[str]:
    if count == 1:
        yield SINGLE_FILE
        return
    for i in range(count):
        yield f"model-{i + 1:05d}-of-{count:05d}.safetensors"
