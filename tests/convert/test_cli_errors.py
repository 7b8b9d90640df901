"""python -m vtjax.convert on user mistakes: refused before any work, one ``error:`` line, exit 2, input intact."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys

import pytest

from tests.parity.hf_reference import build_hf_model
from vtjax.convert import cli
from vtjax.models.qwen2_5_vl import Qwen25VLConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def hf_source(tmp_path_factory):
    """A saved tiny random HF checkpoint under models/hf (so models/ is its parent)."""
    source = tmp_path_factory.mktemp("area") / "models" / "hf"
    build_hf_model(Qwen25VLConfig.tiny(), seed=0).save_pretrained(source)
    (source / "tokenizer.json").write_text('{"stand-in": true}')
    return source


def _fingerprint(directory):
    """{relative path: sha256} of every file under ``directory``."""
    return {os.path.relpath(os.path.join(root, name), directory):
            hashlib.sha256(open(os.path.join(root, name), "rb").read()).hexdigest()
            for root, _, names in os.walk(directory) for name in names}


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _convert(*args) -> int:
    return cli.main([*map(str, args), "--quiet"])


@pytest.mark.parametrize("where", ["same", "parent", "inside", "symlink"])
def test_out_overlapping_the_input_is_refused(hf_source, tmp_path, capsys, where):
    before = _fingerprint(hf_source.parent)
    (tmp_path / "link").symlink_to(hf_source)
    out = {"same": hf_source, "parent": hf_source.parent, "inside": hf_source / "converted",
           "symlink": tmp_path / "link"}[where]
    assert _convert("hf-to-orbax", "--hf-dir", hf_source, "--out", out, "--overwrite") == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"--out {out}" in line and f"--hf-dir {hf_source}" in line
    assert _fingerprint(hf_source.parent) == before  # nothing written, nothing deleted
    assert (tmp_path / "link").is_symlink()


def test_orbax_to_hf_out_over_its_checkpoint_is_refused(hf_source, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    assert _convert("hf-to-orbax", "--hf-dir", hf_source, "--out", ckpt) == 0
    before = _fingerprint(ckpt)
    capsys.readouterr()
    assert _convert("orbax-to-hf", "--ckpt", ckpt, "--out", tmp_path, "--overwrite") == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"--out {tmp_path} contains --ckpt {ckpt}" in line
    assert _fingerprint(ckpt) == before


def test_out_of_space_is_one_line_and_keeps_the_old_output(hf_source, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("previous conversion")

    def full_disk(directory, *args, **kwargs):
        (directory / "params").mkdir()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory / "params" / "x"))

    monkeypatch.setattr(cli, "write_params_checkpoint", full_disk)
    assert _convert("hf-to-orbax", "--hf-dir", hf_source, "--out", out, "--overwrite") == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "No space left on device" in line and f"--out {out} is unchanged" in line
    assert _fingerprint(out) == {"mine.txt": hashlib.sha256(b"previous conversion").hexdigest()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _run_module(*args):
    return subprocess.run([sys.executable, "-m", "vtjax.convert", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_command_line_missing_input_and_out_inside_input(hf_source, tmp_path):
    missing = _run_module("hf-to-orbax", "--hf-dir", tmp_path / "nope", "--out", tmp_path / "out")
    assert missing.returncode == 2
    assert _one_error_line(missing.stderr) == (f"error: --hf-dir {tmp_path / 'nope'} does not exist; "
                                               "pass the directory to convert")
    assert not (tmp_path / "out").exists()

    before = _fingerprint(hf_source.parent)
    inside = _run_module("hf-to-orbax", "--hf-dir", hf_source, "--out", hf_source / "vt", "--verbose")
    assert inside.returncode == 2
    *trace, last = inside.stderr.strip().splitlines()
    assert trace[0] == "Traceback (most recent call last):" and "OverlapError" in trace[-1]  # --verbose
    assert last == (f"error: --out {hf_source / 'vt'} is inside --hf-dir {hf_source} (after resolving symlinks); "
                    f"writing it could destroy the input: choose an --out outside {hf_source}")
    assert _fingerprint(hf_source.parent) == before
