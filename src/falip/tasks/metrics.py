"""Metrics shared by the tasks: box IoU and Wilson score intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["accuracy_summary", "box_iou", "summary_table", "wilson_interval"]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[N, M]`` of xyxy boxes ``a`` ``[N, 4]`` and ``b`` ``[M, 4]``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval ``(lo, hi)`` for a binomial proportion (95% for z = 1.96)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _rate(records: Sequence[dict], key: str) -> dict:
    n = len(records)
    hits = sum(bool(r[key]) for r in records)
    lo, hi = wilson_interval(hits, n)
    # nothing scored has no accuracy (None, not 0.0)
    return {"n": n, "correct": hits, "accuracy": 100.0 * hits / n if n else None, "ci95": [100.0 * lo, 100.0 * hi]}


def accuracy_summary(
    records: Sequence[dict],
    skipped: Sequence[dict],
    by: str | Sequence[str] = (),
    metrics: Sequence[str] = ("correct",),
) -> dict:
    """Accuracy (percent, with a 95% Wilson interval) of per-item records, overall and per group.

    ``records``: dicts with an ``id`` and the boolean ``metrics`` keys (the first is the main
    one; others, e.g. ``correct5``, get ``<key>_accuracy``); ``skipped``: the runner's entries,
    each counting its ``items`` (default 1). ``by``: record keys to break the accuracy down by
    (``by_<key>``: value -> n, correct, accuracy). With no records the accuracies are None, not 0.
    Deterministic: records are sorted by id first, so merged shards give the same summary as one
    process.
    """
    records = sorted(records, key=lambda r: str(r["id"]))
    main, *others = metrics
    skipped_items = sum(s["items"] if isinstance(s.get("items"), int) else 1 for s in skipped)
    out: dict = {**_rate(records, main), "skipped": skipped_items}
    for key in others:
        out[f"{key}_accuracy"] = _rate(records, key)["accuracy"]
    for key in (by,) if isinstance(by, str) else by:
        groups: dict = {}
        for r in records:
            groups.setdefault(str(r[key]), []).append(r)
        out[f"by_{key}"] = {}
        for value in sorted(groups):
            row = _rate(groups[value], main)
            for other in others:
                row[f"{other}_accuracy"] = _rate(groups[value], other)["accuracy"]
            out[f"by_{key}"][value] = row
    return out


def summary_table(summary: dict, by: str, title: str) -> str:
    """A plain-text table of :func:`accuracy_summary`'s output: one row per group, then all."""
    extra = sorted(k for k in summary if k.startswith("correct") and k.endswith("_accuracy"))  # e.g. top-5
    header = [by, "n", "accuracy % [95% CI]"] + [f"top-{k[len('correct') : -len('_accuracy')]} %" for k in extra]
    rows = []
    for value, row in summary.get(f"by_{by}", {}).items():
        rows.append([value, str(row["n"]), _fmt(row)] + [_pct(row.get(k, float("nan"))) for k in extra])
    rows.append(["all", str(summary["n"]), _fmt(summary)] + [_pct(summary[k]) for k in extra])
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    if summary.get("skipped"):
        lines.append(f"skipped: {summary['skipped']} (see skipped.jsonl)")
    return "\n".join(lines)


def _fmt(row: dict) -> str:
    if row["accuracy"] is None:
        return "-"
    lo, hi = row["ci95"]
    return f"{row['accuracy']:5.1f} [{lo:4.1f}, {hi:4.1f}]"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
