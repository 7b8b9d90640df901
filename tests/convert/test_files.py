"""atomic_output_dir: what is on disk after a failure at each step of a replacement, modes, overlap checks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from vtjax.convert import files
from vtjax.convert.files import atomic_output_dir

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OLD = {"weights": "old", "config.json": "{old}"}
NEW = {"weights": "new", "config.json": "{new}"}
NO_SPACE = OSError(28, "No space left on device")


def _old_output(out):
    out.mkdir()
    for name, text in OLD.items():
        (out / name).write_text(text)


def _write_new(tmp):
    for name, text in NEW.items():
        (tmp / name).write_text(text)


def _contents(directory):
    return {p.name: p.read_text() for p in directory.iterdir()}


def _siblings(out):
    """Everything in ``out``'s parent besides ``out``."""
    return sorted(p.name for p in out.parent.iterdir() if p != out)


def test_replace_swaps_in_the_new_directory(tmp_path):
    out = tmp_path / "ckpt"
    _old_output(out)
    with atomic_output_dir(out, overwrite=True) as tmp:
        _write_new(tmp)
    assert _contents(out) == NEW and _siblings(out) == []


def test_failure_while_writing_keeps_the_old(tmp_path):
    out = tmp_path / "ckpt"
    _old_output(out)
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output_dir(out, overwrite=True) as tmp:
            _write_new(tmp)
            raise RuntimeError("boom")
    assert _contents(out) == OLD and _siblings(out) == []


def _fail_on_call(monkeypatch, target, name, n, exc=NO_SPACE):
    """Makes the n-th call (1-based) of ``target.name`` (os.replace, shutil.rmtree as files.py sees them) raise."""
    real = getattr(target, name)
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(args)
        if len(calls) == n:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapped)
    return calls


def test_failure_moving_the_old_aside_keeps_the_old(tmp_path, monkeypatch):
    out = tmp_path / "ckpt"
    _old_output(out)
    _fail_on_call(monkeypatch, files.os, "replace", 1)
    with pytest.raises(OSError, match="No space"):
        with atomic_output_dir(out, overwrite=True) as tmp:
            _write_new(tmp)
    assert _contents(out) == OLD and _siblings(out) == []


def test_failure_moving_the_new_in_puts_the_old_back(tmp_path, monkeypatch):
    out = tmp_path / "ckpt"
    _old_output(out)
    calls = _fail_on_call(monkeypatch, files.os, "replace", 2)
    with pytest.raises(OSError, match="No space"):
        with atomic_output_dir(out, overwrite=True) as tmp:
            _write_new(tmp)
    assert len(calls) == 3  # aside, (failed) in, back
    assert _contents(out) == OLD and _siblings(out) == []


def test_failure_deleting_the_old_keeps_the_new_and_says_so(tmp_path, monkeypatch, capsys):
    out = tmp_path / "ckpt"
    _old_output(out)
    _fail_on_call(monkeypatch, files.shutil, "rmtree", 1, PermissionError(13, "Permission denied"))
    with atomic_output_dir(out, overwrite=True) as tmp:
        _write_new(tmp)
    assert _contents(out) == NEW
    [left] = _siblings(out)
    assert left.startswith(".ckpt.old-") and _contents(tmp_path / left) == OLD
    assert left in capsys.readouterr().err


def test_kill_between_the_renames_leaves_both_complete(tmp_path):
    """A process killed (os._exit) right after the old directory moved aside: nothing is lost."""
    out = tmp_path / "ckpt"
    _old_output(out)
    script = textwrap.dedent(f"""
        import os
        from vtjax.convert import files
        real, calls = os.replace, []
        def replace(a, b):
            calls.append(a)
            real(a, b)
            if len(calls) == 1:
                os._exit(9)
        files.os.replace = replace
        with files.atomic_output_dir({str(out)!r}, overwrite=True) as tmp:
            (tmp / "weights").write_text("new")
            (tmp / "config.json").write_text("{{new}}")
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert not out.exists()
    left = {p.name.split("-")[0]: _contents(p) for p in tmp_path.iterdir()}
    assert left == {".ckpt.old": OLD, ".ckpt.partial": NEW}


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o027, 0o750), (0o077, 0o700)])
def test_output_directory_takes_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        with atomic_output_dir(tmp_path / "new") as tmp:
            _write_new(tmp)
        first = (tmp_path / "new").stat().st_mode & 0o777
        with atomic_output_dir(tmp_path / "new", overwrite=True) as tmp:
            _write_new(tmp)
    finally:
        os.umask(previous)
    assert first == mode and (tmp_path / "new").stat().st_mode & 0o777 == mode


def test_existing_output_is_refused_without_overwrite(tmp_path):
    out = tmp_path / "ckpt"
    _old_output(out)
    with pytest.raises(files.OutputExistsError, match="--overwrite"):
        with atomic_output_dir(out) as tmp:
            _write_new(tmp)
    assert _contents(out) == OLD and _siblings(out) == []


def test_overlap_resolves_symlinks(tmp_path):
    src = tmp_path / "models" / "hf"
    src.mkdir(parents=True)
    (tmp_path / "link").symlink_to(src)
    assert files.overlap(src, src) == "is"
    assert files.overlap(src, tmp_path / "link") == "is"
    assert files.overlap(src, tmp_path / "models") == "contains"
    assert files.overlap(src, tmp_path / "link" / "out") == "is inside"
    assert files.overlap(src, tmp_path / "models" / "hf2") is None
    assert files.overlap(tmp_path / "link" / "..", tmp_path / "models" / "x") == "is inside"  # link/.. = models
    with pytest.raises(files.OverlapError, match=f"--out {tmp_path / 'models'} contains --hf-dir {src}"):
        files.refuse_overlap(src, tmp_path / "models", "--hf-dir")
    files.refuse_overlap(src, src / "sub", allow_inside=True)
