"""Answer extraction shared by the accuracy reward and evaluation (REFERENCE.md §1).

Ground truth: the letter in `<answer>\\s*([A-Z])\\s*</answer>`.
Prediction: the content of the *last* `<answer>...</answer>`; without one,
only an explicit option form (see `fallback_letter`).

Choice normalisation (`choice_letter`), decided here and used by both the
reward and the evaluation:
  - surrounding whitespace is ignored: `<answer> C </answer>` is C;
  - a letter followed by a delimiter and option text counts: `C. a red
    circle`, `C) ...`, `(C)`, `C: ...` are C;
  - lower-case letters do not count (`c` is no answer): the prompt asks for
    the option letter as written, and a lone lower-case `a` is usually the
    article;
  - anything else (`the red circle`, `C and D`) is no answer.

Evaluation also counts a letter only when it is one of the question's
option letters (`E` on a four-option question is no answer).
"""

from __future__ import annotations

import re
import string

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_GT_RE = re.compile(r"<answer>\s*([A-Z])\s*</answer>")
_CHOICE_RE = re.compile(r"^\(?([A-Z])\)?(?:\s*$|[.:)]\s*\S.*$|[.:)]\s*$)", re.DOTALL)
LETTERS = string.ascii_uppercase

# Fallback forms (no complete <answer> tag). The cue word may be any case; the letter must be a capital.
_LONE_RE = re.compile(r"^\s*\(?([A-Z])\)?[.:)]?\s*$")  # the whole output: "C", "(C)", "C.", "C)"
_ANSWER_CUE_RE = re.compile(  # "Answer: C", "the answer is (B)", "answer would be D"
    r"\b(?i:answer)\b(?:\s+(?i:is|would\s+be|should\s+be|must\s+be))?\s*:?\s*[(\[]?([A-Z])[)\]]?(?![A-Za-z0-9])")
_OPTION_CUE_RE = re.compile(r"\b(?i:option|choice)\s*:?\s*[(\[]?([A-Z])[)\]]?(?![A-Za-z0-9])")  # "option C"
_MARKED_RE = re.compile(  # "(C)" / "[C]" anywhere not inside a word; "C." / "C)" after a space or at the start
    r"(?<![A-Za-z0-9])[(\[]([A-Z])[)\]]|(?:^|(?<=\s))([A-Z])[.)](?![A-Za-z0-9])")


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


def option_letters(num_options: int | None) -> str:
    """The first `num_options` capitals (all 26 when None or 0)."""
    return LETTERS[:num_options] if num_options else LETTERS


def _single(found: list[str]) -> str | None:
    """The letter when every match names the same one; None when none or several differ."""
    return found[0] if found and len(set(found)) == 1 else None


def fallback_letter(text: str, letters: str = LETTERS) -> str | None:
    """Option letter of an output without a complete `<answer>` tag, or None.

    Only explicit option forms count, in this order (the first rule that
    finds a letter in `letters` decides):
      1. an unclosed last `<answer>` (generation cut off): its rest, by `choice_letter`;
      2. the whole output is a lone letter: `C`, `(C)`, `C.`, `C)`;
      3. an answer cue, the last one: `Answer: C`, `the answer is (C)`;
      4. an option cue naming one letter: `option C`, `choice (C)` (two different letters: none);
      5. a marked letter naming one letter: `(C)`, `[C]`, or `C.` / `C)` after a space.
    A capital inside prose or an emoticon (`A man ...`, `:D`, `9 A.M.`) is no answer.
    """
    opened = text.rfind("<answer>")
    if opened >= 0 and "</answer>" not in text[opened:]:
        letter = choice_letter(text[opened + len("<answer>"):])
        if letter is not None and letter in letters:
            return letter
    m = _LONE_RE.match(text)
    if m and m.group(1) in letters:
        return m.group(1)
    cues = [c for c in _ANSWER_CUE_RE.findall(text) if c in letters]
    if cues:
        return cues[-1]
    for found in (_OPTION_CUE_RE.findall(text), [a or b for a, b in _MARKED_RE.findall(text)]):
        found = [c for c in found if c in letters]
        if found:  # several different letters are a list of options, not an answer
            return _single(found)
    return None


def extract_answer(text: str, num_options: int | None = None) -> str | None:
    """Predicted option letter of a model output, or None (no answer).

    The last complete `<answer>` decides when present (its content through
    `choice_letter`); otherwise `fallback_letter`. Either way the letter
    must be one of the first `num_options` letters (all 26 when None).
    """
    letters = option_letters(num_options)
    content = last_answer(text)
    if content is not None:
        letter = choice_letter(content)
        return letter if letter is not None and letter in letters else None
    return fallback_letter(text, letters)
