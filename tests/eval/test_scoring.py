"""score_predictions and the markdown summary on a hand-worked set."""

import math

import pytest

from vtjax.eval import report, scoring

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
    m = scoring.score_predictions(RECORDS, OUTPUTS)
    assert m["count"] == 4
    assert m["accuracy"] == pytest.approx(50.0)
    assert m["format_rate"] == pytest.approx(50.0)
    assert m["answered_rate"] == pytest.approx(75.0)
    assert m["per_category"] == {"count": {"count": 2, "accuracy": 50.0}, "order": {"count": 2, "accuracy": 50.0}}
    g = m["grounding"]
    assert g["count"] == 2 and g["mIoU"] == pytest.approx(100 * (1 + 2 / 6) / 2)
    assert g["R@0.3"] == pytest.approx(100.0) and g["R@0.5"] == pytest.approx(50.0)
    assert [it["pred"] for it in m["items"]] == ["A", "C", "C", None]


def test_outputs_in_order_and_missing():
    m = scoring.score_predictions(RECORDS[2:], [OUTPUTS["r2"], OUTPUTS["r3"]])
    assert m["accuracy"] == pytest.approx(50.0) and "grounding" not in m
    with pytest.raises(KeyError, match="1 records have no output"):
        scoring.score_predictions(RECORDS[:2], {"r0": OUTPUTS["r0"]})
    m = scoring.score_predictions(RECORDS[:2], {"r0": OUTPUTS["r0"]}, allow_missing=True)
    assert m["missing"] == ["r1"] and m["expected"] == 2 and m["count"] == 1
    assert m["accuracy_of_scored"] == pytest.approx(100.0) and m["accuracy"] == pytest.approx(50.0)


def test_graded_problem_types_use_the_accuracy_reward():
    rec = {"id": "n", "problem_type": "numerical", "solution": "<answer>2.5</answer>"}
    assert scoring.score_predictions([rec], ["<answer>2.50</answer>"])["accuracy"] == pytest.approx(100.0)


def test_summary_markdown(tmp_path):
    m = scoring.score_predictions(RECORDS, OUTPUTS)
    text = report.write_summary(str(tmp_path / "out" / "summary.md"), {"synthetic": m}, title="Demo")
    lines = text.splitlines()
    assert lines[0] == "# Demo"
    assert lines[2].startswith("| benchmark | questions | scored | missing | skipped | accuracy % | accuracy % of scored |")
    assert lines[4] == "| synthetic | 4 | 4 | 0 | 0 | 50.00 | 50.00 | 50.00 | 75.00 | 66.67 | 100.00 | 50.00 | 50.00 |"
    assert "- synthetic: all 4 questions scored." in lines
    assert "| count | 2 | 50.00 |" in text and (tmp_path / "out" / "summary.md").read_text() == text
    assert report.markdown_table(["x"], [[math.nan]]).splitlines()[-1] == "| - |"


def test_answered_counts_only_real_answers():
    """A random model's outputs: stray capitals (':D', 'A man', an option letter out of range) are no answer."""
    outputs = {"r0": "Nice :D", "r1": "<caption>A man walks", "r2": "<answer>E</answer>", "r3": "The answer is D."}
    m = scoring.score_predictions(RECORDS, outputs)
    assert [it["pred"] for it in m["items"]] == [None, None, None, "D"]
    assert m["answered_rate"] == pytest.approx(25.0) and m["accuracy"] == pytest.approx(25.0)
    graded = [{"id": "n0", "problem_type": "numerical", "solution": "<answer>2</answer>"},
              {"id": "n1", "problem_type": "numerical", "solution": "<answer>3</answer>"}]
    m = scoring.score_predictions(graded, {"n0": "<answer> </answer>", "n1": "<answer>4</answer>"})
    assert m["answered_rate"] == pytest.approx(50.0)


def test_summary_lists_missing_and_skipped(tmp_path):
    """Six questions: r3's video is unreadable (skipped), r5 has no prediction (missing), four are scored."""
    records = RECORDS + [_rec(4, "A", "count"), _rec(5, "B", "count")]
    outputs = {k: v for k, v in OUTPUTS.items() if k != "r3"} | {"r4": "<answer>A</answer>"}
    skipped = {"r3": "videos/r3.mp4: cannot decode", "r9": "not one of these records"}
    with pytest.raises(KeyError, match="1 records have no output"):
        scoring.score_predictions(records, outputs, skipped=skipped)
    m = scoring.score_predictions(records, outputs, skipped=skipped, allow_missing=True)
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
