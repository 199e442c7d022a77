"""Run every benchmarks/bench_*.py and write their figures to one JSON file.

Usage: ``python -m benchmarks.run [--out benchmarks/results.json] [--only NAME ...]``.
Each module exposes ``run() -> dict``; figures are wall-clock measurements of
this machine, recorded with the machine's description so they can be compared.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux; ``platform``'s
    otherwise, which on Linux says only ``x86_64``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def reference_loops_per_s(loops: int = 20_000, best_of: int = 5) -> float:
    """Passes per second of a fixed pure-Python loop (a dict's values
    incremented by key, 100 per pass; no qstack code), the best of
    ``best_of`` timings of ``loops`` passes: the interpreter's speed on this
    machine now, recorded with the figures so that two result files from
    different machines, or one machine on different days, can be set side by
    side (a qstack rate over this one moves with qstack, not with the host)."""
    counts = {i: 0 for i in range(100)}
    keys = list(counts)
    best = float("inf")
    for _ in range(best_of):
        start = time.perf_counter()
        for _ in range(loops):
            for k in keys:
                counts[k] += 1
        best = min(best, time.perf_counter() - start)
    return round(loops / best, 1)


#: written by ``make pgo`` right after its profile-guided build
PGO_MARKER = HERE.parent / "build" / "pgo" / "profile-guided"


def kernels_build(repo: Path = HERE.parent) -> str:
    """Which build of the compiled kernels of checkout ``repo`` runs:
    ``"profile-guided"`` (``make pgo``: its marker is as new as every
    extension in ``qstack/``, so no plain build replaced one since),
    ``"plain"``, or ``"none"`` (no extension: the pure-Python twins)."""
    built = [p.stat().st_mtime for p in (repo / "qstack").rglob("*.so")]
    if not built:
        return "none"
    marker = repo / PGO_MARKER.relative_to(HERE.parent)
    if marker.exists() and marker.stat().st_mtime >= max(built):
        return "profile-guided"
    return "plain"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "results.json"))
    parser.add_argument("--only", nargs="*", help="benchmark module names (e.g. bench_kernel)")
    args = parser.parse_args(argv)
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if args.only:
        names = [n for n in names if n in args.only]
    import qstack

    results = {
        "qstack_version": qstack.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "kernels_build": kernels_build(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_before": round(os.getloadavg()[0], 2),
        # (measured before and after the benchmarks: a host that slowed
        # meanwhile shows as two different figures)
        "reference_loops_per_s_before": reference_loops_per_s(),
        "benchmarks": {},
    }
    for name in names:
        print(f"running {name} ...", flush=True)
        start = time.perf_counter()
        figures = importlib.import_module(f"benchmarks.{name}").run()
        figures["_wall_s"] = round(time.perf_counter() - start, 2)
        results["benchmarks"][name] = figures
        print(json.dumps(figures, indent=2), flush=True)
    results["reference_loops_per_s_after"] = reference_loops_per_s()
    results["load_average_after"] = round(os.getloadavg()[0], 2)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
