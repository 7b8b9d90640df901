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


def score_predictions(
    records: Sequence[Any], outputs: Mapping[str, str] | Sequence[str], *, allow_missing: bool = False
) -> dict:
    """Metrics of `outputs` (by record id, or in record order) on `records`.

    Returns a dict: `count`, `accuracy` (percent), `format_rate` (percent of
    outputs with a perfect format), `answered_rate` (percent with an
    extractable answer), `per_category` {category: {"count", "accuracy"}},
    `grounding` (mIoU / R@0.3 / R@0.5 / R@0.7 / count over records with
    segments; absent when none has any), `missing` (ids without an output,
    only with `allow_missing`, which scores them as wrong), and `items`
    (the per-record results of `score_one`).
    """
    if not isinstance(outputs, Mapping):
        if len(outputs) != len(records):
            raise ValueError(f"{len(outputs)} outputs for {len(records)} records; pass one per record or a dict by id.")
        outputs = {record_id(r): o for r, o in zip(records, outputs, strict=True)}
    missing = [record_id(r) for r in records if record_id(r) not in outputs]
    if missing and not allow_missing:
        raise KeyError(f"{len(missing)} records have no output (first: {missing[:3]}); "
                       "finish generation or pass allow_missing=True to count them wrong.")
    items = [score_one(r, outputs.get(record_id(r), "")) for r in records]
    by_cat = defaultdict(list)
    for it in items:
        by_cat[it["category"]].append(it["correct"])
    pct = lambda xs: 100.0 * float(np.mean(xs)) if len(xs) else float("nan")  # noqa: E731
    result = {
        "count": len(items),
        "accuracy": pct([it["correct"] for it in items]),
        "format_rate": pct([it["format"] for it in items]),
        "answered_rate": pct([it["pred"] is not None for it in items]),
        "per_category": {c: {"count": len(v), "accuracy": pct(v)} for c, v in sorted(by_cat.items())},
        "missing": missing,
        "items": items,
    }
    with_segments = [(r, outputs.get(record_id(r), "")) for r in records if rewards.record_field(r, "segments", None)]
    if with_segments:
        result["grounding"] = grounding.grounding_metrics(
            [grounding.parse_time_segments(o) for _, o in with_segments],
            [rewards.record_field(r, "segments") for r, _ in with_segments],
        )
    return result
