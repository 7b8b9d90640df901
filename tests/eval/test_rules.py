"""Each scoring rule on a table of tricky outputs, expected values worked by hand from REFERENCE.md §4.

Every multiple-choice table scores against the right letter C. Each row:
(output, what the rule reads, correct), with the reason where it is not obvious.
"""

import pytest

from tests.text.test_answers import CASES as VTJAX_CASES
from tests.text.test_answers import FALLBACK_CASES as VTJAX_FALLBACK_CASES
from vtjax.errors import ConfigError, DataError
from vtjax.eval import official, rules, video_r1_eval
from vtjax.eval.rules import ScoringRule

LETTERS6 = ["A. a", "B. b", "C. c", "D. d", "E. e", "F. f"]


def _mc(options=LETTERS6, answer="C"):
    return {"id": "q", "problem_type": "multiple choice", "options": options, "solution": f"<answer>{answer}</answer>"}


# ---------------------------------------------------------------- Video-R1 eval (src/eval_bench.py)

VIDEO_R1_MC = [
    ("<answer>C</answer>", "C", 1),
    ("<answer> C </answer>", "C", 1),
    ("<answer>\nC\n</answer>", "C", 1),
    ("<answer>\tC</answer>", "C", 1),
    ("<think>x</think><answer>C</answer>", "C", 1),
    ("<answer>C.</answer>", "C.", 0),  # exact string match
    ("<answer>(C)</answer>", "(C)", 0),
    ("<answer>c</answer>", "c", 0),
    ("<answer>C) red</answer>", "C) red", 0),
    ("<answer>CD</answer>", "CD", 0),
    ("<answer>C D</answer>", "C D", 0),
    ("<answer>Ｃ</answer>", "Ｃ", 0),  # full-width C
    ("<answer>A</answer><answer>C</answer>", "A", 0),  # the FIRST tag decides
    ("<answer>C</answer> then <answer>A</answer>", "C", 1),
    ("<answer><answer>C</answer>", "<answer>C", 0),  # the first match starts at the first <answer>
    ("C", "C", 1),  # no tag: the whole output is the answer
    ("  C \n", "  C \n", 1),  # ... compared after strip()
    ("The answer is C", "The answer is C", 0),
    ("answer: C", "answer: C", 0),
    ("<answer></answer>C", "<answer></answer>C", 0),  # an empty answer falls back to the whole output
    ("<answer>   </answer>", "<answer>   </answer>", 0),
    ("<answer>C", "<answer>C", 0),  # unclosed: the whole output
    ("<answer>C</answer", "<answer>C</answer", 0),
    ("<ANSWER>C</ANSWER>", "<ANSWER>C</ANSWER>", 0),  # the tag is case-sensitive
    ("", "", 0),
    ("<answer>C</answer>\nA", "C", 1),
]


@pytest.mark.parametrize("output,pred,correct", VIDEO_R1_MC)
def test_video_r1_multiple_choice(output, pred, correct):
    v = rules.answer_and_score(ScoringRule.VIDEO_R1, _mc(), output)
    assert (v.pred, v.score) == (pred, correct)


VIDEO_R1_NUMERICAL = [  # (solution answer, output, score)
    ("3.5", "<answer>3.50</answer>", 1),
    ("3.5", "3.5", 1),  # no tag: the whole output
    ("3.5", "<answer>3.504</answer>", 1),  # rounded to 2 decimals
    ("3.5", "<answer>3.51</answer>", 0),
    ("3", "<answer>3.0</answer>", 0),  # the output has a '.', the solution not
    ("3", "<answer>3</answer>", 1),
    ("1,000", "<answer>1000</answer>", 0),  # the solution has a ',', the output not
    ("1,000", "<answer>1,000.00</answer>", 1),
    ("3", "<answer>three</answer>", 0),
    ("3", "<answer>3 apples</answer>", 0),
    ("3", "I count 3", 0),
]


@pytest.mark.parametrize("gt,output,score", VIDEO_R1_NUMERICAL)
def test_video_r1_numerical(gt, output, score):
    rec = {"id": "n", "problem_type": "numerical", "solution": f"<answer>{gt}</answer>"}
    assert rules.answer_and_score("video_r1", rec, output).score == score


# Mean Relative Accuracy: thresholds t = 0.50 ... 0.95; counts t with rel < 1 - t, all in float32.
MRA = [  # (prediction, target, MRA)
    (10, 10, 1.0),
    (10.4, 10, 1.0),  # rel 0.04 < 0.05
    (10.6, 10, 0.9),  # rel 0.06: fails only t = 0.95
    (12.5, 10, 0.5),  # rel 0.25 < 1 - t for t = 0.50 ... 0.70 (5 of 10)
    (13, 10, 0.4),  # rel 0.3 < 1 - t for t = 0.50 ... 0.65
    (14.9, 10, 0.1),  # rel 0.49: only t = 0.5
    (15, 10, 0.0),  # rel exactly 0.5: not < 0.5 (float32: 10 + 1e-8 == 10)
    (5, 10, 0.0),
    (-10, 10, 0.0),
    (0, 0, 1.0),  # 0 / 1e-8 = 0
    (1, 0, 0.0),
    (1e40, 10, 0.0),  # overflows float32 to inf
    (float("nan"), 10, 0.0),
]


