"""The evaluation harness shared by every task: units -> batches -> results files, resumable, sharded.

A :class:`Task` lists its units of work (``units()``: cheap metadata, deterministic order), loads
one unit in a DataLoader worker process (``load()``: decode images, build regions; no model) and
turns a batch of loaded units into records in the main process (``run()``: the model). :func:`run`
drives it and writes, in ``out_dir`` (``{r}`` below is ``.rank{r}`` under torchrun with more than
one process, empty otherwise):

- ``run.json``: ``{"task", "config", "falip_version"}``, written once; a resumed run must have the
  same task name and config.
- ``results{r}.jsonl``: one JSON line per record, the task's dict plus ``"unit"`` (the unit's id)
  and ``"unit_size"`` (how many records that unit has). The records of a batch go out in one
  ``write()`` and are flushed, so a ``kill -9`` loses at most the batch in flight (the file may then
  end in a partial line, which a resumed run drops).
- ``skipped{r}.jsonl``: one JSON line ``{"id", "source", "reason"}`` per unit that could not be
  run: a :class:`Skip` yielded by ``units()`` (written by rank 0), or a unit whose ``load()`` raised
  :class:`~falip.FalipError` or :class:`OSError`. Each is also logged as one warning line
  (logger ``falip.runner``).
- ``summary.json`` (rank 0): ``task.summarize(records, skipped)`` plus ``"n"`` (records) and
  ``"skipped"`` (count) where the task did not set them. The runner prints nothing; the command
  line prints ``task.table(summary)`` once (:func:`is_main_process`).
- ``timing.json`` (rank 0): this invocation's ``wait_s`` (main loop blocked on data), ``compute_s``
  (in ``task.run``), ``write_s``, ``total_s``, ``units``, ``wait_fraction``; under torchrun summed
  over ranks, with each rank's own figures in ``"ranks"``.

Resume (``resume=True``) reads every ``results*.jsonl`` and ``skipped*.jsonl`` in ``out_dir``
(whatever world size wrote them), keeps the units whose ``unit_size`` records are all present and
the skipped ones, rewrites files that held a partial line or an incomplete unit without them, and
runs the rest. To retry skipped units (say, after fixing an image), delete ``skipped*.jsonl``.

``limit`` takes the first ``limit`` :class:`Unit` s of ``units()`` and the :class:`Skip` s yielded
before the last of them (iteration stops there); it applies before sharding and before dropping
finished units, so any number of processes sees the same units. The summary covers exactly
those units: records in ``out_dir`` of units outside them (an earlier run with a larger limit) stay
in the files but are left out.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from . import __version__
from .core.errors import FalipError

__all__ = ["Skip", "Task", "Unit", "device_for_rank", "is_main_process", "read_results", "run"]

log = logging.getLogger(__name__)

_RESERVED = ("unit", "unit_size")
_T = TypeVar("_T")


@dataclass(frozen=True)
class Unit:
    """One unit of work (e.g. one image with all its REC sentences, or one image with its objects).

    ``id`` is stable and unique within the run; ``payload`` is picklable and is what the task's
    ``load()`` needs. ``source`` (optional, e.g. ``"refcoco_testa.jsonl:17"``) is where the unit
    came from: a unit that fails to load is reported there.
    """

    id: str
    payload: Any
    source: str = ""


@dataclass(frozen=True)
class Skip:
    """Something that could not be turned into work, or failed to load.

    ``source`` is ``"file:line"`` or a path, so the user can find it; ``reason`` is one line.
    """

    id: str
    source: str
    reason: str


class Task(Protocol):
    """What :func:`run` drives; one implementation per task (REC, region classification, ...)."""

    name: str

    def config(self) -> dict:
        """JSON-able settings that define the run (model, method, data files, seed, ...)."""
        ...

    def units(self) -> Iterable[Unit | Skip]:
        """The work in a deterministic order; cheap metadata only (no images)."""
        ...

    def load(self, unit: Unit) -> Any:
        """Runs in DataLoader workers (no model); FalipError/OSError makes the unit a Skip."""
        ...

    def run(self, loaded: list[Any]) -> list[list[dict]]:
        """Main process, the model: for each loaded unit, its (non-empty) records, each with an "id"."""
        ...

    def summarize(self, records: list[dict], skipped: list[dict]) -> dict:
        """A deterministic function of all records and skipped entries -> the summary."""
        ...

    def table(self, summary: dict) -> str:
        """The summary as a table, for the command line to print."""
        ...


def is_main_process() -> bool:
    """True in a single process and on rank 0 under torchrun (where the command line prints)."""
    return int(os.environ.get("RANK", "0")) == 0


def device_for_rank() -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is available (``LOCAL_RANK`` 0 outside torchrun), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# distributed plumbing


@dataclass
class _Dist:
    """This process's rank and the world; collectives are no-ops with one process."""

    rank: int = 0
    world: int = 1
    group: Any = None  # a gloo group for the object collectives (None: the default group, gloo already)

    @property
    def on(self) -> bool:
        return self.world > 1

    @property
    def suffix(self) -> str:
        return f".rank{self.rank}" if self.on else ""

    def all_gather(self, obj: Any) -> list[Any]:
        if not self.on:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj, group=self.group)
        return out

    def on_rank0(self, fn: Callable[[], _T]) -> _T:
        """``fn()`` on rank 0, its value on every rank; its FalipError is raised on every rank."""
        if not self.on:
            return fn()
        box: list[Any] = [None]
        error: BaseException | None = None
        if self.rank == 0:
            try:
                box[0] = ("ok", fn())
            except FalipError as e:
                box[0] = ("user", str(e))
            except BaseException as e:  # a bug: rank 0 re-raises it, the others stop too
                error = e
                box[0] = ("bug", f"{type(e).__name__}: {e}")
        torch.distributed.broadcast_object_list(box, src=0, group=self.group)
        kind, value = box[0]
        if error is not None:
            raise error
        if kind == "user":
            raise FalipError(value)
        if kind == "bug":
            raise RuntimeError(f"rank 0 failed: {value}")
        return value


