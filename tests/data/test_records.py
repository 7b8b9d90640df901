"""Record loading (JSON list / JSONL), validation messages with file:line, path safety."""

import json
import os

import pytest

from vtjax.data import records


def good(**overrides):
    r = {
        "problem": "What does the man do?",
        "problem_type": "multiple choice",
        "options": ["A. He sits down", "B. He leaves"],
        "data_type": "video",
        "path": "clips/a.mp4",
        "data_source": "STAR",
        "process": "<time>00:01-00:02</time> <caption>door</caption> <think>he leaves</think>",
        "solution": "<answer>B</answer>",
    }
    r.update(overrides)
    return r


def test_json_list_and_jsonl_load_with_roots(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([good(), good(data_source="LVBench", id="x7")], indent=2))
    (tmp_path / "b.jsonl").write_text(json.dumps(good(data_source="Other")) + "\n\n" + json.dumps(good()) + "\n")
    roots = {"STAR": str(tmp_path / "star"), "LVBench": str(tmp_path / "lv"), "*": str(tmp_path / "misc")}
    recs, problems = records.load_records([tmp_path / "a.json", tmp_path / "b.jsonl"], roots)
    assert problems == []
    assert [r.video_path for r in recs] == [
        str(tmp_path / "star/clips/a.mp4"), str(tmp_path / "lv/clips/a.mp4"),
        str(tmp_path / "misc/clips/a.mp4"), str(tmp_path / "star/clips/a.mp4"),
    ]
    assert [r.uid for r in recs] == ["a.json:2", "x7", "b.jsonl:1", "b.jsonl:3"]
    assert recs[0].answer == "B" and recs[0].options == ("A. He sits down", "B. He leaves")
    assert recs[0].sft_target == good()["process"] + "\n<answer>B</answer>"


BAD = [
    (good(problem=None), "field 'problem' must be a string"),
    ({k: v for k, v in good().items() if k != "solution"}, "missing field 'solution'"),
    (good(solution="<answer>E</answer>"), "answer 'E' is not among the option letters AB"),
    (good(solution="B"), "has no <answer>"),
    (good(options=[]), "has no options"),
    (good(options=["He sits", "He leaves"]), "does not start with a letter"),
    (good(path="../../etc/passwd"), "escapes the video root"),
    (good(path="clips/../../x.mp4"), "escapes the video root"),
    (good(path="/abs/video.mp4"), "is absolute"),
    (good(data_type="image"), "data_type 'image' is not supported"),
    (good(data_source="Unknown"), "no video root for data_source 'Unknown'"),
    ([1, 2], "expected a JSON object"),
]


def test_each_bad_record_is_reported_with_file_and_line(tmp_path):
    lines = [json.dumps(good())] + [json.dumps(raw) for raw, _ in BAD] + ["{not json", json.dumps(good())]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    recs, problems = records.load_records(path, {"STAR": str(tmp_path)})
    assert [r.uid for r in recs] == ["mixed.jsonl:1", f"mixed.jsonl:{len(lines)}"]
    assert len(problems) == len(BAD) + 1
    for (_raw, message), problem, line in zip(BAD, problems, range(2, len(BAD) + 2), strict=True):
        assert problem.location == f"{path}:{line}"
        assert message in problem.reason, (message, problem.reason)
    assert "invalid JSON" in problems[-1].reason and problems[-1].location.endswith(f":{len(BAD) + 2}")
    assert problems[6].path == "../../etc/passwd"


def test_json_list_lines_point_at_the_record(tmp_path):
    text = "[\n  " + json.dumps(good()) + ",\n\n  " + json.dumps(good(solution="<answer>Z</answer>")) + "\n]\n"
    (tmp_path / "l.json").write_text(text)
    recs, problems = records.load_records(tmp_path / "l.json", str(tmp_path))
    assert len(recs) == 1 and problems[0].location.endswith("l.json:4")
    (tmp_path / "broken.json").write_text("[\n" + json.dumps(good()) + ",\n{oops}\n]")
    with pytest.raises(ValueError, match=r"broken.json:3: invalid JSON"):
        records.load_records(tmp_path / "broken.json", str(tmp_path))


def test_require_process_and_non_multiple_choice(tmp_path):
    raw = {k: v for k, v in good().items() if k != "process"}
    numeric = good(problem_type="numerical", options=[], solution="<answer>3.5</answer>")
    (tmp_path / "r.jsonl").write_text(json.dumps(raw) + "\n" + json.dumps(numeric) + "\n")
    recs, problems = records.load_records(tmp_path / "r.jsonl", str(tmp_path), require_process=True)
    assert "missing field 'process'" in problems[0].reason
    assert recs[0].answer == "3.5"


def test_resolve_video_path(tmp_path):
    root = str(tmp_path)
    assert records.resolve_video_path(root, "a/./b/../c.mp4") == os.path.join(root, "a", "c.mp4")
    for bad in ["", "..", "../x", "a/../../x", "/x", "~/x"]:
        with pytest.raises(ValueError):
            records.resolve_video_path(root, bad)
