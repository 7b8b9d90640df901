"""Video-R1's evaluation rule (`src/eval_bench.py`, tulerfeng/Video-R1 @59d65c3; REFERENCE.md §4).

  answer          the FIRST `<answer>\\s*(.*?)\\s*</answer>` of the output,
                  stripped; when there is none, or it is empty, the whole
                  output is the answer.
  multiple choice the answer, stripped, equals the solution's answer exactly
                  (`C.`, `(C)`, `c` and `C) red` score 0 against `C`).
  numerical       the reward's rule (`rl.accuracy`): 0 unless both answers
                  agree on containing `.` or `,`, then equal after removing
                  `,` and rounding to 2 decimals.
  regression      Mean Relative Accuracy (`mean_relative_accuracy`).
  OCR, free-form  Video-R1's eval has no rule for them (it scores 0); we score
                  them with its reward rules (1 - WER; mean stemmed ROUGE F1).

A record's own problems (a solution without `<answer>`, a numerical solution
that is no number) raise `DataError`; Video-R1 scores them 0.
"""

from __future__ import annotations

import numpy as np

from vtjax.errors import DataError
from vtjax.rl import accuracy
from vtjax.rl.accuracy import ProblemType

# Thresholds 0.50, 0.55, ..., 0.95 in float32, as Video-R1's torch.arange(0.5, 0.975, 0.05) makes them.
MRA_THRESHOLDS = (0.5 + 0.05 * np.arange(10)).astype(np.float32)


def mean_relative_accuracy(pred: float, target: float) -> float:
    """Mean over the 10 thresholds t of `|pred - target| / (|target| + 1e-8) < 1 - t`, in [0, 1].

    Computed in float32 as Video-R1 does: 15 vs 10 (relative error exactly
    0.5) scores 0, 0 vs 0 scores 1, anything vs 0 scores 0; NaN scores 0.
    """
    with np.errstate(all="ignore"):  # 1e40 overflows float32 to inf: it scores 0, as in the reference
        p, g = np.float32(pred), np.float32(target)
        rel = np.abs(p - g) / (np.abs(g) + np.float32(1e-8))  # float32, like the reference
        return float(np.mean(rel < (np.float32(1.0) - MRA_THRESHOLDS)))


def eval_answer(output: str) -> str:
    """The first `<answer>` content (stripped), or the whole output when there is none or it is empty."""
    found = accuracy.first_answer(output)
    return found if found else output


def solution_answer(solution: str) -> str:
    """The first `<answer>` content of a record's solution; DataError when it has none."""
    gt = accuracy.first_answer(solution)
    if gt is None:
        raise DataError(f"solution {solution[:60]!r} has no <answer>...</answer>; write the ground truth inside one")
    return gt


def _number(s: str) -> float | None:
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return None


def score(output: str, solution: str, problem_type: str) -> tuple[str, float]:
    """(the answer as Video-R1's eval reads it, its score in [0, 1])."""
    kind, gt, pred = accuracy.problem_type_of(problem_type), solution_answer(solution), eval_answer(output)
    if kind == ProblemType.MULTIPLE_CHOICE:
        return pred, float(pred.strip() == gt.strip())
    if kind == ProblemType.REGRESSION:
        o, g = _number(pred), _number(gt)
        if g is None or not np.isfinite(g):
            raise DataError(f"solution answer {gt[:60]!r} is not a finite number; a regression record needs one")
        return pred, 0.0 if o is None else mean_relative_accuracy(o, g)
    # numerical (decimal-presence rule), OCR and free-form: the reward's Video-R1 rules on the eval's answer.
    return pred, accuracy._video_r1(pred, gt, kind)  # noqa: SLF001 (one rule, one implementation)
