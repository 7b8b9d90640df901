"""A GRPO run with the shared-prefix update over a sharded mesh equals the repeated layout's run."""

from __future__ import annotations

import os

import numpy as np

from tests.train.conftest import REPO, fake_devices, read_metrics, run_main

GRPO_CONFIG = os.path.join(REPO, "configs", "tiny_grpo.py")
REWARD_MODULE = '''
from vtjax.rl.rewards import register_reward


@register_reward("test_char_variety")
def char_variety(text, record):
    del record
    return len(set(text)) / (1.0 + len(text))
'''


def test_shared_prefix_run_on_two_devices_matches_the_repeated_layout(tmp_path):
    """`python -m vtjax.main` on 2 fake devices (the groups' sequences split over fsdp), 3 steps each way,
    with a reward that varies between completions (non-zero advantages): the same rollouts and rewards,
    losses and gradient norms equal to float rounding."""
    (tmp_path / "vtjax_test_rewards.py").write_text(REWARD_MODULE)
    env = {**fake_devices(2), "PYTHONPATH": os.pathsep.join([os.fspath(tmp_path), REPO])}
    runs = {}
    for layout in ("on", "off"):
        workdir = tmp_path / layout
        proc = run_main(workdir, {"train.num_steps": 3, "train.micro_batches": 1, "train.eps": 1e-3,
                                  "rl.shared_prefix": layout, "rl.max_new_tokens": 12, "log.every_steps": 1,
                                  "rl.reward_modules": "vtjax_test_rewards",
                                  "rl.reward_weights": "test_char_variety=1.0"},
                        env=env, config=GRPO_CONFIG, timeout=600)
        assert proc.returncode == 0, proc.output[-3000:]
        expected = "shared_prefix" if layout == "on" else "repeated"
        assert f"GRPO update layout: {expected}" in proc.output, proc.output[-3000:]
        runs[layout] = [m for m in read_metrics(workdir) if "loss" in m]
    assert len(runs["on"]) == len(runs["off"]) == 3
    for shared, repeated in zip(runs["on"], runs["off"], strict=True):
        for name in ("reward_mean", "completion_length"):
            np.testing.assert_allclose(shared[name], repeated[name], rtol=1e-6, err_msg=name)
        assert repeated["grad_norm"] > 1e-4  # real gradients, not rounding noise
        np.testing.assert_allclose(shared["loss"], repeated["loss"], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(shared["grad_norm"], repeated["grad_norm"], rtol=1e-4)
