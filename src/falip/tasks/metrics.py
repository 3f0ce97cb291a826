"""Metrics shared by the tasks: box IoU, Wilson score intervals, the typed run summary and the one
table layout every printout uses."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.regions import box_iou

__all__ = [
    "ACCURACY",
    "GROUP_MEAN",
    "MEAN_PER_CLASS",
    "WORST_GROUP",
    "Metric",
    "Summary",
    "accuracy_summary",
    "box_iou",
    "format_table",
    "summary_table",
    "top_k",
    "wilson_interval",
]


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval ``(lo, hi)`` for a binomial proportion (95% for z = 1.96)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the interval holds p exactly: at p = 0 or 1, rounding puts centre -/+ half 1e-16 off (a plot's error bar
    # then has a negative length, which matplotlib refuses)
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


def _rate(records: Sequence[dict], key: str) -> dict:
    n = len(records)
    hits = sum(bool(r[key]) for r in records)
    lo, hi = wilson_interval(hits, n)
    # nothing scored has no accuracy (None, not 0.0)
    return {"n": n, "correct": hits, "accuracy": 100.0 * hits / n if n else None, "ci95": [100.0 * lo, 100.0 * hi]}


@dataclass(frozen=True)
class Metric:
    """One number a summary reports: its JSON ``key`` (a percent), its column ``label``, and its direction."""

    key: str
    label: str
    higher_is_better: bool = True


ACCURACY = Metric("accuracy", "top-1")
GROUP_MEAN = Metric("group_mean_accuracy", "group mean")
WORST_GROUP = Metric("worst_group_accuracy", "worst group")
MEAN_PER_CLASS = Metric("mean_per_class_accuracy", "mean per class")


def top_k(k: int) -> Metric:
    """Top-``k`` accuracy, from the records' boolean ``correct<k>`` key."""
    return Metric(f"correct{k}_accuracy", f"top-{k}")


_TOP_K = re.compile(r"^correct(\d+)_accuracy$")
_NAMED = {m.key: m for m in (ACCURACY, GROUP_MEAN, WORST_GROUP, MEAN_PER_CLASS)}
_RATE_KEYS = ("n", "correct", "accuracy", "ci95", "skipped")


@dataclass
class Summary:
    """A run's summary: overall accuracy (percent, 95% Wilson interval), its declared metrics and
    breakdowns. :meth:`to_dict` writes the JSON keys ``summary.json`` has always had:
    ``n``, ``correct``, ``accuracy``, ``ci95``, ``skipped``, one key per further metric (e.g.
    ``correct5_accuracy``), ``by_<key>`` (value -> a row with ``n``, ``correct``, ``accuracy``,
    ``ci95`` and the further top-k metrics), then the task's ``extra`` keys.
    """

    n: int
    correct: int
    accuracy: float | None
    ci95: list[float]
    skipped: int = 0
    metrics: list[Metric] = field(default_factory=lambda: [ACCURACY])
    values: dict[str, float | None] = field(default_factory=dict)
    groups: dict[str, dict[str, dict]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def value(self, metric: Metric | str) -> float | None:
        """The value of a metric (its key or the :class:`Metric`)."""
        key = metric if isinstance(metric, str) else metric.key
        return self.accuracy if key == ACCURACY.key else self.values.get(key)

    def add(self, metric: Metric, value: float | None) -> None:
        """Declare one more metric with its value."""
        if metric.key != ACCURACY.key and metric not in self.metrics:
            self.metrics.append(metric)
        if metric.key != ACCURACY.key:
            self.values[metric.key] = value

    def columns(self) -> dict[str, float | None]:
        """Label -> value of every declared metric, in declaration order (``top-1`` first)."""
        return {m.label: self.value(m) for m in self.metrics}

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "n": self.n,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "ci95": list(self.ci95),
            "skipped": self.skipped,
        }
        out.update({m.key: self.values.get(m.key) for m in self.metrics if m.key != ACCURACY.key})
        out.update({f"by_{k}": rows for k, rows in self.groups.items()})
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Summary:
        """The summary a :meth:`to_dict` (a ``summary.json``) holds; metrics are known by their keys."""
        metrics, values, groups, extra = [ACCURACY], {}, {}, {}
        for key, v in d.items():
            if key in _RATE_KEYS:
                continue
            m = _NAMED.get(key) or (top_k(int(_TOP_K.match(key).group(1))) if _TOP_K.match(key) else None)
            if m is not None and (v is None or isinstance(v, (int, float))):
                metrics.append(m)
                values[key] = v
            elif key.startswith("by_") and isinstance(v, dict):
                groups[key[3:]] = v
            else:
                extra[key] = v
        ci95 = d.get("ci95") or [0.0, 100.0]
        return cls(
            int(d.get("n", 0)), int(d.get("correct", 0)), d.get("accuracy"), list(ci95), int(d.get("skipped", 0) or 0),
            metrics, values, groups, extra,
        )  # fmt: skip


