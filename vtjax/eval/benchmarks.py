"""Multiple-choice benchmark loaders: each turns a local annotation file into Video-R1-schema dicts.

Every loader returns dicts with the fields `data.records.validate_record`
reads (`problem`, `problem_type` = "multiple choice", `options` as
"A. text" lines, `data_type` = "video", `path` relative to the video root,
`data_source`, `solution` = "<answer>X</answer>") plus `id` (unique within
the benchmark), `category` (the per-category accuracy key) and `segments`
(ground-truth [start_s, end_s] clues, when the benchmark has them). The
field mapping of each format is in docs/eval.md.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence

from vtjax import errors
from vtjax.data import records as records_lib

LETTERS = string.ascii_uppercase
_LETTER_RE = re.compile(r"^\s*\(?([A-Z])\)?\s*(?:[.:)]|$)")


class BenchmarkFormatError(errors.DataError):
    """An annotation file that does not match the benchmark's format."""


def _read_json_or_jsonl(path: str) -> list:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        return json.loads(text)
    out = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise BenchmarkFormatError(f"{path}:{line_no}: invalid JSON ({e.msg}).") from e
    return out


def _need(item: Mapping, key: str, where: str):
    if key not in item:
        raise BenchmarkFormatError(f"{where}: missing field {key!r} (fields present: {sorted(item)[:12]}).")
    return item[key]


def _letter(value, where: str) -> str:
    m = _LETTER_RE.match(str(value))
    if not m:
        raise BenchmarkFormatError(f"{where}: answer {value!r} is not an option letter.")
    return m.group(1)


def _options_from_dict(opts: Mapping, where: str) -> list[str]:
    """{"A": "text", ...} -> ["A. text", ...] in letter order."""
    if not isinstance(opts, Mapping):
        raise BenchmarkFormatError(f"{where}: options must be a {{letter: text}} object, got {type(opts).__name__}.")
    return [f"{_letter(k, where)}. {str(v).strip()}" for k, v in sorted(opts.items(), key=lambda kv: str(kv[0]))]


def _options_from_list(opts: Sequence, where: str) -> list[str]:
    """["text", ...] or ["A. text", ...] -> ["A. text", ...]."""
    if not isinstance(opts, (list, tuple)):
        raise BenchmarkFormatError(f"{where}: options must be a list, got {type(opts).__name__}.")
    out = []
    for i, o in enumerate(opts):
        o = str(o).strip()
        m = re.match(r"^\(?([A-Z])\)?\s*[.:)]\s*(.*)$", o, re.DOTALL)
        out.append(f"{m.group(1)}. {m.group(2)}" if m and m.group(1) == LETTERS[i] else f"{LETTERS[i]}. {o}")
    return out


def _record(*, uid, problem, options, answer, path, source, category, segments=None) -> dict:
    letters = [o[0] for o in options]
    if answer not in letters:
        raise BenchmarkFormatError(f"{uid}: answer {answer!r} is not among the options {''.join(letters)}.")
    return {
        "id": str(uid), "problem": str(problem).strip(), "problem_type": records_lib.MULTIPLE_CHOICE,
        "options": options, "data_type": "video", "path": path, "data_source": source,
        "solution": f"<answer>{answer}</answer>", "category": str(category),
        "segments": [[float(s), float(e)] for s, e in (segments or [])],
    }


def load_video_holmes(path: str) -> list[dict]:
    """Video-Holmes `test_Video-Holmes.json` (a JSON list)."""
    out = []
    for i, item in enumerate(_read_json_or_jsonl(path)):
        where = f"{path}[{i}]"
        vid = _need(item, "video ID", where)
        out.append(_record(
            uid=_need(item, "Question ID", where), problem=_need(item, "Question", where),
            options=_options_from_dict(_need(item, "Options", where), where),
            answer=_letter(_need(item, "Answer", where), where), path=f"{vid}.mp4", source="Video-Holmes",
            category=item.get("Question Type", "all"),
        ))
    return out


