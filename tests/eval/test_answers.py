"""Answer extraction (REFERENCE.md §1) on tricky model outputs."""

import pytest

from vtjax.eval import answers

CASES = [
    # (output, num_options, expected letter)
    ("<think>..</think><answer>B</answer>", 4, "B"),
    ("<answer> C </answer>", 4, "C"),
    ("<answer>A</answer> on reflection <answer>D</answer>", 4, "D"),  # last answer wins
    ("<answer>C. The red circle</answer>", 4, "C"),
    ("<answer>(B)</answer>", 4, "B"),
    ("<answer>b</answer>", 4, None),  # lower case: no answer (and no fallback past the tag)
    ("<answer>the red circle</answer> so B", 4, None),  # a tag decides even when unusable
    ("I think the answer is B.", 4, "B"),  # no tag: first standalone option letter ('I' is not an option)
    ("I think the answer is B.", None, "I"),  # ...which is why num_options matters
    ("Option (C) fits, not D.", 4, "C"),
    ("Both AB and CD are wrong; E", 5, "E"),  # letters inside words do not count
    ("<answer>C", 4, "C"),  # unclosed tag: fallback finds the letter
    ("no letters here", 4, None),
    ("", 4, None),
]


@pytest.mark.parametrize("text,n,want", CASES)
def test_extract_answer(text, n, want):
    assert answers.extract_answer(text, num_options=n) == want


def test_ground_truth_letter():
    assert answers.ground_truth_letter("<answer> D </answer>") == "D"
    with pytest.raises(ValueError, match="one capital letter"):
        answers.ground_truth_letter("<answer>d</answer>")


def test_choice_letter():
    assert answers.choice_letter("C:") == "C"
    assert answers.choice_letter("C) something") == "C"
    assert answers.choice_letter("Cat") is None
    assert answers.choice_letter("C D") is None
