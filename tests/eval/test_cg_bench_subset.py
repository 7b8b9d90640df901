"""The CG-Bench reasoning subset filter through the released loader."""

import json

from vtjax.eval import benchmarks, cg_bench_subset


def _item(qid, sub):
    return {"qid": qid, "video_uid": "v", "question": "q", "choices": ["x", "y"], "right_answer": "A",
            "clue_intervals": [[1, 2]], "domain": "d", "sub_category": sub}


def test_only_cognition_sub_categories(tmp_path):
    subs = ["Temporal Cognition", "Object Perception", "Hallucination", "Causal Cognition", "Cognition Perception"]
    path = tmp_path / "cg.json"
    path.write_text(json.dumps([_item(i, s) for i, s in enumerate(subs)]))
    items = benchmarks.load_cg_bench(str(path), keep=cg_bench_subset.is_reasoning)
    assert [it["id"] for it in items] == ["0", "3"]
    assert not cg_bench_subset.is_reasoning({"domain": "d"})
