"""Benchmark loaders: each turns a released annotation file into Video-R1-schema dicts.

Every loader returns dicts with the fields `data.records.validate_record`
reads (`problem`, `problem_type`, `options` as "A. text" lines (empty when
not multiple choice), `data_type`, `path` relative to the video root,
`data_source`, `solution` = "<answer>X</answer>") plus `id` (unique within
the file, the official form where the benchmark has one), `category` (the
per-category accuracy key) and `segments` (ground-truth [start_s, end_s]
clues, when the benchmark has them), and the benchmark's own fields worth
keeping (`video_id`, `video_summary`, ...). The field mapping of each
released format is in docs/eval.md.
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


def _record(*, uid, problem, options, solution, path, source, category, problem_type=records_lib.MULTIPLE_CHOICE,
            data_type="video", segments=None, **extra) -> dict:
    """One loader dict; a multiple-choice answer must be one of the option letters."""
    if problem_type == records_lib.MULTIPLE_CHOICE:
        m = re.search(r"<answer>\s*([A-Z])\s*</answer>", solution)
        letters = [o[0] for o in options]
        if not m or m.group(1) not in letters:
            got = m.group(1) if m else solution
            raise BenchmarkFormatError(f"{uid}: answer {got!r} is not among the options {''.join(letters)}.")
    return {
        "id": str(uid), "problem": str(problem).strip(), "problem_type": problem_type,
        "options": options, "data_type": data_type, "path": path, "data_source": source,
        "solution": solution, "category": str(category),
        "segments": [[float(s), float(e)] for s, e in (segments or [])], **extra,
    }


def load_video_holmes(path: str) -> list[dict]:
    """Video-Holmes `test_Video-Holmes.json` (a JSON list; videos at `<root>/<video ID>.mp4`).

    `Question ID` counts 1..k within each video, so the id is
    `"<video ID>_<Question ID>"`; both official fields are kept as `video_id`
    and `question_id`.
    """
    out = []
    for i, item in enumerate(_read_json_or_jsonl(path)):
        where = f"{path}[{i}]"
        vid, qid = _need(item, "video ID", where), _need(item, "Question ID", where)
        answer = _letter(_need(item, "Answer", where), where)
        out.append(_record(
            uid=f"{vid}_{qid}", problem=_need(item, "Question", where),
            options=_options_from_dict(_need(item, "Options", where), where),
            solution=f"<answer>{answer}</answer>", path=f"{vid}.mp4", source="Video-Holmes",
            category=item.get("Question Type", "all"), video_id=str(vid), question_id=qid,
        ))
    return out


def load_cg_bench(path: str, keep: Callable[[dict], bool] | None = None) -> list[dict]:
    """CG-Bench annotations (`cgbench.json` / `cgbench_mini.json`, a JSON list; videos at `<root>/<video_uid>.mp4`).

    The id is the official `qid`. `keep` filters items (e.g.
    `cg_bench_subset.is_reasoning`); `clue_intervals` become `segments`; `duration`
    and `video_uid` are kept.
    """
    out = []
    for i, item in enumerate(_read_json_or_jsonl(path)):
        if keep is not None and not keep(item):
            continue
        where = f"{path}[{i}]"
        vid = _need(item, "video_uid", where)
        answer = _letter(_need(item, "right_answer", where), where)
        out.append(_record(
            uid=_need(item, "qid", where), problem=_need(item, "question", where),
            options=_options_from_list(_need(item, "choices", where), where),
            solution=f"<answer>{answer}</answer>", path=f"{vid}.mp4", source="CG-Bench",
            category=item.get("sub_category", item.get("domain", "all")),
            segments=item.get("clue_intervals") or [], video_id=str(vid), duration=item.get("duration"),
        ))
    return out


_STEP_STAMP_RE = re.compile(r"\[\s*(\d+):(\d{1,2}):(\d{1,2})\s*->\s*(\d+):(\d{1,2}):(\d{1,2})\s*\]")


def vrbench_steps(process: Mapping | Sequence, where: str) -> list[dict]:
    """`reasoning_process` {"1": "text [HH:MM:SS->HH:MM:SS]", ...} -> [{"text", "segment": [s, e] | None}] by step."""
    if isinstance(process, Mapping):
        try:
            entries = [v for _, v in sorted(process.items(), key=lambda kv: int(kv[0]))]
        except ValueError as e:
            raise BenchmarkFormatError(f"{where}: reasoning_process keys must be step numbers ({e}).") from e
    elif isinstance(process, (list, tuple)):
        entries = list(process)
    else:
        raise BenchmarkFormatError(f"{where}: reasoning_process must be a {{step: text}} object.")
    steps = []
    for text in entries:
        m = _STEP_STAMP_RE.search(str(text))
        segment = None
        if m:
            h1, m1, s1, h2, m2, s2 = (int(x) for x in m.groups())
            segment = [float(h1 * 3600 + m1 * 60 + s1), float(h2 * 3600 + m2 * 60 + s2)]
        steps.append({"text": str(text), "segment": segment})
    return steps


def load_vrbench(path: str) -> list[dict]:
    """VRBench `VRBench_eval.jsonl`: one video per line, its questions under `mcq`.

    The id is the official `"<video_id>_<qa key>"` (e.g. `TZk_p-q8Fzo_qa1`);
    the video is `<root>/<video_path>` (sub-folders, e.g.
    `VRBench/videos/v001/<id>.mp4`), else `<root>/<video_id>.mp4`.
    `video_summary` is kept, the reasoning steps become `steps` and their
    `[HH:MM:SS->HH:MM:SS]` stamps the `segments`.
    """
    out = []
    for i, item in enumerate(_read_json_or_jsonl(path)):
        where = f"{path}[{i}]"
        vid = _need(item, "video_id", where)
        mcq = _need(item, "mcq", where)
        if not isinstance(mcq, Mapping):
            raise BenchmarkFormatError(f"{where}: mcq must be a {{qa key: question}} object, got {type(mcq).__name__}.")
        video_path = item.get("video_path") or f"{vid}.mp4"
        for key, qa in mcq.items():
            w = f"{where}.mcq[{key}]"
            opts = _need(qa, "options", w)
            options = (_options_from_dict if isinstance(opts, Mapping) else _options_from_list)(opts, w)
            answer = _letter(_need(qa, "answer", w), w)
            steps = vrbench_steps(qa.get("reasoning_process") or {}, w)
            out.append(_record(
                uid=f"{vid}_{key}", problem=_need(qa, "question", w), options=options,
                solution=f"<answer>{answer}</answer>", path=video_path, source="VRBench",
                category=qa.get("reasoning_type", "all"),
                segments=[s["segment"] for s in steps if s["segment"] is not None],
                video_id=str(vid), video_summary=str(item.get("video_summary", "")), steps=steps,
            ))
    return out


def load_video_r1(path: str, source: str | None = None) -> list[dict]:
    """Video-R1 / Video-Thinker schema (JSON list or JSONL): Video-R1's eval files, the in-domain test sets.

    Every Video-R1 problem type loads (multiple choice, numerical, OCR,
    free-form, regression); `data_type` image items load too. The id is the
    record's `id`, else its `problem_id`, else "<file name>:<index>";
    `category` is the record's `category`, else its `data_source`, else
    `source`. `path` is relative to the video root ("./x.mp4" as released).
    """
    out = []
    name = os.path.basename(path)
    for i, item in enumerate(_read_json_or_jsonl(path)):
        where = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            raise BenchmarkFormatError(f"{where}: expected a JSON object, got {type(item).__name__}.")
        ptype = _need(item, "problem_type", where)
        if ptype not in records_lib.PROBLEM_TYPES:
            raise BenchmarkFormatError(f"{where}: problem_type {ptype!r} is not one of {records_lib.PROBLEM_TYPES}.")
        solution = _need(item, "solution", where)
        if not re.search(r"<answer>.*?</answer>", str(solution), re.DOTALL):
            raise BenchmarkFormatError(f"{where}: solution {str(solution)[:60]!r} has no <answer>...</answer>.")
        options = item.get("options") or []
        if ptype == records_lib.MULTIPLE_CHOICE:
            options = _options_from_list(_need(item, "options", where), where)
        src = item.get("data_source") or source or name
        uid = item.get("id", item.get("problem_id"))
        extra = {} if item.get("problem_id") is None else {"problem_id": item["problem_id"]}
        out.append(_record(
            uid=f"{name}:{i}" if uid is None else uid, problem=_need(item, "problem", where), options=options,
            solution=str(solution), problem_type=ptype, data_type=item.get("data_type", "video"),
            path=_need(item, "path", where), source=src, category=item.get("category", src),
            segments=item.get("segments") or [], **extra,
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
            raise BenchmarkFormatError(
                f"{annotation_path}: id {it['id']!r} occurs twice; give every record a unique `id` field.")
        seen.add(it["id"])
    return items


def to_records(items: Iterable[dict], video_root: str) -> list[records_lib.Record]:
    """Validated `data.records.Record`s (video paths resolved under `video_root`) for the eval pipeline."""
    return [records_lib.validate_record(it, it["id"], {records_lib.DEFAULT_ROOT: video_root}) for it in items]
