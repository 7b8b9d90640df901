"""Reward functions on a table of tricky completions; ROUGE / WER on hand-worked examples."""

import numpy as np
import pytest

from vtjax.data import records as records_lib
from vtjax.rl import rewards, text_metrics

B = "<time>00:01-00:03</time> <caption>A red circle appears.</caption> <think>It is first.</think>"
B2 = "<time>00:04-00:06</time><caption>A blue square moves.</caption><think>Later.</think>"

FORMAT_CASES = [
    # (completion, expected format reward, why)
    (f"{B}\n<answer>C</answer>", 1.0, "one block then the answer"),
    (f"Hmm, let me look. {B} Option A is wrong. {B2}\nSo:<answer>C</answer>  \n", 1.0, "free text, trailing ws"),
    (f"{B}<answer> C </answer>", 1.0, "spaces inside answer"),
    ("<time>00:01 - 00:03</time><caption>c</caption><think>t</think><answer>A</answer>", 1.0, "spaces at dash"),
    ("<time>00:03-00:03</time><caption>c</caption><think>t</think><answer>A</answer>", 1.0, "start == end"),
    ("<answer>C</answer>", 0.0, "no block"),
    (f"{B}", 0.0, "no answer"),
    (f"{B}<answer>C</answer><answer>D</answer>", 0.0, "two answers"),
    (f"<answer>C</answer>{B}", 0.0, "answer not last"),
    (f"{B}<answer>C</answer> done.", 0.0, "text after the answer"),
    (f"{B}<answer> </answer>", 0.0, "blank answer"),
    (f"{B}<answer>C", 0.0, "unclosed answer"),
    ("<time>00:01-00:03</time> <caption>x <think>y</think></caption><answer>C</answer>", 0.0, "nested"),
    ("<think><time>00:01-00:03</time></think><caption>c</caption><answer>C</answer>", 0.0, "nested time"),
    ("<time>00:01-00:03</time><caption>c</caption><think>t<answer>C</answer>", 0.0, "think unclosed"),
    (f"{B}</think><answer>C</answer>", 0.0, "stray close"),
    ("<time>00:01-00:03</time><caption>c</think><answer>C</answer>", 0.0, "mismatched close"),
    ("<time>00:01-00:03</time><caption>c</caption><answer>C</answer>", 0.0, "block without think"),
    (f"{B}<time>00:04-00:06</time><caption>c</caption><answer>C</answer>", 0.0, "second block incomplete"),
    ("<caption>c</caption><time>00:01-00:03</time><think>t</think><answer>C</answer>", 0.0, "wrong order"),
    ("<time>00:01-00:03</time><caption> </caption><think>t</think><answer>C</answer>", 0.0, "blank caption"),
    ("<time>1:05-0:30</time><caption>c</caption><think>t</think><answer>C</answer>", 0.0, "1:05-0:30"),
    ("<time>01:05-00:30</time><caption>c</caption><think>t</think><answer>C</answer>", 0.0, "start > end"),
    ("<time>61:70</time><caption>c</caption><think>t</think><answer>C</answer>", 0.0, "61:70 not a range"),
    ("<time>00:10-01:70</time><caption>c</caption><think>t</think><answer>C</answer>", 0.0, "seconds >= 60"),
    ("<time>0:10-0:20</time><caption>c</caption><think>t</think><answer>C</answer>", 0.0, "one-digit minutes"),
    ("<time>00:10-00:20s</time><caption>c</caption><think>t</think><answer>C</answer>", 0.0, "trailing unit"),
    ("<TIME>00:01-00:03</TIME><caption>c</caption><think>t</think><answer>C</answer>", 0.0, "upper-case tag"),
]


@pytest.mark.parametrize("text,want,why", FORMAT_CASES, ids=[c[2] for c in FORMAT_CASES])
def test_format_reward(text, want, why):
    assert rewards.format_reward(text) == want, why