_GLOO_GROUP: list[Any] = []


def _destroy_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _distributed() -> _Dist:
    """The process group: joined when torchrun set ``WORLD_SIZE`` > 1 (gloo on CPU, nccl with CUDA)."""
    dist = torch.distributed
    if not dist.is_available():
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        return _Dist()
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return _Dist()
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
        atexit.register(_destroy_process_group)
    world = dist.get_world_size()
    if world == 1:
        return _Dist()
    if dist.get_backend() == "gloo":
        group = None
    else:  # objects travel over gloo on the CPU: no device to pick, no pinned tensors
        if not _GLOO_GROUP:
            _GLOO_GROUP.append(dist.new_group(backend="gloo"))
        group = _GLOO_GROUP[0]
    return _Dist(dist.get_rank(), world, group)


# ---------------------------------------------------------------------------------------------
# reading what earlier runs wrote


def _read_lines(path: Path) -> tuple[list[tuple[bytes, dict]], bool]:
    """``(raw line, row)`` for each complete line of ``path``, and whether a partial last line was dropped.

    A line without its newline is the tail of a write that a kill interrupted; any other line that
    is not a JSON object means the file was changed by something else: a FalipError naming it.
    """
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    rows = []
    for i, raw in enumerate(lines, 1):
        try:
            row = json.loads(raw)
        except ValueError as e:
            raise FalipError(
                f"{path}:{i}: not a JSON line ({e}); this file was not written by falip's runner"
            ) from None
        if not isinstance(row, dict):
            raise FalipError(f"{path}:{i}: not a JSON object; not written by falip's runner")
        rows.append((raw, row))
    return rows, bool(tail)


@dataclass
class _State:
    """What ``out_dir`` holds: complete units' records, skipped entries, and files to tidy."""

    records: dict[str, list[dict]]  # unit id -> its records, in file order
    skipped: dict[str, dict]  # id -> {"id", "source", "reason"}
    rewrites: dict[Path, list[bytes]]  # files that held a partial line or incomplete/duplicate units


def _rank_files(out_dir: Path, stem: str) -> list[Path]:
    return sorted(p for p in out_dir.glob(f"{stem}*.jsonl") if p.is_file())


