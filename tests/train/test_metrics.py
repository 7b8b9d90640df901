"""MetricsLogger: interval means, counters summed per interval, rows after a resume step dropped."""

from __future__ import annotations

import json

import pytest

from vtjax.train import metrics
from vtjax.train.metrics import MetricsLogger


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_counters_are_per_interval_counts_and_the_rest_means(tmp_path):
    logger = MetricsLogger(str(tmp_path), every_steps=3, total_steps=7, start_step=0, progress_bar=False)
    losses = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    data_skipped = [0, 2, 1, 0, 0, 3, 1]  # examples skipped during each step
    updates_skipped = [0, 0, 1, 0, 0, 0, 0]
    for i in range(7):
        logger.step(i + 1, {"loss": losses[i], "data_skipped": data_skipped[i],
                            "updates_skipped": updates_skipped[i]})
    logger.flush(7)  # the run ends inside the third interval
    logger.close()
    # by hand: steps 1-3 -> mean loss 2, 3 skipped examples, 1 skipped update; 4-6 -> 5, 3, 0; 7 -> 7, 1, 0
    assert _rows(tmp_path / "metrics.jsonl") == [
        {"step": 3, "loss": 2.0, "data_skipped": 3.0, "updates_skipped": 1.0},
        {"step": 6, "loss": 5.0, "data_skipped": 3.0, "updates_skipped": 0.0},
        {"step": 7, "loss": 7.0, "data_skipped": 1.0, "updates_skipped": 0.0},
    ]


def test_a_resumed_logger_drops_the_rows_after_its_start_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "loss": float(s)} for s in (2, 4, 6, 8)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 10, "lo')  # cut by a kill
    logger = MetricsLogger(str(tmp_path), every_steps=2, total_steps=10, start_step=4, progress_bar=False)
    logger.step(5, {"loss": 50.0})
    logger.step(6, {"loss": 70.0})
    logger.close()
    assert _rows(path) == rows[:2] + [{"step": 6, "loss": 60.0}]
    assert not (tmp_path / "metrics.jsonl.tmp").exists()


@pytest.mark.parametrize("step,kept", [(0, []), (3, [1, 2, 3]), (9, [1, 2, 3, 4])])
def test_truncate_after(tmp_path, step, kept):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3, 4)))
    assert metrics.truncate_after(str(path), step) == 4 - len(kept)
    assert [r["step"] for r in _rows(path)] == kept
