"""The harness's loop: the task contract (:class:`Task`, :class:`Unit`, :class:`Skip`), the units
planned, loaded in DataLoader workers (which die with the run), run and written batch by batch, and
the summary; :func:`run` ties it to the folder's files, lock and the torchrun world."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .. import __version__
from ..core.errors import FalipError
from .dist import Dist, distributed
from .files import check_out_dir, prepare, scan
from .lock import FolderLock

__all__ = ["NothingScored", "Skip", "Task", "Unit", "run"]

log = logging.getLogger("falip.runner")  # one logger for the harness (its messages name the run folder)

_RESERVED = ("unit", "unit_size")


@dataclass(frozen=True)
class Unit:
    """One unit of work (e.g. one image with all its REC sentences, or one image with its objects).

    ``id`` is stable and unique within the run; ``payload`` is picklable and is what the task's
    ``load()`` needs. ``source`` (optional, e.g. ``"refcoco_testa.jsonl:17"``) is where the unit
    came from: a unit that fails to load is reported there. ``items`` is how many records the
    unit stands for (its objects or sentences), so that a unit that fails counts as that many
    skipped items, the unit ``n`` counts.
    """

    id: str
    payload: Any
    source: str = ""
    items: int = 1


@dataclass(frozen=True)
class Skip:
    """Something that could not be turned into work, or failed to load.

    ``source`` is ``"file:line"`` or a path, so the user can find it; ``reason`` is one line (it
    need not repeat ``source``). ``items``: how many items it stands for. ``run()`` may give a Skip
    among a unit's records: that item is skipped, the unit's other records are kept.
    """

    id: str
    source: str
    reason: str
    items: int = 1


class NothingScored(FalipError):
    """A run in which not one item could be scored (``run(..., require_scored=True)``).

    ``summary`` is the run's summary (``n`` is 0), also written to ``summary.json``.
    """

    def __init__(self, message: str, summary: dict) -> None:
        super().__init__(message)
        self.summary = summary


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

    def run(self, loaded: list[Any]) -> list[list[dict | Skip]]:
        """Main process, the model: for each loaded unit, its (non-empty) records, each with an "id".

        A :class:`Skip` among them is an item that could not be scored (the others are kept).
        """
        ...

    def summarize(self, records: list[dict], skipped: list[dict]) -> Any:
        """A deterministic function of all records and skipped entries -> the summary: a dict, or an
        object with ``to_dict()`` (:class:`falip.tasks.metrics.Summary`) that gives it."""
        ...

    def table(self, summary: dict) -> str:
        """The summary as a table, for the command line to print."""
        ...


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
            source = unit.source or unit.id
            reason = _without_source(_one_line(str(e) or type(e).__name__), source)
            return _Loaded(unit.id, skip=Skip(unit.id, source, reason, unit.items))
        except OSError as e:
            source = unit.source or (str(e.filename) if e.filename else unit.id)
            return _Loaded(unit.id, skip=Skip(unit.id, source, _one_line(f"{type(e).__name__}: {e}"), unit.items))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _without_source(reason: str, source: str) -> str:
    """``reason`` without a leading ``source: `` (the skip line names the source once)."""
    prefix = f"{source}: "
    return reason[len(prefix) :] if source and reason.startswith(prefix) and len(reason) > len(prefix) else reason


def _skip_line(skip: Skip, unit: str | None = None) -> str:
    reason = _without_source(_one_line(skip.reason), skip.source)
    log.warning("skipped %s (%s): %s", skip.id, skip.source, reason)
    entry: dict[str, Any] = {"id": skip.id, "source": skip.source, "reason": reason}
    if unit is not None and unit != skip.id:
        entry["unit"] = unit
    if skip.items != 1:
        entry["items"] = skip.items
    return json.dumps(entry, ensure_ascii=False) + "\n"


def _record_lines(task: Task, unit_id: str, records: Any) -> tuple[str, str]:
    """The JSON lines of one unit's records (with ``unit``, ``unit_size``) and of its skipped items.

    A TypeError on a malformed record (a bug of the task).
    """
    if not isinstance(records, (list, tuple)) or not records:
        raise TypeError(f"{task.name}.run() gave unit {unit_id!r} {records!r}, not a non-empty list of records")
    good = [rec for rec in records if not isinstance(rec, Skip)]
    lines = []
    for rec in good:
        if not isinstance(rec, dict) or "id" not in rec:
            raise TypeError(
                f"{task.name}.run() gave unit {unit_id!r} a record that is not a dict with an 'id': {rec!r}"
            )
        if any(k in rec for k in _RESERVED):
            raise TypeError(f"{task.name}.run(): records may not set {_RESERVED} (the runner does): {rec!r}")
        lines.append(json.dumps({**rec, "unit": unit_id, "unit_size": len(good)}, ensure_ascii=False) + "\n")
    skips = "".join(_skip_line(rec, unit_id) for rec in records if isinstance(rec, Skip))
    return "".join(lines), skips


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _worker_init(parent: int, _worker_id: int) -> None:
    """DataLoader worker start: end this worker when the run's process dies (even by ``kill -9``).

    On Linux the kernel sends SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``);
    elsewhere a thread checks the parent once a second. Without this a killed run leaves its
    workers behind, each holding its memory.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="falip-parent-watch").start()


