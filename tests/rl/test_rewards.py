"""The reward registry: combine_rewards with weights, groups, record objects and options; temporal IoU; config."""

import numpy as np
import pytest

from vtjax.data import records as records_lib
from vtjax.errors import ConfigError
from vtjax.rl import rewards
from vtjax.rl.accuracy import RewardRules
from vtjax.rl.tag_format import TimeFormat
from vtjax.train import grpo_config

B = "<time>00:01-00:03</time> <caption>A red circle appears.</caption> <think>It is first.</think>"


def test_temporal_iou_reward():
    gt = [[2, 6]]
    t = "<time>00:02-00:06</time><caption>c</caption><think>t</think><answer>A</answer>"
    assert rewards.temporal_iou_reward(t, gt) == 1.0
    # [3, 5] vs [2, 6] -> 2/4; an extra unmatched segment halves the reward.
    assert rewards.temporal_iou_reward("<time>00:03-00:05</time>", gt) == 0.5
    assert rewards.temporal_iou_reward("<time>00:03-00:05</time><time>00:20-00:30</time>", gt) == 0.25
    assert rewards.temporal_iou_reward("<time>bad</time>", gt) == 0.0
    assert rewards.temporal_iou_reward(t, None) == 0.0


def test_combine_rewards_weights_groups_and_record_objects(tmp_path):
    good = f"{B}<answer>C</answer>"
    texts = [good, "<answer>C</answer>", good, f"{B}<answer>A</answer>"]
    recs = [{"solution": "<answer>C</answer>", "problem_type": "multiple choice", "segments": [[1, 3]]},
            {"solution": "<answer>B</answer>", "problem_type": "multiple choice"}]
    total, per = rewards.combine_rewards(texts, recs, {"accuracy": 1.0, "format": 0.5, "temporal_iou": 2.0})
    np.testing.assert_array_equal(per["accuracy"], [1, 1, 0, 0])
    np.testing.assert_array_equal(per["format"], [1, 0, 1, 1])
    np.testing.assert_array_equal(per["temporal_iou"], [1, 0, 0, 0])  # record 2 has no segments
    np.testing.assert_allclose(total, [3.5, 1.0, 0.5, 0.5])
    assert total.dtype == np.float32
    # Default weights, and a data.records.Record object as the record.
    (tmp_path / "v.mp4").write_bytes(b"")
    rec = records_lib.validate_record(
        {"problem": "q", "problem_type": "multiple choice", "options": ["A. x", "B. y", "C. z"], "data_type": "video",
         "path": "v.mp4", "solution": "<answer>C</answer>"}, "f:1", {"*": str(tmp_path)})
    total, per = rewards.combine_rewards([good, "<answer>B</answer>"], [rec, rec])
    np.testing.assert_allclose(total, [2.0, 0.0])
    assert set(per) == {"accuracy", "format"}
    with pytest.raises(KeyError, match="unknown reward"):
        rewards.combine_rewards(texts, recs, {"accuracy": 1.0, "lenght": 1.0})
    with pytest.raises(ValueError, match="one record per text or per group"):
        rewards.combine_rewards(texts[:3], recs)


def test_register_reward():
    name = "test_length_penalty"

    @rewards.register_reward(name)
    def _length(text, record):
        del record
        return -len(text) / 100

    try:
        total, _ = rewards.combine_rewards(["x" * 50], [{}], {name: 2.0})
        np.testing.assert_allclose(total, [-1.0])
        with pytest.raises(ValueError, match="already registered"):
            rewards.register_reward(name)(_length)
    finally:
        del rewards.REWARDS[name]


def test_combine_rewards_options_choose_the_rules():
    texts = [f"{B}<answer>(C)</answer>", "<time>01:00:00-01:00:05</time><caption>c</caption><think>t</think>"
             "<answer>C</answer>"]
    recs = [{"solution": "<answer>C</answer>", "problem_type": "multiple choice"}]
    _, per = rewards.combine_rewards(texts, recs)  # defaults: Video-R1 rules, MM:SS stamps
    np.testing.assert_array_equal(per["accuracy"], [0, 1])
    np.testing.assert_array_equal(per["format"], [1, 0])
    options = rewards.RewardOptions(rules=RewardRules.LENIENT, time_format=TimeFormat.LONG)
    _, per = rewards.combine_rewards(texts, recs, options=options)
    np.testing.assert_array_equal(per["accuracy"], [1, 1])
    np.testing.assert_array_equal(per["format"], [1, 1])


def test_grpo_config_reward_options():
    config = grpo_config.grpo_defaults()
    assert grpo_config.reward_options(config) == rewards.RewardOptions(RewardRules.VIDEO_R1, TimeFormat.MM_SS)
    config.rl.reward_rules, config.rl.time_format = "lenient", "long"
    assert grpo_config.reward_options(config) == rewards.RewardOptions(RewardRules.LENIENT, TimeFormat.LONG)
    config.rl.reward_rules = "strict"
    with pytest.raises(ConfigError, match=r"rl.reward_rules='strict' must be one of \['video_r1', 'lenient'\]"):
        grpo_config.reward_options(config)
    config.rl.reward_rules, config.rl.time_format = "video_r1", "hh:mm:ss"
    with pytest.raises(ConfigError, match=r"rl.time_format='hh:mm:ss' must be one of \['mm:ss', 'long'\]"):
        grpo_config.reward_options(config)
