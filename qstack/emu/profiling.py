"""``QSTACK_EMU_PROFILE=DIR``: each process of an emulated network profiles itself.

For finding the emulation's hot paths (``benchmarks/bench_emu.py``): with
the variable set, :func:`run` runs the process's trio main function under
:mod:`cProfile` and writes ``DIR/<what>-<pid>.prof`` when the process ends,
by SIGTERM (``qstack net down``) too. Read them with ``python -m pstats``.
Without it, :func:`run` is ``trio.run``. The profile's clock is wall time;
``QSTACK_EMU_PROFILE_CLOCK=cpu`` makes it the process's CPU time (where the
CPU goes, leaving out the waits in ``epoll`` and the time other processes
ran).
"""
from __future__ import annotations

import os
import signal
from typing import Any, Callable

import trio

__all__ = ["run"]


def run(what: str, fn: Callable[..., Any], *args: Any) -> None:
    """``trio.run(fn, *args)``, profiled into ``$QSTACK_EMU_PROFILE`` if set
    (``what`` names the file); a KeyboardInterrupt ends it quietly."""
    target = os.environ.get("QSTACK_EMU_PROFILE")
    if not target:
        try:
            trio.run(fn, *args)
        except KeyboardInterrupt:
            pass
        return
    import cProfile

    def stop(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGTERM (net down) must end the run through Python, so that the profile is written
    signal.signal(signal.SIGTERM, stop)
    import time

    cpu = os.environ.get("QSTACK_EMU_PROFILE_CLOCK") == "cpu"
    prof = cProfile.Profile(time.process_time) if cpu else cProfile.Profile()
    prof.enable()
    try:
        trio.run(fn, *args)
    except BaseException:       # noqa: BLE001 -- whatever ended it, the profile is wanted
        pass
    finally:
        prof.disable()
        os.makedirs(target, exist_ok=True)
        prof.dump_stats(os.path.join(target, f"{what}-{os.getpid()}.prof"))
