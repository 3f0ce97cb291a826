"""Sweeps: one FALIP (or prompt) setting at a time, each a resumable harness run, then a table and a plot.

A sweep varies one parameter, or two as a grid, over a task the harness runs (REC, region
classification, on any dataset their readers take). Each setting (a *point*) runs into
``out_dir/<param>=<value>/`` (a grid point: ``out_dir/<p1>=<v1>,<p2>=<v2>/``) with
:func:`falip.runner.run`, so a sweep resumes point by point and within a point; the point's
settings are in its ``run.json``, so resuming with other settings is refused. The table
(``sweep.csv``, ``sweep.json``) has one row per point; ``sweep.png`` plots the accuracy against
the parameter (a heat map for a grid).

Parameters (values as strings, as on the command line):

``alpha``, ``sigma``
    FALIP's bias peak (>= 0) and width in tokens (> 0).
``blocks``
    Which blocks get the bias, 1-based as the paper writes them: ``1-4``, ``9-12``, ``7`` (one
    block), ``1-2+11-12`` (a union), ``all``, ``lastK`` (the last K blocks), or ``last*`` (every
    ``lastK``, K = 1..depth).
``form``
    The mask form, ``cls``, ``all`` or ``diag`` (docs/method.md "The foveal mask"), or an
    ablation of :mod:`falip.prompts.ablations`: ``feature-mask`` (Fig. 7a), ``qk-prompt``
    (Fig. 7b) or ``v-prompt`` (Fig. 7c). The ablations are method atoms: each replaces every
    plain ``falip`` term of the method (:func:`point_method`).
``circle-scale``
    The red circle's box enlarged by this factor (> 0; 1 is RedCircle as drawn), wherever the
    method draws the ``input-circle`` atom (formerly ``circle``).
``enlarge``
    Pixels (>= 0) every region's box grows by on each side, clipped to the image, for every atom
    of the method, FALIP's box included: the executors' ``enlarge_boxes`` (the paper's Table 14,
    :attr:`falip.prompts.registry.PromptParams.enlarge`).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import numbering
from ..core.config import FIELDS
from ..core.errors import FalipError
from ..core.mask import FORMS
from ..defaults import SWEEP_PARAMS
from ..numbering import BLOCKS_NOTE
from ..prompts.ablations import VARIANTS
from ..prompts.registry import METHODS, parse_method
from ..tasks.metrics import Summary

__all__ = [
    "DEFAULT_VALUES",
    "FORM_VALUES",
    "PARAMS",
    "SweepPoint",
    "point_method",
    "point_model_info",
    "point_scorer",
    "parse_blocks",
    "parse_grid",
    "parse_values",
    "plot_sweep",
    "run_sweep",
    "metric_label",
    "plotted",
    "summary_row",
    "sweep_points",
    "write_table",
]

PARAMS = SWEEP_PARAMS
FORM_VALUES = (*FORMS, *VARIANTS)
DEFAULT_VALUES = {
    "alpha": "0,0.1,0.2,0.5,1,2,5,10,20",
    "sigma": "0.5,1,2,5,10,100",
    "blocks": "last*,all",
    "form": ",".join(FORM_VALUES),
    "circle-scale": "1,1.25,1.5,2,3",
    "enlarge": "0,10,20,40",
}


def _check_param(param: str) -> str:
    if param not in PARAMS:
        raise FalipError(f"unknown sweep parameter {param!r}; one of {', '.join(PARAMS)}")
    return param


def parse_blocks(label: str, depth: int) -> tuple[int, ...]:
    """A blocks value (numbered from 1; :mod:`falip.numbering`) -> 0-based block indices, sorted.

    ``"9-12"`` -> ``(8, 9, 10, 11)``; ``"last2"`` -> the last two; ``"1-2+11-12"`` a union; ``"all"``.
    """
    return numbering.parse_blocks(label, depth)


def _number(param: str, text: str, minimum: float, strict: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FalipError(f"{param} value {text!r} is not a number") from None
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        raise FalipError(f"{param} value {text!r} must be a finite number {'>' if strict else '>='} {minimum:g}")
    return value


def parse_values(param: str, values: str | Sequence[str], depth: int) -> list[tuple[str, Any]]:
    """``(label, value)`` per value of ``param``: labels name the run folders, values are resolved.

    ``values``: comma-separated text or a list; numbers are labelled as ``%g`` writes them,
    ``last*`` expands to ``last1..last<depth>``. Duplicate labels are an error.
    """
    _check_param(param)
    items = [v.strip() for v in (values.split(",") if isinstance(values, str) else values) if str(v).strip()]
    if not items:
        raise FalipError(f"no values given for {param}")
    out: list[tuple[str, Any]] = []
    for text in items:
        text = str(text)
        if param in ("alpha", "sigma", "circle-scale", "enlarge"):
            value = _number(param, text, 0.0, strict=param not in ("alpha", "enlarge"))
            out.append((f"{value:g}", value))
        elif param == "blocks":
            if text.strip().lower() == "last*":
                out += [(f"last{k}", parse_blocks(f"last{k}", depth)) for k in range(1, depth + 1)]
            else:
                out.append((text.strip().lower(), parse_blocks(text, depth)))
        else:
            if text not in FORM_VALUES:
                raise FalipError(f"form value {text!r} is not one of {', '.join(FORM_VALUES)}")
            out.append((text, text))
    labels = [label for label, _ in out]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise FalipError(f"{param} values repeat: {', '.join(repeated)}")
    return out


def parse_grid(specs: Sequence[str]) -> dict[str, str]:
    """``["alpha=0.1,1,blocks=last1,last2"]`` (or one spec per parameter) -> ``{param: "v1,v2"}``.

    Values never hold ``=``, so a new parameter starts at each token with one.
    """
    axes: dict[str, list[str]] = {}
    current = None
    for spec in specs:
        for token in spec.split(","):
            token = token.strip()
            if not token:
                continue
            if "=" in token:
                current, _, token = token.partition("=")
                current = _check_param(current.strip())
                if current in axes:
                    raise FalipError(f"{{grid}} names {current} twice", terms={"grid": "the grid"})
                axes[current] = []
                token = token.strip()
                if not token:
                    continue
            if current is None:
                raise FalipError(
                    f"{{grid}} must start with PARAM=VALUES (e.g. alpha=0.1,1,blocks=last1,last2), got {spec!r}",
                    terms={"grid": "the grid"},
                )
            axes[current].append(token)
    if not axes:
        raise FalipError("{grid} names no parameter", terms={"grid": "the grid"})
    for param, values in axes.items():
        if not values:
            raise FalipError(f"{{grid}} gives no values for {param}", terms={"grid": "the grid"})
    return {p: ",".join(v) for p, v in axes.items()}


@dataclass(frozen=True)
class SweepPoint:
    """One setting of a sweep: ``labels`` and resolved ``values`` per parameter, in axis order."""

    labels: tuple[tuple[str, str], ...]
    values: tuple[tuple[str, Any], ...]

    @property
    def name(self) -> str:
        """The run folder's name: ``alpha=0.5`` or ``alpha=0.5,blocks=last2``."""
        return ",".join(f"{p}={label}" for p, label in self.labels)

    def settings(self) -> dict:
        """What this point sets: FALIP options (alpha, sigma, layers, form), ``variant``, ``circle_scale``,
        ``enlarge``."""
        out: dict[str, Any] = {}
        for param, value in self.values:
            if param == "blocks":
                out["layers"] = list(value)
            elif param == "form":
                out["variant" if value in VARIANTS else "form"] = value
            else:
                out[param.replace("-", "_")] = value
        return out