MC_CASES = [
    (f"{B}<answer>C</answer>", 1.0),
    ("<answer> C </answer>", 1.0),
    ("<answer>\nC\n</answer>", 1.0),
    ("<answer>C. a red circle</answer>", 1.0),
    ("<answer>(C)</answer>", 1.0),
    ("<answer>C)</answer>", 1.0),
    ("<answer>c</answer>", 0.0),  # lower case is no answer
    ("<answer>D</answer>", 0.0),
    ("<answer>C and D</answer>", 0.0),
    ("<answer>CD</answer>", 0.0),
    ("<answer>the red circle</answer>", 0.0),
    ("<answer>A</answer> wait <answer>C</answer>", 1.0),  # the last answer decides
    ("<answer>C</answer> wait <answer>A</answer>", 0.0),
    ("The answer is C.", 0.0),  # no <answer>: no reward (evaluation has a fallback)
    ("<answer>C", 0.0),
]


@pytest.mark.parametrize("text,want", MC_CASES)
def test_accuracy_multiple_choice(text, want):
    assert rewards.accuracy_reward(text, "<answer>C</answer>", "multiple choice") == want


def test_accuracy_other_kinds():
    acc = rewards.accuracy_reward
    assert acc("<answer>3.14159</answer>", "<answer>3.14</answer>", "numerical") == 1.0
    assert acc("<answer>3.146</answer>", "<answer>3.14</answer>", "numerical") == 0.0  # 3.15 != 3.14
    assert acc("<answer>1,000</answer>", "<answer>1000</answer>", "numerical") == 1.0
    assert acc("<answer>about 3</answer>", "<answer>3</answer>", "numerical") == 0.0
    assert acc("<answer>8</answer>", "<answer>10</answer>", "regression") == pytest.approx(0.8)
    assert acc("<answer>25</answer>", "<answer>10</answer>", "regression") == 0.0  # clipped at 0
    assert acc("<answer>0</answer>", "<answer>0</answer>", "regression") == pytest.approx(1.0)
    # OCR: reference 4 words, one substitution -> WER 0.25.
    assert acc("<answer>the cat sat down</answer>", "<answer>the cat sat up</answer>", "OCR") == 0.75
    assert acc("<answer>a b c d e f g h i</answer>", "<answer>x</answer>", "OCR") == 0.0  # WER 9 -> clip
    assert acc("<answer>The cat.</answer>", "<answer>the cat</answer>", "free-form") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="problem_type 'essay'"):
        acc("<answer>x</answer>", "<answer>x</answer>", "essay")
    with pytest.raises(ValueError, match="no <answer>X</answer>"):
        acc("<answer>A</answer>", "A", "multiple choice")


def test_rouge_hand_worked():
    # ref "the cat sat on the mat" (6), hyp "the cat lay on the mat" (6)
    ref, hyp = text_metrics.rouge_tokens("The cat sat on the mat."), text_metrics.rouge_tokens("the cat lay on the mat")
    # unigrams: overlap the x2, cat, on, mat = 5 -> P = R = 5/6
    assert text_metrics.rouge_n(ref, hyp, 1) == pytest.approx(5 / 6)
    # bigrams: (the cat), (on the), (the mat) of 5 each -> 3/5
    assert text_metrics.rouge_n(ref, hyp, 2) == pytest.approx(3 / 5)
    # LCS: the cat on the mat = 5 -> 5/6
    assert text_metrics.rouge_l(ref, hyp) == pytest.approx(5 / 6)
    assert text_metrics.rouge_mean_f("The cat sat on the mat.", "the cat lay on the mat") == pytest.approx(
        (5 / 6 + 3 / 5 + 5 / 6) / 3
    )
    # Different lengths: ref "a b c d" hyp "b d e": R1 P=2/3 R=2/4 -> F=4/7; R2 0; LCS "b d" = 2 -> 4/7.
    assert text_metrics.rouge_mean_f("a b c d", "b d e") == pytest.approx((4 / 7 + 0 + 4 / 7) / 3)
    # Clipped counts: ref "a a b", hyp "a a a": overlap min(2,3)=2 -> P 2/3, R 2/3.
    assert text_metrics.rouge_n(["a", "a", "b"], ["a", "a", "a"], 1) == pytest.approx(2 / 3)
    assert text_metrics.lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
    assert text_metrics.rouge_mean_f("", "x") == 0.0


def test_wer_hand_worked():
    assert text_metrics.word_error_rate("a b c", "a c") == pytest.approx(1 / 3)  # one deletion
    assert text_metrics.word_error_rate("a b c", "a x b c y") == pytest.approx(2 / 3)  # two insertions
    assert text_metrics.edit_distance(list("kitten"), list("sitting")) == 3


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
