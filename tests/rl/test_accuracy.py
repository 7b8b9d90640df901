"""Accuracy reward on tables of tricky completions, hand-scored by Video-R1's released rules (REFERENCE.md §4).

Every expected value below is worked out by hand from the rules as written
in REFERENCE.md §4 (first <answer>, exact MC strings, decimal-presence rule,
1 - WER, stemmed ROUGE, 1 - clipped relative error, exceptions score 0), not
by running the code under test.
"""

import pytest

from vtjax.errors import DataError
from vtjax.rl import accuracy, rewards
from vtjax.rl.accuracy import RewardRules

R1, LENIENT = RewardRules.VIDEO_R1, RewardRules.LENIENT
THINK = "<think>The red circle comes first.</think>\n"


def ans(x: str) -> str:
    return f"<answer>{x}</answer>"


# (completion, expected under video_r1, expected under lenient, why); solution <answer>C</answer>.
MC_CASES = [
    (f"{THINK}{ans('C')}", 1.0, 1.0, "plain letter after a think"),
    (ans(" C "), 1.0, 1.0, "spaces are stripped"),
    (ans("\nC\n"), 1.0, 1.0, "newlines are stripped"),
    (ans("C."), 0.0, 1.0, "letter with a period"),
    (ans("(C)"), 0.0, 1.0, "letter in parentheses"),
    (ans("C)"), 0.0, 1.0, "letter with a parenthesis"),
    (ans("C. a red circle"), 0.0, 1.0, "letter with option text"),
    (ans("c"), 0.0, 0.0, "lower case"),
    (ans("D"), 0.0, 0.0, "wrong letter"),
    (ans("C and D"), 0.0, 0.0, "two letters"),
    (ans("the red circle"), 0.0, 0.0, "option text only"),
    (f"{ans('C')} wait {ans('A')}", 1.0, 0.0, "video_r1: the first answer decides"),
    (f"{ans('A')} wait {ans('C')}", 0.0, 1.0, "lenient: the last answer decides"),
    (f"<answer>A {ans('C')}", 0.0, 0.0, "first match spans the inner open tag: 'A <answer>C'"),
    ("The answer is C.", 0.0, 0.0, "no <answer> tag"),
    ("<answer>C", 0.0, 0.0, "unclosed"),
    ("<ANSWER>C</ANSWER>", 0.0, 0.0, "upper-case tag"),
]


@pytest.mark.parametrize("text,want_r1,want_lenient,why", MC_CASES, ids=[c[3] for c in MC_CASES])
def test_multiple_choice(text, want_r1, want_lenient, why):
    assert accuracy.accuracy_reward(text, ans("C"), "multiple choice", R1) == want_r1, why
    assert accuracy.accuracy_reward(text, ans("C"), "multiple choice", LENIENT) == want_lenient, why


# (prediction, solution, video_r1, lenient)
NUMERICAL_CASES = [
    ("3", "3", 1.0, 1.0),
    ("3.0", "3", 0.0, 1.0),  # decimal-presence rule: only the prediction has a point
    ("3", "3.0", 0.0, 1.0),
    ("3.00", "3.0", 1.0, 1.0),
    ("1,000", "1000", 0.0, 1.0),  # a comma counts as a decimal mark for the rule
    ("1000", "1,000", 0.0, 1.0),
    ("1,000.0", "1,000", 1.0, 1.0),  # both have a mark; 1000 == 1000
    ("12.004", "12", 0.0, 1.0),  # rounds to 12.0, but only one side has a point
    ("12.004", "12.0", 1.0, 1.0),
    ("3.14159", "3.14", 1.0, 1.0),  # 3.14 == 3.14
    ("3.146", "3.14", 0.0, 0.0),  # 3.15 != 3.14
    ("2.67", "2.675", 1.0, 1.0),  # the float 2.675 is 2.67499..., Python rounds it to 2.67
    ("1,5", "1.5", 0.0, 0.0),  # both have a mark; 15 != 1.5
    ("+3", "3", 1.0, 1.0),
    ("-2", "-2", 1.0, 1.0),
    ("about 3", "3", 0.0, 0.0),  # no number: Video-R1's parse fails -> 0
    ("", "3", 0.0, 0.0),
    ("nan", "3", 0.0, 0.0),
    ("inf", "3", 0.0, 0.0),
]


