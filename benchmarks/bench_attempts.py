"""Heralded attempts simulated per second of wall time: the attempt-by-attempt
Cython kernel against its pure-Python twin, and the exact one-draw skip-ahead.

Scenario: p = 1e-3 per attempt and mode (about a 10 km midpoint link), one
mode, no attempt limit. The kernel and twin consume the same uniforms in the
same order and return identical runs (tests/test_physical_attempts.py).

Run: ``python -m benchmarks.bench_attempts`` (prints JSON).
"""
from __future__ import annotations

import json
import time

import numpy as np

from qstack.physical.attempts import HAVE_CYTHON, sample_attempts_many, simulate_attempt_runs

P = 1e-3


def _rate(runs: int, backend: str) -> float:
    t0 = time.perf_counter()
    att, _ = simulate_attempt_runs(P, runs, np.random.default_rng(1), backend=backend)
    return float(att.sum()) / (time.perf_counter() - t0)


def run() -> dict:
    out = {"p_success": P, "have_cython": HAVE_CYTHON,
           "attempts_per_s_python_twin": round(_rate(200, "python"))}
    if HAVE_CYTHON:
        out["attempts_per_s_cython"] = round(max(_rate(20_000, "cython") for _ in range(3)))
        out["cython_over_python_speedup"] = round(
            out["attempts_per_s_cython"] / out["attempts_per_s_python_twin"], 1)
    t0 = time.perf_counter()
    att = sample_attempts_many(P, 1_000_000, np.random.default_rng(2))
    out["attempts_per_s_skip_ahead"] = round(float(att.sum()) / (time.perf_counter() - t0))
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
