"""Temporal grounding: `<time>` segments parsed from text, IoU, matching and metrics.

A prediction's segments are the `<time>MM:SS-MM:SS</time>` tags of its
output, in order; a record's ground truth is a list of `[start_s, end_s]`.

Matching (documented in docs/eval.md): predicted and ground-truth segments are
paired one to one, greedily by descending IoU (ties: earlier ground truth,
then earlier prediction). A ground-truth segment left unpaired scores 0. So
one long predicted segment cannot cover several ground-truth segments, and
extra predicted segments cost nothing in the evaluation metrics (the reward
`segment_iou_score(..., penalize_extra=True)` does charge for them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

# MM:SS-MM:SS; evaluation reads 1-3 minute digits, the format reward (strict) exactly 2.
_TIME_TAG_RE = re.compile(r"<time>(.*?)</time>", re.DOTALL)
_RANGE_RE = re.compile(r"^\s*(\d{1,3}):(\d{2})\s*-\s*(\d{1,3}):(\d{2})\s*$")
THRESHOLDS = (0.3, 0.5, 0.7)


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


def grounding_metrics(
    preds: Sequence[Sequence[Sequence[float]]],
    gts: Sequence[Sequence[Sequence[float]]],
    thresholds: Sequence[float] = THRESHOLDS,
) -> dict[str, float]:
    """mIoU and R@θ (percent) over samples that have ground-truth segments.

    Per sample: mIoU = mean matched IoU over its ground-truth segments,
    R@θ = fraction of its ground-truth segments with matched IoU >= θ.
    Both are then averaged over samples. `count` is the number of samples used.
    """
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions but {len(gts)} ground-truth lists; pass one per sample.")
    per_iou, per_recall = [], {t: [] for t in thresholds}
    for p, g in zip(preds, gts, strict=True):
        if not g:
            continue
        ious = np.asarray(match_segments(p, g))
        per_iou.append(ious.mean())
        for t in thresholds:
            per_recall[t].append((ious >= t).mean())
    out = {"count": float(len(per_iou))}
    out["mIoU"] = 100.0 * float(np.mean(per_iou)) if per_iou else float("nan")
    for t in thresholds:
        out[f"R@{t:g}"] = 100.0 * float(np.mean(per_recall[t])) if per_iou else float("nan")
    return out
