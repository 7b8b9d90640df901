"""Benchmark loaders on small files in each released format (REFERENCE.md §4), with real mp4s at the real paths."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from tests.data.conftest import _train_sentencepiece, write_video
from vtjax.data import chat, examples, video
from vtjax.data import tokenizer as tok_lib
from vtjax.data import records as records_lib
from vtjax.eval import benchmarks, cg_bench_subset


def _write(path, obj, jsonl=False):
    if jsonl:
        path.write_text("\n".join(json.dumps(o) for o in obj) + "\n", encoding="utf-8")
    else:
        path.write_text(json.dumps(obj, indent=4), encoding="utf-8")
    return str(path)


def _videos(root, rel_paths):
    for rel in rel_paths:
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        write_video(os.path.join(root, rel), frames=6, fps=6, width=56, height=56)


def _opens_every_video(items, root):
    """to_records resolves each path under root; every resolved file decodes."""
    recs = benchmarks.to_records(items, str(root))
    for rec in recs:
        frames, _, _ = video.read_frames(rec.video_path, nframes=2)
        assert frames.shape == (2, 56, 56, 3)
    return recs


# --- Video-Holmes (TencentARC/Video-Holmes @52ef8da, test_Video-Holmes.json) ---------------------------------

HOLMES = [
    {"video ID": "ByDtsxuZpOw", "Question ID": 1, "Question Type": "SR", "Question": "Why does the man smile?",
     "Options": {"A": "He won", "B": "He lied", "C": "He is kind", "D": "He is nervous", "E": "Fear",
                 "F": "None"}, "Answer": "B", "Explanation": "He hides the truth."},
    {"video ID": "ByDtsxuZpOw", "Question ID": 2, "Question Type": "TCI", "Question": "What caused the fall?",
     "Options": {"A": "Ice", "B": "A push", "C": "A dog", "D": "Wind", "E": "Rain", "F": "Dark"},
     "Answer": "E", "Explanation": "..."},
    {"video ID": "Zq8_x-1", "Question ID": 1, "Question Type": "MHR", "Question": "Who opened the door?",
     "Options": {"C": "The cat", "A": "The boy", "B": "The girl", "D": "No one", "E": "Wind", "F": "Mom"},
     "Answer": "F", "Explanation": "..."},
]


def test_video_holmes_ids_restart_per_video_and_stay_unique(tmp_path):
    path = _write(tmp_path / "test_Video-Holmes.json", HOLMES)
    _videos(tmp_path / "videos", ["ByDtsxuZpOw.mp4", "Zq8_x-1.mp4"])
    items = benchmarks.load_benchmark("video_holmes", path)
    assert [i["id"] for i in items] == ["ByDtsxuZpOw_1", "ByDtsxuZpOw_2", "Zq8_x-1_1"]
    assert [(i["video_id"], i["question_id"]) for i in items] == [("ByDtsxuZpOw", 1), ("ByDtsxuZpOw", 2),
                                                                  ("Zq8_x-1", 1)]
    assert items[2]["options"] == ["A. The boy", "B. The girl", "C. The cat", "D. No one", "E. Wind", "F. Mom"]
    assert [i["solution"] for i in items] == ["<answer>B</answer>", "<answer>E</answer>", "<answer>F</answer>"]
    assert [i["category"] for i in items] == ["SR", "TCI", "MHR"] and items[0]["path"] == "ByDtsxuZpOw.mp4"
    recs = _opens_every_video(items, tmp_path / "videos")
    assert [r.video_path for r in recs] == [str(tmp_path / "videos" / "ByDtsxuZpOw.mp4")] * 2 + [
        str(tmp_path / "videos" / "Zq8_x-1.mp4")]


# --- CG-Bench (CG-Bench/CG-Bench @f826608, cgbench_mini.json) -------------------------------------------------

CG = [
    {"qid": 1043, "video_uid": "a1b2c3", "question": "Why does the chef add water?", "answer": "to cool it",
     "choices": ["to clean it", "to cool it", "to weigh it", "to colour it", "to hide it"], "right_answer": "B",
     "clue_intervals": [[12.5, 20.0], [41, 44.25]], "domain": "Life Record", "sub_category": "Causal Cognition",
     "duration": 1320.4},
    {"qid": 1044, "video_uid": "a1b2c3", "question": "What colour is the pot?", "answer": "red",
     "choices": ["red", "blue", "green", "black", "white", "grey", "pink", "brown"], "right_answer": "A",
     "clue_intervals": [[3, 4]], "domain": "Life Record", "sub_category": "Attribute Perception",
     "duration": 1320.4},
    {"qid": 2001, "video_uid": "zz-9", "question": "Is there a dog?", "answer": "no",
     "choices": ["yes", "no", "a cat", "a bird", "unclear"], "right_answer": "B", "clue_intervals": [],
     "domain": "Sports", "sub_category": "Hallucination", "duration": 600.0},
]


def test_cg_bench_keeps_qid_clues_and_the_cognition_subset(tmp_path):
    path = _write(tmp_path / "cgbench_mini.json", CG)
    _videos(tmp_path / "cg_videos_720p", ["a1b2c3.mp4", "zz-9.mp4"])
    items = benchmarks.load_benchmark("cg_bench", path)
    assert [i["id"] for i in items] == ["1043", "1044", "2001"]
    assert items[0]["options"] == ["A. to clean it", "B. to cool it", "C. to weigh it", "D. to colour it",
                                   "E. to hide it"]
    assert items[1]["options"][7] == "H. brown" and items[1]["solution"] == "<answer>A</answer>"
    assert items[0]["segments"] == [[12.5, 20.0], [41.0, 44.25]] and items[2]["segments"] == []
    assert [i["category"] for i in items] == ["Causal Cognition", "Attribute Perception", "Hallucination"]
    assert items[0]["duration"] == 1320.4 and items[0]["path"] == "a1b2c3.mp4"
    only = benchmarks.load_cg_bench(path, keep=cg_bench_subset.is_reasoning)
    assert [i["id"] for i in only] == ["1043"]
    _opens_every_video(items, tmp_path / "cg_videos_720p")


# --- VRBench (OpenGVLab/VRBench @47a22db, VRBench_eval.jsonl) ------------------------------------------------

VRB = [
    {"video_id": "TZk_p-q8Fzo", "video_path": "VRBench/videos/v001/TZk_p-q8Fzo.mp4",
     "video_summary": "Friends meet in a park.[00:10:00->00:20:00] They visit a temple.", "video_read_type": "all",
     "mcq": {
         "qa1": {"question": "Why explore the ruins?", "options": {"A": "treasure", "B": "plants", "C": "science",
                                                                   "D": "history"},
                 "answer": "D", "original_question": "...", "original_answer": "...",
                 "reasoning_process": {"1": "They explore the ruins. [00:07:44->00:08:28]",
                                       "2": "Curious eyes. [00:08:28->00:09:09]",
                                       "10": "History matters. [01:00:09->01:02:44]",
                                       "3": "No stamp here."},
                 "reasoning_type": "Implicit Inference"},
         "qa2": {"question": "What does the man share?", "options": {"A": "a", "B": "b", "C": "c", "D": "d"},
                 "answer": "B", "reasoning_process": {"1": "Man in blue [00:03:16->00:06:12]"},
                 "reasoning_type": "Event Attribution"}}},
    {"video_id": "k9", "video_path": "VRBench/videos/v002/k9.mp4", "video_summary": "A race.",
     "mcq": {"qa1": {"question": "Who wins?", "options": {"A": "x", "B": "y", "C": "z", "D": "w"},
                     "answer": "A", "reasoning_process": {}, "reasoning_type": "Event Prediction"}}},
]


def test_vrbench_keeps_official_ids_video_paths_summary_and_steps(tmp_path):
    path = _write(tmp_path / "VRBench_eval.jsonl", VRB, jsonl=True)
    _videos(tmp_path / "root", [v["video_path"] for v in VRB])
    items = benchmarks.load_benchmark("vrbench", path)
    assert [i["id"] for i in items] == ["TZk_p-q8Fzo_qa1", "TZk_p-q8Fzo_qa2", "k9_qa1"]
    assert [i["path"] for i in items] == ["VRBench/videos/v001/TZk_p-q8Fzo.mp4"] * 2 + [
        "VRBench/videos/v002/k9.mp4"]
    assert items[0]["video_summary"] == VRB[0]["video_summary"] and items[2]["video_summary"] == "A race."
    # Steps in step-number order (10 after 3); 7:44 = 464 s, 8:28 = 508 s, 1:00:09 = 3609 s, 1:02:44 = 3764 s.
    assert [s["segment"] for s in items[0]["steps"]] == [[464.0, 508.0], [508.0, 549.0], None, [3609.0, 3764.0]]
    assert items[0]["steps"][2]["text"] == "No stamp here."
    assert items[0]["segments"] == [[464.0, 508.0], [508.0, 549.0], [3609.0, 3764.0]]
    assert items[1]["segments"] == [[196.0, 372.0]] and items[2]["segments"] == []
    assert [i["category"] for i in items] == ["Implicit Inference", "Event Attribution", "Event Prediction"]
    assert items[0]["solution"] == "<answer>D</answer>" and items[0]["options"][3] == "D. history"
    recs = _opens_every_video(items, tmp_path / "root")
    assert recs[0].video_path == str(tmp_path / "root" / "VRBench/videos/v001/TZk_p-q8Fzo.mp4")
    # The summary reaches the prompt through a question template's {video_summary}.
    assert [r.video_summary for r in recs] == [VRB[0]["video_summary"]] * 2 + ["A race."]
    prompts = chat.Prompts(system="S", question_template="Video summary: {video_summary}\n{question}")
    assert prompts.user_text(recs[2].problem, recs[2].options, recs[2].problem_type, recs[2].video_summary) \
        .startswith("Video summary: A race.\n" + recs[2].problem)


def test_vrbench_without_video_path_falls_back_to_the_id(tmp_path):
    path = _write(tmp_path / "v.jsonl", [{"video_id": "v1", "mcq": {"qa1": {
        "question": "Q", "options": {"A": "x", "B": "y"}, "answer": "(B)"}}}], jsonl=True)
    (item,) = benchmarks.load_benchmark("vrbench", path)
    assert item["path"] == "v1.mp4" and item["solution"] == "<answer>B</answer>" and item["steps"] == []


# --- Video-R1 eval files and Video-Thinker test sets (tulerfeng/Video-R1 @59d65c3, src/r1-v/Evaluation) ------

VIDEO_R1_EVAL = [
    {"problem_id": 1, "problem": "What happens after the man opens the box?", "data_type": "video",
     "problem_type": "multiple choice", "options": ["A. He sits", "B. He leaves", "C. He laughs", "D. He eats"],
     "solution": "<answer>B</answer>", "path": "./MVBench/video/clevrer/v1.mp4", "data_source": "MVBench"},
    {"problem_id": 2, "problem": "How many chairs are in the room?", "data_type": "video",
     "problem_type": "numerical", "options": [], "solution": "<answer>4</answer>",
     "path": "./VSI-Bench/arkitscenes/41069025.mp4", "data_source": "VSI-Bench"},
    {"problem_id": 3, "problem": "What is the room size in square meters?", "data_type": "video",
     "problem_type": "regression", "options": [], "solution": "<answer>23.5</answer>",
     "path": "./VSI-Bench/arkitscenes/41069025.mp4", "data_source": "VSI-Bench"},
    {"problem_id": 4, "problem": "Read the sign.", "data_type": "video", "problem_type": "OCR", "options": [],
     "solution": "<answer>EXIT</answer>", "path": "./MMVU/videos/s.mp4", "data_source": "MMVU"},
    {"problem_id": 5, "problem": "Explain the reaction.", "data_type": "video", "problem_type": "free-form",
     "options": [], "solution": "<answer>The acid neutralises the base.</answer>", "path": "./MMVU/videos/s.mp4",
     "data_source": "MMVU"},
    {"problem_id": 6, "problem": "Which shape is red?", "data_type": "image", "problem_type": "multiple choice",
     "options": ["A. circle", "B. square"], "solution": "<answer>A</answer>", "path": "./Images/r.png",
     "data_source": "Images"},
]


def test_video_r1_eval_loads_every_problem_type_with_problem_ids(tmp_path):
    path = _write(tmp_path / "eval_vsibench.json", VIDEO_R1_EVAL)
    _videos(tmp_path / "Evaluation", sorted({r["path"] for r in VIDEO_R1_EVAL if r["data_type"] == "video"}))
    items = benchmarks.load_benchmark("video_r1", path)
    assert [i["id"] for i in items] == ["1", "2", "3", "4", "5", "6"]
    assert [i["problem_type"] for i in items] == [r["problem_type"] for r in VIDEO_R1_EVAL]
    assert [i["options"] for i in items[1:5]] == [[]] * 4 and items[0]["options"][1] == "B. He leaves"
    assert [i["solution"] for i in items] == [r["solution"] for r in VIDEO_R1_EVAL]
    assert [i["category"] for i in items] == ["MVBench", "VSI-Bench", "VSI-Bench", "MMVU", "MMVU", "Images"]
    assert items[5]["data_type"] == "image" and items[0]["problem_id"] == 1
    recs = benchmarks.to_records(items, str(tmp_path / "Evaluation"))
    assert [r.answer for r in recs] == ["B", "4", "23.5", "EXIT", "The acid neutralises the base.", "A"]
    assert recs[1].video_path == str(tmp_path / "Evaluation" / "VSI-Bench/arkitscenes/41069025.mp4")
    assert recs[5].data_type is records_lib.DataType.IMAGE and recs[0].problem_id == "1"
    _opens_every_video(items[:5], tmp_path / "Evaluation")


def test_video_r1_without_ids_and_with_duplicate_ids(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "problem_id"} for r in VIDEO_R1_EVAL[:2]]
    items = benchmarks.load_benchmark("video_r1", _write(tmp_path / "star_test.json", rows))
    assert [i["id"] for i in items] == ["star_test.json:0", "star_test.json:1"] and "problem_id" not in items[0]
    dup = _write(tmp_path / "dup.json", [VIDEO_R1_EVAL[0], VIDEO_R1_EVAL[0]])
    with pytest.raises(benchmarks.BenchmarkFormatError, match="id '1' occurs twice; give every record a unique"):
        benchmarks.load_benchmark("video_r1", dup)


def test_image_items_are_answered_on_their_image(tmp_path, tmp_path_factory):
    (tmp_path / "Images").mkdir()
    Image.fromarray(np.full((60, 90, 3), 200, np.uint8)).save(tmp_path / "Images" / "r.png")
    items = benchmarks.load_benchmark("video_r1", _write(tmp_path / "e.json", VIDEO_R1_EVAL[5:]))
    (rec,) = benchmarks.to_records(items, str(tmp_path))
    tok = tok_lib.load_tokenizer(_train_sentencepiece(tmp_path_factory.mktemp("sp") / "tok", True))
    example = examples.ExampleBuilder(tokenizer=tok, prompts=chat.Prompts(system="S"), mode="eval")(rec)
    assert not isinstance(example, examples.Skipped), example
    assert example["record_id"] == "6" and example["is_image"]
    # 60x90 -> 56x84 (4*28*28 <= 4704 <= 256*28*28): 4x6 patches, one temporal patch, 6 merged tokens
    assert example["grid_thw"].tolist() == [1, 4, 6]
    assert (example["input_ids"] == tok.token_to_id(tok_lib.IMAGE_PAD)).sum() == 6


# --- Errors a user can cause ----------------------------------------------------------------------------------

ERRORS = [
    ("video_holmes", [dict(HOLMES[0], Answer="G")], "answer 'G' is not among the options ABCDEF"),
    ("video_holmes", [HOLMES[0], HOLMES[0]], "id 'ByDtsxuZpOw_1' occurs twice"),
    ("video_holmes", [{k: v for k, v in HOLMES[0].items() if k != "video ID"}], "missing field 'video ID'"),
    ("cg_bench", [{k: v for k, v in CG[0].items() if k != "video_uid"}], "missing field 'video_uid'"),
    ("cg_bench", [dict(CG[0], right_answer="F")], "answer 'F' is not among the options ABCDE"),
    ("cg_bench", [dict(CG[0], right_answer="?")], "answer '?' is not an option letter"),
    ("vrbench", [dict(VRB[1], mcq=[1, 2])], "mcq must be a {qa key: question} object"),
    ("vrbench", [{k: v for k, v in VRB[1].items() if k != "mcq"}], "missing field 'mcq'"),
    ("video_r1", [dict(VIDEO_R1_EVAL[0], problem_type="essay")], "problem_type 'essay' is not one of"),
    ("video_r1", [dict(VIDEO_R1_EVAL[1], solution="4")], "has no <answer>...</answer>"),
    ("video_r1", [dict(VIDEO_R1_EVAL[0], solution="<answer>E</answer>")], "answer 'E' is not among the options"),
]


@pytest.mark.parametrize("name,rows,message", ERRORS)
def test_format_errors_name_the_field(tmp_path, name, rows, message):
    path = _write(tmp_path / "bad.json", rows)
    with pytest.raises(benchmarks.BenchmarkFormatError, match=message.replace("?", r"\?").replace("{", r"\{")):
        benchmarks.load_benchmark(name, path)


def test_unknown_format():
    with pytest.raises(KeyError, match="unknown benchmark format"):
        benchmarks.load_benchmark("mvbench", "x.json")


def test_vrbench_step_stamps():
    steps = benchmarks.vrbench_steps({"2": "b [0:0:5->0:01:00]", "1": "a [00:00:01 -> 00:00:02]"}, "w")
    assert [s["segment"] for s in steps] == [[1.0, 2.0], [5.0, 60.0]]
    assert [s["text"] for s in steps] == ["a [00:00:01 -> 00:00:02]", "b [0:0:5->0:01:00]"]
