"""T-GRPO and the length bonus in the trainer: frame shuffling, config fields, bonus wiring, a 2-step run."""

from __future__ import annotations

import numpy as np
import pytest

from vtjax.train.metrics import MetricsLogger
from vtjax.data.vision import patchify_video_raw
from vtjax.rl import bonuses, rewards
from vtjax.train import grpo, grpo_config
from vtjax.train.config import ConfigError
from vtjax.train.frame_shuffle import permute_video_frames, shuffle_videos


def frames(num: int, height: int = 56, width: int = 28, seed: int = 0) -> np.ndarray:
    """[num, H, W, 3] uint8 frames, each one different."""
    return np.random.default_rng(seed).integers(0, 256, (num, height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("order", [[1, 0, 3, 2], [3, 2, 1, 0], [0, 2, 1, 3], [0, 1, 2, 3], [2, 0, 3, 1]])
def test_permuted_rows_equal_the_patches_of_permuted_frames(order):
    """Reordering frames on the rows = patchifying the frames in the new order (what Video-R1 does)."""
    video = frames(4)
    rows, grid = patchify_video_raw(video)
    expected, _ = patchify_video_raw(video[order])
    np.testing.assert_array_equal(permute_video_frames(rows, int(grid[0]), np.array(order)), expected)


def test_shuffle_videos_permutes_each_video_on_its_own():
    a, b = frames(2, seed=1), frames(6, height=28, width=56, seed=2)
    (ra, ga), (rb, gb) = patchify_video_raw(a), patchify_video_raw(b)
    hf = {"input_ids": np.zeros((2, 3), np.int64), "pixel_values_videos": np.concatenate([ra, rb]),
          "video_grid_thw": np.stack([ga, gb])}
    out, orders = shuffle_videos(hf, np.random.default_rng(7))
    assert [len(o) for o in orders] == [2, 6]
    expected = np.concatenate([patchify_video_raw(a[orders[0]])[0], patchify_video_raw(b[orders[1]])[0]])
    np.testing.assert_array_equal(out["pixel_values_videos"], expected)
    assert out["input_ids"] is hf["input_ids"] and hf["pixel_values_videos"] is not out["pixel_values_videos"]
    _, again = shuffle_videos(hf, np.random.default_rng(7))
    assert all((x == y).all() for x, y in zip(orders, again, strict=True))  # same seed, same orders


def test_bad_permutation_is_refused():
    rows, grid = patchify_video_raw(frames(4))
    with pytest.raises(ValueError, match="not a permutation"):
        permute_video_frames(rows, int(grid[0]), np.array([0, 0, 1, 2]))


def base_config():
    config = grpo_config.grpo_defaults()
    config.model.preset = "tiny"
    config.data.source = "synthetic"
    return config


def test_bonuses_are_off_by_default_and_documented_values():
    r = grpo_config.grpo_defaults().rl
    assert r.temporal_contrast is False and r.length_bonus == 0.0
    assert (r.temporal_bonus, r.temporal_ratio, r.length_bonus_range) == (0.3, 0.8, "320,512")
    config = base_config()
    assert grpo_config.temporal_group_size(config) == 4  # Video-R1: G // 2 of G = 8
    config.rl.temporal_group_size = 3
    assert grpo_config.temporal_group_size(config) == 3
    assert grpo_config.length_bonus_range(config) == (320, 512)


@pytest.mark.parametrize("field,value,message", [
    ("temporal_bonus", -0.3, "rl.temporal_bonus"),
    ("temporal_ratio", float("nan"), "rl.temporal_ratio"),
    ("length_bonus", float("inf"), "rl.length_bonus"),
    ("length_bonus_range", "512,320", "rl.length_bonus_range"),
    ("length_bonus_range", "320", "rl.length_bonus_range"),
    ("length_bonus_range", "320,5x", "rl.length_bonus_range"),
    ("temporal_group_size", -1, "rl.temporal_group_size"),
])
def test_bad_bonus_fields_are_named(field, value, message):
    config = base_config()
    config.rl[field] = value
    with pytest.raises(ConfigError, match=message):
        grpo_config.validate(config, num_devices=1)


@pytest.mark.parametrize("field,value", [("temporal_contrast", True), ("length_bonus", 0.2)])
def test_bonuses_need_the_accuracy_reward(field, value):
    config = base_config()
    config.rl.reward_weights = "format=1.0"
    config.rl[field] = value
    with pytest.raises(ConfigError, match=f"rl.{field}.*accuracy=1.0"):
        grpo_config.validate(config, num_devices=1)
    config.rl.reward_weights = "accuracy=1.0,format=1.0"
    grpo_config.validate(config, num_devices=1)


def test_step_bonuses_off_on():
    """Off: no bonus and no extra scalars; on: the rules of vtjax.rl.bonuses with the config's values."""
    config = base_config()
    config.rl.group_size = 4
    acc = np.array([1, 1, 0, 0, 1, 0, 0, 0], np.float32)
    lengths = np.array([400, 600, 400, 400, 400, 400, 400, 400])
    bonus, scalars = grpo.step_bonuses(config, acc, lengths, None)
    np.testing.assert_array_equal(bonus, np.zeros(8))
    assert scalars == {}
    config.rl.length_bonus = 0.2
    shuffled = np.array([1, 0, 1, 1], np.float32)  # prompt 0: 0.5 >= 0.4; prompt 1: 0.25 < 0.8
    bonus, scalars = grpo.step_bonuses(config, acc, lengths, shuffled)
    np.testing.assert_allclose(bonus, [.5, .3, 0, 0, 0, 0, 0, 0], atol=1e-6)
    assert scalars["shuffled_accuracy"] == 0.75 and scalars["temporal_applied"] == 0.5
    np.testing.assert_allclose([scalars["reward_temporal_bonus"], scalars["reward_length_bonus"]], [.6 / 8, .2 / 8])


def test_two_step_run_logs_the_shuffled_accuracy_and_bonuses(tmp_path, monkeypatch):
    """The tiny GRPO run with T-GRPO and the length bonus on: two steps, the new scalars logged."""
    def low_ids(text, record, options=None):  # stands in for accuracy: share of ids < 128 (chance 1/4)
        del record, options
        ids = [int(x) for x in text.split()]
        return float(np.mean([i < 128 for i in ids])) if ids else 0.0

    monkeypatch.setitem(rewards.REWARDS, "accuracy", low_ids)
    from configs import tiny_grpo  # noqa: PLC0415

    config = tiny_grpo.get_config()
    config.rl.reward_weights = "accuracy=1.0"
    config.rl.temporal_contrast = True
    config.rl.length_bonus = 0.2
    config.rl.length_bonus_range = "1,8"  # every tiny completion is in range
    config.train.num_steps = 2
    config.log.every_steps = 1
    seen, accuracies = [], []
    original_step, original_combine = MetricsLogger.step, rewards.combine_rewards

    def combine(texts, records, weights, options):  # records each call's accuracies
        total, per = original_combine(texts, records, weights, options)
        accuracies.append((len(texts), per["accuracy"].copy()))
        return total, per

    monkeypatch.setattr(rewards, "combine_rewards", combine)
    monkeypatch.setattr(MetricsLogger, "step",
                        lambda self, step, scalars: (seen.append(dict(scalars)), original_step(self, step, scalars))[1])
    result = grpo.run(config, str(tmp_path))
    assert result.step == 2 and result.status == "done"
    g, s, b = config.rl.group_size, grpo_config.temporal_group_size(config), config.train.batch_size
    assert [n for n, _ in accuracies] == [b * g, b * s] * 2  # ordered then shuffled rollout, each step
    for step, scalars in enumerate(seen):
        acc, shuffled = accuracies[2 * step][1], accuracies[2 * step + 1][1]
        assert scalars["shuffled_accuracy"] == pytest.approx(float(np.mean(shuffled)))
        assert scalars["shuffled_rollout_s"] > 0
        temporal, applied = bonuses.temporal_contrast_bonus(acc, shuffled, g, s)
        length = bonuses.length_bonus(acc, np.full(acc.shape, 4), g, low=1, high=8)  # all tiny lengths in range
        assert scalars["temporal_applied"] == pytest.approx(float(np.mean(applied)))
        assert scalars["reward_temporal_bonus"] == pytest.approx(float(np.mean(temporal)))
        assert scalars["reward_length_bonus"] == pytest.approx(float(np.mean(length)))
        # reward_mean includes the bonuses: accuracy + temporal + length
        assert scalars["reward_mean"] == pytest.approx(
            float(np.mean(acc)) + scalars["reward_temporal_bonus"] + scalars["reward_length_bonus"], abs=1e-5)
