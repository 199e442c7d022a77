"""Where tasks run: a local process pool, or dask.distributed.

Both take task specs (:func:`~.tasks.task_spec`, plain dicts) and yield
``(spec, record)`` as tasks finish, in completion order; ``record`` is
:func:`~.tasks.run_task`'s, or None when the worker running the task died
(killed, crashed) before it answered: the caller records that and decides
whether to run the task again (:func:`qstack.experiments.sweep.run_sweep`).

* :class:`PoolExecutor`: ``concurrent.futures.ProcessPoolExecutor`` with
  ``jobs`` workers (spawned: a fresh interpreter, no state shared with the
  driver). At most ``jobs`` tasks are in flight, so when a worker dies only
  the tasks that were running are reported lost; the pool is then rebuilt.
* :class:`DaskExecutor`: a ``distributed.Client`` on a scheduler address, or
  on a ``LocalCluster`` of ``jobs`` single-threaded worker processes
  (``"local"``). The scheduler already reruns the tasks of a lost worker;
  one it gives up on (``KilledWorker``) comes back as lost.

dask is optional (``pip install qstack[dask]``); asking for it without it
installed raises :class:`~qstack.core.errors.ConfigError` saying so.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from typing import Iterator

from qstack.core.errors import ConfigError
from qstack.experiments.tasks import run_task

__all__ = ["PoolExecutor", "DaskExecutor", "InlineExecutor"]


class InlineExecutor:
    """Every task in this process, one after the other (``-j 1``)."""

    name = "inline"

    def run(self, specs: list[dict]) -> Iterator[tuple[dict, dict | None]]:
        for spec in specs:
            yield spec, run_task(spec)

    def close(self) -> None:
        pass


class PoolExecutor:
    """A local pool of ``jobs`` worker processes."""

    def __init__(self, jobs: int) -> None:
        self.jobs = max(1, int(jobs))
        self.name = f"local pool of {self.jobs}"
        self._pool: cf.ProcessPoolExecutor | None = None

    def _fresh_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = cf.ProcessPoolExecutor(self.jobs,
                                            mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def run(self, specs: list[dict]) -> Iterator[tuple[dict, dict | None]]:
        queue = list(reversed(specs))
        pool = self._pool or self._fresh_pool()
        flying: dict[cf.Future, dict] = {}
        while queue or flying:
            broken = False
            while queue and len(flying) < self.jobs and not broken:
                spec = queue.pop()
                try:
                    flying[pool.submit(run_task, spec)] = spec
                except cf.process.BrokenProcessPool:   # it broke since the last wait
                    queue.append(spec)
                    broken = True
            done, _ = cf.wait(flying, return_when=cf.FIRST_COMPLETED) if flying else (set(), set())
            for fut in done:
                spec = flying.pop(fut)
                try:
                    yield spec, fut.result()
                except cf.process.BrokenProcessPool:
                    broken = True
                    yield spec, None
            if broken:            # every task still in flight went down with the pool
                for fut, spec in list(flying.items()):
                    ok = fut.done() and not fut.cancelled() and fut.exception() is None
                    yield spec, fut.result() if ok else None
                flying.clear()
                pool = self._fresh_pool()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class DaskExecutor:
    """Tasks on dask.distributed: ``address`` of a running scheduler, or
    ``"local"`` for a LocalCluster of ``jobs`` worker processes."""

    def __init__(self, address: str, jobs: int = 2) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("--dask needs dask.distributed: pip install 'qstack[dask]'") from None
        self._cluster = None
        self._submitted = 0
        if address == "local":
            self._cluster = LocalCluster(n_workers=max(1, int(jobs)), threads_per_worker=1,
                                         processes=True, dashboard_address=None)
            self.client = Client(self._cluster)
            self.name = f"dask LocalCluster of {max(1, int(jobs))} workers"
        else:
            try:
                self.client = Client(address, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise ConfigError(f"--dask {address}: cannot reach the scheduler ({exc})") from None
            self.name = f"dask scheduler {address}"

    def run(self, specs: list[dict]) -> Iterator[tuple[dict, dict | None]]:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        futures = {}
        for spec in specs:
            # a fresh key per submission: a task resubmitted after a KilledWorker
            # must not meet its old, erred future on the scheduler
            self._submitted += 1
            fut = self.client.submit(run_task, spec, pure=False,
                                     key=f"qstack-task-{spec['key'][:16]}-{self._submitted}")
            futures[fut] = spec
        for fut in as_completed(list(futures)):
            spec = futures.pop(fut)
            try:
                yield spec, fut.result()
            except KilledWorker:
                yield spec, None
            fut.release()

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()
