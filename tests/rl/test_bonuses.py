"""Video-R1's T-GRPO and length bonuses on hand-worked tables (rules: vtjax/rl/bonuses.py, docs/rl.md).

Each row is one prompt: its ordered-frame accuracies, (for T-GRPO) its
shuffled-frame accuracies, the expected bonus of each ordered completion and
whether the contrast condition held, worked by hand from Video-R1 @59d65c3:
mean(ordered) >= 0.8 * mean(shuffled), then +0.3 for accuracy > 0.1; length:
+0.2 for accuracy > 0.1 and 320 <= tokens <= 512 when >= 2 are correct.
"""

from __future__ import annotations

import numpy as np
import pytest

from vtjax.rl import bonuses

# (ordered accuracy, shuffled accuracy, expected bonus, applied)
TEMPORAL = [
    ([1, 1, 0, 0], [1, 0], [.3, .3, 0, 0], True),  # 0.5 >= 0.4
    ([1, 0, 0, 0], [1, 0], [0, 0, 0, 0], False),  # 0.25 < 0.4
    ([0, 0, 0, 0], [0, 0], [0, 0, 0, 0], True),  # 0 >= 0 holds, but nothing is correct
    ([0, 0, 0, 0], [1, 1], [0, 0, 0, 0], False),  # 0 < 0.8
    ([1, 1, 1, 1], [1, 1], [.3, .3, .3, .3], True),  # 1 >= 0.8
    ([0, 0, 0, 1], [0, 0], [0, 0, 0, .3], True),  # shuffled frames never right: any success counts
    ([1, 1, 1, 0], [1, 1], [0, 0, 0, 0], False),  # 0.75 < 0.8
    ([1, 1, 0, 0, 0], [1, 0] * 5, [.3, .3, 0, 0, 0], True),  # 0.4 >= 0.8 * 0.5: boundary
    ([1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [.3, .3, .3, .3, 0], True),  # 0.8 >= 0.8 * 1: boundary
    ([1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 0], [0] * 8, False),  # G=8, S=4: 0.375 < 0.4
    ([1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 0, 0], [.3] * 4 + [0] * 4, True),  # 0.5 >= 0.4
    ([1, 1, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0], [.3, .3] + [0] * 6, True),  # 0.25 >= 0.2
    ([1, 0, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0], [0] * 8, False),  # 0.125 < 0.2
    ([0, 0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0], [0] * 7 + [.3], True),  # the one right answer is rewarded
    ([.05, .1, .11, .5], [.2, .2], [0, 0, .3, .3], True),  # partial scores: 0.19 >= 0.16; 0.1 is not > 0.1
    ([.05, .1, .11, .5], [.3, .3], [0, 0, 0, 0], False),  # 0.19 < 0.24
    ([.1, .1, .1, .1], [0, 0], [0, 0, 0, 0], True),  # 0.1 never counts as correct
    ([.2, .2, .2, .2], [.25, .25], [.3, .3, .3, .3], True),  # 0.2 >= 0.2 (float32 both sides)
    ([.9, .9, .2, 0], [1, 1], [0, 0, 0, 0], False),  # 0.5 < 0.8: partial scores do not rescue it
    ([.7, .7, .7, .7], [.9, .9], [0, 0, 0, 0], False),  # 0.7 < 0.72: correct answers, yet no bonus
    ([1, 0, 1, 0], [1], [0, 0, 0, 0], False),  # S=1: 0.5 < 0.8
    ([1, 0, 1, 0], [0], [.3, 0, .3, 0], True),  # S=1, shuffled wrong
    ([1, 0], [1], [0, 0], False),  # G=2, S=1 (Video-R1's G // 2): 0.5 < 0.8
    ([1, 1], [1], [.3, .3], True),  # G=2: 1 >= 0.8
    ([0, 0], [0], [0, 0], True),  # G=2, nothing right anywhere
    ([0.999, 0, 0, 0], [0.2, 0.2], [.3, 0, 0, 0], True),  # 0.24975 >= 0.16
]


@pytest.mark.parametrize("ordered,shuffled,expected,applied", TEMPORAL)
def test_temporal_contrast_table(ordered, shuffled, expected, applied):
    got, got_applied = bonuses.temporal_contrast_bonus(ordered, shuffled, len(ordered), len(shuffled))
    np.testing.assert_allclose(got, expected, atol=1e-7)
    assert got.dtype == np.float32 and got_applied.tolist() == [applied]


def test_temporal_contrast_is_per_prompt():
    """Two prompts in one batch: each group's condition reads only its own completions."""
    ordered = [1, 1, 0, 0] + [1, 0, 0, 0]
    shuffled = [1, 0] + [1, 0]  # prompt 0: 0.5 >= 0.4; prompt 1: 0.25 < 0.4
    got, applied = bonuses.temporal_contrast_bonus(ordered, shuffled, 4, 2)
    np.testing.assert_allclose(got, [.3, .3, 0, 0, 0, 0, 0, 0], atol=1e-7)
    assert applied.tolist() == [True, False]


def test_temporal_contrast_settings_and_missing_shuffle():
    got, applied = bonuses.temporal_contrast_bonus([1, 1, 0, 0], [1, 0], 4, 2, bonus=0.5, ratio=1.0)
    np.testing.assert_allclose(got, [.5, .5, 0, 0])  # 0.5 >= 1.0 * 0.5
    got, _ = bonuses.temporal_contrast_bonus([1, 0, 0, 0], [1, 0], 4, 2, ratio=1.0)
    np.testing.assert_allclose(got, [0, 0, 0, 0])  # 0.25 < 0.5
    got, applied = bonuses.temporal_contrast_bonus([1, 0, 0, 0], [1, 1], 4, 2, ratio=0.0)
    np.testing.assert_allclose(got, [.3, 0, 0, 0])  # ratio 0: always applied
    got, applied = bonuses.temporal_contrast_bonus([1, 1, 0, 0] * 2, [0, 0] * 2, 4, 2, has_shuffled=[False, True])
    np.testing.assert_allclose(got, [0, 0, 0, 0, .3, .3, 0, 0], atol=1e-7)  # no shuffled rollout: no bonus
    assert applied.tolist() == [False, True]


def test_temporal_contrast_rejects_mismatched_groups():
    with pytest.raises(ValueError, match="prompts"):
        bonuses.temporal_contrast_bonus([1, 0, 0, 0] * 2, [1, 0], 4, 2)
    with pytest.raises(ValueError, match="groups of 4"):
        bonuses.temporal_contrast_bonus([1, 0, 0], [1, 0], 4, 2)


# (accuracy, completion tokens incl. EOS, expected bonus)
LENGTH = [
    ([1, 1, 0, 0], [320, 512, 400, 400], [.2, .2, 0, 0]),  # both ends inclusive
    ([1, 1, 0, 0], [319, 513, 400, 400], [0, 0, 0, 0]),  # one token outside each end
    ([1, 0, 0, 0], [400, 400, 400, 400], [0, 0, 0, 0]),  # one correct completion: no bonus at all
    ([1, 1, 1, 1], [400, 100, 600, 512], [.2, 0, 0, .2]),
    ([.1, .1, 1, 1], [400] * 4, [0, 0, .2, .2]),  # 0.1 is not > 0.1
    ([.1, .11, .5, 0], [400] * 4, [0, .2, .2, 0]),  # partial scores above 0.1 count
    ([.1, .11, 0, 0], [400] * 4, [0, 0, 0, 0]),  # only 0.11 correct: fewer than 2
    ([1, 1, 0, 0], [400, 700, 400, 400], [.2, 0, 0, 0]),  # the out-of-range one still counts as correct
    ([0, 0, 0, 0], [400] * 4, [0, 0, 0, 0]),  # wrong answers never get it
    ([1, 1, 0, 0], [768, 768, 400, 400], [0, 0, 0, 0]),  # no EOS: the full 768 tokens
    ([1, 1], [330, 500], [.2, .2]),  # G=2
    ([1, 1, 1, 1, 1, 1, 1, 1], [300, 320, 321, 400, 511, 512, 513, 1], [0, .2, .2, .2, .2, .2, 0, 0]),
    ([0, 1, 0, 1, 0, 1, 0, 0], [400] * 8, [0, .2, 0, .2, 0, .2, 0, 0]),
    ([0, 1, 0, 0, 0, 0, 0, 0], [400] * 8, [0] * 8),
    ([1, 1, 0, 0], [0, 1, 400, 400], [0, 0, 0, 0]),  # short answers: no bonus
    ([.34, .67, 0, 0], [350, 450, 350, 450], [.2, .2, 0, 0]),  # free-form ROUGE scores
    ([1, .05, .05, .05], [400] * 4, [0, 0, 0, 0]),  # near-misses are not correct
    ([1, 1, 1, 0], [319, 319, 319, 400], [0, 0, 0, 0]),  # correct but all too short
    ([1, 1, 1, 0], [513, 320, 900, 400], [0, .2, 0, 0]),
    ([.999999, .999999, 0, 0], [400, 400, 400, 400], [.2, .2, 0, 0]),  # regression's 1 - 1e-10 style
    ([1, 1, 1], [320, 512, 416], [.2, .2, .2]),  # G=3
    ([0, 0, 1], [320, 512, 416], [0, 0, 0]),
    ([1, 0, 1], [320, 512, 416], [.2, 0, .2]),
    ([0.11, 0.11, 0.11, 0.11], [320, 321, 511, 512], [.2, .2, .2, .2]),
    ([1, 1, 0, 0], [512, 320, 0, 0], [.2, .2, 0, 0]),
]


@pytest.mark.parametrize("accuracy,lengths,expected", LENGTH)
def test_length_bonus_table(accuracy, lengths, expected):
    got = bonuses.length_bonus(accuracy, lengths, len(accuracy))
    np.testing.assert_allclose(got, expected, atol=1e-7)
    assert got.dtype == np.float32


def test_length_bonus_is_per_prompt_and_configurable():
    got = bonuses.length_bonus([1, 1, 0, 0] + [1, 0, 0, 0], [400] * 8, 4)
    np.testing.assert_allclose(got, [.2, .2, 0, 0, 0, 0, 0, 0], atol=1e-7)  # prompt 1 has one correct
    got = bonuses.length_bonus([1, 1, 1, 1], [3, 8, 9, 10], 4, bonus=0.5, low=0, high=8)
    np.testing.assert_allclose(got, [.5, .5, 0, 0])
    got = bonuses.length_bonus([1, 1, 1, 1], [9, 10, 11, 10], 4, low=10, high=10)
    np.testing.assert_allclose(got, [0, .2, 0, .2], atol=1e-7)
    np.testing.assert_array_equal(bonuses.length_bonus([1, 1], [400, 400], 2, bonus=0.0), [0, 0])


def test_both_bonuses_add_with_the_rewards_as_video_r1():
    """Video-R1's total for one G=4 prompt with accuracy + format and both options on, by hand."""
    acc = np.array([1, 1, 0, 1], np.float32)
    fmt = np.array([1, 0, 1, 1], np.float32)
    lengths = [400, 600, 400, 330]
    temporal, _ = bonuses.temporal_contrast_bonus(acc, [1, 0], 4, 2)  # 0.75 >= 0.4
    total = acc + fmt + temporal + bonuses.length_bonus(acc, lengths, 4)
    np.testing.assert_allclose(total, [2.5, 1.3, 1.0, 2.5], atol=1e-6)
