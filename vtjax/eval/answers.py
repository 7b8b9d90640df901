"""Answer extraction shared by the accuracy reward and evaluation (REFERENCE.md §1).

Ground truth: the letter in `<answer>\\s*([A-Z])\\s*</answer>`.
Prediction: the content of the *last* `<answer>...</answer>`; without one,
the first option letter that stands alone in the text.

Choice normalisation (`choice_letter`), decided here and used by both the
reward and the evaluation:
  - surrounding whitespace is ignored: `<answer> C </answer>` is C;
  - a letter followed by a delimiter and option text counts: `C. a red
    circle`, `C) ...`, `(C)`, `C: ...` are C;
  - lower-case letters do not count (`c` is no answer): the prompt asks for
    the option letter as written, and a lone lower-case `a` is usually the
    article;
  - anything else (`the red circle`, `C and D`) is no answer.
"""

from __future__ import annotations

import re
import string

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_GT_RE = re.compile(r"<answer>\s*([A-Z])\s*</answer>")
_CHOICE_RE = re.compile(r"^\(?([A-Z])\)?(?:\s*$|[.:)]\s*\S.*$|[.:)]\s*$)", re.DOTALL)
LETTERS = string.ascii_uppercase


def last_answer(text: str) -> str | None:
    """Content of the last complete `<answer>...</answer>` (stripped), or None."""
    found = _ANSWER_RE.findall(text)
    return found[-1].strip() if found else None


def choice_letter(content: str) -> str | None:
    """Option letter of an answer's content, per the rules in the module docstring."""
    m = _CHOICE_RE.match(content.strip())
    return m.group(1) if m else None


def ground_truth_letter(solution: str) -> str:
    """The letter in a record's `<answer>X</answer>`; ValueError naming the fix otherwise."""
    m = _GT_RE.search(solution)
    if not m:
        raise ValueError(f"solution {solution[:60]!r} holds no <answer>X</answer> with one capital letter")
    return m.group(1)


def _standalone_letter(text: str, letters: str) -> str | None:
    m = re.search(rf"(?<![A-Za-z0-9])([{letters}])(?![A-Za-z0-9])", text)
    return m.group(1) if m else None


def extract_answer(text: str, num_options: int | None = None) -> str | None:
    """Predicted option letter of a model output, or None.

    The last `<answer>` decides when present (its content through
    `choice_letter`). Otherwise the first letter among the first
    `num_options` letters (all 26 when None) that stands alone, i.e. is not
    part of a word: "so the answer is B" -> B (but "A man ..." -> A, a known
    weakness of this fallback, shared with the reference evaluation).
    """
    content = last_answer(text)
    if content is not None:
        return choice_letter(content)
    letters = LETTERS[: num_options] if num_options else LETTERS
    return _standalone_letter(text, letters)
