"""score_predictions and the markdown summary on a hand-worked set."""

import math

import pytest

from vtjax.eval import predictions, report, scoring

OPTS = ["A. a", "B. b", "C. c", "D. d"]
BLOCK = "<time>00:02-00:06</time> <caption>c</caption> <think>t</think>"


def _rec(i, answer, category, segments=None):
    r = {"id": f"r{i}", "problem_type": "multiple choice", "options": OPTS, "solution": f"<answer>{answer}</answer>",
         "category": category}
    if segments is not None:
        r["segments"] = segments
    return r


RECORDS = [
    _rec(0, "A", "order", [[2, 6]]),
    _rec(1, "B", "order", [[0, 4]]),
    _rec(2, "C", "count"),
    _rec(3, "D", "count"),
]
OUTPUTS = {
    "r0": f"{BLOCK}<answer>A</answer>",  # right, good format, IoU 1
    "r1": f"{BLOCK}<answer>C</answer>",  # wrong; (2,6) vs (0,4): IoU 2/6
    "r2": "It must be C.",  # right through the fallback, bad format
    "r3": "<answer>d</answer>",  # lower case: unanswered, wrong
}


def test_score_predictions_hand_worked():
    m = scoring.score_predictions(RECORDS, OUTPUTS, rule="vtjax")
    assert m["rule"] == "vtjax" and m["grounding_rule"] == "max_iou"
    assert m["count"] == 4
    assert m["accuracy"] == pytest.approx(50.0)
    assert m["format_rate"] == pytest.approx(50.0)
    assert m["answered_rate"] == pytest.approx(75.0)
    assert m["per_category"] == {"count": {"count": 2, "accuracy": 50.0}, "order": {"count": 2, "accuracy": 50.0}}
    g = m["grounding"]
    assert g["count"] == 2 and g["mIoU"] == pytest.approx(100 * (1 + 2 / 6) / 2)
    assert g["R@0.3"] == pytest.approx(100.0) and g["R@0.5"] == pytest.approx(50.0)
    assert [it["pred"] for it in m["items"]] == ["A", "C", "C", None]


def test_video_r1_rule_on_the_same_outputs():
    """Video-R1's eval: r0 right; r1 wrong; r2 has no tag, so "It must be C." is the answer (wrong); r3 'd'."""
    m = scoring.score_predictions(RECORDS, OUTPUTS)  # video_r1 is the default
    assert m["rule"] == "video_r1" and m["accuracy"] == pytest.approx(25.0)
    assert [it["pred"] for it in m["items"]] == ["A", "C", "It must be C.", "d"]
    assert m["answered_rate"] == pytest.approx(75.0)  # r2 gave no <answer>


def test_rescoring_stored_predictions_needs_no_generation(tmp_path):
    """The raw outputs in a PredictionStore re-score under any rule."""
    store = predictions.PredictionStore(str(tmp_path / "p.jsonl"))
    for k, v in OUTPUTS.items():
        store.add(k, v)
    outputs = predictions.PredictionStore(str(tmp_path / "p.jsonl")).outputs()
    assert outputs == OUTPUTS
    acc = {r: scoring.score_predictions(RECORDS, outputs, rule=r)["accuracy"]
           for r in ("video_r1", "vtjax", "video_holmes", "cg_bench", "vrbench")}
    # r2 "It must be C.": C for holmes (no form, C occurs), cg_bench (standalone C), vrbench ("C." label), vtjax.
    # r3 "<answer>d</answer>": holmes/cg_bench find no capital; vrbench reads 'd' as D (right); video_r1/vtjax no.
    assert acc == {"video_r1": 25.0, "vtjax": 50.0, "video_holmes": 50.0, "cg_bench": 50.0, "vrbench": 75.0}


def test_outputs_in_order_and_missing():
    m = scoring.score_predictions(RECORDS[2:], [OUTPUTS["r2"], OUTPUTS["r3"]], rule="vtjax")
    assert m["accuracy"] == pytest.approx(50.0) and "grounding" not in m
    with pytest.raises(KeyError, match="1 records have no output"):
        scoring.score_predictions(RECORDS[:2], {"r0": OUTPUTS["r0"]})
    m = scoring.score_predictions(RECORDS[:2], {"r0": OUTPUTS["r0"]}, allow_missing=True, rule="vtjax")
    assert m["missing"] == ["r1"] and m["expected"] == 2 and m["count"] == 1
    assert m["accuracy_of_scored"] == pytest.approx(100.0) and m["accuracy"] == pytest.approx(50.0)


def test_graded_problem_types_use_the_accuracy_reward():
    rec = {"id": "n", "problem_type": "numerical", "solution": "<answer>2.5</answer>"}
    assert scoring.score_predictions([rec], ["<answer>2.50</answer>"])["accuracy"] == pytest.approx(100.0)
    regression = [{"id": f"g{i}", "problem_type": "regression", "solution": "<answer>10</answer>"} for i in range(2)]
    m = scoring.score_predictions([rec, *regression], ["<answer>2.50</answer>", "<answer>12.5</answer>", "13"])
    # MRA 0.5 and 0.4 (the whole output "13" is the answer under video_r1)
    assert m["per_problem_type"] == {"numerical": {"count": 1, "score": 100.0},
                                     "regression": {"count": 2, "score": pytest.approx(45.0)}}


