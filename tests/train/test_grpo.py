"""GRPO: rollout batches agree with the sampler, the loss gradient with finite differences, and a
short run raises the reward."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.parity.hf_reference import random_pixels, vision_run
from vtjax.train.metrics import MetricsLogger
from vtjax.data import batching
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, init_params
from vtjax.rl import rewards
from vtjax.sampling import generate
from vtjax.train import grpo, grpo_config
from vtjax.train.config import ConfigError
from vtjax.train.grpo_step import batch_logprobs_fn, policy_logprobs_fn
from vtjax.train.rollout_batch import build_rollout_batch
from vtjax.rl.grpo import grpo_loss

CONFIG = Qwen25VLConfig.tiny()
GROUP = 3


def prompts(kinds=("video", "video")) -> dict:
    """Two prompts in the data pipeline's collated layout; `kinds` says which carries an image."""
    rng = np.random.default_rng(0)
    grids = [(1 if kinds[0] == "image" else 2, 4, 8), (1, 8, 4)]
    rows = [[5, 6, 7] + vision_run(CONFIG, kinds[0], grids[0]) + [8, 9],
            [10] + vision_run(CONFIG, kinds[1], grids[1]) + [11, 12, 13, 14]]
    length = max(map(len, rows))
    ids = np.full((2, length), CONFIG.pad_token_id)
    mask = np.zeros((2, length), np.int64)
    for r, row in enumerate(rows):
        ids[r, :len(row)], mask[r, :len(row)] = row, 1  # right padding, as the data pipeline pads
    is_image = np.array([k == "image" for k in kinds])
    return dict(input_ids=ids, attention_mask=mask, vision_rows=random_pixels(rng, CONFIG, grids),
                grid_thw=np.array(grids), second_per_grid_ts=np.where(is_image, 0.0, [1.0, 2.0]).astype(np.float32),
                is_image=is_image)


@pytest.fixture(scope="module", params=[("video", "video"), ("image", "video")], ids=["videos", "image+video"])
def rollout(request):
    params = init_params(CONFIG, 1)
    collated = prompts(request.param)
    hf, _ = batching.model_inputs(collated)  # what the sampler takes: images and videos apart
    out = generate(CONFIG, params, **hf, max_new_tokens=6, num_samples=GROUP, temperature=1.0, seed=2,
                   eos_token_ids=[7])
    advantages = np.linspace(-1.0, 1.0, 2 * GROUP).astype(np.float32)
    batch = build_rollout_batch(CONFIG, collated, out["tokens"], out["lengths"], advantages, group=GROUP,
                                micro_batches=2, batch_shards=1, loss_agg="seq-mean-token-mean")
    return params, hf, out, batch


def test_training_sequences_reproduce_the_sampler_logprobs(rollout):
    """Positions, shared vision features and targets of the update match what the sampler saw."""
    params, _, out, batch = rollout
    logp = np.asarray(batch_logprobs_fn(CONFIG, chunk=16)(params, batch))  # [M, b, L]
    weights = np.asarray(batch.weights)
    per = weights.shape[1]
    for n in range(2 * GROUP):
        m, row = divmod(n, per)
        got = logp[m, row][weights[m, row] > 0]
        np.testing.assert_allclose(got, out["logprobs"][n, :out["lengths"][n]], atol=1e-4)
    assert np.allclose(batch.share.sum(), 1.0)


def test_loss_gradient_matches_finite_differences(rollout):
    params, _, _, batch = rollout
    logprobs = policy_logprobs_fn(CONFIG, chunk=16)
    ref = jax.tree_util.tree_map(lambda x: x * 1.05, params)
    mb = jax.tree_util.tree_map(lambda x: x[0], batch)
    ref_logp = logprobs(ref, mb.inputs, mb.targets)
    old_logp = logprobs(params, mb.inputs, mb.targets) - 0.1  # ratio != 1: clipping is active

    def loss(p):
        logp = logprobs(p, mb.inputs, mb.targets)
        value, _ = grpo_loss(logp, old_logp, ref_logp, mb.advantages, mb.weights, beta=0.04)
        return value

    direction = jax.tree_util.tree_map(lambda x: jnp.asarray(
        np.random.default_rng(x.size).standard_normal(x.shape), x.dtype), params)
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree_util.tree_leaves(jax.grad(loss)(params)),
                                                     jax.tree_util.tree_leaves(direction), strict=True))
    eps = 1e-3
    shifted = lambda s: jax.tree_util.tree_map(lambda x, d: x + s * eps * d, params, direction)  # noqa: E731
    numeric = (loss(shifted(1.0)) - loss(shifted(-1.0))) / (2 * eps)
    np.testing.assert_allclose(float(analytic), float(numeric), rtol=2e-2, atol=1e-4)


def test_short_run_raises_the_reward(tmp_path, monkeypatch):
    @rewards.register_reward("test_low_ids")
    def low_ids(text, record):  # share of completion tokens among the 128 lowest ids (chance 1/4)
        del record
        ids = [int(x) for x in text.split()]
        return float(np.mean([i < 128 for i in ids])) if ids else 0.0

    monkeypatch.setitem(rewards.REWARDS, "test_low_ids", low_ids)
    from configs import tiny_grpo  # noqa: PLC0415

    config = tiny_grpo.get_config()
    config.rl.reward_weights = "test_low_ids=1.0"
    config.train.lr = 1e-2
    config.train.num_steps = 25
    config.log.every_steps = 1
    seen = []
    original = MetricsLogger.step
    monkeypatch.setattr(MetricsLogger, "step",
                        lambda self, step, scalars: (seen.append(scalars["reward_mean"]),
                                                     original(self, step, scalars))[1])
    result = grpo.run(config, str(tmp_path))
    assert result.step == 25 and result.status == "done"
    assert np.mean(seen[-5:]) >= np.mean(seen[:5]) + 0.25, seen
    assert (tmp_path / "checkpoints").is_dir() or any(tmp_path.iterdir())


@pytest.mark.parametrize("field,value,message", [
    ("rl.group_size", 1, "rl.group_size"),
    ("rl.max_new_tokens", 0, "rl.max_new_tokens"),
    ("rl.top_p", 1.5, "rl.top_p"),
    ("rl.reward_weights", "acuracy=1", "acuracy"),
    ("rl.loss_agg", "mean", "rl.loss_agg"),
    ("train.lr", -1.0, "train.lr"),
])
def test_bad_rl_fields_are_named(field, value, message):
    config = grpo_config.grpo_defaults()
    config.model.preset = "tiny"
    config.data.source = "synthetic"
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(ConfigError, match=message):
        grpo_config.validate(config, num_devices=1)
