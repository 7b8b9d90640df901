"""Output directories that appear complete or not at all, and the side files copied alongside weights."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from vtjax import errors

# Files that travel with the weights in both directions (those present are copied).
SIDE_FILES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
    "added_tokens.json", "chat_template.json", "preprocessor_config.json", "generation_config.json",
    "tokenizer.model",
)


class OutputExistsError(errors.WorkdirError, FileExistsError):
    """The output directory exists and is not empty, and overwriting was not asked for."""


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yields a temporary sibling directory; on success it replaces ``out``, on failure it is removed.

    A crash or an exception therefore never leaves a partial directory at ``out``.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise OutputExistsError(f"{out} exists and is not empty; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    os.replace(tmp, out)


def copy_side_files(src: Path, dst: Path) -> list[str]:
    """Copies tokenizer / processor / generation files present in ``src``; returns their names."""
    copied = []
    for name in SIDE_FILES:
        if (Path(src) / name).is_file():
            shutil.copy2(Path(src) / name, Path(dst) / name)
            copied.append(name)
    return copied