@pytest.mark.parametrize("pred,gt,want_r1,want_lenient", NUMERICAL_CASES)
def test_numerical(pred, gt, want_r1, want_lenient):
    assert accuracy.accuracy_reward(ans(pred), ans(gt), "numerical", R1) == want_r1
    assert accuracy.accuracy_reward(ans(pred), ans(gt), "numerical", LENIENT) == want_lenient


def test_numerical_first_versus_last_answer_and_no_answer():
    two = f"{ans('3')} no, {ans('4')}"
    assert accuracy.accuracy_reward(two, ans("3"), "numerical", R1) == 1.0
    assert accuracy.accuracy_reward(two, ans("3"), "numerical", LENIENT) == 0.0
    assert accuracy.accuracy_reward("It is 3.", ans("3"), "numerical", R1) == 0.0


# (prediction, solution, video_r1 expected); Video-R1: 1 - min(1, max(0, (|o - g| + 1e-9) / (|g| + 1e-9))).
REGRESSION_CASES = [
    ("8", "10", 1 - (2 + 1e-9) / (10 + 1e-9)),  # ~0.8
    ("12", "10", 1 - (2 + 1e-9) / (10 + 1e-9)),
    ("-3", "-4", 1 - (1 + 1e-9) / (4 + 1e-9)),  # ~0.75
    ("900", "1,000", 1 - (100 + 1e-9) / (1000 + 1e-9)),  # commas removed; no decimal-presence rule here
    ("10", "10", 1 - 1e-9 / (10 + 1e-9)),  # not exactly 1
    ("25", "10", 0.0),  # relative error 1.5, clipped
    ("0", "0", 0.0),  # (0 + 1e-9) / (0 + 1e-9) = 1 -> 0
    ("5", "0", 0.0),
    ("ten", "10", 0.0),  # Video-R1 raises on None arithmetic; the exception scores 0
    ("", "10", 0.0),
    ("inf", "10", 0.0),  # relative error inf -> clipped to 1
    ("nan", "10", 0.0),  # Video-R1's min/max would give 1; we score 0 (documented deviation)
]


@pytest.mark.parametrize("pred,gt,want", REGRESSION_CASES)
def test_regression(pred, gt, want):
    assert accuracy.accuracy_reward(ans(pred), ans(gt), "regression", R1) == pytest.approx(want, abs=1e-15)


def test_regression_lenient():
    acc = accuracy.accuracy_reward
    assert acc(ans("8"), ans("10"), "regression", LENIENT) == pytest.approx(0.8)
    assert acc(ans("0"), ans("0"), "regression", LENIENT) == 1.0  # exact 0 against 0
    assert acc(ans("0.001"), ans("0"), "regression", LENIENT) == 0.0
    assert acc(ans("25"), ans("10"), "regression", LENIENT) == 0.0
    assert acc(ans("nan"), ans("10"), "regression", LENIENT) == 0.0


# (prediction, solution, expected under both rule sets): 1 - WER (whitespace words, case-sensitive), clipped.
OCR_CASES = [
    ("the cat sat down", "the cat sat up", 0.75),  # 1 substitution / 4 words
    ("The cat sat up", "the cat sat up", 0.75),  # case matters
    ("the  cat\nsat up", "the cat sat up", 1.0),  # any whitespace splits
    ("the cat", "the cat sat up", 0.5),  # 2 deletions
    ("a b c d e f g h i", "x", 0.0),  # WER 9 -> clipped
    ("", "the cat", 0.0),  # WER 1
    ("STOP", "STOP", 1.0),
]


@pytest.mark.parametrize("pred,gt,want", OCR_CASES)
def test_ocr(pred, gt, want):
    for rules in RewardRules:
        assert accuracy.accuracy_reward(ans(pred), ans(gt), "OCR", rules) == pytest.approx(want)


def test_ocr_without_answer():
    assert accuracy.accuracy_reward("the cat", ans("the cat"), "OCR", R1) == 0.0  # answers "": WER 1