def sweep_points(axes: Mapping[str, Sequence[tuple[str, Any]]]) -> list[SweepPoint]:
    """Every combination of the axes' values (the first axis slowest)."""
    params = list(axes)
    return [
        SweepPoint(tuple(zip(params, (lab for lab, _ in combo))), tuple(zip(params, (v for _, v in combo))))
        for combo in itertools.product(*(axes[p] for p in params))
    ]


def _check_method(method: str, params: Sequence[str], values: Sequence[Any]) -> None:
    """FalipError when the method has nothing a swept parameter changes."""
    terms = parse_method(method)
    atoms = {a for t in terms for a in t}
    if "circle-scale" in params and any(a not in METHODS for a in atoms):
        raise FalipError(
            f"circle-scale applies to plain terms (input-circle, falip+input-circle, blur&input-circle), not {method!r}"
        )
    for param in params:
        if param == "circle-scale" and not atoms & {"circle", "input-circle"}:
            raise FalipError(
                f"sweeping circle-scale needs a method that draws the red circle, e.g. input-circle; got {method!r}"
            )
        if param in ("alpha", "sigma", "blocks", "form") and "falip" not in atoms:
            raise FalipError(f"sweeping {param} needs a method with FALIP, e.g. falip; got {method!r}")
    if any(v in VARIANTS for v in values) and ("falip",) not in terms:
        raise FalipError(
            f"the ablations {', '.join(VARIANTS)} replace a plain 'falip' term of the method; {method!r} has none"
        )