def test_caption_metrics_in_scores_and_summary():
    recs = [{"id": "c0", "problem_type": "multiple choice", "options": OPTS, "solution": "<answer>A</answer>",
             "captions": ["a man is walking his dog"]},
            {"id": "c1", "problem_type": "multiple choice", "options": OPTS, "solution": "<answer>A</answer>",
             "captions": "a red ball"},
            {"id": "c2", "problem_type": "multiple choice", "options": OPTS, "solution": "<answer>A</answer>"}]
    outs = ["<caption>a man walks a dog</caption><answer>A</answer>", "<answer>A</answer>", "<answer>A</answer>"]
    m = scoring.score_predictions(recs, outs)
    c = m["captions"]  # c0 scored (BLEU-1 .4912, METEOR .3390, ROUGE-L .7273, see test_captions); c1 no caption: 0
    assert c["count"] == 2 and c["BLEU-1"] == pytest.approx(100 * 0.49124 / 2, abs=1e-3)
    assert c["ROUGE-L"] == pytest.approx(100 * (8 / 11) / 2)
    assert "| all | 2 | 24.56 | 16.95 | 36.36 |" in report.summary_markdown({"all": m})


def test_summary_markdown(tmp_path):
    m = scoring.score_predictions(RECORDS, OUTPUTS, rule="vtjax")
    text = report.write_summary(str(tmp_path / "out" / "summary.md"), {"synthetic": m}, title="Demo")
    lines = text.splitlines()
    assert lines[0] == "# Demo"
    assert lines[2].startswith("| benchmark | questions | scored | missing | skipped | accuracy % | accuracy % of scored |")
    assert lines[4] == ("| synthetic | 4 | 4 | 0 | 0 | 50.00 | 50.00 | 50.00 | 75.00 | 66.67 | 100.00 | 50.00 | 50.00 "
                        "| vtjax | max_iou |")
    assert "- synthetic: all 4 questions scored." in lines
    assert "| count | 2 | 50.00 |" in text and (tmp_path / "out" / "summary.md").read_text() == text
    assert report.markdown_table(["x"], [[math.nan]]).splitlines()[-1] == "| - |"


def test_answered_counts_only_real_answers():
    """A random model's outputs: stray capitals (':D', 'A man', an option letter out of range) are no answer."""
    outputs = {"r0": "Nice :D", "r1": "<caption>A man walks", "r2": "<answer>E</answer>", "r3": "The answer is D."}
    m = scoring.score_predictions(RECORDS, outputs, rule="vtjax")
    assert [it["pred"] for it in m["items"]] == [None, None, None, "D"]
    assert m["answered_rate"] == pytest.approx(25.0) and m["accuracy"] == pytest.approx(25.0)
    graded = [{"id": "n0", "problem_type": "numerical", "solution": "<answer>2</answer>"},
              {"id": "n1", "problem_type": "numerical", "solution": "<answer>3</answer>"}]
    m = scoring.score_predictions(graded, {"n0": "<answer> </answer>", "n1": "<answer>4</answer>"}, rule="vtjax")
    assert m["answered_rate"] == pytest.approx(50.0)


def test_summary_lists_missing_and_skipped(tmp_path):
    """Six questions: r3's video is unreadable (skipped), r5 has no prediction (missing), four are scored."""
    records = RECORDS + [_rec(4, "A", "count"), _rec(5, "B", "count")]
    outputs = {k: v for k, v in OUTPUTS.items() if k != "r3"} | {"r4": "<answer>A</answer>"}
    skipped = {"r3": "videos/r3.mp4: cannot decode", "r9": "not one of these records"}
    with pytest.raises(KeyError, match="1 records have no output"):
        scoring.score_predictions(records, outputs, skipped=skipped, rule="vtjax")
    m = scoring.score_predictions(records, outputs, skipped=skipped, allow_missing=True, rule="vtjax")
    assert m["expected"] == 6 and m["count"] == 4
    assert m["missing"] == ["r5"] and m["skipped"] == {"r3": "videos/r3.mp4: cannot decode"}
    assert [it["id"] for it in m["items"]] == ["r0", "r1", "r2", "r4"]
    # r0, r2, r4 right of the 4 scored; of all 6 expected, r3 and r5 count wrong.
    assert m["accuracy_of_scored"] == pytest.approx(75.0) and m["accuracy"] == pytest.approx(50.0)
    assert m["per_category"]["count"] == {"count": 2, "accuracy": 100.0}
    text = report.summary_markdown({"bench": m})
    assert "| bench | 6 | 4 | 1 | 1 | 50.00 | 75.00 |" in text
    assert ("- bench: 4 of 6 questions scored (the others count as wrong in accuracy); 1 missing (no prediction): r5; "
            "1 skipped: r3 (videos/r3.mp4: cannot decode).") in text.splitlines()


def test_coverage_line_lists_the_first_ids():
    m = {"expected": 15, "count": 3, "missing": [f"m{i}" for i in range(12)], "skipped": {}}
    line = report.coverage_line("b", m, limit=3)
    assert line == "- b: 3 of 15 questions scored (the others count as wrong in accuracy); 12 missing (no prediction): m0, m1, m2, ... and 9 more."
