"""The command line: config overrides, typo messages, mode dispatch, multi-host detection."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vtjax import main
from vtjax.train.config import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "tiny_sft.py")


def _run(*args):
    return subprocess.run([sys.executable, "-m", "vtjax.main", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_override_typo_lists_close_matches():
    with pytest.raises(ConfigError, match=r"--config\.train\.lr\b"):
        main.check_override_keys(["prog", "--config", TINY, "--config.train.lrr=1e-3"])
    with pytest.raises(ConfigError, match="train.batch_size"):
        main.check_override_keys(["prog", f"--config={TINY}", "--config.trian.batch_size=4"])
    main.check_override_keys(["prog", f"--config={TINY}", "--config.train.lr=1e-3", "--config.mesh.fsdp=2"])


def test_cli_typo_and_unknown_mode_exit_with_a_message(tmp_path):
    typo = _run(f"--config={TINY}", f"--workdir={tmp_path}", "--config.train.lrr=1e-3")
    assert typo.returncode == 2
    assert "did you mean --config.train.lr" in typo.stderr
    mode = _run(f"--config={TINY}", f"--workdir={tmp_path}", "--config.mode=distill")
    assert mode.returncode != 0
    assert f"mode='distill' has no trainer; registered modes: {sorted(main.TRAINERS)}" in mode.stderr
    assert "sft" in main.TRAINERS
    bad = _run(f"--config={TINY}", f"--workdir={tmp_path}", "--config.train.lr=-1.0")
    assert bad.returncode == 2
    assert "train.lr=-1.0 must be positive" in bad.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_multihost_detection():
    assert not main.multihost_env({})
    assert not main.multihost_env({"TPU_WORKER_HOSTNAMES": "localhost", "SLURM_NTASKS": "1"})
    assert main.multihost_env({"TPU_WORKER_HOSTNAMES": "host-0,host-1"})
    assert main.multihost_env({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"})
    assert main.multihost_env({"SLURM_NTASKS": "16"})
    assert main.multihost_env({"OMPI_COMM_WORLD_SIZE": "2"})
