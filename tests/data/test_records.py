"""Record loading (JSON list / JSONL), validation messages with file:line, path safety."""

import json
import os

import pytest

from vtjax.data import records
from vtjax.train import config as config_lib


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
    (good(data_type="audio"), "data_type 'audio' is not one of ['video', 'image']"),
    (good(problem_id=[3]), "field 'problem_id' must be a string or an integer"),
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
    for (_raw, message), problem, line in zip(BAD, problems[:-1], range(2, len(BAD) + 2), strict=True):
        assert problem.location == f"{path}:{line}"
        assert message in problem.reason, (message, problem.reason)
    assert "invalid JSON" in problems[-1].reason and problems[-1].location.endswith(f":{len(BAD) + 2}")
    assert problems[6].path == "../../etc/passwd"


def test_video_r1_260k_records_videos_and_images(tmp_path):
    """Records as Video-R1-260k releases them: problem_id, "./" paths, image and video data types, all types."""
    rows = [
        {"problem_id": 17, "problem": "How many people enter? ", "data_type": "video", "problem_type": "numerical",
         "options": [], "process": "<think>two</think>", "solution": "<answer>2</answer>",
         "path": "./LLaVA-Video-178K/liwei_youtube_videos/videos/a.mp4", "data_source": "LLaVA-Video-178K"},
        {"problem_id": 18, "problem": "Which shape is red?", "data_type": "image", "problem_type": "multiple choice",
         "options": ["A. circle", "B. square"], "process": "<think>the circle</think>",
         "solution": "<answer>A</answer>", "path": "./Math/Multimath-300k/x.png", "data_source": "Multimath"},
        {"problem_id": "ocr-3", "problem": "Read the sign.", "data_type": "image", "problem_type": "OCR",
         "options": [], "process": "", "solution": "<answer>STOP</answer>", "path": "./OCR/s.jpg",
         "data_source": "OCR"},
        {"problem": "Describe it.", "data_type": "video", "problem_type": "free-form", "options": [],
         "process": "", "solution": "<answer>a dog runs</answer>", "path": "./v/b.mp4", "data_source": "X"},
        {"problem_id": 20, "problem": "How far?", "data_type": "video", "problem_type": "regression",
         "options": [], "process": "", "solution": "<answer>3.5</answer>", "path": "./v/c.mp4",
         "data_source": "X", "id": "own-id"},
    ]
    (tmp_path / "Video-R1-260k.json").write_text(json.dumps(rows, indent=1))
    recs, problems = records.load_records(tmp_path / "Video-R1-260k.json", str(tmp_path / "Video-R1-data"))
    assert problems == []
    assert [r.uid for r in recs] == ["17", "18", "ocr-3", "Video-R1-260k.json:38", "own-id"]
    assert [r.problem_id for r in recs] == ["17", "18", "ocr-3", "", "20"]
    assert [r.data_type for r in recs] == ["video", "image", "image", "video", "video"]
    assert recs[1].data_type is records.DataType.IMAGE
    assert recs[1].video_path == str(tmp_path / "Video-R1-data/Math/Multimath-300k/x.png")  # same path rule
    assert recs[0].video_path == str(tmp_path / "Video-R1-data/LLaVA-Video-178K/liwei_youtube_videos/videos/a.mp4")
    assert [r.answer for r in recs] == ["2", "A", "STOP", "a dog runs", "3.5"]


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


def _symlinked_roots(tmp_path):
    """root/ with a real clip, a link to it, a link to a file outside, a linked dir outside; another root."""
    root, outside, other = tmp_path / "root", tmp_path / "outside", tmp_path / "other"
    for d in (root / "clips", outside / "more", other):
        d.mkdir(parents=True)
    for f in (root / "clips" / "a.mp4", outside / "secret.mp4", outside / "more" / "b.mp4", other / "c.mp4"):
        f.write_bytes(b"x")
    (root / "inside_link.mp4").symlink_to(root / "clips" / "a.mp4")
    (root / "inside_dir").symlink_to(root / "clips", target_is_directory=True)
    (root / "outside_link.mp4").symlink_to(outside / "secret.mp4")
    (root / "outside_dir").symlink_to(outside / "more", target_is_directory=True)
    (root / "relative_up.mp4").symlink_to(os.path.join("..", "outside", "secret.mp4"))
    (root / "to_other.mp4").symlink_to(other / "c.mp4")
    return root, other