def _scan(out_dir: Path) -> _State:
    """Read every results/skipped file in ``out_dir`` (any world size), tolerating a partial last line."""
    state = _State({}, {}, {})
    for path in _rank_files(out_dir, "results"):
        rows, dirty = _read_lines(path)
        groups: dict[str, list[tuple[bytes, dict]]] = {}
        for i, (raw, row) in enumerate(rows, 1):
            unit, size = row.get("unit"), row.get("unit_size")
            if not isinstance(unit, str) or not isinstance(size, int) or isinstance(size, bool):
                raise FalipError(f"{path}:{i}: a record without 'unit'/'unit_size'; not written by falip's runner")
            groups.setdefault(unit, []).append((raw, row))
        kept: list[bytes] = []
        for unit, group in groups.items():
            complete = len(group) == group[0][1]["unit_size"] and all(r["unit_size"] == len(group) for _, r in group)
            if complete and unit not in state.records:
                state.records[unit] = [r for _, r in group]
                kept += [raw for raw, _ in group]
            else:
                dirty = True
        if dirty:
            state.rewrites[path] = kept
    for path in _rank_files(out_dir, "skipped"):
        rows, dirty = _read_lines(path)
        kept = []
        for i, (raw, row) in enumerate(rows, 1):
            if not isinstance(row.get("id"), str):
                raise FalipError(f"{path}:{i}: a skipped entry without an 'id'; not written by falip's runner")
            if row["id"] in state.skipped:
                dirty = True
                continue
            state.skipped[row["id"]] = row
            kept.append(raw)
        if dirty:
            state.rewrites[path] = kept
    return state


