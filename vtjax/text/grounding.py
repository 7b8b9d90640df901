"""Temporal grounding: `<time>` segments parsed from text, IoU, matching and metrics.

A prediction's segments are the `<time>MM:SS-MM:SS</time>` tags of its
output, in order; a record's ground truth is a list of `[start_s, end_s]`.

Evaluation metrics follow a `GroundingRule` (docs/eval.md):
  max_iou     Video-Thinker App. C.3 (default): each ground-truth segment
              scores its MAX IoU over all predicted segments; mIoU and R@k
              are over all ground-truth segments of all records. One
              prediction may cover several ground truths.
  union       CG-Bench's white-box mIoU: each side's segments are merged
              and one IoU of the two unions scored per record; mIoU and
              R@k are over records.
  one_to_one  vtjax's earlier rule: segments paired one to one, greedily by
              descending IoU (ties: earlier ground truth, then earlier
              prediction); a ground truth left unpaired scores 0; per-record
              means, then averaged over records.
Gt (0,10), (10,20) and one prediction (0,20): max_iou 50, one_to_one 25, union 100.
The reward `segment_iou_score(..., penalize_extra=True)` keeps one-to-one
matching and charges for extra predictions.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence

import numpy as np

# MM:SS-MM:SS; evaluation reads 1-3 minute digits, the format reward (strict) exactly 2.
_TIME_TAG_RE = re.compile(r"<time>(.*?)</time>", re.DOTALL)
_RANGE_RE = re.compile(r"^\s*(\d{1,3}):(\d{2})\s*-\s*(\d{1,3}):(\d{2})\s*$")
THRESHOLDS = (0.3, 0.5, 0.7)


class GroundingRule(str, enum.Enum):
    """How predicted segments are scored against a record's ground-truth segments (module docstring)."""

    MAX_IOU = "max_iou"  # Video-Thinker App. C.3: max IoU per ground-truth segment, pooled over segments
    UNION = "union"  # CG-Bench white-box mIoU: IoU of the merged unions, one per record
    ONE_TO_ONE = "one_to_one"  # vtjax's earlier greedy one-to-one matching, per-record means


def parse_time_range(text: str, strict: bool = False) -> tuple[int, int] | None:
    """`"MM:SS-MM:SS"` -> (start_s, end_s), or None if it does not parse.

    Seconds must be < 60 and start <= end. `strict` asks for exactly two
    minute digits (the format reward); otherwise 1-3 digits are read.
    """
    m = _RANGE_RE.match(text)
    if not m:
        return None
    m0, s0, m1, s1 = (int(g) for g in m.groups())
    if strict and not (len(m.group(1)) == 2 and len(m.group(3)) == 2):
        return None
    if s0 >= 60 or s1 >= 60:
        return None
    start, end = 60 * m0 + s0, 60 * m1 + s1
    if start > end:
        return None
    return start, end


def parse_time_segments(text: str) -> list[tuple[int, int]]:
    """Every parseable `<time>` tag's (start_s, end_s), in order; malformed tags are skipped."""
    out = []
    for content in _TIME_TAG_RE.findall(text):
        seg = parse_time_range(content)
        if seg is not None:
            out.append(seg)
    return out


def format_time(seconds: float) -> str:
    """Seconds -> `MM:SS` (floored to whole seconds)."""
    s = int(seconds)
    return f"{s // 60:02d}:{s % 60:02d}"


def interval_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two closed intervals [start, end]; two equal points have IoU 1."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    if union <= 0:  # both are the same single point
        return 1.0 if a[0] == b[0] else 0.0
    return inter / union


def match_segments(pred: Sequence[Sequence[float]], gt: Sequence[Sequence[float]]) -> list[float]:
    """IoU of each ground-truth segment with its one-to-one greedy match (0 when unmatched)."""
    pairs = sorted(
        ((interval_iou(p, g), gi, pi) for gi, g in enumerate(gt) for pi, p in enumerate(pred)),
        key=lambda x: (-x[0], x[1], x[2]),
    )
    best = [0.0] * len(gt)
    used_g, used_p = set(), set()
    for iou, gi, pi in pairs:
        if gi in used_g or pi in used_p or iou <= 0.0:
            continue
        best[gi] = iou
        used_g.add(gi)
        used_p.add(pi)
    return best


