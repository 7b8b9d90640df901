"""GRPO reward functions (pure, host-side) and their weighted combination.

Each reward maps (completion text, record) to a float; a registry names them
and `combine_rewards` sums them with configured weights. Video-Thinker trains
with accuracy + format (REFERENCE.md §1); `temporal_iou` is off by default.

Format rules (`format_reward`), all required for 1.0, else 0.0:
  - tags `<time> <caption> <think> <answer>` are never nested and every
    opened tag is closed by the same tag;
  - apart from the answer, the tags form k >= 1 blocks, each
    `<time>` then `<caption>` then `<think>` in that order (free text may
    sit anywhere between tags), so the three counts are equal;
  - each `<time>` holds `MM:SS-MM:SS`: two-digit minutes and seconds,
    seconds < 60, start <= end (spaces around the dash are allowed);
  - caption, think and answer contents are not blank;
  - exactly one `<answer>...</answer>`, after every other tag, followed only
    by whitespace.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from vtjax.eval import answers, grounding
from vtjax.rl import text_metrics

RewardFn = Callable[[str, Any], float]  # (completion text, record) -> reward

DEFAULT_WEIGHTS = {"accuracy": 1.0, "format": 1.0}
_TAG_RE = re.compile(r"<(/?)(time|caption|think|answer)>")
_BLOCK = ("time", "caption", "think")


# ---------------------------------------------------------------- format


def format_reward(text: str) -> float:
    """1.0 if `text` follows the Video-Thinker tag format (module docstring), else 0.0."""
    elements = []  # (name, content, end offset of the closing tag)
    open_name, open_end = None, 0
    for m in _TAG_RE.finditer(text):
        closing, name = m.group(1) == "/", m.group(2)
        if not closing:
            if open_name is not None:
                return 0.0  # nested
            open_name, open_end = name, m.end()
        else:
            if open_name != name:
                return 0.0  # stray or mismatched close
            elements.append((name, text[open_end : m.start()], m.end()))
            open_name = None
    if open_name is not None:
        return 0.0  # unclosed
    if not elements or elements[-1][0] != "answer":
        return 0.0
    if sum(name == "answer" for name, _, _ in elements) != 1:
        return 0.0
    if text[elements[-1][2] :].strip() or not elements[-1][1].strip():
        return 0.0
    blocks = elements[:-1]
    if not blocks or len(blocks) % 3:
        return 0.0
    for i, (name, content, _) in enumerate(blocks):
        if name != _BLOCK[i % 3]:
            return 0.0
        if name == "time":
            if grounding.parse_time_range(content, strict=True) is None:
                return 0.0
        elif not content.strip():
            return 0.0
    return 1.0


# ---------------------------------------------------------------- accuracy

ACCURACY_KINDS = frozenset({"multiple choice", "numerical", "ocr", "free-form", "regression"})


def _problem_kind(problem_type: str) -> str:
    kind = re.sub(r"[\s_-]+", " ", problem_type.strip().lower())
    kind = {"free form": "free-form", "freeform": "free-form", "multiple choice": "multiple choice"}.get(kind, kind)
    if kind not in ACCURACY_KINDS:
        raise ValueError(
            f"problem_type {problem_type!r} has no accuracy rule; use one of {sorted(ACCURACY_KINDS)}."
        )
    return kind


def _to_float(s: str) -> float | None:
    try:
        v = float(s.strip().replace(",", ""))
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _solution_text(solution: str) -> str:
    content = answers.last_answer(solution)
    return content if content is not None else solution.strip()


def accuracy_reward(text: str, solution: str, problem_type: str) -> float:
    """Video-R1's accuracy for one completion; 0.0 when it has no `<answer>`.

    multiple choice: 1 if the last answer's option letter (`answers.choice_letter`)
      equals the ground-truth letter; numerical: 1 if both round to the same
      2-decimal value; OCR: 1 - WER, clipped to [0, 1]; free-form: mean
      ROUGE-1/2/L F1; regression: 1 - |pred - gt| / |gt|, clipped to [0, 1].
    """
    kind = _problem_kind(problem_type)
    pred = answers.last_answer(text)
    if pred is None:
        return 0.0
    if kind == "multiple choice":
        return float(answers.choice_letter(pred) == answers.ground_truth_letter(solution))
    gt = _solution_text(solution)
    if kind == "ocr":
        return float(np.clip(1.0 - text_metrics.word_error_rate(gt, pred), 0.0, 1.0))
    if kind == "free-form":
        return text_metrics.rouge_mean_f(gt, pred)
    p, g = _to_float(pred), _to_float(gt)
    if g is None:
        raise ValueError(f"solution {solution[:60]!r} is not a number; a {kind} record needs one.")
    if p is None:
        return 0.0
    if kind == "numerical":
        return float(round(p, 2) == round(g, 2))
    rel = abs(p - g) / max(abs(g), 1e-9)  # regression; gt 0 scores 1 only for an exact 0
    return float(1.0 - min(1.0, rel))


# ---------------------------------------------------------------- grounding


def temporal_iou_reward(text: str, gt_segments: Sequence[Sequence[float]] | None) -> float:
    """Matched IoU of the completion's `<time>` segments with the ground truth, in [0, 1].

    One-to-one greedy matching (`grounding.match_segments`), summed IoU divided
    by max(#gt, #predicted) so extra segments lower the reward. 0.0 when the
    record has no segments.
    """
    if not gt_segments:
        return 0.0
    pred = grounding.parse_time_segments(text)
    return grounding.segment_iou_score(pred, gt_segments, penalize_extra=True)


# ---------------------------------------------------------------- registry


def record_field(record: Any, name: str, default: Any = ...) -> Any:
    """`record[name]` for mappings, `record.name` for objects (e.g. data.records.Record)."""
    if isinstance(record, Mapping):
        if name in record:
            return record[name]
    elif hasattr(record, name):
        return getattr(record, name)
    if default is ...:
        raise KeyError(f"record has no field {name!r}; the reward needs it.")
    return default


REWARDS: dict[str, RewardFn] = {}


def register_reward(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator: registers `fn(text, record) -> float` under `name`."""

    def add(fn: RewardFn) -> RewardFn:
        if name in REWARDS:
            raise ValueError(f"reward {name!r} is already registered.")
        REWARDS[name] = fn
        return fn

    return add


@register_reward("format")
def _format(text: str, record: Any) -> float:
    del record
    return format_reward(text)


@register_reward("accuracy")
def _accuracy(text: str, record: Any) -> float:
    return accuracy_reward(text, record_field(record, "solution"), record_field(record, "problem_type"))


@register_reward("temporal_iou")
def _temporal_iou(text: str, record: Any) -> float:
    return temporal_iou_reward(text, record_field(record, "segments", None))


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Validates reward weights (known names, finite numbers); returns a plain dict."""
    unknown = sorted(set(weights) - set(REWARDS))
    if unknown:
        raise KeyError(f"unknown reward(s) {unknown}; registered: {sorted(REWARDS)}.")
    out = {k: float(v) for k, v in weights.items()}
    bad = [k for k, v in out.items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"reward weight(s) {bad} are not finite numbers.")
    return out


def combine_rewards(
    texts: Sequence[str],
    records: Sequence[Any],
    weights: Mapping[str, float] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Weighted sum of the named rewards for each completion.

    Args:
      texts: N decoded completions.
      records: N records, or N / G records when each record's G completions
        are consecutive in `texts` (the sampler's `[B * num_samples]` layout).
      weights: {reward name: weight}; default accuracy 1.0 + format 1.0.
        Zero-weight rewards are still computed and reported.

    Returns:
      (total float32 [N], {name: float32 [N] unweighted values}).
    """
    weights = check_weights(DEFAULT_WEIGHTS if weights is None else weights)
    n = len(texts)
    if not records or n % len(records):
        raise ValueError(f"{n} texts but {len(records)} records; pass one record per text or per group.")
    group = n // len(records)
    per = {name: np.zeros([n], np.float32) for name in weights}
    for i, text in enumerate(texts):
        record = records[i // group]
        for name in weights:
            per[name][i] = REWARDS[name](text, record)
    total = np.zeros([n], np.float32)
    for name, w in weights.items():
        total += np.float32(w) * per[name]
    return total, per
