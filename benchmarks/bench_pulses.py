"""Pulse-train throughput: decoy BB84 over 50 km of fibre with realistic detectors.

Measures simulated pulses per second of wall time on one core for

* the exact skip-ahead (Cython kernel),
* the pulse-by-pulse model: Cython kernel (C-level xoshiro256++) vs its numpy twin.

Setup: weak coherent pulses at 1 GHz, μ = (0.5, 0.1, 0) with probabilities
(0.8, 0.15, 0.05); 50 km of 0.2 dB/km fibre plus 1 dB inside Bob; SNSPDs with
η = 0.9, 1e-7 dark counts per gate, 50 ns dead time (50 gates); e_d = 1.5 %.

Run:  python -m benchmarks.bench_pulses     (prints JSON)
"""
from __future__ import annotations

import json
import time

import numpy as np

from qstack.physical import pulses as P
from qstack.physical.detectors import ThresholdDetector
from qstack.physical.fibre import FibreChannel
from qstack.physical.sources import WeakCoherentSource


def params() -> P.PulseTrainParams:
    return P.PulseTrainParams.from_models(
        WeakCoherentSource(), FibreChannel(length_km=50.0), ThresholdDetector(),
        misalignment_error=0.015, bob_optics_transmissivity=10 ** (-0.1))


def _best_rate(fn, n: int, repeats: int) -> float:
    best = float("inf")
    for r in range(repeats):
        rng = np.random.default_rng(1000 + r)
        t0 = time.perf_counter()
        fn(n, rng)
        best = min(best, time.perf_counter() - t0)
    return n / best


def run() -> dict:
    par = params()
    out: dict = {
        "scenario": "decoy BB84, 50 km fibre (0.2 dB/km) + 1 dB Bob optics, SNSPD eta=0.9 pd=1e-7 "
                    "dead=50 ns, 1 GHz, mu=(0.5,0.1,0)",
        "have_cython": P.HAVE_CYTHON,
        "click_prob_per_pulse_signal": P.expected_gain(par, 0),
    }
    n_pp = 2_000_000  # the numpy twin holds 7 uniforms per pulse: 112 MB at this size
    out["pulses_per_s_pulse_by_pulse_numpy"] = _best_rate(
        lambda n, rng: P.simulate_pulses_numpy(par, n, rng), n_pp, 3)
    out["pulses_per_s_skip_ahead_python"] = _best_rate(
        lambda n, rng: P.simulate_skip_ahead_python(par, n, rng), n_pp, 1)
    if P.HAVE_CYTHON:
        out["pulses_per_s_pulse_by_pulse_cython"] = _best_rate(
            lambda n, rng: P.simulate_pulses_cython(par, n, rng), n_pp, 5)
        out["pulses_per_s_skip_ahead_cython"] = _best_rate(
            lambda n, rng: P.simulate_skip_ahead_cython(par, n, rng), 200_000_000, 3)
        out["cython_over_numpy_speedup"] = (out["pulses_per_s_pulse_by_pulse_cython"]
                                            / out["pulses_per_s_pulse_by_pulse_numpy"])
    else:
        out["pulses_per_s_pulse_by_pulse_cython"] = None
        out["pulses_per_s_skip_ahead_cython"] = None
        out["cython_over_numpy_speedup"] = None
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
