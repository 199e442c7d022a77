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
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "benchmarks": {},
    }
    for name in names:
        print(f"running {name} ...", flush=True)
        start = time.perf_counter()
        figures = importlib.import_module(f"benchmarks.{name}").run()
        figures["_wall_s"] = round(time.perf_counter() - start, 2)
        results["benchmarks"][name] = figures
        print(json.dumps(figures, indent=2), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