def point_scorer(scorer: Any, point: SweepPoint, prompt: str = "input-circle") -> Any:
    """``scorer`` with the point's settings: FALIP options, circle scale, box enlargement, the swaps' prompt.

    A copy sharing the scorer's text caches (:meth:`falip.RegionScorer.with_options`).
    """
    s = point.settings()
    config = replace(scorer.config, **{k: s[k] for k in FIELDS if k in s})
    params = None
    if "variant" in s or "circle_scale" in s or "enlarge" in s:
        params = replace(
            scorer.params,
            circle_scale=s.get("circle_scale", scorer.params.circle_scale),
            enlarge=s.get("enlarge", scorer.params.enlarge),
            swap_prompt=prompt,
        )
    return scorer.with_options(params=params, config=config)


def point_method(method: str, point: SweepPoint) -> str:
    """The method a point runs: ``method`` with every plain ``falip`` term replaced by the point's ablation."""
    variant = point.settings().get("variant")
    if variant is None:
        return method
    return "+".join(variant if t.replace(" ", "") == "falip" else t for t in method.split("+"))


def point_model_info(model_info: Mapping[str, Any], point: SweepPoint, prompt: str = "input-circle") -> dict:
    """The run's model description (in ``run.json``): the base one with the point's settings."""
    s = point.settings()
    out = {**model_info, **s}
    if "layers" in out:  # what the command writes numbers blocks from 1 (run.json)
        out["blocks"] = [i + 1 for i in out.pop("layers")]
        out["numbering"] = BLOCKS_NOTE
    if "variant" in s and s["variant"] != "feature-mask":
        out["prompt"] = prompt
    return out


def summary_row(summary: Mapping[str, Any], metrics: Sequence[str] = ()) -> dict[str, Any]:
    """The numbers of one run's summary that the table keeps (accuracy in percent, its 95% interval).

    ``metrics``: further summary keys to keep (a task's declared metrics, :mod:`falip.tasks`); the
    first is the one the sweep plots. A task whose first metric is not accuracy (``detect``: AP)
    adds ``value`` (that metric) and leaves the interval empty (None).
    """
    primary = metrics[0] if metrics else "accuracy"
    ci = summary.get("ci95") if primary == "accuracy" else None
    row: dict[str, Any] = {
        "accuracy": summary.get("accuracy"),
        "ci95_low": None if ci is None else ci[0],
        "ci95_high": None if ci is None else ci[1],
        "correct": summary.get("correct"),
        "n": summary["n"],
        "skipped": summary.get("skipped", 0),
    }
    if primary != "accuracy":
        row["value"] = summary.get(primary)
    if "ci95" in summary:
        for m in Summary.from_dict(summary).metrics[1:]:  # top-k as "top<k>_accuracy", the others by their key
            row[m.key.replace("correct", "top", 1) if m.label.startswith("top-") else m.key] = summary[m.key]
    for key in metrics:  # a task's further declared metrics
        if key in summary and key not in row and isinstance(summary[key], (int, float)):
            row[key] = summary[key]
    for split, part in summary.get("by_split", {}).items():
        if len(summary["by_split"]) > 1:
            row[f"accuracy[{split}]"] = part["accuracy"]
    return row


