"""Video-R1 / Video-Thinker records: loading, validation and video path resolution.

A record (one JSON object) has `problem`, `problem_type`, `options`,
`data_type`, `path`, `data_source`, `process`, `solution`, and optionally
`problem_id` / `id`, as in Video-R1-260k and Video-Thinker-10K. Files are a
JSON list or JSONL. Each bad record becomes a `RecordProblem` naming the
file, the line it starts on and the fix; the good ones load.

`path` is relative to the data source's root for videos and images alike
(Video-R1 joins `<data dir>` + `path[1:]` to its "./..." paths). Image
records (`data_type: "image"`, 56% of Video-R1-260k) load and train mixed
with the video records (`vtjax.data.examples`, `vtjax.data.image`).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence

from vtjax import errors

MULTIPLE_CHOICE = "multiple choice"
# Video-R1's problem types; scoring of each lives in vtjax.rl.accuracy.
PROBLEM_TYPES = (MULTIPLE_CHOICE, "numerical", "OCR", "free-form", "regression")
DEFAULT_ROOT = "*"  # key of `video_roots` used for any data_source not listed
_ANSWER_RE = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)
_OPTION_RE = re.compile(r"^\s*([A-Z])\s*[.:)]")
_REQUIRED = ("problem", "problem_type", "data_type", "path", "solution")
# A data_source name before "=" in video_roots: no path separator, not "~..." or ".";
# anything else (an absolute, home or dotted path) before an "=" is part of a directory name.
_SOURCE_NAME_RE = re.compile(r"^(\*|[^/\\~.=][^/\\=]*)$")


class DataType(str, enum.Enum):
    """A record's `data_type`: what its `path` points at."""

    VIDEO = "video"
    IMAGE = "image"


@dataclasses.dataclass(frozen=True)
class Record:
    """One validated question about one video."""

    uid: str  # the record's "id", else its "problem_id", else "basename:line"
    problem: str
    problem_type: str
    options: tuple[str, ...]  # "A. ..." lines; empty for non-multiple-choice
    video_path: str  # absolute path under the data source's root (the image, for data_type image)
    data_source: str
    process: str  # reasoning trace ("" when absent)
    solution: str  # "<answer>X</answer>"
    answer: str  # the text inside <answer>; an option letter for multiple choice
    location: str  # "file:line", for messages
    problem_id: str = ""  # the record's "problem_id" as text ("" when absent)
    data_type: DataType = DataType.VIDEO
    video_summary: str = ""  # the record's "video_summary" (VRBench), for a template's {video_summary}

    @property
    def sft_target(self) -> str:
        """SFT answer text: process, newline, solution (the paper's target)."""
        return f"{self.process}\n{self.solution}" if self.process else self.solution


@dataclasses.dataclass(frozen=True)
class RecordProblem:
    """A record that was refused, and why."""

    location: str  # "file:line"
    reason: str
    path: str = ""  # the record's video path, when it had one

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


def parse_video_roots(value: str) -> dict[str, str]:
    """``"/videos"`` -> {"*": "/videos"}; ``"A=/a,*=/b"`` -> {"A": "/a", "*": "/b"}.

    An item splits at its first "=" only when the left part is a source name
    and the whole item is not an existing directory, so ``/data/run=3`` and
    ``A=/data/run=3`` both keep the directory ``/data/run=3``.
    """
    value = value.strip()
    if not value:
        return {}
    if os.path.isdir(value):
        return {DEFAULT_ROOT: value}
    items = [x.strip() for x in value.split(",") if x.strip()]
    roots = {}
    for item in items:
        name, sep, path = item.partition("=")
        if sep and _SOURCE_NAME_RE.match(name.strip()) and not os.path.isdir(item):
            roots[name.strip()] = path.strip()
        elif len(items) == 1:
            roots[DEFAULT_ROOT] = item
        else:
            raise errors.ConfigError(
                f"data.video_roots item {item!r} must be Source=dir (e.g. STAR=/data/star, *=/data/videos)"
            )
    return roots


def resolve_video_path(root: str, relative: str, other_roots: Sequence[str] = ()) -> str:
    """`root/relative`, refusing absolute paths, `..` and symlinks that leave the roots.

    Symlinks are followed (os.path.realpath on both sides): a link that ends
    inside `root` or one of `other_roots` works, one to a file or directory
    outside them all is refused. Returns the unresolved `root/relative`.
    """
    if not relative:
        raise ValueError("path is empty")
    if os.path.isabs(relative) or relative.startswith(("~", "\\")) or re.match(r"^[A-Za-z]:", relative):
        raise ValueError(f"path {relative!r} is absolute; store it relative to the data source's video root")
    root = os.path.abspath(root)
    full = os.path.normpath(os.path.join(root, relative))
    if os.path.commonpath([root, full]) != root:
        raise ValueError(f"path {relative!r} escapes the video root {root}; remove the '..' parts")
    real = os.path.realpath(full)
    real_roots = [os.path.realpath(r) for r in (root, *other_roots)]
    if not any(os.path.commonpath([r, real]) == r for r in real_roots):
        raise ValueError(
            f"path {relative!r} leads through a symlink to {real}, outside the video roots; "
            "copy the video into its root or add the link's target directory to video_roots"
        )
    return full


