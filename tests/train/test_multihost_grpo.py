"""GRPO on two processes joined by jax.distributed over loopback (4 fake devices each) == one process with 8.

The run reads records with real videos through ``configs/tiny_grpo.py:records``. Its reward (a test module
loaded through ``rl.reward_modules``) varies between completions, so advantages, the loss and the gradient
are not zero and the comparison means something.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from tests.train.conftest import REPO, fake_devices, free_port, read_metrics, run_main

GRPO_CONFIG = os.path.join(REPO, "configs", "tiny_grpo.py")
STEPS = 3
REWARD_MODULE = '''
from vtjax.rl.rewards import register_reward


@register_reward("test_char_variety")
def char_variety(text, record):
    del record
    return len(set(text)) / (1.0 + len(text))
'''


@pytest.fixture(scope="module")
def reward_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("reward_module")
    (root / "vtjax_test_rewards.py").write_text(REWARD_MODULE)
    return {"PYTHONPATH": os.pathsep.join([os.fspath(root), REPO])}


@pytest.fixture(scope="module")
def overrides(records_overrides):
    # eps 1e-3 as in test_multihost: the comparison is about the data / sharding path, not Adam's eps.
    return {**records_overrides, "train.num_steps": STEPS, "train.eps": 1e-3, "log.every_steps": 1,
            "checkpoint.every_steps": STEPS, "mesh.fsdp": 4, "mesh.tensor": 2,
            "rl.reward_modules": "vtjax_test_rewards", "rl.reward_weights": "test_char_variety=1.0"}


def _start_two(workdir, overrides, env) -> list:
    port = free_port()
    procs = []
    for i in range(2):
        proc_env = {**env, **fake_devices(4), "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                    "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)}
        procs.append(run_main(workdir, overrides, env=proc_env, wait=False, arg="records", config=GRPO_CONFIG))
    return procs


def _finish(procs, timeout=500) -> list[str]:
    try:
        return [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def test_two_processes_match_one_and_one_resumes(tmp_path, overrides, reward_env):
    outputs = _finish(_start_two(tmp_path / "multi", overrides, reward_env))
    for i, out in enumerate(outputs):
        assert "Traceback" not in out and "status='done'" in out, f"process {i}: {out[-3000:]}"
    single = run_main(tmp_path / "single", overrides, env={**reward_env, **fake_devices(8)}, timeout=500,
                      arg="records", config=GRPO_CONFIG)
    assert single.returncode == 0, single.output[-3000:]

    multi, one = read_metrics(tmp_path / "multi"), read_metrics(tmp_path / "single")  # process 0 writes
    assert len(multi) == len(one) == STEPS
    for key in ("reward_mean", "loss", "grad_norm"):
        got, want = [m[key] for m in multi], [m[key] for m in one]
        # The loss of a step's first update is 0 up to rounding (ratio 1, group-centred advantages, and at
        # step 1 no KL): ~1e-7 of float32 noise that no relative tolerance can compare. Hence the floor.
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 if key == "loss" else 0, err_msg=key)
    assert np.std([m["reward_mean"] for m in one]) > 0 or one[0]["reward_std"] > 0  # the reward varies
    assert all(m["grad_norm"] > 1e-4 for m in one), one  # a real gradient, not rounding noise

    # the checkpoint both processes wrote resumes in one process (8 devices) and trains on
    resumed = run_main(tmp_path / "multi", {**overrides, "train.num_steps": STEPS + 1},
                       env={**reward_env, **fake_devices(8)}, timeout=500, arg="records", config=GRPO_CONFIG)
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert f"resumed from {tmp_path / 'multi' / 'checkpoints'}/{STEPS}" in resumed.output
    assert f"step={STEPS + 1}, status='done'" in resumed.output


def _committed(workdir) -> list[int]:
    root = workdir / "checkpoints"
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.exists() else []


def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path, overrides, reward_env):
    workdir = tmp_path / "run"
    procs = _start_two(workdir, {**overrides, "train.num_steps": 500, "checkpoint.every_steps": 2,
                                 "checkpoint.keep": 2}, reward_env)
    deadline = time.monotonic() + 500
    while 2 not in _committed(workdir):
        assert all(p.poll() is None for p in procs), [p.stdout.read()[-3000:] for p in procs]
        assert time.monotonic() < deadline, "no checkpoint within 500 s"
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)  # the process that is not the coordinator
    outputs = _finish(procs)
    stops = []
    for i, (p, out) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0 and "Traceback" not in out, f"process {i}: {out[-3000:]}"
        found = [line for line in out.splitlines() if "status='preempted'" in line]
        assert found, f"process {i}: {out[-3000:]}"
        stops.append(int(found[-1].split("step=")[1].split(",")[0]))
    assert stops[0] == stops[1], stops
    assert max(_committed(workdir)) == stops[0]  # the step both stopped at was saved