def test_symlinks_inside_the_root_work_and_symlinks_out_of_it_are_refused(tmp_path):
    root, _ = _symlinked_roots(tmp_path)
    for ok in ["inside_link.mp4", "inside_dir/a.mp4", "clips/a.mp4"]:
        assert records.resolve_video_path(str(root), ok) == os.path.join(str(root), ok)
    for bad in ["outside_link.mp4", "outside_dir/b.mp4", "relative_up.mp4", "to_other.mp4"]:
        with pytest.raises(ValueError, match="symlink.*outside the video roots") as info:
            records.resolve_video_path(str(root), bad)
        assert os.path.realpath(root / bad) in str(info.value)


def test_a_symlinked_root_and_links_into_another_root_are_allowed(tmp_path):
    root, other = _symlinked_roots(tmp_path)
    alias = tmp_path / "alias"
    alias.symlink_to(root, target_is_directory=True)  # the root itself is a link: its inside stays inside
    assert records.resolve_video_path(str(alias), "inside_dir/a.mp4") == str(alias / "inside_dir" / "a.mp4")
    assert records.resolve_video_path(str(root), "to_other.mp4", [str(other)]) == str(root / "to_other.mp4")
    with pytest.raises(ValueError, match="outside the video roots"):
        records.resolve_video_path(str(root), "outside_link.mp4", [str(other)])


def test_load_records_refuses_symlinks_out_of_every_root(tmp_path):
    root, other = _symlinked_roots(tmp_path)
    rows = [good(path="inside_link.mp4"), good(path="outside_dir/b.mp4"), good(path="to_other.mp4"),
            good(path="c.mp4", data_source="Other")]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    recs, problems = records.load_records(tmp_path / "r.jsonl", {"STAR": str(root), "Other": str(other)})
    assert [r.video_path for r in recs] == [str(root / "inside_link.mp4"), str(root / "to_other.mp4"),
                                            str(other / "c.mp4")]
    assert [p.location for p in problems] == [f"{tmp_path / 'r.jsonl'}:2"]
    assert "outside the video roots" in problems[0].reason and problems[0].path == "outside_dir/b.mp4"


@pytest.mark.parametrize("where", ["records", "config"])
def test_parse_video_roots(tmp_path, where):
    parse = {"records": records, "config": config_lib}[where].parse_video_roots  # config's is the CLI's
    eq_dir = tmp_path / "run=3"
    eq_dir.mkdir()
    assert parse("") == {}
    assert parse(" /videos ") == {"*": "/videos"}
    assert parse("STAR=/a, *=/b") == {"STAR": "/a", "*": "/b"}
    # A directory whose name holds "=": alone, as a named root, or among others.
    assert parse(str(eq_dir)) == {"*": str(eq_dir)}
    assert parse("/data/run=3/videos") == {"*": "/data/run=3/videos"}  # not a source name
    assert parse("./x=1") == {"*": "./x=1"}
    assert parse(f"STAR={eq_dir},*=/b=c") == {"STAR": str(eq_dir), "*": "/b=c"}
    assert parse("LLaVA-Video 178K=/v") == {"LLaVA-Video 178K": "/v"}
    with pytest.raises(ValueError, match=r"item '/data/x=1' must be Source=dir"):
        parse("STAR=/a,/data/x=1")
    with pytest.raises(ValueError, match=r"item '/b' must be Source=dir"):
        parse("STAR=/a,/b")