def read_results(out_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """All complete units' records and all skipped entries in ``out_dir``, merged over rank files.

    Records are as written (the task's keys plus ``"unit"``, ``"unit_size"``), grouped by unit in
    file order; a partial last line and the records of incomplete units are left out.
    """
    state = _scan(Path(out_dir))
    return [r for recs in state.records.values() for r in recs], list(state.skipped.values())


def _rewrite(path: Path, lines: list[bytes]) -> None:
    """Replace ``path`` by ``lines`` (atomically: a kill leaves the old or the new file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(b"".join(line + b"\n" for line in lines))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# the run


def _holds_results(out_dir: Path) -> bool:
    if not out_dir.is_dir():
        return False
    names = ("run.json", "summary.json")
    return any((out_dir / n).exists() for n in names) or bool(
        _rank_files(out_dir, "results") or _rank_files(out_dir, "skipped")
    )


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_out_dir(out_dir: Path, header: dict, resume: bool) -> None:
    """FalipError when ``out_dir`` cannot take this run: not a folder, results without resume, other settings."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FalipError(f"{out_dir} is not a folder; choose another --out")
    if not _holds_results(out_dir):
        return
    if not resume:
        raise FalipError(
            f"{out_dir} already holds results of a run; pass --resume to continue it, or choose another --out"
        )
    path = out_dir / "run.json"
    if not path.exists():
        raise FalipError(f"{out_dir} holds results but no run.json, so its settings are unknown; choose another --out")
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        old_task, old_config = old["task"], old["config"]
    except (ValueError, KeyError, TypeError) as e:
        raise FalipError(f"{path}: unreadable ({e}); choose another --out") from None
    if old_task != header["task"]:
        raise FalipError(
            f"{out_dir} holds a {old_task!r} run, not {header['task']!r}; choose another --out to run this one"
        )
    new_config = header["config"]
    keys = sorted(set(old_config) | set(new_config))
    differ = [k for k in keys if old_config.get(k, "<unset>") != new_config.get(k, "<unset>")]
    if differ:
        detail = ", ".join(
            f"{k} ({_short(old_config.get(k, '<unset>'))} there, {_short(new_config.get(k, '<unset>'))} here)"
            for k in differ
        )
        raise FalipError(
            f"{out_dir} holds a run with other settings: {detail}; resume with the same settings, "
            "or choose another --out"
        )
    if old.get("falip_version") != header["falip_version"]:
        log.warning(
            "%s was started with falip %s; continuing it with falip %s",
            out_dir,
            old.get("falip_version"),
            header["falip_version"],
        )


def _prepare(out_dir: Path, header: dict, resume: bool) -> list[str]:
    """Rank 0: create ``out_dir``, tidy earlier files, write run.json; the ids already done."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done: list[str] = []
    if resume:
        state = _scan(out_dir)
        for path, lines in state.rewrites.items():
            _rewrite(path, lines)
        done = list(state.records) + list(state.skipped)
    if not (out_dir / "run.json").exists():
        (out_dir / "run.json").write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")
    return done


def _plan(task: Task, limit: int | None) -> tuple[list[Unit], list[Skip], dict[str, int]]:
    """The units and skips of ``task.units()`` up to ``limit`` units, and each id's position."""
    units: list[Unit] = []
    skips: list[Skip] = []
    where: dict[str, str] = {}
    if limit == 0:
        return units, skips, {}
    for item in task.units():
        if not isinstance(item, (Unit, Skip)):
            raise TypeError(f"{task.name}.units() yielded {type(item).__name__}, not a Unit or a Skip")
        if not isinstance(item.id, str):
            raise TypeError(f"{task.name}.units() yielded an id of type {type(item.id).__name__}, not str")
        source = item.source or "?"
        if item.id in where:
            raise FalipError(f"two units have the id {item.id!r} ({where[item.id]} and {source}); ids must be unique")
        where[item.id] = source
        if isinstance(item, Skip):
            skips.append(item)
        else:
            units.append(item)
            if limit is not None and len(units) >= limit:
                break
    return units, skips, {k: i for i, k in enumerate(where)}


@dataclass(frozen=True)
class _Loaded:
    id: str
    value: Any = None
    skip: Skip | None = None


class _Units(Dataset):
    """Map-style dataset over the unit list; item ``i`` is ``task.load(units[i])`` or the Skip it became."""

    def __init__(self, task: Task, units: Sequence[Unit]) -> None:
        self.task = task
        self.units = units

    def __len__(self) -> int:
        return len(self.units)

    def __getitem__(self, i: int) -> _Loaded:
        unit = self.units[i]
        try:
            return _Loaded(unit.id, self.task.load(unit))
        except FalipError as e:
            reason = str(e) or type(e).__name__
            return _Loaded(unit.id, skip=Skip(unit.id, unit.source or unit.id, _one_line(reason)))
        except OSError as e:
            source = unit.source or (str(e.filename) if e.filename else unit.id)
            return _Loaded(unit.id, skip=Skip(unit.id, source, _one_line(f"{type(e).__name__}: {e}")))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _skip_line(skip: Skip) -> str:
    log.warning("skipped %s (%s): %s", skip.id, skip.source, skip.reason)
    return json.dumps({"id": skip.id, "source": skip.source, "reason": skip.reason}, ensure_ascii=False) + "\n"


def _record_lines(task: Task, unit_id: str, records: Any) -> str:
    """The JSON lines of one unit's records, with ``unit`` and ``unit_size``; a TypeError on a malformed one."""
    if not isinstance(records, (list, tuple)) or not records:
        raise TypeError(f"{task.name}.run() gave unit {unit_id!r} {records!r}, not a non-empty list of records")
    lines = []
    for rec in records:
        if not isinstance(rec, dict) or "id" not in rec:
            raise TypeError(
                f"{task.name}.run() gave unit {unit_id!r} a record that is not a dict with an 'id': {rec!r}"
            )
        if any(k in rec for k in _RESERVED):
            raise TypeError(f"{task.name}.run(): records may not set {_RESERVED} (the runner does): {rec!r}")
        lines.append(json.dumps({**rec, "unit": unit_id, "unit_size": len(records)}, ensure_ascii=False) + "\n")
    return "".join(lines)


def _check_options(limit: int | None, workers: int, batch_units: int) -> None:
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise FalipError(f"--limit must be a whole number >= 0, not {limit!r}")
    if not isinstance(workers, int) or workers < 0:
        raise FalipError(f"--workers must be a whole number >= 0, not {workers!r}")
    if not isinstance(batch_units, int) or batch_units < 1:
        raise FalipError(f"the batch size must be a whole number >= 1, not {batch_units!r}")


def _work(
    task: Task, units: list[Unit], skips: list[Skip], out_dir: Path, d: _Dist, workers: int, batch_units: int, bar: bool
) -> dict:
    """Run this rank's units, appending to its results/skipped files; this rank's timing."""
    wait = compute = write = 0.0
    start = time.perf_counter()
    results_path = out_dir / f"results{d.suffix}.jsonl"
    skipped_path = out_dir / f"skipped{d.suffix}.jsonl"
    with contextlib.ExitStack() as stack:
        results = stack.enter_context(open(results_path, "a", encoding="utf-8"))
        skipped = stack.enter_context(open(skipped_path, "a", encoding="utf-8"))
        if bar:
            from tqdm.contrib.logging import logging_redirect_tqdm

            stack.enter_context(logging_redirect_tqdm())
        if skips:
            skipped.write("".join(_skip_line(s) for s in skips))
            skipped.flush()
        progress = stack.enter_context(
            tqdm(total=len(units), desc=task.name, unit="unit", disable=not bar, file=sys.stderr, dynamic_ncols=True)
        )
        loader = DataLoader(_Units(task, units), batch_size=batch_units, num_workers=workers, collate_fn=list)
        t = time.perf_counter()
        batches = iter(loader)  # starts the workers: part of the wait
        while True:
            try:
                batch: list[_Loaded] = next(batches)
            except StopIteration:
                wait += time.perf_counter() - t
                break
            t1 = time.perf_counter()
            wait += t1 - t
            good = [b for b in batch if b.skip is None]
            outputs = task.run([b.value for b in good]) if good else []
            t2 = time.perf_counter()
            compute += t2 - t1
            if len(outputs) != len(good):
                raise TypeError(f"{task.name}.run() gave {len(outputs)} record lists for {len(good)} units")
            text = "".join(_record_lines(task, b.id, recs) for b, recs in zip(good, outputs))
            if text:  # one write per batch, then flushed: a kill loses at most this batch
                results.write(text)
                results.flush()
            failed = [b.skip for b in batch if b.skip is not None]
            if failed:
                skipped.write("".join(_skip_line(s) for s in failed))
                skipped.flush()
            progress.update(len(batch))
            t = time.perf_counter()
            write += t - t2
    total = time.perf_counter() - start
    return {"units": len(units), "wait_s": wait, "compute_s": compute, "write_s": write, "total_s": total}


def _finish(task: Task, out_dir: Path, order: dict[str, int], timings: list[dict], distributed: bool) -> dict:
    """Rank 0: the summary of every record in ``out_dir`` of this run's units; writes summary.json, timing.json."""
    state = _scan(out_dir)
    units = sorted((u for u in state.records if u in order), key=order.__getitem__)
    records = [r for u in units for r in state.records[u]]
    skipped = [state.skipped[k] for k in sorted((k for k in state.skipped if k in order), key=order.__getitem__)]
    outside = len(state.records) + len(state.skipped) - len(units) - len(skipped)
    if outside:
        log.info("%s: %d finished units are not among this run's units (--limit) and are left out", out_dir, outside)
    summary = dict(task.summarize(records, skipped))
    summary.setdefault("n", len(records))
    summary.setdefault("skipped", len(skipped))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    timing = {k: sum(t[k] for t in timings) for k in ("units", "wait_s", "compute_s", "write_s", "total_s")}
    timing["wait_fraction"] = timing["wait_s"] / timing["total_s"] if timing["total_s"] > 0 else 0.0
    if distributed:
        timing["ranks"] = timings
    (out_dir / "timing.json").write_text(json.dumps(timing, indent=2) + "\n", encoding="utf-8")
    return summary


def run(
    task: Task,
    out_dir: str | Path,
    *,
    resume: bool = False,
    limit: int | None = None,
    workers: int = 0,
    batch_units: int = 8,
    progress: bool | None = None,
) -> dict:
    """Run ``task`` into ``out_dir`` (files: see the module docstring); the summary, on every rank.

    ``resume`` continues a run in ``out_dir`` (without it, a folder that holds one is a FalipError
    before any work); ``limit`` keeps the first ``limit`` units; ``workers`` DataLoader processes
    load ``batch_units`` units per batch; ``progress`` shows a tqdm bar on rank 0 (None: when stderr
    is a terminal). Under torchrun (``WORLD_SIZE`` > 1) the process group is joined if needed and
    rank r runs ``todo[r::world]`` of the units not yet done.
    """
    _check_options(limit, workers, batch_units)
    out = Path(out_dir)
    d = _distributed()
    config = json.loads(json.dumps(task.config()))  # as it will read back from run.json
    header = {"task": task.name, "config": config, "falip_version": __version__}
    d.on_rank0(lambda: _check_out_dir(out, header, resume))
    units, skips, order = _plan(task, limit)  # every rank: deterministic
    done = set(d.on_rank0(lambda: _prepare(out, header, resume)))
    todo = [u for u in units if u.id not in done][d.rank :: d.world]
    new_skips = [s for s in skips if s.id not in done] if d.rank == 0 else []
    if progress is None:
        progress = sys.stderr.isatty()
    timing = _work(task, todo, new_skips, out, d, workers, batch_units, bool(progress) and d.rank == 0)
    timings = d.all_gather(timing)  # also the barrier: every rank's files are complete
    return d.on_rank0(lambda: _finish(task, out, order, timings, d.on))
