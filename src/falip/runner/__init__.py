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
  :class:`~falip.FalipError` or :class:`OSError`; and one per item that ``run()`` gave as a
  :class:`Skip` among a unit's records (one bad region of an image whose other regions were
  scored), with ``"unit"`` added. A skip that stands for several items (an image with 3 objects)
  has ``"items": 3``. Each is also logged as one warning line (logger ``falip.runner``).
- ``summary.json`` (rank 0): ``task.summarize(records, skipped)`` plus ``"n"`` (records) and
  ``"skipped"`` (items, the unit ``n`` counts: the sum of the entries' ``items``) where the task
  did not set them. A task with ``write_outputs(out_dir, records, summary)`` then writes its own
  files from all the run's records (``falip detect``'s ``detections.json``). The runner prints nothing; the command
  line prints ``task.table(summary)`` once (:func:`is_main_process`).
- ``timing.json`` (rank 0): this invocation's ``wait_s`` (main loop blocked on data), ``compute_s``
  (in ``task.run``), ``write_s``, ``total_s``, ``units``, ``wait_fraction``; under torchrun summed
  over ranks, with each rank's own figures in ``"ranks"``.

- ``.falip.lock``: held while a run writes (``{"pid", "host", "started"}``, an OS file lock);
  a second run on the same folder is refused (:class:`FolderInUse`) naming the holder. The OS
  drops the lock when its process dies, so the lock of a killed run is taken over (logged).

Resume (``resume=True``) reads every ``results*.jsonl`` and ``skipped*.jsonl`` in ``out_dir``
(whatever world size wrote them), keeps the units whose ``unit_size`` records are all present and
that have no skipped entry, rewrites files that held a partial line (or a last line torn by a kill
that happens to end in a newline), an incomplete unit or a skip without them, and runs the rest:
a skip is not a result, so skipped units (and units with a skipped item) are tried again, and
skipped again if they still fail.

``require_scored=True`` (the command line) makes a run that scored nothing (every item skipped,
or no items at all) a :class:`NothingScored` error, after its files are written.

``limit`` takes the first ``limit`` :class:`Unit` s of ``units()`` and the :class:`Skip` s yielded
before the last of them (iteration stops there); it applies before sharding and before dropping
finished units, so any number of processes sees the same units. The summary covers exactly
those units: records in ``out_dir`` of units outside them (an earlier run with a larger limit) stay
in the files but are left out.

The package: :mod:`~falip.runner.loop` (the task contract and :func:`run`),
:mod:`~falip.runner.files` (reading, repairing and checking the folder's files),
:mod:`~falip.runner.lock` (one writer per folder) and :mod:`~falip.runner.dist` (torchrun).
"""

from __future__ import annotations

from .dist import device_for_rank, is_main_process
from .files import read_results
from .lock import LOCK_NAME, FolderInUse
from .loop import NothingScored, Skip, Task, Unit, run

__all__ = [
    "LOCK_NAME",
    "FolderInUse",
    "NothingScored",
    "Skip",
    "Task",
    "Unit",
    "device_for_rank",
    "is_main_process",
    "read_results",
    "run",
]
