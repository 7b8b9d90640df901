"""GRPO reward registry and weighted combination; re-exports the format and accuracy rewards.

Each reward maps (completion text, record) to a float; a registry names them
and `combine_rewards` sums them with configured weights. Video-Thinker trains
with accuracy + format (REFERENCE.md §1); `temporal_iou` is off by default.
The rules themselves live in `accuracy` (Video-R1's by default, or lenient)
and `tag_format` (`<time>` stamps `MM:SS`, or long-video stamps); a
`RewardOptions` passed to `combine_rewards` chooses them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from vtjax.text import grounding
from vtjax.rl import accuracy, tag_format
from vtjax.rl.accuracy import RewardRules
from vtjax.rl.tag_format import TimeFormat

RewardFn = Callable[[str, Any], float]  # (completion text, record) -> reward

DEFAULT_WEIGHTS = {"accuracy": 1.0, "format": 1.0}


@dataclasses.dataclass(frozen=True)
class RewardOptions:
    """Choices of the built-in rewards (the GRPO config's `rl.reward_rules` and `rl.time_format`)."""

    rules: RewardRules = RewardRules.VIDEO_R1  # accuracy rules: Video-R1's as released, or lenient
    time_format: TimeFormat = TimeFormat.MM_SS  # `<time>` stamps the format reward accepts


def accuracy_reward(text: str, solution: str, problem_type: str,
                    rules: RewardRules | str = RewardRules.VIDEO_R1) -> float:
    """`accuracy.accuracy_reward`: Video-R1's accuracy by default (docs/rl.md)."""
    return accuracy.accuracy_reward(text, solution, problem_type, rules)


def format_reward(text: str, time_format: TimeFormat | str = TimeFormat.MM_SS) -> float:
    """`tag_format.format_reward`: 1.0 if the Video-Thinker tag format holds, else 0.0."""
    return tag_format.format_reward(text, TimeFormat(time_format))


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
_TAKES_OPTIONS: set[str] = set()  # rewards called as fn(text, record, options=RewardOptions)


def register_reward(name: str, *, takes_options: bool = False) -> Callable[[RewardFn], RewardFn]:
    """Decorator: registers `fn(text, record) -> float` under `name`.

    With `takes_options`, `combine_rewards` also passes its `RewardOptions`
    as the keyword `options` (the built-in accuracy and format rewards).
    """

    def add(fn: RewardFn) -> RewardFn:
        if name in REWARDS:
            raise ValueError(f"reward {name!r} is already registered.")
        REWARDS[name] = fn
        if takes_options:
            _TAKES_OPTIONS.add(name)
        return fn

    return add


@register_reward("format", takes_options=True)
def _format(text: str, record: Any, options: RewardOptions = RewardOptions()) -> float:
    del record
    return format_reward(text, options.time_format)


@register_reward("accuracy", takes_options=True)
def _accuracy(text: str, record: Any, options: RewardOptions = RewardOptions()) -> float:
    return accuracy_reward(text, record_field(record, "solution"), record_field(record, "problem_type"),
                           options.rules)


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
    options: RewardOptions = RewardOptions(),
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Weighted sum of the named rewards for each completion.

    Args:
      texts: N decoded completions.
      records: N records, or N / G records when each record's G completions
        are consecutive in `texts` (the sampler's `[B * num_samples]` layout).
      weights: {reward name: weight}; default accuracy 1.0 + format 1.0.
        Zero-weight rewards are still computed and reported.
      options: accuracy rules and `<time>` format of the built-in rewards.

    Returns:
      (total float32 [N], {name: float32 [N] unweighted values}).
    """
    weights = check_weights(DEFAULT_WEIGHTS if weights is None else weights)
    n = len(texts)
    if not records or n % len(records):
        raise ValueError(f"{n} texts but {len(records)} records; pass one record per text or per group.")
    group = n // len(records)
    fns = {name: functools.partial(REWARDS[name], options=options) if name in _TAKES_OPTIONS else REWARDS[name]
           for name in weights}
    per = {name: np.zeros([n], np.float32) for name in weights}
    for i, text in enumerate(texts):
        record = records[i // group]
        for name, fn in fns.items():
            per[name][i] = fn(text, record)
    total = np.zeros([n], np.float32)
    for name, w in weights.items():
        total += np.float32(w) * per[name]
    return total, per
