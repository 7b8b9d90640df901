"""Ctrl-C (SIGINT) stops both loops like SIGTERM: the step in progress finishes, a checkpoint is saved,
the run exits cleanly and can resume; a second Ctrl-C exits at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.train.conftest import FAST_COMPILE_FLAGS, REPO, override_flags, run_main

GRPO_CONFIG = os.path.join(REPO, "configs", "tiny_grpo.py")


def _committed(workdir) -> list[int]:
    root = workdir / "checkpoints"
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.exists() else []


def _interrupt_after_save(proc, workdir, step):
    """Sends SIGINT once checkpoint ``step`` is committed; returns the output when the run has ended."""
    deadline = time.monotonic() + 400
    while step not in _committed(workdir):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 400 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    return out


def _run_grpo(workdir, overrides):
    cmd = [sys.executable, "-m", "vtjax.main", f"--config={GRPO_CONFIG}", f"--workdir={workdir}",
           *override_flags(overrides)]
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {FAST_COMPILE_FLAGS}".strip()
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_ctrl_c_saves_and_stops_sft(tmp_path):
    overrides = {"train.num_steps": 200, "checkpoint.every_steps": 2, "checkpoint.keep": 3, "log.every_steps": 1}
    out = _interrupt_after_save(run_main(tmp_path, overrides, wait=False), tmp_path, 2)
    assert "Ctrl-C: saving a checkpoint" in out, out[-3000:]
    assert "status='preempted'" in out and "Traceback" not in out, out[-3000:]
    last = max(_committed(tmp_path))
    assert f"step={last}, status='preempted'" in out  # the step it stopped at is the newest checkpoint
    resumed = run_main(tmp_path, {**overrides, "train.num_steps": last + 1})
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert f"resumed from {tmp_path / 'checkpoints'}/{last}" in resumed.output


def test_ctrl_c_saves_and_stops_grpo(tmp_path):
    overrides = {"train.num_steps": 200, "checkpoint.every_steps": 1, "checkpoint.keep": 2, "log.every_steps": 1}
    out = _interrupt_after_save(_run_grpo(tmp_path, overrides), tmp_path, 1)
    assert "compiling the GRPO update step for batch shapes {'input_ids': " in out, out[-3000:]
    assert "Ctrl-C: saving a checkpoint" in out, out[-3000:]
    assert "status='preempted'" in out and "Traceback" not in out, out[-3000:]
    last = max(_committed(tmp_path))
    assert f"step={last}, status='preempted'" in out
