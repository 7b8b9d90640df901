"""``python -m vtjax.main``: every error a user can cause ends in exit status 2 and one line on stderr.

Each case runs the real entry point in a subprocess. Where a case needs a
failure deep inside a mode (a full disk during a save), a stand-in trainer is
registered in ``TRAINERS`` and the same ``app.run(main.main, ...)`` runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_SFT = os.path.join("configs", "tiny_sft.py")
TINY_GRPO = os.path.join("configs", "tiny_grpo.py")
TINY_GENERATE = os.path.join("configs", "tiny_generate.py")
TINY_EVAL = os.path.join("configs", "tiny_eval.py")


def _main(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    """The entry point with ``args``; ``env`` entries are added to this process's environment."""
    return subprocess.run([sys.executable, "-m", "vtjax.main", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def _with_trainer(trainer_source: str, *args, as_nobody: bool = False) -> subprocess.CompletedProcess:
    """Runs the entry point with ``def trainer(config, workdir)`` from ``trainer_source`` as mode sft."""
    drop = "os.setgid(65534); os.setuid(65534)\n" if as_nobody else ""
    code = ("import os, sys\nfrom absl import app\nfrom vtjax import main\n" + textwrap.dedent(trainer_source)
            + "\nmain.TRAINERS['sft'] = trainer\n" + drop + "sys.argv = ['vtjax.main', *sys.argv[1:]]\n"
            + "app.run(main.main, flags_parser=main._parse_flags)\n")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def _one_line(result: subprocess.CompletedProcess) -> str:
    """The single ``error: ...`` line of a run that ended in a user error (asserts exit 2 and nothing else)."""
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


# --- Config mistakes ---------------------------------------------------------------------


def test_missing_config_file_with_overrides(tmp_path):
    line = _one_line(_main("--config=configs/no_such.py", f"--workdir={tmp_path}", "--config.train.lr=1e-3"))
    assert "--config=configs/no_such.py" in line and "is not a file" in line
    line = _one_line(_main("--config", "configs/no_such.py", f"--workdir={tmp_path}"))
    assert "is not a file" in line


def test_config_file_that_raises_is_one_line(tmp_path):
    line = _one_line(_main(f"--config={TINY_SFT}:bogus", f"--workdir={tmp_path}"))
    assert "unknown config arg 'bogus'" in line


@pytest.mark.parametrize("config, override, expected", [
    (TINY_SFT, "--config.data.synthetic_grid=(2,4)", "data.synthetic_grid=(2, 4) must be 3 positive integers"),
    (TINY_SFT, "--config.data.synthetic_grid=(2,3,4)", "data.synthetic_grid=(2, 3, 4): h and w must be multiples"),
    (TINY_SFT, "--config.model.preset=8b", "model.preset='8b' is not a preset"),
    (TINY_SFT, "--config.model.remat_policy=some", "model.remat_policy='some' must be one of"),
    # tiny_grpo: 2 prompts x 8 completions = 16 rows; the user set batch_size 2, never 16.
    (TINY_GRPO, "--config.train.micro_batches=3",
     "train.batch_size*rl.group_size=2*8=16 is not divisible by train.micro_batches=3"),
])
def test_bad_fields_name_what_the_user_set(tmp_path, config, override, expected):
    # With a persistent compilation cache on, as pod users run: still the one error line.
    cache = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "cache")}
    line = _one_line(_main(f"--config={config}", f"--workdir={tmp_path}", override, env=cache))
    assert expected in line
    assert not (tmp_path / "checkpoints").exists()


# --- Workdirs that cannot be used --------------------------------------------------------


def test_workdir_that_is_a_file(tmp_path):
    (tmp_path / "run").write_text("not a directory")
    line = _one_line(_main(f"--config={TINY_SFT}", f"--workdir={tmp_path / 'run'}"))
    assert f"--workdir={tmp_path / 'run'}" in line and "a file is there, not a directory" in line


