"""The Video-Thinker format reward: `<time> <caption> <think>` blocks, then one `<answer>`.

Rules (`format_reward`), all required for 1.0, else 0.0:
  - tags `<time> <caption> <think> <answer>` are never nested and every
    opened tag is closed by the same tag;
  - apart from the answer, the tags form k >= 1 blocks, each `<time>` then
    `<caption>` then `<think>` in that order (free text may sit anywhere
    between tags), so the three counts are equal;
  - each `<time>` holds `START-END` (spaces around the dash allowed), start
    <= end, seconds < 60; the stamps accepted depend on `TimeFormat`;
  - caption, think and answer contents are not blank;
  - exactly one `<answer>...</answer>`, after every other tag, followed
    only by whitespace.
"""

from __future__ import annotations

import enum
import re


class TimeFormat(str, enum.Enum):
    """The `<time>` stamps the format reward accepts."""

    MM_SS = "mm:ss"  # `MM:SS` with exactly two minute digits (videos under 100 minutes)
    LONG = "long"  # also `MMM:SS` (three minute digits) and `HH:MM:SS` (minutes < 60): long videos


_TAG_RE = re.compile(r"<(/?)(time|caption|think|answer)>")
_BLOCK = ("time", "caption", "think")
_STAMP_RE = {
    TimeFormat.MM_SS: re.compile(r"([0-9]{2}):([0-9]{2})"),
    TimeFormat.LONG: re.compile(r"(?:([0-9]{2}):([0-9]{2})|([0-9]{2,3})):([0-9]{2})"),  # HH:MM:SS | MM:SS | MMM:SS
}


def parse_stamp(stamp: str, time_format: TimeFormat = TimeFormat.MM_SS) -> int | None:
    """`"MM:SS"` (or, for `TimeFormat.LONG`, `"MMM:SS"` / `"HH:MM:SS"`) -> seconds, or None."""
    m = _STAMP_RE[TimeFormat(time_format)].fullmatch(stamp.strip())
    if not m:
        return None
    if time_format == TimeFormat.MM_SS:
        minutes, seconds = int(m.group(1)), int(m.group(2))
        return 60 * minutes + seconds if seconds < 60 else None
    hours, hh_minutes, minutes, seconds = m.groups()
    if int(seconds) >= 60 or (hh_minutes is not None and int(hh_minutes) >= 60):
        return None
    if hours is not None:
        return 3600 * int(hours) + 60 * int(hh_minutes) + int(seconds)
    return 60 * int(minutes) + int(seconds)


def parse_range(text: str, time_format: TimeFormat = TimeFormat.MM_SS) -> tuple[int, int] | None:
    """`"START-END"` -> (start_s, end_s) when both stamps parse and start <= end, else None."""
    start, sep, end = text.partition("-")
    if not sep:
        return None
    s, e = parse_stamp(start, time_format), parse_stamp(end, time_format)
    if s is None or e is None or s > e:
        return None
    return s, e


def format_reward(text: str, time_format: TimeFormat = TimeFormat.MM_SS) -> float:
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
            if parse_range(content, time_format) is None:
                return 0.0
        elif not content.strip():
            return 0.0
    return 1.0
