"""Row compaction with the decode rows split over devices (as GRPO runs it on a mesh): the compacted levels
(10, 6, 4, 2 rows for 2 prompts x G=6) mostly do not divide the 4 devices, and the samples must still be
those of the unsharded plain loop. Runs in a subprocess with 4 fake CPU devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from tests.train.conftest import REPO, fake_devices

SCRIPT = r"""
import json, jax, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, init_params
from vtjax.sampling import prompt_batch, sample, sampling_settings
from vtjax.sharding import BATCH_AXES, make_mesh

config = Qwen25VLConfig.tiny()
mesh = make_mesh(fsdp=4)
params = init_params(config, jax.random.PRNGKey(0))
ids = np.random.default_rng(0).integers(10, 200, (2, 9))
prompts = prompt_batch(config, ids, np.ones_like(ids), config.pad_token_id)
out = {}
for name, rows, compact in (("plain", None, False), ("sharded_compacted", NamedSharding(mesh, P(BATCH_AXES)), True)):
    settings = sampling_settings(config, max_new_tokens=20, num_samples=6, temperature=1.0,
                                 eos_token_ids=tuple(range(20, 60)), compact_rows=compact)
    p = params if rows is None else jax.device_put(params, NamedSharding(mesh, P()))
    result = sample(config, p, prompts, settings, seed=5, rows=rows)
    out[name] = {k: np.asarray(v).tolist() for k, v in result.items()}
print(json.dumps(out))
"""


def test_compaction_over_sharded_rows_gives_the_unsharded_samples():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **fake_devices(4), "PYTHONPATH": REPO})
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(proc.stdout.splitlines()[-1])
    plain, compacted = runs["plain"], runs["sharded_compacted"]
    assert len(set(plain["lengths"])) >= 4, plain["lengths"]  # ragged, so several levels run
    assert compacted["tokens"] == plain["tokens"] and compacted["lengths"] == plain["lengths"]
    np.testing.assert_allclose(compacted["logprobs"], plain["logprobs"], atol=2e-6)
    assert compacted["decode_iterations"] == plain["decode_iterations"]
    assert compacted["decode_row_steps"] < plain["decode_row_steps"] == 12 * plain["decode_iterations"]
