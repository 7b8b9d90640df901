"""Answer extraction (REFERENCE.md §1) on tricky model outputs."""

import pytest

from vtjax.text import answers

CASES = [
    # (output, num_options, expected letter)
    ("<think>..</think><answer>B</answer>", 4, "B"),
    ("<answer> C </answer>", 4, "C"),
    ("<answer>A</answer> on reflection <answer>D</answer>", 4, "D"),  # last answer wins
    ("<answer>C. The red circle</answer>", 4, "C"),
    ("<answer>(B)</answer>", 4, "B"),
    ("<answer>b</answer>", 4, None),  # lower case: no answer (and no fallback past the tag)
    ("<answer>the red circle</answer> so B", 4, None),  # a tag decides even when unusable
    ("I think the answer is B.", 4, "B"),  # no tag: an answer cue
    ("I think the answer is B.", None, "B"),  # the pronoun I is no answer even when every letter is allowed
    ("Option (C) fits, not D.", 4, "C"),
    ("Both AB and CD are wrong; E", 5, None),  # a bare capital is no explicit option form
    ("<answer>C", 4, "C"),  # unclosed tag (generation cut off): its rest is read like a tag
    ("no letters here", 4, None),
    ("", 4, None),
    ("<answer>E</answer>", 4, None),  # not one of the question's letters: no answer
]

# Outputs of an untrained model, where a stray capital used to count as an answer (issue 18, item 1).
FALLBACK_CASES = [
    ("Great video :D", 4, None),  # emoticon
    ("<time>00:01-00:03</time> <caption>A man walks into the", 4, None),  # truncated caption, article A
    ("<think>A cat sits. Then a dog</think> :D", 4, None),  # prose and emoticon
    ("At 9 A.M. the man leaves", 4, None),  # abbreviation
    ("<answer>A man walks", 4, None),  # unclosed tag holding prose
    ("C", 4, "C"),  # a lone letter is the whole output
    (" (B) ", 4, "B"),
    ("D.", 4, "D"),
    ("E.", 4, None),  # a lone letter outside the options
    ("It must be C.", 4, "C"),  # one marked letter
    ("B) the blue square", 4, "B"),
    ("so [B]", 4, "B"),
    ("Answer: D", 4, "D"),
    ("answer: (c)", 4, None),  # lower case
    ("The answer is B, not A.", 4, "B"),  # the answer cue beats the marked A.
    ("First I thought the answer is A. Wait, the answer is C :D", 4, "C"),  # the last answer cue
    ("I pick option C because the circle moves first", 4, "C"),
    ("Option A is red and option B is blue", 4, None),  # options listed, none chosen
    ("A. red B. blue C. green D. white", 4, None),  # the options echoed
    ("the answer is E", 4, None),  # not an option letter
    ("XD. Hmm", 4, None),  # a capital inside a word
]


@pytest.mark.parametrize("text,n,want", CASES)
def test_extract_answer(text, n, want):
    assert answers.extract_answer(text, num_options=n) == want


@pytest.mark.parametrize("text,n,want", FALLBACK_CASES)
def test_stray_capitals_are_no_answer(text, n, want):
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
