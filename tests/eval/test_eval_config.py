"""eval.scoring_rules / eval.grounding_rule: resolved per benchmark, bad names refused naming the field."""

import pytest

from vtjax.errors import ConfigError
from vtjax.eval import config as eval_config
from vtjax.text.grounding import GroundingRule
from vtjax.eval.rules import ScoringRule


def test_defaults_and_official():
    c = eval_config.eval_defaults()
    assert eval_config.scoring_rules(c) == [ScoringRule.VIDEO_R1]  # official of the Video-R1 schema is video_r1
    c.eval.benchmark = "video_holmes"
    assert eval_config.scoring_rules(c) == [ScoringRule.VIDEO_R1, ScoringRule.VIDEO_HOLMES]
    assert eval_config.grounding_rule(c) == GroundingRule.MAX_IOU


def test_bad_names():
    c = eval_config.eval_defaults()
    c.eval.scoring_rules = "video_r1,exact"
    with pytest.raises(ConfigError, match="eval.scoring_rules: 'exact' is no rule"):
        eval_config.scoring_rules(c)
    c.eval.grounding_rule = "greedy"
    with pytest.raises(ConfigError, match="eval.grounding_rule='greedy' must be one of"):
        eval_config.grounding_rule(c)