# (prediction, solution, expected): mean ROUGE-1/2/L F1 over lower-cased, Porter-stemmed a-z0-9 tokens.
FREE_FORM_CASES = [
    ("dogs running", "dog run", 1.0),  # stems: dog run / dog run
    ("The cat.", "the cat", 1.0),  # case and punctuation are separators
    # ref [the, cat, are, run] (cats -> cat, running -> run), hyp [a, cat, run] (runs -> run):
    # R1 2 of 3 / 2 of 4 -> F 4/7; R2 no shared bigram -> 0; LCS "cat run" = 2 -> 4/7.
    ("a cat runs", "The cats are running", (4 / 7 + 0 + 4 / 7) / 3),
    # ref [the, cat, sat, on, the, mat], hyp [the, cat, lay, on, the, mat]:
    # R1 5/6, R2 3 of 5 bigrams -> 3/5, LCS 5 -> 5/6.
    ("the cat lay on the mat", "The cat sat on the mat.", (5 / 6 + 3 / 5 + 5 / 6) / 3),
    ("red", "red", 2 / 3),  # one word has no bigram: ROUGE-2 is 0 even for an exact answer
    ("", "the cat", 0.0),
    ("猫在跑", "猫在跑", 0.0),  # rouge-score's tokenizer keeps only a-z0-9: no tokens, F 0
]


@pytest.mark.parametrize("pred,gt,want", FREE_FORM_CASES)
def test_free_form(pred, gt, want):
    for rules in RewardRules:
        assert accuracy.accuracy_reward(ans(pred), ans(gt), "free-form", rules) == pytest.approx(want)


def test_issue_table_video_r1_versus_lenient():
    """The differences the issue lists, each scored under both rule sets."""
    cases = [  # (completion, solution, problem type, video_r1, lenient)
        (ans("C."), ans("C"), "multiple choice", 0.0, 1.0),
        (f"{ans('A')}{ans('C')}", ans("C"), "multiple choice", 0.0, 1.0),
        (ans("3.0"), ans("3"), "numerical", 0.0, 1.0),
        (ans("1,000"), ans("1000"), "numerical", 0.0, 1.0),
        (ans("12.004"), ans("12"), "numerical", 0.0, 1.0),
        (ans("0"), ans("0"), "regression", 0.0, 1.0),
    ]
    for text, sol, ptype, want_r1, want_lenient in cases:
        assert accuracy.accuracy_reward(text, sol, ptype, R1) == want_r1, (text, sol)
        assert accuracy.accuracy_reward(text, sol, ptype, LENIENT) == want_lenient, (text, sol)
    assert accuracy.accuracy_reward(ans("dogs running"), ans("dog run"), "free-form") == 1.0


def test_default_is_video_r1_and_public_signature():
    assert rewards.accuracy_reward(ans("(C)"), ans("C"), "multiple choice") == 0.0
    assert rewards.accuracy_reward(ans("C"), ans("C"), "multiple choice") == 1.0
    assert rewards.accuracy_reward(ans("(C)"), ans("C"), "multiple choice", "lenient") == 1.0


def test_problem_type_spellings():
    for spelling in ("multiple choice", "Multiple_Choice", "multiple-choice"):
        assert accuracy.accuracy_reward(ans("C"), ans("C"), spelling) == 1.0
    for spelling in ("OCR", "ocr"):
        assert accuracy.accuracy_reward(ans("a b"), ans("a b"), spelling) == 1.0
    assert accuracy.accuracy_reward(ans("x y"), ans("x y"), "free form") == 1.0
    assert accuracy.accuracy_reward(ans("x y"), ans("x y"), "freeform") == 1.0


@pytest.mark.parametrize("rules", list(RewardRules))
def test_record_errors_raise(rules):
    with pytest.raises(DataError, match="problem_type 'essay' has no accuracy rule"):
        accuracy.accuracy_reward(ans("x"), ans("x"), "essay", rules)
    with pytest.raises(DataError, match="not a finite number"):
        accuracy.accuracy_reward(ans("3"), ans("three"), "numerical", rules)
    with pytest.raises(DataError, match="not a finite number"):
        accuracy.accuracy_reward(ans("3"), ans("inf"), "regression", rules)
    with pytest.raises(DataError, match="<answer>"):
        accuracy.accuracy_reward(ans("A"), "A", "multiple choice", rules)


def test_demo_answer_form_scores_under_the_default_rules():
    """The demo's synthetic records: the SFT target (process + solution) earns the full accuracy."""
    from vtjax.data import synthetic  # noqa: PLC0415

    for r in synthetic.generate_records(synthetic.SyntheticConfig(seed=1, num_train=8, num_test=2), "train"):
        target = r["process"] + "\n" + r["solution"]
        assert rewards.accuracy_reward(target, r["solution"], r["problem_type"]) == 1.0
        assert rewards.format_reward(target) == 1.0