def _check_options(limit: int | None, workers: int, batch_units: int) -> None:
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise FalipError(f"{{limit}} must be a whole number >= 0, not {limit!r}", terms={"limit": "limit"})
    if not isinstance(workers, int) or workers < 0:
        raise FalipError(f"{{workers}} must be a whole number >= 0, not {workers!r}", terms={"workers": "workers"})
    if not isinstance(batch_units, int) or batch_units < 1:
        raise FalipError(f"the batch size must be a whole number >= 1, not {batch_units!r}")


def _work(
    task: Task, units: list[Unit], skips: list[Skip], out_dir: Path, d: Dist, workers: int, batch_units: int, bar: bool
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
        loader = DataLoader(
            _Units(task, units),
            batch_size=batch_units,
            num_workers=workers,
            collate_fn=list,
            worker_init_fn=functools.partial(_worker_init, os.getpid()) if workers else None,
        )
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
            parts = [_record_lines(task, b.id, recs) for b, recs in zip(good, outputs)]
            # skips first: a kill between the two writes leaves a unit with a skip, which resume redoes
            lost = "".join(_skip_line(b.skip) for b in batch if b.skip is not None) + "".join(p[1] for p in parts)
            if lost:
                skipped.write(lost)
                skipped.flush()
            text = "".join(p[0] for p in parts)
            if text:  # one write per batch, then flushed: a kill loses at most this batch
                results.write(text)
                results.flush()
            progress.update(len(batch))
            t = time.perf_counter()
            write += t - t2
    total = time.perf_counter() - start
    return {"units": len(units), "wait_s": wait, "compute_s": compute, "write_s": write, "total_s": total}


def _finish(
    task: Task, out_dir: Path, order: dict[str, int], timings: list[dict], distributed: bool
) -> tuple[dict, dict | None]:
    """Rank 0: the summary of this run's units in ``out_dir`` (and its first skipped entry); writes
    summary.json and timing.json."""
    state = scan(out_dir)
    units = sorted((u for u in state.records if u in order), key=order.__getitem__)
    records = [r for u in units for r in state.records[u]]
    mine = [e for e in state.skipped.values() if state.owner(e) in order]
    skipped = sorted(mine, key=lambda e: order[state.owner(e)])  # stable: file order within a unit
    outside = len(state.records) + len(state.skipped) - len(units) - len(skipped)
    if outside:
        log.info(
            "%s: %d finished units are not among this run's units (a smaller limit) and are left out", out_dir, outside
        )
    summary = task.summarize(records, skipped)
    summary = summary.to_dict() if hasattr(summary, "to_dict") else dict(summary)  # a tasks.metrics.Summary
    summary.setdefault("n", len(records))
    summary.setdefault("skipped", _count(skipped))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_outputs = getattr(task, "write_outputs", None)
    if write_outputs is not None:  # a task's own files beside these (detect: detections.json), from all records
        write_outputs(out_dir, records, summary)
    timing = {k: sum(t[k] for t in timings) for k in ("units", "wait_s", "compute_s", "write_s", "total_s")}
    timing["wait_fraction"] = timing["wait_s"] / timing["total_s"] if timing["total_s"] > 0 else 0.0
    if distributed:
        timing["ranks"] = timings
    (out_dir / "timing.json").write_text(json.dumps(timing, indent=2) + "\n", encoding="utf-8")
    return summary, (skipped[0] if skipped else None)


def _count(skipped: Sequence[dict]) -> int:
    """Skipped items: each entry counts its ``items`` (1 when absent)."""
    return sum(e["items"] if isinstance(e.get("items"), int) else 1 for e in skipped)


def _nothing_scored(summary: dict, first: dict | None, out_dir: Path) -> str:
    skipped = summary.get("skipped")
    if not isinstance(skipped, int):
        skipped = 0
    if first is None:
        return f"nothing to score: the data gave no items (an empty split or file?); see {out_dir}"
    return (
        f"0 of {skipped} items could be scored; first reason: {first.get('source', '?')}: "
        f"{first.get('reason', '?')} (all in {out_dir / 'skipped.jsonl'})"
    )


def run(
    task: Task,
    out_dir: str | Path,
    *,
    resume: bool = False,
    limit: int | None = None,
    workers: int = 0,
    batch_units: int = 8,
    progress: bool | None = None,
    require_scored: bool = False,
) -> dict:
    """Run ``task`` into ``out_dir`` (files: see the module docstring); the summary, on every rank.

    ``resume`` continues a run in ``out_dir`` (without it, a folder that holds one is a FalipError
    before any work); ``limit`` keeps the first ``limit`` units; ``workers`` DataLoader processes
    load ``batch_units`` units per batch; ``progress`` shows a tqdm bar on rank 0 (None: when stderr
    is a terminal); ``require_scored``: a run that scored no item raises :class:`NothingScored`
    (its files written). Under torchrun (``WORLD_SIZE`` > 1) the process group is joined if needed
    and rank r runs ``todo[r::world]`` of the units not yet done. While it runs, ``out_dir`` is
    locked: another run on it raises :class:`FolderInUse`.
    """
    _check_options(limit, workers, batch_units)
    out = Path(out_dir)
    d = distributed()
    config = json.loads(json.dumps(task.config()))  # as it will read back from run.json
    header = {"task": task.name, "config": config, "falip_version": __version__}
    lock = FolderLock(out)

    def start() -> None:
        if out.exists() and not out.is_dir():
            raise FalipError(f"{out} is not a folder; choose another output folder")
        out.mkdir(parents=True, exist_ok=True)
        lock.acquire()
        try:
            check_out_dir(out, header, resume)
        except BaseException:
            lock.release()
            raise

    d.on_rank0(start)
    try:
        units, skips, order = _plan(task, limit)  # every rank: deterministic
        done = set(d.on_rank0(lambda: prepare(out, header, resume, set(order))))
        todo = [u for u in units if u.id not in done][d.rank :: d.world]
        new_skips = [s for s in skips if s.id not in done] if d.rank == 0 else []
        if progress is None:
            progress = sys.stderr.isatty()
        timing = _work(task, todo, new_skips, out, d, workers, batch_units, bool(progress) and d.rank == 0)
        timings = d.all_gather(timing)  # also the barrier: every rank's files are complete
        summary, first = d.on_rank0(lambda: _finish(task, out, order, timings, d.on))
    finally:
        lock.release()
    if require_scored and summary.get("n") == 0:
        raise NothingScored(_nothing_scored(summary, first, out), summary)
    return summary
