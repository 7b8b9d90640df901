"""The GRPO accuracy reward: one completion's answer against a record's solution, per problem type.

Two rule sets (`RewardRules`); `video_r1`, the default, is Video-R1's
accuracy reward as released (REFERENCE.md §4, tulerfeng/Video-R1 @59d65c3):

  answer          the FIRST `<answer>...</answer>` of the completion and of
                  the solution, stripped; a completion without one answers "".
  multiple choice exact string equality: `C.`, `(C)` and `c` score 0 against `C`.
  numerical       0 unless both answers agree on containing `.` or `,`; then
                  1 if equal after removing `,` and rounding to 2 decimals
                  (`3` vs `3.0`, `1,000` vs `1000`, `12` vs `12.004` all score 0).
  OCR             1 - word error rate, clipped to [0, 1].
  free-form       mean ROUGE-1/2/L F1 with Porter stemming (`rouge-score`).
  regression      1 - clip((|o - g| + 1e-9) / (|g| + 1e-9), 0, 1): 0 vs 0 scores 0.
  unparseable     an answer that is no number scores 0 (Video-R1 scores every
                  exception 0).

`lenient` keeps vtjax's earlier rules: the LAST `<answer>` decides and a
completion without one scores 0; multiple choice compares option letters
(`text.answers.choice_letter`: `C.`, `(C)`, `C) text` are C); numerical
ignores the decimal-presence rule; regression divides by max(|g|, 1e-9), so
0 vs 0 scores 1. OCR and free-form score as in `video_r1`.

Deliberate differences from Video-R1, both rule sets: a regression answer
of `nan` scores 0 (Video-R1's min/max clip turns NaN into a reward of 1, an
exploitable hole); a record's own problems (a solution without `<answer>`,
a numerical / regression solution that is no finite number, an unknown
problem type) raise `DataError` instead of scoring 0. Problem types are
matched ignoring case and `-` / `_` / spaces.
"""

from __future__ import annotations

import enum
import math
import re

import numpy as np

from vtjax.errors import DataError
from vtjax.text import answers
from vtjax.text import text_metrics


class RewardRules(str, enum.Enum):
    """Which accuracy rules score a completion (module docstring)."""

    VIDEO_R1 = "video_r1"  # Video-R1's released reward: first <answer>, exact strings, decimal-presence rule
    LENIENT = "lenient"  # last <answer>, option-letter forms, no decimal-presence rule, regression 0 vs 0 = 1


class ProblemType(str, enum.Enum):
    """Video-R1's `problem_type` values."""

    MULTIPLE_CHOICE = "multiple choice"
    NUMERICAL = "numerical"
    OCR = "OCR"
    FREE_FORM = "free-form"
    REGRESSION = "regression"


_FIRST_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_TYPE_KEYS = {re.sub(r"[\s_-]+", "", t.value.lower()): t for t in ProblemType}


def problem_type_of(problem_type: str) -> ProblemType:
    """A record's `problem_type` string (case, `-`, `_` and spaces ignored) -> ProblemType."""
    found = _TYPE_KEYS.get(re.sub(r"[\s_-]+", "", str(problem_type).lower()))
    if found is None:
        raise DataError(f"problem_type {problem_type!r} has no accuracy rule; "
                        f"use one of {[t.value for t in ProblemType]}")
    return found


def first_answer(text: str) -> str | None:
    """Content of the first complete `<answer>...</answer>` (stripped), or None."""
    m = _FIRST_ANSWER_RE.search(text)
    return m.group(1).strip() if m else None


def _number(s: str) -> float | None:
    """float of `s` with `,` removed (Python's float syntax, so `inf` / `nan` parse), or None."""
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return None


def _ground_truth_number(gt: str, kind: ProblemType) -> float:
    g = _number(gt)
    if g is None or not math.isfinite(g):
        raise DataError(f"solution answer {gt[:60]!r} is not a finite number; a {kind.value} record needs one "
                        f"in <answer>...</answer>")
    return g


def _has_separator(s: str) -> bool:
    return "." in s or "," in s


def _ocr(pred: str, gt: str) -> float:
    return float(np.clip(1.0 - text_metrics.word_error_rate(gt, pred), 0.0, 1.0))


def _free_form(pred: str, gt: str) -> float:
    return float(np.clip(text_metrics.rouge_mean_f(gt, pred), 0.0, 1.0))


# ---------------------------------------------------------------- video_r1


def _video_r1(pred: str, gt: str, kind: ProblemType) -> float:
    if kind == ProblemType.MULTIPLE_CHOICE:
        return float(pred == gt)
    if kind == ProblemType.OCR:
        return _ocr(pred, gt)
    if kind == ProblemType.FREE_FORM:
        return _free_form(pred, gt)
    g = _ground_truth_number(gt, kind)
    if kind == ProblemType.NUMERICAL and _has_separator(pred) != _has_separator(gt):
        return 0.0  # "3" vs "3.0", "1,000" vs "1000": the answers disagree on the decimal point
    o = _number(pred)
    if o is None:
        return 0.0
    if kind == ProblemType.NUMERICAL:
        return float(round(o, 2) == round(g, 2))
    rel = (abs(o - g) + 1e-9) / (abs(g) + 1e-9)
    if math.isnan(rel):
        return 0.0  # a `nan` answer; Video-R1's min/max clip would give it 1
    return 1.0 - min(1.0, max(0.0, rel))


# ---------------------------------------------------------------- lenient


def _lenient(pred: str, gt: str, kind: ProblemType) -> float:
    if kind == ProblemType.OCR:
        return _ocr(pred, gt)
    if kind == ProblemType.FREE_FORM:
        return _free_form(pred, gt)
    g = _ground_truth_number(gt, kind)
    o = _number(pred.strip())
    if o is None or not math.isfinite(o):
        return 0.0
    if kind == ProblemType.NUMERICAL:
        return float(round(o, 2) == round(g, 2))
    rel = abs(o - g) / max(abs(g), 1e-9)  # gt 0 scores 1 only for an exact 0
    return float(1.0 - min(1.0, rel))


# ---------------------------------------------------------------- entry point


def accuracy_reward(text: str, solution: str, problem_type: str,
                    rules: RewardRules | str = RewardRules.VIDEO_R1) -> float:
    """Accuracy of completion `text` against a record's `solution`, in [0, 1] (module docstring)."""
    kind, rules = problem_type_of(problem_type), RewardRules(rules)
    if rules == RewardRules.VIDEO_R1:
        gt = first_answer(solution)
        if gt is None:
            raise DataError(f"solution {solution[:60]!r} has no <answer>...</answer>; write the ground truth "
                            f"inside one")
        pred = first_answer(text)
        return _video_r1("" if pred is None else pred, gt, kind)
    pred = answers.last_answer(text)
    if pred is None:
        return 0.0
    if kind == ProblemType.MULTIPLE_CHOICE:
        try:
            gt_letter = answers.ground_truth_letter(solution)
        except ValueError as e:
            raise DataError(f"{e}; multiple-choice solutions are <answer>X</answer>") from None
        return float(answers.choice_letter(pred) == gt_letter)
    gt = answers.last_answer(solution)
    return _lenient(pred, solution.strip() if gt is None else gt, kind)
