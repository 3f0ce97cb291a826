"""The run folder's files: reading what earlier runs wrote (any world size, a torn last line
tolerated), repairing them for a resume, and checking that a folder can take a run (no torch)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import FalipError

__all__ = ["State", "check_out_dir", "prepare", "rank_files", "read_results", "scan"]

log = logging.getLogger("falip.runner")  # one logger for the harness (its messages name the run folder)


def _read_lines(path: Path) -> tuple[list[tuple[bytes, dict]], bool]:
    """``(raw line, row)`` for each complete line of ``path``, and whether a torn last line was dropped.

    A last line without its newline, or a last line that is not a JSON object (a write torn by a
    kill that happens to end in a newline), is the tail of an interrupted write; any other line
    that is not a JSON object means the file was changed by something else: a FalipError naming it.
    """
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    torn = bool(tail)
    rows = []
    for i, raw in enumerate(lines, 1):
        try:
            row = json.loads(raw)
            problem = None if isinstance(row, dict) else "not a JSON object"
        except ValueError as e:
            problem = f"not a JSON line ({e})"
        if problem is not None:
            if i == len(lines) and not torn:
                torn = True  # the last line: torn by a kill, repaired like a partial line
                break
            raise FalipError(f"{path}:{i}: {problem}; this file was not written by falip's runner")
        rows.append((raw, row))
    return rows, torn


@dataclass
class State:
    """What ``out_dir`` holds: complete units' records, skipped entries, and each file's good lines."""

    records: dict[str, list[dict]]  # unit id -> its records, in file order
    skipped: dict[tuple[str | None, str], dict]  # (unit or None, id) -> {"id", "source", "reason", ...}
    kept: dict[Path, list[tuple[str, bytes]]]  # file -> (owner unit id, raw line) of its good lines
    dirty: set[Path]  # files that held a partial line or incomplete/duplicate entries

    def owner(self, entry: dict) -> str:
        """The unit a skipped entry belongs to (its own id for a unit-level skip)."""
        return entry["unit"] if isinstance(entry.get("unit"), str) else entry["id"]


def rank_files(out_dir: Path, stem: str) -> list[Path]:
    return sorted(p for p in out_dir.glob(f"{stem}*.jsonl") if p.is_file())


def scan(out_dir: Path) -> State:
    """Read every results/skipped file in ``out_dir`` (any world size), tolerating a torn last line."""
    state = State({}, {}, {}, set())
    for path in rank_files(out_dir, "results"):
        rows, dirty = _read_lines(path)
        groups: dict[str, list[tuple[bytes, dict]]] = {}
        for i, (raw, row) in enumerate(rows, 1):
            unit, size = row.get("unit"), row.get("unit_size")
            if not isinstance(unit, str) or not isinstance(size, int) or isinstance(size, bool):
                raise FalipError(f"{path}:{i}: a record without 'unit'/'unit_size'; not written by falip's runner")
            groups.setdefault(unit, []).append((raw, row))
        kept: list[tuple[str, bytes]] = []
        for unit, group in groups.items():
            complete = len(group) == group[0][1]["unit_size"] and all(r["unit_size"] == len(group) for _, r in group)
            if complete and unit not in state.records:
                state.records[unit] = [r for _, r in group]
                kept += [(unit, raw) for raw, _ in group]
            else:
                dirty = True
        state.kept[path] = kept
        if dirty:
            state.dirty.add(path)
    for path in rank_files(out_dir, "skipped"):
        rows, dirty = _read_lines(path)
        kept = []
        for i, (raw, row) in enumerate(rows, 1):
            if not isinstance(row.get("id"), str):
                raise FalipError(f"{path}:{i}: a skipped entry without an 'id'; not written by falip's runner")
            key = (row["unit"] if isinstance(row.get("unit"), str) else None, row["id"])
            if key in state.skipped:
                dirty = True
                continue
            state.skipped[key] = row
            kept.append((state.owner(row), raw))
        state.kept[path] = kept
        if dirty:
            state.dirty.add(path)
    return state


def read_results(out_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """All complete units' records and all skipped entries in ``out_dir``, merged over rank files.

    Records are as written (the task's keys plus ``"unit"``, ``"unit_size"``), grouped by unit in
    file order; a partial last line and the records of incomplete units are left out.
    """
    state = scan(Path(out_dir))
    return [r for recs in state.records.values() for r in recs], list(state.skipped.values())


def _rewrite(path: Path, lines: list[bytes]) -> None:
    """Replace ``path`` by ``lines`` (atomically: a kill leaves the old or the new file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(b"".join(line + b"\n" for line in lines))
    os.replace(tmp, path)


def _holds_results(out_dir: Path) -> bool:
    if not out_dir.is_dir():
        return False
    names = ("run.json", "summary.json")
    return any((out_dir / n).exists() for n in names) or bool(
        rank_files(out_dir, "results") or rank_files(out_dir, "skipped")
    )


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def check_out_dir(out_dir: Path, header: dict, resume: bool) -> None:
    """FalipError when ``out_dir`` cannot take this run: not a folder, results without resume, other settings."""
    if not _holds_results(out_dir):
        return
    if not resume:
        if not any(p.stat().st_size for p in rank_files(out_dir, "results")):
            raise FalipError(
                f"{out_dir} holds a run that scored nothing yet (why: its skipped.jsonl); pass {{resume}} to try its "
                "items again once they are fixed, or choose another {out}",
                terms={"resume": "resume=True", "out": "out_dir"},
            )
        raise FalipError(
            f"{out_dir} already holds results of a run; pass {{resume}} to continue it, or choose another {{out}}",
            terms={"resume": "resume=True", "out": "out_dir"},
        )
    path = out_dir / "run.json"
    if not path.exists():
        raise FalipError(
            f"{out_dir} holds results but no run.json, so its settings are unknown; choose another {{out}}",
            terms={"out": "out_dir"},
        )
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        old_task, old_config = old["task"], old["config"]
    except (ValueError, KeyError, TypeError) as e:
        raise FalipError(f"{path}: unreadable ({e}); choose another {{out}}", terms={"out": "out_dir"}) from None
    if old_task != header["task"]:
        raise FalipError(
            f"{out_dir} holds a {old_task!r} run, not {header['task']!r}; choose another {{out}} to run this one",
            terms={"out": "out_dir"},
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
            "or choose another {out}",
            terms={"out": "out_dir"},
        )
    if old.get("falip_version") != header["falip_version"]:
        log.warning(
            "%s was started with falip %s; continuing it with falip %s",
            out_dir,
            old.get("falip_version"),
            header["falip_version"],
        )


def prepare(out_dir: Path, header: dict, resume: bool, planned: set[str]) -> list[str]:
    """Rank 0: tidy earlier files, write run.json; the ids of the units already done.

    A unit of ``planned`` (this run's units and skips) with a skipped entry is not done: its
    entries and records are dropped here and it runs again.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    done: list[str] = []
    if resume:
        state = scan(out_dir)
        retry = {state.owner(e) for e in state.skipped.values()} & planned
        for path, kept in state.kept.items():
            lines = [raw for owner, raw in kept if owner not in retry]
            if path in state.dirty or len(lines) != len(kept):
                _rewrite(path, lines)
        done = [u for u in state.records if u not in retry]
    if not (out_dir / "run.json").exists():
        (out_dir / "run.json").write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")
    return done
