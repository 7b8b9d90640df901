"""Two processes joined by jax.distributed over loopback (4 fake devices each) == one process with 8."""

from __future__ import annotations

import json

import jax
import numpy as np
import orbax.checkpoint as ocp

from tests.train.conftest import fake_devices, free_port, read_metrics, run_main

STEPS = 3
# eps 1e-3 for the same reason as in test_step: the comparison is about the data / sharding path.
OVERRIDES = {"train.num_steps": STEPS, "train.eps": 1e-3, "log.every_steps": 1,
             "checkpoint.every_steps": STEPS, "mesh.fsdp": 4, "mesh.tensor": 2}


def test_two_processes_match_one(tmp_path):
    port = free_port()
    procs = []
    for i in range(2):
        env = {**fake_devices(4), "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2",
               "JAX_PROCESS_ID": str(i)}
        procs.append(run_main(tmp_path / "multi", OVERRIDES, env=env, wait=False))
    try:
        outputs = [p.communicate(timeout=400)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    single = run_main(tmp_path / "single", OVERRIDES, env=fake_devices(8), timeout=400)
    assert single.returncode == 0, single.output[-3000:]

    multi_losses = [m["loss"] for m in read_metrics(tmp_path / "multi")]  # written by process 0 only
    single_losses = [m["loss"] for m in read_metrics(tmp_path / "single")]
    assert len(multi_losses) == len(single_losses) == STEPS
    np.testing.assert_allclose(multi_losses, single_losses, rtol=1e-5)

    # one checkpoint, written by both processes: a data state per process, params equal to the single run
    step_dir = tmp_path / "multi" / "checkpoints" / str(STEPS)
    states = [json.loads((step_dir / "data" / f"process_{i}-of-2.json").read_text()) for i in range(2)]
    assert [s["next_batch"] for s in states] == [STEPS, STEPS]
    want = ocp.StandardCheckpointer().restore(tmp_path / "single" / "checkpoints" / str(STEPS) / "state")
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])  # the saving devices are gone: say where
    target = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), want)
    multi = jax.device_get(ocp.StandardCheckpointer().restore(step_dir / "state", target))
    want = jax.device_get(want)
    assert int(multi["step"]) == STEPS
    for (path, w), g in zip(jax.tree_util.tree_leaves_with_path(want["params"]),
                            jax.tree_util.tree_leaves(multi["params"]), strict=True):
        assert np.linalg.norm(g - w) <= 1e-5 * np.linalg.norm(w), jax.tree_util.keystr(path)
