"""The vision tower runs once per GRPO step for the policy (and once for a reference whose tower differs).

A host callback placed in front of the tower counts its executions in every compiled program of a step:
the vision pass, the sampler, the log-prob passes and the update. Before the step-level features, each of
them ran the tower again (the update once per micro-batch touching a prompt).
"""

from __future__ import annotations

import jax
import pytest

from configs import tiny_grpo
from vtjax.models.qwen2_5_vl import vision
from vtjax.train import grpo
from vtjax.train.metrics import MetricsLogger


def _count_tower_runs(monkeypatch) -> list[int]:
    runs = [0]
    original = vision.VisionTower.__call__

    def counted(self, inputs):
        jax.debug.callback(lambda: runs.__setitem__(0, runs[0] + 1))
        return original(self, inputs)

    monkeypatch.setattr(vision.VisionTower, "__call__", counted)
    return runs


@pytest.mark.parametrize("freeze,beta,per_step", [
    ("vision,merger", 0.04, 1),  # a frozen tower is the reference's too: one pass feeds everything
    ("", 0.04, 2),  # a training tower: the policy's pass (its backward reuses it) and the reference's
], ids=["frozen", "trained+reference"])
def test_tower_runs_per_step(tmp_path, monkeypatch, freeze, beta, per_step):
    runs = _count_tower_runs(monkeypatch)
    config = tiny_grpo.get_config()
    config.train.freeze, config.rl.beta = freeze, beta
    config.train.num_steps, config.log.every_steps, config.train.micro_batches = 3, 1, 2
    counts = []
    original = MetricsLogger.step

    def step(self, n, scalars):
        jax.effects_barrier()  # every callback of the step has run
        counts.append(runs[0])
        return original(self, n, scalars)

    monkeypatch.setattr(MetricsLogger, "step", step)
    result = grpo.run(config, str(tmp_path))
    assert result.status == "done"
    # steps 2 and 3 (step 1's count also holds the random init's pass through the model)
    assert [counts[1] - counts[0], counts[2] - counts[1]] == [per_step, per_step]
