"""Stopped runs (SIGTERM; SIGKILL after a committed save) resume and end bit-equal to an uninterrupted run.

The runs use the default (multi-threaded) CPU kernels: the program is
deterministic, so equality holds on a loaded machine too. This test once
failed in ~1 of 3 runs alone and in most full-suite runs: when SIGTERM landed
between two saves, the loop saved the data position *after* fetching the next
batch, so the resumed run skipped one batch. Here every batch holds the same 8
records in another order, so the skip showed up only as one-ulp differences
(summation order) from the first resumed step on. Whether the stop landed on a
save step depended on timing, hence the flake. tests/train/test_resume_damaged.py
stops between saves on purpose.
"""

from __future__ import annotations

import json
import os
import signal
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from tests.train.conftest import run_main

STEPS = 16


def _overrides(records_overrides):
    return {**records_overrides, "train.num_steps": STEPS, "checkpoint.every_steps": 2,
            "checkpoint.keep": 20, "log.every_steps": 1}


def _committed(workdir) -> list[int]:
    root = workdir / "checkpoints"
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.exists() else []


def _stop_when_saved(workdir, overrides, sig, after_step):
    """Starts a run, sends ``sig`` once checkpoint ``after_step`` is committed; returns the finished Popen."""
    proc = run_main(workdir, overrides, arg="records", wait=False)
    deadline = time.monotonic() + 300
    while after_step not in _committed(workdir):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.output, _ = proc.communicate(timeout=120)
    return proc


def _final_at(workdir, step):
    """(state, data state) of checkpoint ``step``."""
    state = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "state")
    data = (workdir / "checkpoints" / str(step) / "data" / "process_0-of-1.json").read_text()
    return jax.device_get(state), json.loads(data)


def _final(workdir):
    return _final_at(workdir, STEPS)


def _assert_bit_equal(a, b):
    leaves_a, tree_a = jax.tree_util.tree_flatten_with_path(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for (path, x), y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def test_preempted_and_killed_runs_resume_exactly(tmp_path, records_overrides):
    overrides = _overrides(records_overrides)
    reference = run_main(tmp_path / "reference", overrides, arg="records", timeout=400)
    assert reference.returncode == 0, reference.output[-3000:]
    want_state, want_data = _final(tmp_path / "reference")

    # SIGTERM: the run saves the step it finished and exits cleanly
    term = _stop_when_saved(tmp_path / "term", overrides, signal.SIGTERM, after_step=4)
    assert term.returncode == 0, term.output[-3000:]
    assert "status='preempted'" in term.output
    stopped_at = max(_committed(tmp_path / "term"))
    assert 4 <= stopped_at < STEPS
    # SIGKILL right after a committed save: whatever was in flight is lost, the save is not
    kill = _stop_when_saved(tmp_path / "kill", overrides, signal.SIGKILL, after_step=6)
    assert kill.returncode == -signal.SIGKILL
    assert max(_committed(tmp_path / "kill")) < STEPS

    for name in ("term", "kill"):
        resumed = run_main(tmp_path / name, overrides, arg="records", timeout=400)
        assert resumed.returncode == 0, resumed.output[-3000:]
        got_state, got_data = _final(tmp_path / name)
        assert got_data == want_data  # first: a skipped or repeated batch shows here, by name
        _assert_bit_equal(got_state, want_state)
    metrics = [json.loads(line) for line in open(os.path.join(tmp_path / "term", "metrics.jsonl"))]
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))  # the resumed run went on from the save
