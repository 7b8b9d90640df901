"""Benchmark loaders on small files written in each public format."""

import json

import pytest

from vtjax.data import records as records_lib
from vtjax.eval import benchmarks


def _write(path, obj, jsonl=False):
    if jsonl:
        path.write_text("\n".join(json.dumps(o) for o in obj) + "\n", encoding="utf-8")
    else:
        path.write_text(json.dumps(obj), encoding="utf-8")
    return str(path)


def test_video_holmes(tmp_path):
    path = _write(tmp_path / "test_Video-Holmes.json", [
        {"Question ID": "q1", "video ID": "vid9", "Question Type": "TCI", "Question": "Why did he leave? ",
         "Options": {"B": "fear", "A": "anger", "C": "joy"}, "Answer": "B", "Explanation": "..."},
    ])
    (item,) = benchmarks.load_benchmark("video_holmes", path)
    assert item["options"] == ["A. anger", "B. fear", "C. joy"]
    assert item["solution"] == "<answer>B</answer>" and item["path"] == "vid9.mp4"
    assert item["category"] == "TCI" and item["problem"] == "Why did he leave?" and item["id"] == "q1"


def test_cg_bench_with_clues_and_filter(tmp_path):
    path = _write(tmp_path / "cgbench.json", [
        {"qid": 7, "video_uid": "u1", "question": "What is held?", "choices": ["a cup", "a pen", "a key", "a hat"],
         "right_answer": "C", "answer": "a key", "clue_intervals": [[10, 20.5], [30, 31]],
         "sub_category": "Object", "domain": "Life", "task": "reasoning"},
        {"qid": 8, "video_uid": "u2", "question": "Count?", "choices": ["1", "2"], "right_answer": "A",
         "clue_intervals": [], "domain": "Sports", "task": "perception"},
    ])
    items = benchmarks.load_benchmark("cg_bench", path)
    assert [i["id"] for i in items] == ["7", "8"]
    assert items[0]["options"][2] == "C. a key" and items[0]["segments"] == [[10.0, 20.5], [30.0, 31.0]]
    assert items[0]["category"] == "Object" and items[1]["category"] == "Sports"
    only = benchmarks.load_cg_bench(path, keep=lambda it: it.get("task") == "reasoning")
    assert [i["id"] for i in only] == ["7"]


def test_vrbench(tmp_path):
    path = _write(tmp_path / "VRBench_eval.jsonl", [
        {"video_id": "v1", "mcq": {"0": {"question": "Q0", "options": {"A": "x", "B": "y", "C": "z", "D": "w"},
                                         "answer": "D", "reasoning_type": "event prediction"},
                                   "1": {"question": "Q1", "options": {"A": "x", "B": "y"}, "answer": "(A)",
                                         "reasoning_type": "hypothetical"}}},
    ], jsonl=True)
    items = benchmarks.load_benchmark("vrbench", path)
    assert [i["id"] for i in items] == ["v1/0", "v1/1"]
    assert items[1]["solution"] == "<answer>A</answer>" and items[0]["category"] == "event prediction"


def test_video_r1_schema_and_records(tmp_path):
    (tmp_path / "videos" / "star").mkdir(parents=True)
    (tmp_path / "videos" / "star" / "a.mp4").write_bytes(b"")
    path = _write(tmp_path / "star_test.json", [
        {"problem": "What next?", "problem_type": "multiple choice", "options": ["A. sit", "B. run", "C. eat"],
         "data_type": "video", "path": "star/a.mp4", "data_source": "STAR", "solution": "<answer>B</answer>"},
    ])
    items = benchmarks.load_benchmark("video_r1", path)
    assert items[0]["id"] == "star_test.json:0" and items[0]["category"] == "STAR"
    (rec,) = benchmarks.to_records(items, str(tmp_path / "videos"))
    assert isinstance(rec, records_lib.Record) and rec.answer == "B" and rec.uid == "star_test.json:0"


def test_format_errors_name_the_field(tmp_path):
    bad = _write(tmp_path / "h.json", [{"Question ID": "q", "video ID": "v", "Question": "?",
                                        "Options": {"A": "x"}, "Answer": "B"}])
    with pytest.raises(benchmarks.BenchmarkFormatError, match="answer 'B' is not among the options A"):
        benchmarks.load_benchmark("video_holmes", bad)
    missing = _write(tmp_path / "c.json", [{"qid": 1, "question": "?", "choices": ["x"], "right_answer": "A"}])
    with pytest.raises(benchmarks.BenchmarkFormatError, match="missing field 'video_uid'"):
        benchmarks.load_benchmark("cg_bench", missing)
    dup = _write(tmp_path / "d.json", [{"qid": 1, "video_uid": "v", "question": "?", "choices": ["x"],
                                        "right_answer": "A"}] * 2)
    with pytest.raises(benchmarks.BenchmarkFormatError, match="occurs twice"):
        benchmarks.load_benchmark("cg_bench", dup)
    with pytest.raises(KeyError, match="unknown benchmark format"):
        benchmarks.load_benchmark("mvbench", dup)
