"""A damaged newest checkpoint: resume falls back to the newest intact step (logged, the damaged one moved
aside), ends where an uninterrupted run ends, and metrics.jsonl keeps one row per step. Also: a stop
between saves saves the data position of the next step (the resumed run sees the same batches)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.train.conftest import read_metrics, tiny_config
from vtjax.train.metrics import MetricsLogger
from vtjax.errors import CheckpointError
from vtjax.train import sft

# 16 distinct examples in batches of 8: consecutive batches differ, so a skipped batch changes the result.
OVERRIDES = {"train.num_steps": 4, "checkpoint.every_steps": 2, "checkpoint.keep": 5, "log.every_steps": 1,
             "data.synthetic_examples": 16}


def _state(workdir, step):
    return jax.device_get(ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "state"))


def _data(workdir, step):
    return json.loads((workdir / "checkpoints" / str(step) / "data" / "process_0-of-1.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 4-step run: (workdir, state at step 4, data state at step 4)."""
    workdir = tmp_path_factory.mktemp("resume_damaged") / "run"
    result = sft.run(tiny_config(**OVERRIDES), str(workdir))
    assert result.step == 4
    return workdir, _state(workdir, 4), _data(workdir, 4)


def _assert_close(got, want):
    leaves_a, tree_a = jax.tree_util.tree_flatten_with_path(got)
    leaves_b, tree_b = jax.tree_util.tree_flatten(want)
    assert tree_a == tree_b
    for (path, x), y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7,
                                   err_msg=jax.tree_util.keystr(path))


def _largest_file(directory):
    files = [os.path.join(directory, f) for f in os.listdir(directory)]
    return max(files, key=os.path.getsize)


DAMAGES = {
    "ocdbt_data_file": lambda step: os.remove(_largest_file(step / "state" / "ocdbt.process_0" / "d")),
    "state_metadata": lambda step: os.remove(step / "state" / "_METADATA"),
    "data_iterator_state": lambda step: os.remove(step / "data" / "process_0-of-1.json"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_newest_step_falls_back_to_the_previous_one(reference, tmp_path, damage, caplog):
    ref_dir, want_state, want_data = reference
    workdir = tmp_path / "run"
    shutil.copytree(ref_dir, workdir)
    DAMAGES[damage](workdir / "checkpoints" / "4")
    with caplog.at_level(logging.INFO, logger="vtjax"):
        result = sft.run(tiny_config(**OVERRIDES), str(workdir))
    assert result.step == 4 and result.status == "done"
    skipped = [r.getMessage() for r in caplog.records if "is damaged, skipping it" in r.getMessage()]
    assert len(skipped) == 1 and skipped[0].startswith("checkpoint step 4 under "), skipped
    assert "\n" not in skipped[0]
    assert f"resumed from {workdir / 'checkpoints'}/2" in caplog.text
    assert (workdir / "checkpoints_damaged" / "4").is_dir()  # kept for inspection, out of the way
    _assert_close(_state(workdir, 4), want_state)  # steps 3 and 4 retrained from step 2
    assert _data(workdir, 4) == want_data
    assert [m["step"] for m in read_metrics(workdir)] == [1, 2, 3, 4]  # the replaced rows 3, 4 are not doubled


def test_no_intact_step_is_one_checkpoint_error(reference, tmp_path):
    ref_dir, _, _ = reference
    workdir = tmp_path / "run"
    shutil.copytree(ref_dir, workdir)
    for step in (2, 4):
        os.remove(workdir / "checkpoints" / str(step) / "state" / "_METADATA")
    with pytest.raises(CheckpointError, match=r"no intact checkpoint under .*step 4: .*step 2: ") as info:
        sft.run(tiny_config(**OVERRIDES), str(workdir))
    assert "\n" not in str(info.value)
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]  # nothing moved when nothing resumes


def test_a_stop_between_saves_resumes_on_the_next_batch(reference, tmp_path, monkeypatch):
    """Ctrl-C during step 3 (saves at 2, 4): the run saves step 3 with the data position of step 4."""
    _, want_state, want_data = reference
    workdir = tmp_path / "run"
    original = MetricsLogger.step

    def interrupt_at_3(self, step, scalars):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, step, scalars)

    monkeypatch.setattr(MetricsLogger, "step", interrupt_at_3)
    stopped = sft.run(tiny_config(**OVERRIDES), str(workdir))
    assert (stopped.step, stopped.status) == (3, "preempted")
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "3"]
    monkeypatch.setattr(MetricsLogger, "step", original)
    resumed = sft.run(tiny_config(**OVERRIDES), str(workdir))
    assert (resumed.step, resumed.status) == (4, "done")
    _assert_close(_state(workdir, 4), want_state)
    assert _data(workdir, 4) == want_data
