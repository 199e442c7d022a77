"""``qstack sweep``: run an experiment's missing tasks, then its table and plots.

:func:`run_sweep` loads the store of the experiment's output directory
(``tasks.jsonl``), hands the tasks without a record to an executor, stores
each record as it comes back (before counting it done), and returns the
table. A task whose worker died is recorded as lost and run again, up to
:data:`MAX_LOSSES` times; then it is stored as failed with that reason, so a
task that kills every worker it meets cannot stall the sweep. A task that
raises is stored with its error and the sweep goes on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from qstack.experiments.experiment import Experiment
from qstack.experiments.store import TaskStore
from qstack.experiments.table import build_table, plot_table, write_table
from qstack.experiments.tasks import make_record, task_spec

__all__ = ["MAX_LOSSES", "SweepReport", "run_sweep"]

#: A task is run again after its worker died at most this many times.
MAX_LOSSES = 3


@dataclass
class SweepReport:
    """What a sweep did: tasks in the experiment, found in the store, run now,
    failed (of all), workers lost; the table rows and the files written."""

    tasks: int
    reused: int
    ran: int = 0
    failed: int = 0
    lost: int = 0
    bad_lines: int = 0
    rows: list = field(default_factory=list)
    files: list = field(default_factory=list)
    wall_s: float = 0.0


def run_sweep(experiment: Experiment, executor: Any,
              progress: Callable[[dict], None] | None = None) -> SweepReport:
    """Run what is missing of ``experiment`` on ``executor`` and write its
    outputs. ``progress`` gets a dict after every stored task: ``tasks``,
    ``done``, ``points``, ``points_done``, ``failed``."""
    t0 = time.perf_counter()
    store = TaskStore(experiment.out_dir / "tasks.jsonl")
    try:
        tasks = experiment.tasks()
        by_point: dict[int, set] = {}
        for i, _, key in tasks:
            by_point.setdefault(i, set()).add(key)
        todo = [(i, s, k) for i, s, k in tasks if k not in store.records]
        report = SweepReport(tasks=len(tasks), reused=len(tasks) - len(todo),
                             bad_lines=store.bad_lines)

        def tick() -> None:
            if progress is None:
                return
            done_keys = {k for _, _, k in tasks if k in store.records}
            progress({"tasks": len(tasks), "done": len(done_keys), "points": len(by_point),
                      "points_done": sum(keys <= done_keys for keys in by_point.values()),
                      "failed": sum(1 for k in done_keys if store.records[k].get("error"))})

        tick()
        specs = [task_spec(experiment, i, s, k) for i, s, k in todo]
        while specs:
            again = []
            for spec, record in executor.run(specs):
                if record is None:
                    report.lost += 1
                    if store.add_lost(spec["key"], "worker died") < MAX_LOSSES:
                        again.append(spec)
                        continue
                    record = make_record(spec, None, f"the worker died {MAX_LOSSES} times "
                                                     "running this task (killed or crashed)", 0.0)
                store.add(record)
                report.ran += 1
                tick()
            specs = again
        records = store.records
    finally:
        store.close()
    keys = {k for _, _, k in tasks}
    report.failed = sum(1 for k in keys if records.get(k, {}).get("error"))
    report.rows = build_table(experiment, records)
    report.files = list(write_table(experiment, report.rows, records))
    if experiment.plots and experiment.params:
        report.files += plot_table(experiment, report.rows)
    report.wall_s = time.perf_counter() - t0
    return report