def load_cg_bench(path: str, keep: Callable[[dict], bool] | None = None) -> list[dict]:
    """CG-Bench annotations (`cgbench.json` / `cgbench_mini.json`, a JSON list).

    `keep` filters items (e.g. the reasoning subset, when your copy marks it);
    `clue_intervals` become `segments`.
    """
    out = []
    for i, item in enumerate(_read_json_or_jsonl(path)):
        if keep is not None and not keep(item):
            continue
        where = f"{path}[{i}]"
        vid = _need(item, "video_uid", where)
        out.append(_record(
            uid=_need(item, "qid", where), problem=_need(item, "question", where),
            options=_options_from_list(_need(item, "choices", where), where),
            answer=_letter(_need(item, "right_answer", where), where), path=f"{vid}.mp4", source="CG-Bench",
            category=item.get("sub_category", item.get("domain", "all")),
            segments=item.get("clue_intervals") or [],
        ))
    return out


def load_vrbench(path: str) -> list[dict]:
    """VRBench `VRBench_eval.jsonl`: one video per line, its questions under `mcq`."""
    out = []
    for i, item in enumerate(_read_json_or_jsonl(path)):
        where = f"{path}[{i}]"
        vid = _need(item, "video_id", where)
        mcq = _need(item, "mcq", where)
        entries = mcq.items() if isinstance(mcq, Mapping) else enumerate(mcq)
        for key, qa in entries:
            w = f"{where}.mcq[{key}]"
            out.append(_record(
                uid=f"{vid}/{key}", problem=_need(qa, "question", w),
                options=(_options_from_dict if isinstance(qa.get("options"), Mapping) else _options_from_list)(
                    _need(qa, "options", w), w),
                answer=_letter(_need(qa, "answer", w), w), path=f"{vid}.mp4", source="VRBench",
                category=qa.get("reasoning_type", "all"),
            ))
    return out


def load_video_r1(path: str, source: str | None = None) -> list[dict]:
    """Video-R1 / Video-Thinker schema (JSON list or JSONL), e.g. the in-domain test sets.

    Records without `id` get "<file name>:<index>"; `category` is the record's
    `category`, else its `data_source`, else `source`.
    """
    out = []
    name = os.path.basename(path)
    for i, item in enumerate(_read_json_or_jsonl(path)):
        where = f"{path}[{i}]"
        ptype = _need(item, "problem_type", where)
        if ptype != records_lib.MULTIPLE_CHOICE:
            raise BenchmarkFormatError(f"{where}: problem_type {ptype!r}; the loaders read multiple-choice sets.")
        src = item.get("data_source") or source or name
        m = re.search(r"<answer>\s*([A-Z])\s*</answer>", _need(item, "solution", where))
        if not m:
            raise BenchmarkFormatError(f"{where}: solution has no <answer>X</answer> letter.")
        out.append(_record(
            uid=item.get("id", f"{name}:{i}"), problem=_need(item, "problem", where),
            options=_options_from_list(_need(item, "options", where), where), answer=m.group(1),
            path=_need(item, "path", where), source=src, category=item.get("category", src),
            segments=item.get("segments") or [],
        ))
    return out


LOADERS: dict[str, Callable[[str], list[dict]]] = {
    "video_holmes": load_video_holmes,
    "cg_bench": load_cg_bench,
    "vrbench": load_vrbench,
    "video_r1": load_video_r1,  # Video-Thinker in-domain test sets, the synthetic test split
}


def load_benchmark(name: str, annotation_path: str) -> list[dict]:
    """Loads `annotation_path` with the loader `name` (one of LOADERS); ids must be unique."""
    if name not in LOADERS:
        raise KeyError(f"unknown benchmark format {name!r}; use one of {sorted(LOADERS)}.")
    items = LOADERS[name](annotation_path)
    seen = set()
    for it in items:
        if it["id"] in seen:
            raise BenchmarkFormatError(f"{annotation_path}: id {it['id']!r} occurs twice; ids must be unique.")
        seen.add(it["id"])
    return items


def to_records(items: Iterable[dict], video_root: str) -> list[records_lib.Record]:
    """Validated `data.records.Record`s (video paths resolved under `video_root`) for the eval pipeline."""
    return [records_lib.validate_record(it, it["id"], {records_lib.DEFAULT_ROOT: video_root}) for it in items]