def segment_iou_score(pred, gt, penalize_extra: bool = False) -> float:
    """Mean matched IoU over ground truth (or over max(#gt, #pred) with `penalize_extra`)."""
    if not gt:
        raise ValueError("segment_iou_score needs at least one ground-truth segment.")
    ious = match_segments(pred, gt)
    denom = max(len(gt), len(pred)) if penalize_extra else len(gt)
    return float(sum(ious) / denom)


def max_iou_per_gt(pred: Sequence[Sequence[float]], gt: Sequence[Sequence[float]]) -> list[float]:
    """For each ground-truth segment, its largest IoU with any predicted segment (0 with none)."""
    return [max((interval_iou(p, g) for p in pred), default=0.0) for g in gt]


def merge_intervals(segments: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    """Sorted union of closed intervals; touching intervals ([0, 5], [5, 9]) merge."""
    out: list[list[float]] = []
    for start, end in sorted((float(s), float(e)) for s, e in segments):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(s, e) for s, e in out]


def union_iou(pred: Sequence[Sequence[float]], gt: Sequence[Sequence[float]]) -> float:
    """CG-Bench's IoU of the merged predicted and ground-truth unions; 0 when the union has no length."""
    a, b = merge_intervals(pred), merge_intervals(gt)
    inter = sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)
    union = sum(e - s for s, e in a) + sum(e - s for s, e in b) - inter
    return inter / union if union > 0 else 0.0


def record_ious(pred, gt, rule: GroundingRule | str = GroundingRule.MAX_IOU) -> list[float]:
    """The IoUs one record contributes under `rule`: one per ground-truth segment, or one (`union`)."""
    rule = GroundingRule(rule)
    if rule == GroundingRule.MAX_IOU:
        return max_iou_per_gt(pred, gt)
    if rule == GroundingRule.UNION:
        return [union_iou(pred, gt)]
    return match_segments(pred, gt)


def grounding_metrics(
    preds: Sequence[Sequence[Sequence[float]]],
    gts: Sequence[Sequence[Sequence[float]]],
    thresholds: Sequence[float] = THRESHOLDS,
    rule: GroundingRule | str = GroundingRule.MAX_IOU,
) -> dict:
    """mIoU and R@θ (percent) over samples that have ground-truth segments, under `rule`.

    `max_iou`: the mean over all ground-truth segments (of all samples) of
    their max IoU, and the fraction of them with max IoU >= θ. `union`: the
    mean union IoU over samples, and the fraction of samples with it >= θ.
    `one_to_one`: per sample, the mean matched IoU and the fraction of its
    segments matched with IoU >= θ, both averaged over samples. `count` is
    the number of samples used; `rule` is echoed.
    """
    rule = GroundingRule(rule)
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions but {len(gts)} ground-truth lists; pass one per sample.")
    groups = [np.asarray(record_ious(p, g, rule)) for p, g in zip(preds, gts, strict=True) if len(g)]
    if rule == GroundingRule.ONE_TO_ONE:  # per-sample means, then the mean over samples
        iou = [x.mean() for x in groups]
        recall = {t: [(x >= t).mean() for x in groups] for t in thresholds}
    else:  # pooled: every ground-truth segment (max_iou) or every sample (union, one value each) counts once
        pooled = np.concatenate(groups) if groups else np.zeros(0)
        iou, recall = pooled, {t: pooled >= t for t in thresholds}
    out = {"count": float(len(groups)), "rule": rule.value}
    out["mIoU"] = 100.0 * float(np.mean(iou)) if groups else float("nan")
    for t in thresholds:
        out[f"R@{t:g}"] = 100.0 * float(np.mean(recall[t])) if groups else float("nan")
    return out
