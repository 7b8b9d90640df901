"""scripts/aot_memory.py on a GRPO config: every program of the step compiles from abstract inputs and the
memory report adds up (tiny preset, 2 fake CPU devices)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import jax

from tests.train.conftest import REPO
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, abstract_params

PROGRAMS = ["vision_pass", "prefill", "decode", "reference_logprobs", "update"]


def test_grpo_step_programs_compile_and_their_memory_adds_up():
    cmd = [sys.executable, "scripts/aot_memory.py", "--config", "configs/qwen2_5_vl_7b_grpo.py", "--mesh", "fsdp=2",
           "--preset", "tiny", "--frames", "4", "--frame_patches", "64", "--prompt_text", "32"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    reports, summary = lines[:-1], lines[-1]
    assert [r["program"] for r in reports] == PROGRAMS
    for r in reports:
        assert math.isclose(r["step_peak_gib"], r["program_peak_gib"] + r["resident_other_gib"], rel_tol=1e-9)
        assert r["program_peak_gib"] >= r["temp_gib"] > 0
    assert summary["step_peak_gib"] == max(r["step_peak_gib"] for r in reports) and summary["fits"]
    # During the update the frozen reference (float32 params, split over 2 devices) is what else is resident.
    params = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(abstract_params(Qwen25VLConfig.tiny())))
    update = reports[-1]
    assert 0.5 * params * 4 <= update["resident_other_gib"] * 2**30 <= params * 4
