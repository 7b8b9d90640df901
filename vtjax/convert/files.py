"""Output directories that appear complete or not at all, and the side files copied alongside weights."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
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


class OverlapError(errors.WorkdirError):
    """The output directory is, contains or sits inside the input, so writing it could destroy the input."""


def overlap(source: str | os.PathLike, out: str | os.PathLike) -> str | None:
    """How ``out`` relates to ``source`` after resolving symlinks: "is", "contains", "is inside" or None."""
    src, dst = Path(os.path.realpath(source)), Path(os.path.realpath(out))
    if src == dst:
        return "is"
    if dst in src.parents:
        return "contains"
    if src in dst.parents:
        return "is inside"
    return None


def refuse_overlap(source: str | os.PathLike, out: str | os.PathLike, source_flag: str = "input",
                   allow_inside: bool = False) -> None:
    """Raises ``OverlapError`` when ``out`` is, contains or (unless ``allow_inside``) sits inside ``source``."""
    relation = overlap(source, out)
    if relation is None or (relation == "is inside" and allow_inside):
        return
    raise OverlapError(f"--out {out} {relation} {source_flag} {source} (after resolving symlinks); writing it "
                       f"could destroy the input: choose an --out outside {source}")


def _new_dir(parent: Path, prefix: str) -> Path:
    """A new, uniquely named directory under ``parent`` with the user's umask (mkdtemp's would be 0700)."""
    while True:
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir(mode=0o777)  # the umask applies, as for any directory the user creates
            return path
        except FileExistsError:
            continue


def _aside_name(out: Path) -> Path:
    """An unused sibling name for the directory ``out`` replaces while the new one moves in."""
    while True:
        path = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
        if not os.path.lexists(path):
            return path


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yields a temporary sibling directory; on success it replaces ``out``, on failure it is removed.

    The new directory is made with the user's umask. An existing ``out`` (with
    ``overwrite``) is renamed aside, the new one renamed in, and only then the old
    one deleted: an exception at any point leaves the old or the new directory
    complete at ``out``; a kill between the two renames leaves both complete, the
    old one at ``.NAME.old-*`` beside ``out``.
    """
    out = Path(out)
    if os.path.lexists(out) and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise OutputExistsError(f"{out} exists and is not empty; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_dir(out.parent, f".{out.name}.partial-")
    try:
        yield tmp
        if not os.path.lexists(out):
            os.replace(tmp, out)
            return
        aside = _aside_name(out)
        os.replace(out, aside)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(aside, out)  # put the old directory back
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        _remove(aside)
    except OSError as e:  # the new output is complete; only the old copy is left over
        print(f"warning: wrote {out}, but could not delete the replaced copy at {aside} ({e}); delete it by hand",
              file=sys.stderr)


def copy_side_files(src: Path, dst: Path) -> list[str]:
    """Copies tokenizer / processor / generation files present in ``src``; returns their names."""
    copied = []
    for name in SIDE_FILES:
        if (Path(src) / name).is_file():
            shutil.copy2(Path(src) / name, Path(dst) / name)
            copied.append(name)
    return copied
