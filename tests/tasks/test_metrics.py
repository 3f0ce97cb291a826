"""tasks/metrics: box IoU, Wilson intervals, the typed Summary and the one table layout."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from falip.tasks.metrics import (
    ACCURACY,
    GROUP_MEAN,
    WORST_GROUP,
    Summary,
    accuracy_summary,
    box_iou,
    format_table,
    summary_table,
    top_k,
    wilson_interval,
)


def test_box_iou():
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15]])
    b = np.array([[0, 0, 10, 10], [10, 10, 20, 20], [0, 0, 0, 0]])
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    assert iou[0, 0] == 1 and iou[0, 1] == 0 and iou[0, 2] == 0
    assert iou[1, 0] == pytest.approx(25 / 175)


def test_box_iou_matches_counting_pixels():
    """Integer boxes: IoU equals |A & B| / |A | B| counted cell by cell on a grid."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = (np.sort(rng.integers(0, 12, size=(2, 2)), axis=0).T.reshape(-1)[[0, 2, 1, 3]] for _ in range(2))
        grid = np.zeros((2, 12, 12), bool)
        for g, (x0, y0, x1, y1) in zip(grid, (a, b)):
            g[y0:y1, x0:x1] = True
        union = (grid[0] | grid[1]).sum()
        expected = (grid[0] & grid[1]).sum() / union if union else 0.0
        assert box_iou(a[None], b[None])[0, 0] == pytest.approx(expected)


def test_wilson_interval():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and 0.2 < hi < 0.35
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_interval_holds_the_proportion():
    """0 of 11 and 6 of 6 used to give 2.8e-17 and 0.9999999999999999: `falip sweep`'s plot then failed
    with "'yerr' must not contain negative values" on a value scoring 0% or 100%."""
    for n in range(1, 120):
        for k in range(n + 1):
            lo, hi = wilson_interval(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0, (k, n, lo, hi)


def test_wilson_interval_is_where_the_score_test_stops_rejecting():
    """The interval's ends solve |p_hat - p| = z sqrt(p (1 - p) / n) (the score test's boundary)."""
    for k, n in itertools.product((1, 7, 13), (20, 50)):
        for end in wilson_interval(k, n):
            assert abs(k / n - end) == pytest.approx(1.96 * math.sqrt(end * (1 - end) / n), abs=1e-9)


def _records():
    # group a: 3 of 3 right; group b: 1 of 3 right; every item right in the top 5
    return [{"id": f"{i}", "correct": i % 2 == 0 or i == 1, "correct5": True, "group": "ab"[i % 2]} for i in range(6)]


def test_accuracy_summary_counts_and_groups():
    skipped = [{"id": "x", "items": 2}, {"id": "y"}]
    s = accuracy_summary(_records(), skipped, by="group", metrics=("correct", "correct5"))
    assert isinstance(s, Summary)
    assert (s.n, s.correct, s.skipped) == (6, 4, 3)
    assert s.accuracy == pytest.approx(400 / 6)
    lo, hi = wilson_interval(4, 6)
    assert s.ci95 == pytest.approx([100 * lo, 100 * hi])
    assert s.metrics == [ACCURACY, top_k(5)] and s.value(top_k(5)) == 100.0
    assert s.groups["group"]["a"]["accuracy"] == 100.0
    assert s.groups["group"]["b"]["correct"] == 1 and s.groups["group"]["b"]["correct5_accuracy"] == 100.0


def test_accuracy_summary_does_not_depend_on_record_order():
    recs = _records()
    one = accuracy_summary(recs, [], by="group").to_dict()
    assert accuracy_summary(recs[::-1], [], by="group").to_dict() == one


def test_summary_json_keys_are_the_historic_ones_and_round_trip():
    s = accuracy_summary(_records(), [], by="group", metrics=("correct", "correct5"))
    s.add(GROUP_MEAN, 50.0)
    s.add(WORST_GROUP, 33.3)
    s.extra["worst_group"] = "b"
    d = s.to_dict()
    assert set(d) == {
        "n", "correct", "accuracy", "ci95", "skipped", "correct5_accuracy", "by_group",
        "group_mean_accuracy", "worst_group_accuracy", "worst_group",
    }  # fmt: skip
    back = Summary.from_dict(json.loads(json.dumps(d)))
    assert back.to_dict() == json.loads(json.dumps(d))
    assert back.columns() == {"top-1": s.accuracy, "top-5": 100.0, "group mean": 50.0, "worst group": 33.3}
    assert back.extra == {"worst_group": "b"}


def test_accuracy_of_nothing_is_none_not_zero():
    s = accuracy_summary([], [{"id": "a", "items": 3}])
    assert s.n == 0 and s.accuracy is None and s.skipped == 3
    assert "0.0" not in summary_table(s, "split", "t")


def test_summary_table_columns_are_the_topk_metrics_only():
    s = accuracy_summary(_records(), [], by="group", metrics=("correct", "correct5"))
    s.extra["mean_per_class_accuracy"] = 50.0  # a summary-level figure, not a per-row column
    for summary in (s, s.to_dict()):
        lines = summary_table(summary, "group", "t").splitlines()
        assert lines[0] == "t" and lines[1].split() == ["group", "n", "accuracy", "%", "[95%", "CI]", "top-5", "%"]
        assert [ln.split()[0] for ln in lines[3:]] == ["a", "b", "all"]
        assert lines[-1].split()[1:3] == ["6", "66.7"] and "nan" not in "\n".join(lines)


def test_format_table_aligns_and_writes_markdown():
    text = format_table(["name", "value"], [["a", "1.0"], ["long name", "10.25"]])
    lines = text.splitlines()
    assert lines == ["name       value", "---------  -----", "a            1.0", "long name  10.25"]
    md = format_table(["method", "all"], [["falip", 66.8]], markdown=True)
    assert md.splitlines() == ["| method | all |", "| --- | ---: |", "| falip | 66.8 |"]
    two = format_table(["a", "b", "c"], [["x", "y", "1"]], left=2).splitlines()
    assert two[2] == "x  y  1"
