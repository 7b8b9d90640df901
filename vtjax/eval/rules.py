"""Scoring rules: which released scorer reads a model output (docs/eval.md, REFERENCE.md §4).

`ScoringRule` names each rule; `answer_and_score` applies one to a record's
raw output. Multiple-choice questions go through every rule; graded types
(numerical, OCR, free-form, regression) through `video_r1` and `vtjax` only
(the three benchmarks' scorers are multiple-choice only).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from vtjax.errors import ConfigError, DataError
from vtjax.eval import official, video_r1_eval
from vtjax.text import answers
from vtjax.rl import accuracy, rewards


class ScoringRule(str, enum.Enum):
    """How an output is read and scored."""

    VIDEO_R1 = "video_r1"  # Video-R1's src/eval_bench.py: first <answer> else whole output, exact match, MRA
    VIDEO_HOLMES = "video_holmes"  # Video-Holmes evaluate.py: last <answer>, letters A-F by fixed priority
    CG_BENCH = "cg_bench"  # CG-Bench post_process: ```json {"result": X}``` else any standalone right letter
    VRBENCH = "vrbench"  # VRBench extract_mcq_answer: eight ordered, case-insensitive rules
    VTJAX = "vtjax"  # vtjax's own: last <answer> read by choice_letter, else explicit option forms only


OFFICIAL = "official"  # in eval.scoring_rules: the benchmark's own rule (OFFICIAL_RULES)
# The rule each benchmark format's own scorer uses (the Video-R1 schema: Video-R1's eval).
OFFICIAL_RULES = {"video_r1": ScoringRule.VIDEO_R1, "video_holmes": ScoringRule.VIDEO_HOLMES,
                  "cg_bench": ScoringRule.CG_BENCH, "vrbench": ScoringRule.VRBENCH}


def resolve_rules(names: list[str], benchmark: str) -> list[ScoringRule]:
    """`eval.scoring_rules` entries ("official" = the benchmark's own) -> distinct rules, in order."""
    out: list[ScoringRule] = []
    for name in names:
        if name == OFFICIAL:
            if benchmark not in OFFICIAL_RULES:
                raise ConfigError(f"eval.scoring_rules: 'official' has no rule for benchmark {benchmark!r}; "
                                  f"name one of {[r.value for r in ScoringRule]}")
            rule = OFFICIAL_RULES[benchmark]
        else:
            try:
                rule = ScoringRule(name)
            except ValueError:
                raise ConfigError(f"eval.scoring_rules: {name!r} is no rule; use 'official' or one of "
                                  f"{[r.value for r in ScoringRule]}") from None
        if rule not in out:
            out.append(rule)
    if not out:
        raise ConfigError("eval.scoring_rules is empty; name at least one rule (e.g. 'video_r1,official')")
    return out


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One output read by one rule."""

    pred: str | None  # what the rule compares with the ground truth (None: it found no answer)
    score: float  # 1/0, or a graded score in [0, 1]
    answered: bool  # the output gave an answer the rule looks for (video_r1: non-blank <answer> content)


def _letter_rule(rule: ScoringRule, output: str, right: str, num_options: int | None) -> Verdict:
    if rule == ScoringRule.VIDEO_HOLMES:
        pred = official.video_holmes_letter(output)
    elif rule == ScoringRule.CG_BENCH:
        pred = official.cg_bench_answer(output)
        return Verdict(pred, float(official.cg_bench_correct(output, right)), pred is not None)
    elif rule == ScoringRule.VRBENCH:
        pred = official.vrbench_letter(output)
    else:  # VTJAX
        pred = answers.extract_answer(output, num_options=num_options)
    return Verdict(pred, float(pred == right), pred is not None)


def answer_and_score(rule: ScoringRule | str, record: Any, output: str) -> Verdict:
    """How `rule` reads and scores one record's raw `output`."""
    rule, field = ScoringRule(rule), rewards.record_field
    ptype, solution = field(record, "problem_type", "multiple choice"), field(record, "solution")
    kind = accuracy.problem_type_of(ptype)
    if rule == ScoringRule.VIDEO_R1:
        pred, score = video_r1_eval.score(output, solution, ptype)
        return Verdict(pred, score, bool(accuracy.first_answer(output)))
    if kind == accuracy.ProblemType.MULTIPLE_CHOICE:
        try:
            right = answers.ground_truth_letter(solution)
        except ValueError as e:
            raise DataError(f"{e}; multiple-choice solutions are <answer>X</answer>") from None
        return _letter_rule(rule, output, right, len(field(record, "options", ())) or None)
    if rule == ScoringRule.VTJAX:
        pred = answers.last_answer(output)
        return Verdict(pred, rewards.accuracy_reward(output, solution, ptype), bool(pred and pred.strip()))
    raise DataError(f"scoring rule {rule.value!r} reads multiple-choice answers only, and this record is "
                    f"{ptype!r}; score it with 'video_r1' or 'vtjax'")
