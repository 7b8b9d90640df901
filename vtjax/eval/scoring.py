"""Scores model outputs against benchmark records: accuracy (overall, per category), format, grounding, captions.

Records are dicts as the loaders in `benchmarks` (or the synthetic task)
write them, or `data.records.Record` objects; the fields used are the id
(`id` / `uid`), `options`, `solution`, `problem_type`, and when present
`category`, `segments` and `captions`. Outputs are the raw model texts (as
`PredictionStore` keeps them), so any `ScoringRule` / `GroundingRule` can
re-score them without generating again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vtjax.eval import captions, rules
from vtjax.text import answers, grounding
from vtjax.text.grounding import GroundingRule
from vtjax.eval.rules import ScoringRule
from vtjax.rl import rewards


def record_id(record: Any) -> str:
    if isinstance(record, Mapping):
        if "id" not in record:
            raise KeyError("record has no 'id'; give every evaluation record a unique id.")
        return str(record["id"])
    return str(record.uid)


def score_one(record: Any, output: str, rule: ScoringRule | str = ScoringRule.VIDEO_R1,
              grounding_rule: GroundingRule | str = GroundingRule.MAX_IOU) -> dict:
    """Per-record result: the answer `rule` reads, correct (0/1 or a graded score), format, grounding IoU, captions."""
    field = rewards.record_field
    verdict = rules.answer_and_score(rule, record, output)
    solution = field(record, "solution")
    gt = answers.last_answer(solution)
    out = {
        "id": record_id(record), "category": str(field(record, "category", "all")),
        "problem_type": str(field(record, "problem_type", "multiple choice")), "gt": gt, "pred": verdict.pred,
        "correct": verdict.score, "answered": verdict.answered, "format": rewards.format_reward(output),
    }
    segments = field(record, "segments", None)
    if segments:
        out["iou"] = float(np.mean(grounding.record_ious(grounding.parse_time_segments(output), segments,
                                                         grounding_rule)))
    refs = field(record, "captions", None)
    if refs:
        out["captions"] = captions.caption_scores(captions.reference_captions(refs, out["id"]),
                                                  captions.caption_text(output))
    return out


def score_predictions(
    records: Sequence[Any], outputs: Mapping[str, str] | Sequence[str], *, allow_missing: bool = False,
    skipped: Mapping[str, str] | None = None, rule: ScoringRule | str = ScoringRule.VIDEO_R1,
    grounding_rule: GroundingRule | str = GroundingRule.MAX_IOU,
) -> dict:
    """Metrics of `outputs` (by record id, or in record order) on `records`, read by `rule`.

    `skipped` maps ids the generation could not run (e.g. an unreadable
    video) to the reason; they and the `missing` ids (no output, no reason)
    are listed, not scored. Returns a dict:
      `expected` records given; `count` records scored (with an output);
      `accuracy` percent correct over all expected (missing and skipped count
      as wrong: the published tables' correct / total); `accuracy_of_scored`
      percent correct over the scored only;
      `format_rate` percent of scored outputs with a perfect format;
      `answered_rate` percent of scored outputs with an answer the rule
      looks for (`Verdict.answered`: video_r1, non-blank `<answer>` content;
      letter rules, a letter found; vtjax graded types, non-blank content);
      `per_category` {category: {"count", "accuracy"}} over the scored;
      `per_problem_type` {type: {"count", "score"}} (percent; regression's
      score is Mean Relative Accuracy under `video_r1`);
      `rule` / `grounding_rule` the rules used;
      `grounding` (mIoU / R@0.3 / R@0.5 / R@0.7 / count / rule over scored
      records with segments; absent when none has any);
      `captions` (BLEU-1 / METEOR / ROUGE-L / count over scored records with
      reference `captions`; absent when none has any); `missing` [ids];
      `skipped` {id: reason}; `items` (per-record results of `score_one`).
    Missing ids are an error (KeyError) unless `allow_missing`.
    """
    if not isinstance(outputs, Mapping):
        if len(outputs) != len(records):
            raise ValueError(f"{len(outputs)} outputs for {len(records)} records; pass one per record or a dict by id.")
        outputs = {record_id(r): o for r, o in zip(records, outputs, strict=True)}
    skipped = skipped or {}
    ids = [record_id(r) for r in records]
    skipped_here = {i: str(skipped[i]) for i in ids if i not in outputs and i in skipped}
    missing = [i for i in ids if i not in outputs and i not in skipped]
    if missing and not allow_missing:
        raise KeyError(f"{len(missing)} records have no output (first: {missing[:3]}); "
                       "finish generation or pass allow_missing=True to list them as missing.")
    scored = [r for r, i in zip(records, ids, strict=True) if i in outputs]
    rule, grounding_rule = ScoringRule(rule), GroundingRule(grounding_rule)
    items = [score_one(r, outputs[record_id(r)], rule, grounding_rule) for r in scored]
    by_cat, by_type = defaultdict(list), defaultdict(list)
    for it in items:
        by_cat[it["category"]].append(it["correct"])
        by_type[it["problem_type"]].append(it["correct"])
    pct = lambda xs: 100.0 * float(np.mean(xs)) if len(xs) else float("nan")  # noqa: E731
    correct = [it["correct"] for it in items]
    result = {
        "expected": len(records),
        "count": len(items),
        "accuracy": 100.0 * float(np.sum(correct)) / len(records) if records else float("nan"),
        "accuracy_of_scored": pct(correct),
        "format_rate": pct([it["format"] for it in items]),
        "answered_rate": pct([it["answered"] for it in items]),
        "per_category": {c: {"count": len(v), "accuracy": pct(v)} for c, v in sorted(by_cat.items())},
        "per_problem_type": {t: {"count": len(v), "score": pct(v)} for t, v in sorted(by_type.items())},
        "rule": rule.value,
        "grounding_rule": grounding_rule.value,
        "missing": missing,
        "skipped": skipped_here,
        "items": items,
    }
    with_segments = [(r, outputs[record_id(r)]) for r in scored if rewards.record_field(r, "segments", None)]
    if with_segments:
        result["grounding"] = grounding.grounding_metrics(
            [grounding.parse_time_segments(o) for _, o in with_segments],
            [rewards.record_field(r, "segments") for r, _ in with_segments], rule=grounding_rule,
        )
    with_captions = [it["captions"] for it in items if "captions" in it]
    if with_captions:
        result["captions"] = captions.caption_metrics(with_captions)
    return result