@pytest.mark.parametrize("pred,target,mra", MRA)
def test_mean_relative_accuracy(pred, target, mra):
    assert video_r1_eval.mean_relative_accuracy(pred, target) == pytest.approx(mra)


def test_regression_is_scored_by_mra():
    rec = {"id": "r", "problem_type": "regression", "solution": "<answer>10</answer>"}
    score = lambda out: rules.answer_and_score("video_r1", rec, out).score  # noqa: E731
    assert score("<answer>12.5</answer>") == pytest.approx(0.5)
    assert score("13") == pytest.approx(0.4)  # the whole output
    assert score("<answer>1,0</answer>") == pytest.approx(1.0)  # ',' removed: 10
    assert score("<answer>10 m</answer>") == 0.0 and score("<answer>nan</answer>") == 0.0
    with pytest.raises(DataError, match="finite number"):
        rules.answer_and_score("video_r1", {**rec, "solution": "<answer>ten</answer>"}, "10")


# ---------------------------------------------------------------- Video-Holmes (evaluate.py)

VIDEO_HOLMES = [
    ("<answer>C</answer>", "C", 1),
    ("<answer>C: red</answer>", "C", 1),
    ("<answer>A</answer> <answer>C</answer>", "C", 1),  # the LAST tag
    ("<answer>[C] </answer>", "C", 1),
    ("<answer>\n(C)\n</answer>", "C", 1),  # no "C " form: C occurs
    ("<answer>B: because A is red</answer>", "A", 0),  # "A " comes first in A..F order, wherever it is
    ("<answer>B: because A </answer>", "B", 0),  # the tag content is stripped: "A" ends it, "B:" is the form
    ("[D] not [C]", "C", 1),  # both have the "[L" form: C precedes D in the fixed order
    ("DVD C", "D", 0),  # "D " is a form; C at the end is not ("C " absent)
    ("I think D", "D", 0),  # no form; the first of A..F that occurs is D
    ("Because of the rain, C", "B", 0),  # no form; B (of Because) precedes C in the order
    ("A man opens the door, so C", "A", 0),  # "A " is a form
    ("A man opens the door. <answer>C</answer>", "C", 1),  # a tag decides
    ("Option C is correct", "C", 1),
    ("C. Dog", "C", 1),  # no form ("C." is none); C precedes D
    ("Cats [C]", "C", 1),
    ("Final: F", "F", 0),
    ("ABCDEF", "A", 0),
    ("<Answer>C</Answer>", "A", 0),  # not the tag (case-sensitive): the whole text, whose A comes first
    ("<answer>c</answer>", None, 0),  # capitals only
    ("<answer></answer> C", None, 0),  # an empty tag is the answer: nothing in it
    ("<answer>E</answer>", "E", 0),
    ("G", None, 0),  # only A-F
    ("Wrong", None, 0),  # the release's own failure string
    ("answer: c", None, 0),
    ("", None, 0),
    ("<answer>C</answer> and A ", "C", 1),
]


@pytest.mark.parametrize("output,pred,correct", VIDEO_HOLMES)
def test_video_holmes(output, pred, correct):
    v = rules.answer_and_score(ScoringRule.VIDEO_HOLMES, _mc(), output)
    assert (v.pred, v.score, v.answered) == (pred, correct, pred is not None)


# ---------------------------------------------------------------- CG-Bench (run_api.py post_process)

J = "```json\n{}\n```"
CG_BENCH = [
    (J.format('{"result": "C"}'), "C", 1),
    (J.format('{"result": C}'), "C", 1),  # a bare word after ": " is quoted
    (J.format('{"result": "B"}') + " but C", "B", 0),  # a readable block decides
    (J.format('{"result": "c"}'), "c", 0),  # exact
    (J.format('{"result": "C."}'), "C.", 0),
    (J.format('{"result": Cat}'), "Cat", 0),
    (J.format('{"result": null}'), "null", 0),  # null is a result (wrong), not a fallback
    (J.format('{"result": ["C"]}'), '["C"]', 0),
    (J.format('{"result": "C", "result": "D"}'), "D", 0),  # JSON keeps the last duplicate
    (J.format('{"result":C}'), "C", 1),  # no space: unquoted, bad JSON -> the letters of the whole output
    (J.format('{"answer": "C"}'), "C", 1),  # no "result" -> letters: "C" stands alone
    (J.format('["C"]'), "C", 1),  # not an object -> letters
    ('```json{"result": "C"}', "C", 1),  # no closing fence -> letters
    ("```json\n\n```C", "C", 1),  # empty block -> letters
    ('```\n{"result": "C"}\n```', "C", 1),  # not a json fence -> letters
    ("A or C", "A,C", 1),  # any standalone right letter is a hit
    ("A B D E F G H", "A,B,D,E,F,G,H", 0),
    ("A man walks", "A", 0),
    ("I pick C", "C", 1),  # I is not among A-H
    ("C-D", "C,D", 1),  # '-' is a word boundary
    ("<answer>C</answer>", "C", 1),
    ("Cat", None, 0),  # no standalone capital
    ("option_C", None, 0),  # '_' is a word character
    ("c", None, 0),
    ("H", "H", 0),
    ("", None, 0),
]


