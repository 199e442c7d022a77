"""Sweep throughput: tasks per second of short simulations on each executor.

A sweep of ``TASKS`` short tasks (the ``epr`` metric: one end-to-end pair
over a 2-node, 1 km link, one simulation each) runs in this process
(the compute alone), on the local pool of 2 workers and, when dask is
installed, on a LocalCluster of 2 single-threaded workers. The workers are
started (and warmed with a small sweep) before the clock starts, so the
figures are the steady state: the store's fsync per task included.

overhead per task (ms) = wall × workers / tasks − the task's own time in
this process: what the executor adds per task (transport, pickling,
scheduling, the store), assuming the 2 workers had 2 CPUs.

    python -m benchmarks.bench_sweep
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

TASKS = 60
WORKERS = 2


def _experiment(tmp: Path, seeds: int, name: str):
    from qstack.experiments.experiment import experiment_from_dict

    net = {"nodes": ["a", "b"], "links": [{"nodes": ["a", "b"], "length_km": 1,
                                            "scheme": "sender-receiver",
                                            "false_herald_prob": 0.0}]}
    return experiment_from_dict({"network": net, "metric": "epr", "seeds": seeds,
                                 "options": {"pairs": 1},
                                 "output": {"dir": str(tmp / name), "plots": False}},
                                base=tmp)


def _timed(executor, tmp: Path, name: str) -> float:
    from qstack.experiments.sweep import run_sweep

    run_sweep(_experiment(tmp, 4, name + "-warm"), executor)
    exp = _experiment(tmp, TASKS, name)
    t0 = time.perf_counter()
    report = run_sweep(exp, executor)
    wall = time.perf_counter() - t0
    assert report.ran == TASKS and report.failed == 0
    return wall


def run() -> dict:
    from qstack.experiments import executors

    out: dict = {"tasks": TASKS, "workers": WORKERS}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        inline = _timed(executors.InlineExecutor(), tmp, "inline")
        per_task = inline / TASKS
        out["inline_tasks_per_s"] = round(TASKS / inline, 1)
        out["inline_ms_per_task"] = round(per_task * 1e3, 2)
        runs = [("pool", lambda: executors.PoolExecutor(WORKERS))]
        try:
            import distributed  # noqa: F401
            runs.append(("dask_local", lambda: executors.DaskExecutor("local", WORKERS)))
        except ImportError:
            out["dask_local"] = "dask not installed (pip install 'qstack[dask]')"
        for name, make in runs:
            ex = make()
            try:
                wall = _timed(ex, tmp, name)
            finally:
                ex.close()
            out[f"{name}_tasks_per_s"] = round(TASKS / wall, 1)
            out[f"{name}_overhead_ms_per_task"] = round((wall * WORKERS / TASKS - per_task) * 1e3, 2)
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