def plotted(row: Mapping[str, Any]) -> float:
    """The number a sweep plots for a row: the task's first metric (``value``), else accuracy."""
    return row["value"] if "value" in row else row["accuracy"]


def metric_label(table: Mapping[str, Any]) -> str:
    """What a sweep's number is: ``"accuracy"``, or the task's first metric (``"AP"``)."""
    return str(table.get("metric") or "accuracy")


def run_sweep(
    make_task: Callable[[Any, dict, str], Any],
    scorer: Any,
    model_info: Mapping[str, Any],
    axes: Mapping[str, str | Sequence[str]],
    out_dir: str | Path,
    *,
    method: str | None = None,
    prompt: str = "input-circle",
    resume: bool = False,
    title: str | None = None,
    on_point: Callable[[SweepPoint, Path], None] | None = None,
    **run_options: Any,
) -> dict:
    """Run every point of a sweep and write ``sweep.csv``, ``sweep.json`` and ``sweep.png`` in ``out_dir``.

    Args:
        make_task: ``(scorer, model_info, method) -> task`` for :func:`falip.runner.run`, e.g.
            ``lambda s, m, meth: falip.tasks.make_task("rec", s, method=meth, model_info=m, data=[...])``.
        scorer: a :class:`falip.RegionScorer` (each point gets a copy with its settings).
        model_info: the model description for ``run.json`` (each point adds its settings).
        axes: ``{param: values}`` for one parameter or two (a grid); values as in :func:`parse_values`.
        method: the scoring method (default ``input-circle`` when sweeping ``circle-scale`` alone, else ``falip``).
        prompt: the visual prompt of the ``qk-prompt``/``v-prompt`` ablations.
        resume: continue the runs already in ``out_dir`` (otherwise a folder holding one is an error).
        on_point: called with each point and its folder before it runs (e.g. to print progress).
        run_options: for :func:`falip.runner.run` (``limit``, ``workers``, ``batch_units``, ``progress``).
    Returns:
        the table as written to ``sweep.json``: ``params``, ``method``, ``rows`` (one per point).
    """
    from ..runner import run

    if not axes or len(axes) > 2:
        raise FalipError(f"a sweep varies one parameter or a grid of two, got {len(axes)}")
    depth = scorer.fclip.depth
    parsed = {_check_param(p): parse_values(p, v, depth) for p, v in axes.items()}
    params = list(parsed)
    if method is None:
        method = "input-circle" if params == ["circle-scale"] else "falip"
    _check_method(method, params, [v for vals in parsed.values() for _, v in vals])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for point in sweep_points(parsed):
        folder = out / point.name
        if on_point is not None:
            on_point(point, folder)
        task = make_task(
            point_scorer(scorer, point, prompt),
            point_model_info(model_info, point, prompt),
            point_method(method, point),
        )
        summary = run(task, folder, resume=resume, **run_options)
        rows.append({**dict(point.labels), **summary_row(summary, _metric_keys(task)), "run": point.name})
    keys = _metric_keys(task)
    table = {
        "task": getattr(task, "name", None),
        "metric": keys[0] if keys and keys[0] != "accuracy" else "accuracy",
        "params": params,
        "method": method,
        "prompt": prompt,
        "model": dict(model_info),
        "rows": rows,
    }
    if "blocks" in params:
        table["numbering"] = BLOCKS_NOTE
    write_table(table, out)
    plot_sweep(table, out / "sweep.png", title=title)
    return table


def _metric_keys(task: Any) -> tuple[str, ...]:
    """The summary keys of the metrics a registered task declares (none for an unregistered one)."""
    from ..tasks import TASKS

    spec = TASKS.get(getattr(task, "name", None))  # type: ignore[arg-type]
    return tuple(m.key for m in spec.metrics) if spec is not None else ()


def _task_title(name: Any) -> str:
    from ..tasks import TASKS

    spec = TASKS.get(name)
    return spec.title if spec is not None else (name or "task")