def _iter_json_objects(path: str) -> Iterator[tuple[int, object]]:
    """(line, value) for each element of a JSON list file or each line of a JSONL file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        decoder = json.JSONDecoder()
        pos = text.index("[") + 1
        while True:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(text):
                raise ValueError(f"{path}: the JSON list is not closed with ']'")
            if text[pos] == "]":
                return
            line = text.count("\n", 0, pos) + 1
            try:
                value, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line}: invalid JSON ({e.msg}); fix the file") from e
            yield line, value
    else:
        for line, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as e:
                yield line, ValueError(f"invalid JSON ({e.msg})")
                continue
            yield line, value


def _option_letters(options: Sequence[str]) -> tuple[str, ...]:
    letters = []
    for i, opt in enumerate(options):
        m = _OPTION_RE.match(opt)
        if not m:
            raise ValueError(f"option {i} {opt[:40]!r} does not start with a letter like 'A.'")
        letters.append(m.group(1))
    return tuple(letters)


def validate_record(
    raw: object,
    location: str,
    video_roots: Mapping[str, str],
    *,
    require_process: bool = False,
    default_uid: str | None = None,
) -> Record:
    """Checks one raw record and resolves its video path; raises ValueError with the fix."""
    if not isinstance(raw, dict):
        raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
    required = _REQUIRED + (("process",) if require_process else ())
    for field in required:
        if field not in raw:
            raise ValueError(f"missing field {field!r}")
        if not isinstance(raw[field], str):
            raise ValueError(f"field {field!r} must be a string, got {type(raw[field]).__name__}")
    try:
        data_type = DataType(raw["data_type"])
    except ValueError:
        raise ValueError(
            f"data_type {raw['data_type']!r} is not one of {[t.value for t in DataType]}; fix the record"
        ) from None
    problem_id = raw.get("problem_id")
    if isinstance(problem_id, bool) or not isinstance(problem_id, (str, int, type(None))):
        raise ValueError(f"field 'problem_id' must be a string or an integer, got {type(problem_id).__name__}")
    source = raw.get("data_source", "")
    root = video_roots.get(source, video_roots.get(DEFAULT_ROOT))
    if root is None:
        raise ValueError(
            f"no video root for data_source {source!r}; add it (or {DEFAULT_ROOT!r}) to video_roots"
        )
    video_path = resolve_video_path(root, raw["path"], list(video_roots.values()))
    m = _ANSWER_RE.search(raw["solution"])
    if not m:
        raise ValueError(f"solution {raw['solution'][:60]!r} has no <answer>...</answer>")
    answer = m.group(1)
    options = raw.get("options") or []
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise ValueError("field 'options' must be a list of strings")
    if raw["problem_type"] == MULTIPLE_CHOICE:
        if not options:
            raise ValueError("multiple-choice record has no options")
        letters = _option_letters(options)
        if answer not in letters:
            raise ValueError(f"answer {answer!r} is not among the option letters {''.join(letters)}")
    uid = raw.get("id", problem_id)
    return Record(
        uid=str(uid) if uid is not None else (default_uid or location),
        problem=raw["problem"],
        problem_type=raw["problem_type"],
        options=tuple(options),
        video_path=video_path,
        data_source=source,
        process=raw.get("process") or "",
        solution=raw["solution"],
        answer=answer,
        location=location,
        problem_id="" if problem_id is None else str(problem_id),
        data_type=data_type,
        video_summary=str(raw.get("video_summary") or ""),
    )


def load_records(
    paths: str | Sequence[str],
    video_roots: str | Mapping[str, str],
    *,
    require_process: bool = False,
) -> tuple[list[Record], list[RecordProblem]]:
    """Loads and validates records from JSON-list / JSONL files.

    Args:
      paths: one file or several, read in order.
      video_roots: a directory for every source, or {data_source: directory},
        with "*" as the fallback for sources not listed.
      require_process: refuse records without a `process` trace (SFT).

    Returns:
      (records, problems): the valid records in file order, and one
      `RecordProblem` per refused record.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if isinstance(video_roots, (str, os.PathLike)):
        video_roots = {DEFAULT_ROOT: os.fspath(video_roots)}
    records, problems = [], []
    for path in paths:
        path = os.fspath(path)
        name = os.path.basename(path)
        for line, raw in _iter_json_objects(path):
            location = f"{path}:{line}"
            if isinstance(raw, Exception):
                problems.append(RecordProblem(location, str(raw)))
                continue
            try:
                records.append(
                    validate_record(
                        raw, location, video_roots,
                        require_process=require_process, default_uid=f"{name}:{line}",
                    )
                )
            except ValueError as e:
                vpath = raw.get("path", "") if isinstance(raw, dict) else ""
                problems.append(RecordProblem(location, str(e), str(vpath)))
    return records, problems