@pytest.mark.parametrize("output,pred,correct", CG_BENCH)
def test_cg_bench(output, pred, correct):
    v = rules.answer_and_score(ScoringRule.CG_BENCH, _mc(), output)
    assert (v.pred, v.score) == (pred, correct)


# ---------------------------------------------------------------- VRBench (calculate_scores.py)

VRBENCH = [
    ("\\boxed{C}", "C", 1),  # 1. boxed
    ("\\boxed{c}", "C", 1),
    ("\\boxed{D} but <Answer>C", "D", 0),  # boxed beats the tag
    ("<Answer>C</Answer>", "C", 1),  # 2. <Answer>, any case
    ("<answer> c", "C", 1),
    ("<Answer>\nE", "E", 0),
    ("<answer>Because", "B", 0),  # the first letter after the tag, even inside a word
    ("a. red\nc. blue", "C", 1),  # 3. the last "X. text" line
    ("Answer: C", "C", 1),  # 4. answer statements
    ("The answer is D.", "D", 0),
    ("My answer is C", "C", 1),
    ("Answer: a lot, but C", "A", 0),  # "a" after "Answer: " counts
    ("Final answer: B. Therefore C", "C", 1),  # patterns in order: [B (Answer), B (final answer), C (therefore)]
    ("Therefore C. Final answer: B", "C", 1),  # the same list: pattern order, not position
    ("conclusion: E", "E", 0),
    ("I choose (C)", "C", 1),  # 5. "X)"
    ("b) red c) blue", "C", 1),
    ("A: the dog; C: the cat", "C", 1),  # "X:"
    ("The scene.", "E", 0),  # "e." counts as an option label
    ("I see a dog", "A", 0),  # 6. a lone letter before a word
    ("Option B\nC", "B", 0),
    ("c", "C", 1),  # 7. after clean-up, a standalone letter
    ("the answer, clearly, is c", "C", 1),
    ("F", None, 0),  # only A-E
    ("xyz", None, 0),
    ("", None, 0),
]


@pytest.mark.parametrize("output,pred,correct", VRBENCH)
def test_vrbench(output, pred, correct):
    v = rules.answer_and_score(ScoringRule.VRBENCH, _mc(LETTERS6[:4]), output)
    assert (v.pred, v.score) == (pred, correct)


def test_vrbench_cleanup_removes_only_32_periods():
    """The release passes re.UNICODE (32) as sub()'s count: periods past the 32nd stay."""
    assert official._vrbench_clean("." * 40 + "x") == "." * 8 + "x"


# ---------------------------------------------------------------- vtjax (answers.extract_answer)


@pytest.mark.parametrize("text,n,want", VTJAX_CASES + VTJAX_FALLBACK_CASES)
def test_vtjax_rule_is_extract_answer(text, n, want):
    options = ["A. a", "B. b", "C. c", "D. d", "E. e"][:n] if n else []  # no options: any capital
    v = rules.answer_and_score(ScoringRule.VTJAX, _mc(options, "C"), text)
    assert (v.pred, v.score) == (want, float(want == "C"))


# ---------------------------------------------------------------- names and errors


def test_one_output_five_rules():
    """The same raw output, read five ways."""
    out = "A man waits. The answer is (C)."
    got = {r.value: rules.answer_and_score(r, _mc(), out).score for r in ScoringRule}
    # video_r1: whole output != "C"; holmes: "A " form -> A; cg_bench: standalone A and C -> hit;
    # vrbench: "answer is (" is no statement, "C)" is a label -> C; vtjax: the answer cue -> C.
    assert got == {"video_r1": 0, "video_holmes": 0, "cg_bench": 1, "vrbench": 1, "vtjax": 1}


def test_resolve_rules():
    assert rules.resolve_rules(["video_r1", "official"], "cg_bench") == [ScoringRule.VIDEO_R1, ScoringRule.CG_BENCH]
    assert rules.resolve_rules(["video_r1", "official"], "video_r1") == [ScoringRule.VIDEO_R1]
    with pytest.raises(ConfigError, match="'holmes' is no rule"):
        rules.resolve_rules(["holmes"], "video_holmes")
    with pytest.raises(ConfigError, match="empty"):
        rules.resolve_rules([], "video_holmes")


def test_letter_rules_refuse_graded_records():
    rec = {"id": "n", "problem_type": "numerical", "solution": "<answer>3</answer>"}
    with pytest.raises(DataError, match="multiple-choice answers only"):
        rules.answer_and_score("video_holmes", rec, "<answer>3</answer>")
    assert rules.answer_and_score("vtjax", rec, "<answer>3</answer>").score == 1.0