@pytest.mark.parametrize("config, extra", [
    (TINY_SFT, []),
    (TINY_GENERATE, ["--config.generate.video=clip.mp4", "--config.generate.question=What?",
                     "--config.data.tokenizer=tok.json"]),
    (TINY_EVAL, []),
])
def test_workdir_under_a_file_fails_before_the_mode_starts(tmp_path, config, extra):
    (tmp_path / "blocker").write_text("a file where a directory should be")
    result = _main(f"--config={config}", f"--workdir={tmp_path / 'blocker' / 'run'}", *extra)
    line = _one_line(result)  # nothing logged about loading, generating or training: only this line
    assert f"{tmp_path / 'blocker'} is a file, not a directory" in line
    assert result.stdout == ""


def test_unwritable_workdir_fails_before_the_mode_starts():
    """A directory the run's user may not write (root ignores modes, so the run drops to nobody first)."""
    with tempfile.TemporaryDirectory() as root:  # /tmp, traversable by every user
        os.chmod(root, 0o755)
        locked = os.path.join(root, "locked")
        os.mkdir(locked)
        os.chmod(locked, 0o555)  # r-x for everyone
        as_nobody = os.geteuid() == 0
        for workdir in (locked, os.path.join(locked, "run")):
            result = _with_trainer("def trainer(config, workdir):\n    print('trainer ran')",
                                   f"--config={TINY_SFT}", f"--workdir={workdir}", as_nobody=as_nobody)
            line = _one_line(result)
            assert f"--workdir={workdir}: permission denied" in line
            assert "trainer ran" not in result.stdout
        assert os.listdir(locked) == []


# --- Failures inside a mode -----------------------------------------------------------------

# Libraries that log after the failure (Orbax's async threads, atexit hooks, C++ logs on fd 2) must not
# bury the one line; this stand-in does all three after the error.
_LATE_NOISE = """
    import atexit
    from absl import logging as absl_logging
    def noise():
        absl_logging.error("late library error")
        os.write(2, b"late C++ log line\\n")
    atexit.register(noise)
"""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (a device that is always full)")
def test_full_disk_is_one_line(tmp_path):
    trainer = _LATE_NOISE + """
    def trainer(config, workdir):
        with open("/dev/full", "wb") as f:  # the kernel answers ENOSPC, as on a full disk
            f.write(b"checkpoint bytes")
            f.flush()
    """
    line = _one_line(_with_trainer(trainer, f"--config={TINY_SFT}", f"--workdir={tmp_path}"))
    assert "No space left on device" in line and "free space" in line


def test_workdir_error_from_a_save_is_one_line_and_verbose_adds_the_traceback(tmp_path):
    trainer = _LATE_NOISE + """
    from vtjax import errors
    def trainer(config, workdir):
        try:
            raise OSError(28, "No space left on device", workdir + "/checkpoints/10")
        except OSError as e:
            raise errors.WorkdirError("saving step 10 failed: the disk is full; free space and rerun") from e
    """
    args = (f"--config={TINY_SFT}", f"--workdir={tmp_path}")
    assert _one_line(_with_trainer(trainer, *args)) == ("error: saving step 10 failed: the disk is full; "
                                                        "free space and rerun")
    verbose = _with_trainer(trainer, *args, "--verbose")
    assert verbose.returncode == 2
    assert "Traceback" in verbose.stderr and "OSError: [Errno 28]" in verbose.stderr
    assert "\nerror: saving step 10 failed: the disk is full; free space and rerun\n" in verbose.stderr
    assert "late library error" in verbose.stderr  # --verbose silences nothing


def test_a_bug_keeps_its_traceback(tmp_path):
    result = _with_trainer("def trainer(config, workdir):\n    raise KeyError('internal')",
                           f"--config={TINY_SFT}", f"--workdir={tmp_path}")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "KeyError: 'internal'" in result.stderr
    assert "error: " not in result.stderr
