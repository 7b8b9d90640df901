"""Resuming checks the config saved with the checkpoint: another mode or model is refused before
anything is written, safe changes are logged as a diff, other changes need checkpoint.allow_config_change."""

from __future__ import annotations

import logging
import os
import shutil

import pytest

from configs import tiny_grpo
from tests.train.conftest import run_main, tiny_config
from vtjax.errors import CheckpointError
from vtjax.train import grpo, grpo_config, resume, sft

BASE = {"train.num_steps": 4, "checkpoint.every_steps": 2, "checkpoint.keep": 3, "log.every_steps": 2}


@pytest.fixture(scope="module")
def sft_workdir(tmp_path_factory):
    """A finished 4-step tiny SFT run (checkpoints 2 and 4)."""
    workdir = tmp_path_factory.mktemp("resume_config") / "run"
    proc = run_main(workdir, BASE)
    assert proc.returncode == 0, proc.output[-3000:]
    return workdir


def _copy(src, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst


def _tree(workdir) -> dict:
    """Every file under ``workdir`` with its size and modification time."""
    out = {}
    for root, _, files in os.walk(workdir):
        for name in files:
            st = os.stat(os.path.join(root, name))
            out[os.path.relpath(os.path.join(root, name), workdir)] = (st.st_size, st.st_mtime_ns)
    return out


def test_grpo_config_on_an_sft_workdir_is_refused_before_anything_is_written(sft_workdir, tmp_path):
    workdir = _copy(sft_workdir, tmp_path)
    before = _tree(workdir)
    config = tiny_grpo.get_config()
    with pytest.raises(CheckpointError, match=r"holds a sft run at step 4; this is a grpo config.*new --workdir"):
        grpo.run(config, str(workdir))
    assert _tree(workdir) == before  # nothing pruned, written or appended


@pytest.mark.parametrize("field,value", [("model.preset", "3b"), ("model.scan_layers", False)])
def test_another_model_is_refused(sft_workdir, tmp_path, field, value):
    workdir = _copy(sft_workdir, tmp_path)
    before = _tree(workdir)
    with pytest.raises(CheckpointError, match=f"another model at step 4 \\({field} "):
        sft.run(tiny_config(**{**BASE, field: value}), str(workdir))
    assert _tree(workdir) == before


@pytest.mark.parametrize("field,value", [("train.batch_size", 16), ("seed", 3), ("data.synthetic_examples", 4)])
def test_other_changes_need_allow_config_change(sft_workdir, tmp_path, field, value, caplog):
    workdir = _copy(sft_workdir, tmp_path)
    before = _tree(workdir)
    config = tiny_config(**{**BASE, field: value})
    with pytest.raises(CheckpointError, match=f"{field} .* -> {value}.*allow_config_change=True"):
        sft.run(config, str(workdir))
    assert _tree(workdir) == before
    config.checkpoint.allow_config_change = True
    with caplog.at_level(logging.INFO, logger="vtjax"):
        result = sft.run(config, str(workdir))  # num_steps=4: restores step 4 and has nothing left to do
    assert result.step == 4 and result.status == "done"
    assert f"config change since step 4: {field}:" in caplog.text


def test_safe_changes_are_logged_and_the_run_goes_on(sft_workdir, tmp_path, caplog):
    workdir = _copy(sft_workdir, tmp_path)
    config = tiny_config(**{**BASE, "train.num_steps": 6, "train.lr": 1e-3, "log.every_steps": 1,
                            "checkpoint.keep": 5})
    with caplog.at_level(logging.INFO, logger="vtjax"):
        result = sft.run(config, str(workdir))
    assert result.step == 6
    assert "config change since step 4: train.lr: 0.003 -> 0.001" in caplog.text
    assert "config change since step 4: train.num_steps: 4 -> 6" in caplog.text
    assert "config change since step 4: log.every_steps: 2 -> 1" in caplog.text
    assert "resumed from" in caplog.text and "checkpoints/4" in caplog.text
    # the compile notice comes before the first step of the resumed run, the seconds after it
    assert "compiling the train step for batch shapes {'input_ids': (1, 8, 64)" in caplog.text
    assert "compiled the train step in" in caplog.text
    assert sorted(int(p) for p in os.listdir(workdir / "checkpoints")) == [2, 4, 6]


def test_resume_false_on_a_workdir_with_checkpoints_is_refused(sft_workdir, tmp_path):
    workdir = _copy(sft_workdir, tmp_path)
    before = _tree(workdir)
    with pytest.raises(CheckpointError, match=r"checkpoint.resume=False but .* holds checkpoints \(steps \[2, 4\]\)"):
        sft.run(tiny_config(**{**BASE, "checkpoint.resume": False}), str(workdir))
    assert _tree(workdir) == before


def test_decode_layout_fields_are_safe_and_sampling_fields_are_not():
    """The decode rows, the cache growth and the row compaction change the rollouts' cost, not their samples
    (tests/sampling/test_refill.py); the sampling temperature changes the samples."""
    saved = grpo_config.grpo_defaults().to_dict()
    for field, value in (("decode_rows_per_prompt", 2), ("decode_cache_growth", 64), ("decode_compact_rows", True)):
        current = grpo_config.grpo_defaults().to_dict()
        current["rl"][field] = value
        assert resume.check_config(saved, current, workdir="w", step=2) == {f"rl.{field}": (0, value)}
    current = grpo_config.grpo_defaults().to_dict()
    current["rl"]["temperature"] = 0.7
    with pytest.raises(CheckpointError, match="rl.temperature"):
        resume.check_config(saved, current, workdir="w", step=2)