def accuracy_summary(
    records: Sequence[dict],
    skipped: Sequence[dict],
    by: str | Sequence[str] = (),
    metrics: Sequence[str] = ("correct",),
) -> Summary:
    """Accuracy (percent, with a 95% Wilson interval) of per-item records, overall and per group.

    ``records``: dicts with an ``id`` and the boolean ``metrics`` keys (the first is the main
    one; others, e.g. ``correct5``, are declared as ``<key>_accuracy``); ``skipped``: the runner's
    entries, each counting its ``items`` (default 1). ``by``: record keys to break the accuracy
    down by (``by_<key>``: value -> n, correct, accuracy). With no records the accuracies are
    None, not 0. Deterministic: records are sorted by id first, so merged shards give the same
    summary as one process.
    """
    records = sorted(records, key=lambda r: str(r["id"]))
    main, *others = metrics
    skipped_items = sum(s["items"] if isinstance(s.get("items"), int) else 1 for s in skipped)
    rate = _rate(records, main)
    out = Summary(rate["n"], rate["correct"], rate["accuracy"], rate["ci95"], skipped_items)
    for key in others:
        m = top_k(int(key[len("correct") :])) if re.fullmatch(r"correct\d+", key) else Metric(f"{key}_accuracy", key)
        out.add(m, _rate(records, key)["accuracy"])
    for key in (by,) if isinstance(by, str) else by:
        groups: dict = {}
        for r in records:
            groups.setdefault(str(r[key]), []).append(r)
        out.groups[key] = {}
        for value in sorted(groups):
            row = _rate(groups[value], main)
            for other in others:
                row[f"{other}_accuracy"] = _rate(groups[value], other)["accuracy"]
            out.groups[key][value] = row
    return out


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, markdown: bool = False, left: int = 1) -> str:
    """The one table layout of falip's printouts: plain text (the first ``left`` columns left-aligned,
    the others right-aligned, a rule under the header) or a markdown table."""
    cells = [[str(c) for c in r] for r in rows]
    if markdown:
        align = ["---"] * left + ["---:"] * (len(header) - left)
        lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])
    widths = [max(len(r[i]) for r in cells + [list(header)]) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in cells])


def summary_table(summary: Summary | Mapping[str, Any], by: str, title: str) -> str:
    """A plain-text table of a summary: one row per ``by`` group, then all; a column per top-k metric."""
    s = summary if isinstance(summary, Summary) else Summary.from_dict(summary)
    extra = [m for m in s.metrics if _TOP_K.match(m.key)]
    header = [by, "n", "accuracy % [95% CI]"] + [f"{m.label} %" for m in extra]
    rows = []
    for value, row in s.groups.get(by, {}).items():
        rows.append([value, str(row["n"]), _fmt(row)] + [_pct(row.get(m.key, float("nan"))) for m in extra])
    whole = {"accuracy": s.accuracy, "ci95": s.ci95}
    rows.append(["all", str(s.n), _fmt(whole)] + [_pct(s.value(m)) for m in extra])
    text = title + "\n" + format_table(header, rows)
    if s.skipped:
        text += f"\nskipped: {s.skipped} (see skipped.jsonl)"
    return text


def _fmt(row: Mapping[str, Any]) -> str:
    if row["accuracy"] is None:
        return "-"
    lo, hi = row["ci95"]
    return f"{row['accuracy']:5.1f} [{lo:4.1f}, {hi:4.1f}]"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
