"""Scores model outputs against benchmark records: accuracy (overall, per category), format, grounding.

Records are dicts as the loaders in `benchmarks` (or the synthetic task)
write them, or `data.records.Record` objects; the fields used are the id
(`id` / `uid`), `options`, `solution`, `problem_type`, and when present
`category` and `segments`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vtjax.eval import answers, grounding
from vtjax.rl import rewards


def record_id(record: Any) -> str:
    if isinstance(record, Mapping):
        if "id" not in record:
            raise KeyError("record has no 'id'; give every evaluation record a unique id.")
        return str(record["id"])
    return str(record.uid)


def score_one(record: Any, output: str) -> dict:
    """Per-record result: predicted letter, correct (0/1 or a graded score), format, grounding IoU."""
    field = rewards.record_field
    ptype = field(record, "problem_type", "multiple choice")
    if ptype == "multiple choice":
        gt = answers.ground_truth_letter(field(record, "solution"))
        pred = answers.extract_answer(output, num_options=len(field(record, "options", ())) or None)
        correct = float(pred == gt)
    else:  # graded kinds score as the accuracy reward does
        gt, pred = answers.last_answer(field(record, "solution")), answers.last_answer(output)
        correct = rewards.accuracy_reward(output, field(record, "solution"), ptype)
    out = {
        "id": record_id(record), "category": str(field(record, "category", "all")), "gt": gt, "pred": pred,
        "correct": correct, "format": rewards.format_reward(output),
    }
    segments = field(record, "segments", None)
    if segments:
        pred_segments = grounding.parse_time_segments(output)
        out["iou"] = float(np.mean(grounding.match_segments(pred_segments, segments)))
    return out


def _answered(pred: str | None) -> bool:
    """Whether a prediction is a real answer (an option letter, or non-blank `<answer>` content)."""
    return pred is not None and pred.strip() != ""


def score_predictions(
    records: Sequence[Any], outputs: Mapping[str, str] | Sequence[str], *, allow_missing: bool = False,
    skipped: Mapping[str, str] | None = None,
) -> dict:
    """Metrics of `outputs` (by record id, or in record order) on `records`.

    `skipped` maps ids the generation could not run (e.g. an unreadable
    video) to the reason; they and the `missing` ids (no output, no reason)
    are listed, not scored. Returns a dict:
      `expected` records given; `count` records scored (with an output);
      `accuracy` percent correct over all expected (missing and skipped count
      as wrong: the published tables' correct / total); `accuracy_of_scored`
      percent correct over the scored only;
      `format_rate` percent of scored outputs with a perfect format;
      `answered_rate` percent of scored outputs with a real answer (an option
      letter of the question, or non-blank `<answer>` content);
      `per_category` {category: {"count", "accuracy"}} over the scored;
      `grounding` (mIoU / R@0.3 / R@0.5 / R@0.7 / count over scored records
      with segments; absent when none has any); `missing` [ids];
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
    items = [score_one(r, outputs[record_id(r)]) for r in scored]
    by_cat = defaultdict(list)
    for it in items:
        by_cat[it["category"]].append(it["correct"])
    pct = lambda xs: 100.0 * float(np.mean(xs)) if len(xs) else float("nan")  # noqa: E731
    correct = [it["correct"] for it in items]
    result = {
        "expected": len(records),
        "count": len(items),
        "accuracy": 100.0 * float(np.sum(correct)) / len(records) if records else float("nan"),
        "accuracy_of_scored": pct(correct),
        "format_rate": pct([it["format"] for it in items]),
        "answered_rate": pct([_answered(it["pred"]) for it in items]),
        "per_category": {c: {"count": len(v), "accuracy": pct(v)} for c, v in sorted(by_cat.items())},
        "missing": missing,
        "skipped": skipped_here,
        "items": items,
    }
    with_segments = [(r, outputs[record_id(r)]) for r in scored if rewards.record_field(r, "segments", None)]
    if with_segments:
        result["grounding"] = grounding.grounding_metrics(
            [grounding.parse_time_segments(o) for _, o in with_segments],
            [rewards.record_field(r, "segments") for r, _ in with_segments],
        )
    return result
