"""PredictionStore: resume without duplicates, a cut-off last line, corrupt lines."""

import json

import pytest

from vtjax.eval.predictions import PredictionStore


def _lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_resume_skips_done_ids_without_duplicates(tmp_path):
    path = tmp_path / "run" / "predictions.jsonl"
    records = [{"id": f"q{i}"} for i in range(5)]
    store = PredictionStore(path)
    for r in store.pending(records)[:3]:  # a run that stops after 3
        assert store.add(r["id"], f"<answer>A</answer> {r['id']}", pred="A")
    again = PredictionStore(path)
    assert again.done_ids() == {"q0", "q1", "q2"}
    todo = again.pending(records)
    assert [r["id"] for r in todo] == ["q3", "q4"]
    for r in todo:
        again.add(r["id"], "out")
    assert not again.add("q1", "a second answer")  # never written twice
    ids = [json.loads(line)["id"] for line in _lines(path)]
    assert ids == ["q0", "q1", "q2", "q3", "q4"]
    assert PredictionStore(path).outputs()["q0"] == "<answer>A</answer> q0"


def test_truncated_last_line_is_dropped_and_resumed(tmp_path):
    path = tmp_path / "p.jsonl"
    full = [json.dumps({"id": "a", "output": "x"}), json.dumps({"id": "b", "output": "y\nz"})]
    path.write_text(full[0] + "\n" + full[1] + "\n" + '{"id": "c", "outp', encoding="utf-8")
    store = PredictionStore(path)
    assert store.dropped_partial_line and store.done_ids() == {"a", "b"}
    assert store.outputs()["b"] == "y\nz"
    store.add("c", "w")
    assert [json.loads(line)["id"] for line in _lines(path)] == ["a", "b", "c"]


def test_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "output": "x"}), encoding="utf-8")
    store = PredictionStore(path)
    assert store.done_ids() == {"a"} and not store.dropped_partial_line
    store.add("b", "y")
    assert [json.loads(line)["id"] for line in _lines(path)] == ["a", "b"]


def test_cut_inside_a_multibyte_character(tmp_path):
    path = tmp_path / "p.jsonl"
    good = (json.dumps({"id": "a", "output": "é"}, ensure_ascii=False) + "\n").encode()
    partial = json.dumps({"id": "b", "output": "漢字"}, ensure_ascii=False).encode()[:-5]
    path.write_bytes(good + partial)
    assert PredictionStore(path).done_ids() == {"a"}
    assert path.read_bytes() == good


def test_corrupt_middle_line_is_an_error(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "output": "x"}\nnot json\n{"id": "b", "output": "y"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"p.jsonl:2: unreadable"):
        PredictionStore(path)


def test_pending_accepts_record_objects(tmp_path):
    class R:
        def __init__(self, uid):
            self.uid = uid

    store = PredictionStore(tmp_path / "p.jsonl")
    store.add("x", "o")
    assert [r.uid for r in store.pending([R("x"), R("y")])] == ["y"]
