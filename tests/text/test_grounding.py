"""Grounding: time parsing, IoU, one-to-one matching and mIoU / R@θ on hand-worked cases."""

import pytest

from vtjax.text import grounding


def test_parse_time_range_and_segments():
    assert grounding.parse_time_range("00:05-00:12") == (5, 12)
    assert grounding.parse_time_range(" 1:05 - 2:00 ") == (65, 120)  # lenient minutes for evaluation
    assert grounding.parse_time_range("1:05-2:00", strict=True) is None
    assert grounding.parse_time_range("01:05-00:30") is None  # start > end
    assert grounding.parse_time_range("00:61-01:00") is None  # seconds >= 60
    assert grounding.parse_time_range("61:70") is None
    text = "<time>00:01-00:03</time> x <time>bad</time> <time>01:00-01:30</time>"
    assert grounding.parse_time_segments(text) == [(1, 3), (60, 90)]
    assert grounding.format_time(125.9) == "02:05"


def test_interval_iou_hand_worked():
    assert grounding.interval_iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert grounding.interval_iou((0, 10), (2, 4)) == pytest.approx(0.2)
    assert grounding.interval_iou((0, 1), (2, 3)) == 0.0
    assert grounding.interval_iou((3, 3), (3, 3)) == 1.0
    assert grounding.interval_iou((3, 3), (0, 6)) == 0.0


def test_one_to_one_matching():
    gt = [(0, 10), (20, 30)]
    # One long prediction overlaps both ground truths; it may match only one.
    # iou((0,30),(0,10)) = 1/3 = iou((0,30),(20,30)); tie -> the first ground truth.
    assert grounding.match_segments([(0, 30)], gt) == pytest.approx([1 / 3, 0.0])
    # Greedy by IoU: (18,30) matches (20,30) with 10/12; (0,12) matches (0,10) with 10/12.
    assert grounding.match_segments([(18, 30), (0, 12)], gt) == pytest.approx([10 / 12, 10 / 12])
    # The best pair is taken first even if it leaves the other ground truth a worse partner.
    assert grounding.match_segments([(5, 10)], [(0, 10), (5, 11)]) == pytest.approx([0.0, 5 / 6])
    assert grounding.segment_iou_score([(0, 10), (40, 50)], [(0, 10)]) == 1.0
    assert grounding.segment_iou_score([(0, 10), (40, 50)], [(0, 10)], penalize_extra=True) == 0.5


def test_grounding_metrics_hand_worked():
    preds = [
        [(0, 10)],            # gt (0,10): IoU 1
        [(0, 4)],             # gt (0,10): IoU 0.4
        [(0, 6), (20, 27)],   # gts (0,10) -> 0.6, (20,30) -> 0.7
        [],                   # gt (5,9): no prediction -> 0
        [(1, 2)],             # no ground truth: left out
    ]
    gts = [[(0, 10)], [(0, 10)], [(0, 10), (20, 30)], [(5, 9)], []]
    m = grounding.grounding_metrics(preds, gts, rule="one_to_one")
    # per-sample mIoU: 1, 0.4, 0.65, 0 -> 0.5125
    assert m["count"] == 4
    assert m["mIoU"] == pytest.approx(51.25)
    # R@0.3: 1, 1, 1 (both), 0 -> 75; R@0.5: 1, 0, 1 (0.6 and 0.7) -> 50; R@0.7: 1, 0, 0.5, 0 -> 37.5
    assert m["R@0.3"] == pytest.approx(75.0)
    assert m["R@0.5"] == pytest.approx(50.0)
    assert m["R@0.7"] == pytest.approx(37.5)
    with pytest.raises(ValueError, match="one per sample"):
        grounding.grounding_metrics(preds, gts[:2])


def test_one_prediction_spanning_two_clues_25_vs_50():
    """The issue's example: gt (0,10), (10,20); one prediction (0,20) has IoU 0.5 with each."""
    preds, gts = [[(0, 20)]], [[(0, 10), (10, 20)]]
    assert grounding.grounding_metrics(preds, gts, rule="one_to_one")["mIoU"] == pytest.approx(25.0)
    assert grounding.grounding_metrics(preds, gts)["mIoU"] == pytest.approx(50.0)  # max_iou, the paper's, default
    assert grounding.grounding_metrics(preds, gts, rule="union")["mIoU"] == pytest.approx(100.0)  # unions equal


def test_max_iou_pools_ground_truth_segments():
    """App. C.3: each ground-truth segment its max IoU over all predictions; mean and R@k over all segments."""
    preds = [
        [(0, 4), (0, 8), (50, 60)],  # gt (0,10): max(0.4, 0.8) = 0.8; a duplicate prediction costs nothing
        [(0, 6), (20, 27)],          # gts (0,10) -> 0.6, (20,30) -> 0.7, (40,50) -> 0
        [],                          # gt (5,9): 0
    ]
    gts = [[(0, 10)], [(0, 10), (20, 30), (40, 50)], [(5, 9)]]
    assert grounding.max_iou_per_gt(preds[1], gts[1]) == pytest.approx([0.6, 0.7, 0.0])
    m = grounding.grounding_metrics(preds, gts)
    # 5 ground-truth segments: 0.8, 0.6, 0.7, 0, 0 -> mIoU 42; R@0.3 3/5, R@0.5 3/5, R@0.7 2/5 (0.8, 0.7)
    assert m["count"] == 3 and m["rule"] == "max_iou"
    assert m["mIoU"] == pytest.approx(42.0)
    assert (m["R@0.3"], m["R@0.5"], m["R@0.7"]) == pytest.approx((60.0, 60.0, 40.0))


def test_cg_bench_union_iou():
    """White-box mIoU: merge each side, one IoU of the unions per record."""
    # pred (0,5)+(3,8) -> (0,8); gt (0,10): 8/10
    assert grounding.union_iou([(0, 5), (3, 8)], [(0, 10)]) == pytest.approx(0.8)
    # pred (0,10); gt (0,5)+(10,20) (touching at 10 is no overlap): inter 5, union 10 + 15 - 5 = 20
    assert grounding.union_iou([(0, 10)], [(0, 5), (10, 20)]) == pytest.approx(0.25)
    assert grounding.merge_intervals([(5, 9), (0, 5), (20, 21)]) == [(0.0, 9.0), (20.0, 21.0)]
    assert grounding.union_iou([], [(0, 10)]) == 0.0
    assert grounding.union_iou([(3, 3)], [(3, 3)]) == 0.0  # no length: 0 (interval_iou says 1)
    m = grounding.grounding_metrics([[(0, 5), (3, 8)], [(0, 10)]], [[(0, 10)], [(0, 5), (10, 20)]], rule="union")
    assert m["mIoU"] == pytest.approx(52.5) and m["R@0.5"] == pytest.approx(50.0) and m["R@0.3"] == 50.0
    with pytest.raises(ValueError):
        grounding.grounding_metrics([[]], [[(0, 1)]], rule="mean")