def write_table(table: Mapping[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """``sweep.csv`` (one row per point) and ``sweep.json`` (the whole table) in ``out_dir``."""
    out = Path(out_dir)
    columns: list[str] = []
    for row in table["rows"]:
        columns += [c for c in row if c not in columns]
    csv_path = out / "sweep.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in table["rows"]:
            writer.writerow({c: (f"{v:.4f}" if isinstance(v, float) else v) for c, v in row.items()})
    json_path = out / "sweep.json"
    json_path.write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    return csv_path, json_path


def _axis_label(param: str) -> str:
    return "blocks (numbered from 1)" if param == "blocks" else param


def plot_sweep(table: Mapping[str, Any], path: str | Path, title: str | None = None, dpi: int = 110) -> Path:
    """A PNG of accuracy against the swept parameter (95% intervals), or a heat map for a grid of two."""
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and figures are left alone

    params, rows = list(table["params"]), list(table["rows"])
    task = _task_title(table.get("task"))
    what = f"{task} {metric_label(table)} %, method {table.get('method')}"
    sizes = sorted({r["n"] for r in rows})
    what += f", n = {sizes[0]}" if len(sizes) == 1 else f", n = {sizes[0]}-{sizes[-1]}"
    model = table.get("model", {}).get("model")
    heading = title or (f"{what}, {model}" if model else what)
    if len(params) == 1:
        p = params[0]
        labels = [r[p] for r in rows]
        acc = np.array([plotted(r) for r in rows], dtype=np.float64)
        has_ci = all(r.get("ci95_low") is not None for r in rows)
        err = (
            np.array([[r["accuracy"] - r["ci95_low"] for r in rows], [r["ci95_high"] - r["accuracy"] for r in rows]])
            if has_ci
            else None
        )
        fig = Figure(figsize=(max(4.5, 0.7 * len(rows) + 2), 3.6), dpi=dpi)
        ax = fig.subplots()
        x = np.arange(len(rows))
        ordered = p in ("alpha", "sigma", "circle-scale", "enlarge")
        ax.errorbar(x, acc, yerr=err, fmt="o-" if ordered else "o", capsize=3, color="#0072B2", lw=1.5)
        best = int(np.argmax(acc))
        ax.plot([x[best]], [acc[best]], marker="*", ms=14, color="#E69F00", ls="none", label=f"best: {labels[best]}")
        for xi, a in zip(x, acc):
            ax.annotate(f"{a:.1f}", (xi, a), textcoords="offset points", xytext=(6, 4), fontsize=7)
        ax.set_xticks(x, labels, rotation=30 if max(len(s) for s in labels) > 5 else 0)
        ax.set_xlabel(_axis_label(p))
        ax.set_ylabel(f"{metric_label(table)} %" + (" (95% CI)" if has_ci else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    else:
        p, q = params
        ys = list(dict.fromkeys(r[p] for r in rows))
        xs = list(dict.fromkeys(r[q] for r in rows))
        grid = np.full((len(ys), len(xs)), np.nan)
        for r in rows:
            grid[ys.index(r[p]), xs.index(r[q])] = plotted(r)
        fig = Figure(figsize=(max(4.5, 0.75 * len(xs) + 2.5), max(3.0, 0.45 * len(ys) + 1.6)), dpi=dpi)
        ax = fig.subplots()
        im = ax.imshow(grid, cmap="viridis", aspect="auto")
        finite = grid[np.isfinite(grid)]
        mid = (finite.min() + finite.max()) / 2 if finite.size else 0
        best = np.unravel_index(np.nanargmax(grid), grid.shape) if finite.size else None
        for i in range(len(ys)):
            for j in range(len(xs)):
                if np.isfinite(grid[i, j]):
                    text = f"{grid[i, j]:.1f}" + ("*" if best == (i, j) else "")
                    ax.text(
                        j, i, text, ha="center", va="center", fontsize=7, color="black" if grid[i, j] > mid else "white"
                    )
        ax.set_xticks(range(len(xs)), xs, rotation=30 if max(len(s) for s in xs) > 5 else 0)
        ax.set_yticks(range(len(ys)), ys)
        ax.set_xlabel(_axis_label(q))
        ax.set_ylabel(_axis_label(p))
        fig.colorbar(im, ax=ax, label=f"{metric_label(table)} %")
        if title is None:
            heading += "; * best"
    ax.set_title(heading, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path
