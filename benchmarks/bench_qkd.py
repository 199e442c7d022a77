"""QKD post-processing throughput: Cascade, Toeplitz hashing, one whole block.

* Cascade: corrected key bits per wall second at 2 % QBER (binary symmetric
  channel), both ends in process (Bob's Cython kernel, Alice's numpy prefix
  parities, the messages passed by hand), 10^4- and 10^5-bit blocks; best of 5,
  per wall second and per CPU second of the process (steadier under load).
  Target: 10^6 bits/s.  Also the efficiency f = leaked / (n h(QBER)).
* Toeplitz privacy amplification: input bits per wall second for a 10^6-bit
  block hashed to 5·10^5 bits (float FFT, exact under Percival's bound); best of 5.
  Target: 10^7 bits/s.
* One block at 50 km (0.2 dB/km, η_det 0.8, μ = 0.6/0.2/2e-4, p_Z = 0.7,
  10^8 pulses simulated by the physical layer's skip-ahead kernel): the whole
  post-processing (sift, Lim et al. finite-key estimate, Cascade, verification,
  amplification), its wall time and the final secret key bits per wall second.

* Decoy BB84 as the ``app.qkd`` protocol under ``qstack.simulate`` over 10 km
  with the hardware of SeQUeNCe's BB84 example (``/work/shared/peers/sequence/
  bench_bb84.py``: 0.2 dB/km, 80 MHz source, μ = 0.1, two detectors of
  efficiency 0.8 with 10 Hz dark counts and a 50 MHz count rate, polarisation
  fidelity 0.97); our signal is μ = 0.1 with a weak decoy 0.04 and a vacuum
  (decoy BB84 needs them), dark-count probability 10 Hz × 12.5 ns per gate,
  dead time 20 ns, e_d = (1 − 0.97)/2: sifted bits (both bases) per wall second
  of the whole block (pulses, sifting, estimation, Cascade, verification,
  amplification: more than SeQUeNCe's sifting-only run does). Target: 100 ×
  SeQUeNCe's 3,280/s. With ``QSTACK_SEQUENCE_PY`` naming a Python with
  SeQUeNCe 1.3.1, its script runs beside for the same figure on this machine.
* The same protocol at 50 km (defaults of ``examples/qkd_link.toml``, 10^8
  pulses, finite key): final secret key bits per wall second.

Run:  python -m benchmarks.bench_qkd     (prints JSON)
"""
from __future__ import annotations

import json
import time

import numpy as np

from qstack.app.qkd import amplification as A
from qstack.app.qkd import cascade as C
from qstack.app.qkd import estimation as E
from qstack.app.qkd import postprocess as PP
from qstack.app.qkd import sifting as S
from qstack.physical import pulses as P


def _timed(fn) -> tuple[float, float]:
    """(wall s, CPU s of this process) of one call: on a loaded machine the CPU time is
    the steadier figure (what the work costs, not how long it waited for a core)."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def _cascade(n: int, qber: float = 0.02, repeats: int = 5) -> tuple[float, float, float]:
    rng = np.random.default_rng(n)
    wall, cpu, fs = float("inf"), float("inf"), []
    for r in range(repeats):
        a = rng.integers(0, 2, n, dtype=np.uint8)
        err = (rng.random(n) < qber).astype(np.uint8)
        out = []
        w, c = _timed(lambda: out.append(C.reconcile(a, a ^ err, qber, seed=r)))
        wall, cpu = min(wall, w), min(cpu, c)
        assert np.array_equal(out[0].key, a)
        fs.append(C.efficiency(out[0].leaked, n, err.mean()))
    return n / wall, n / cpu, float(np.mean(fs))


def _toeplitz(n: int, m: int, repeats: int = 5) -> tuple[float, float]:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        w, c = _timed(lambda: A.toeplitz_hash(x, s, m))
        wall, cpu = min(wall, w), min(cpu, c)
    return n / wall, n / cpu


def _block_50km() -> dict:
    mus, probs = (0.6, 0.2, 2e-4), (0.5, 0.35, 0.15)
    par = P.PulseTrainParams(mean_photon_numbers=mus, class_probs=probs,
                             transmissivity=10 ** (-0.2 * 50 / 10) * 0.8, p_z_alice=0.7, p_z_bob=0.7)
    n_pulses = 100_000_000
    t0 = time.perf_counter()
    ev = P.simulate_pulses(par, n_pulses, np.random.default_rng(50))
    t1 = time.perf_counter()
    alice, bob = S.records_from_events(ev)
    res = PP.run_block(alice, bob, PP.PostProcessConfig(E.DecoySettings(mus, probs)), seed=50)
    t2 = time.perf_counter()
    return {"pulses": n_pulses, "ok": res.ok, "reason": res.reason, "sifted_key_bits": sum(res.n_key),
            "final_key_bits": res.key_length, "qber_test": round(res.qber_test, 5),
            "phase_error_bound": round(res.estimate.phase_error, 5) if res.estimate else None,
            "cascade_leak_bits": res.leaks.error_correction, "cascade_f": round(res.cascade_efficiency, 4),
            "simulate_s": round(t1 - t0, 3), "postprocess_s": round(t2 - t1, 3),
            "final_key_bits_per_s_postprocess": round(res.key_length / (t2 - t1)),
            "final_key_bits_per_s_with_simulation": round(res.key_length / (t2 - t0))}


def _protocol_block(link: dict, pulses: int) -> dict:
    from qstack.qkdtool import run_block

    from qstack.config import network_from_dict

    spec = network_from_dict({"nodes": ["alice", "bob"],
                              "links": [dict({"nodes": ["alice", "bob"]}, **link)]})
    w0, c0 = time.perf_counter(), time.process_time()
    a, b, _ = run_block(spec, "alice", "bob", pulses, True, seed=1)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    assert a.ok == b.ok and (not a.ok or np.array_equal(a.key, b.key))
    return {"pulses": pulses, "ok": a.ok, "reason": a.reason, "sifted_bits": a.sifted,
            "final_key_bits": a.key_length, "qber_signal": round(a.qber_test_per_class[0], 5),
            "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "sifted_bits_per_wall_s": round(a.sifted / wall),
            "sifted_bits_per_cpu_s": round(a.sifted / cpu),
            "final_key_bits_per_wall_s": round(a.key_length / wall),
            "final_key_bits_per_cpu_s": round(a.key_length / cpu),
            "simulated_s": round((max(a.end_ns, b.end_ns) - a.start_ns) * 1e-9, 4)}


SEQUENCE_LINK = dict(length_km=10, loss_db_per_km=0.2, qkd_intensities=[0.1, 0.04, 0.0],
                     qkd_class_probs=[0.8, 0.15, 0.05], qkd_pulse_rate_hz=80e6,
                     qkd_detector_efficiency=0.8, qkd_dark_count_prob=10 * 12.5e-9,
                     qkd_dead_time_ns=20.0, qkd_misalignment=(1 - 0.97) / 2, qkd_p_z=0.5)


def _sequence_side_by_side() -> dict | None:
    """SeQUeNCe's own BB84 run on this machine, if ``QSTACK_SEQUENCE_PY`` names its Python."""
    import os
    import re
    import subprocess

    py = os.environ.get("QSTACK_SEQUENCE_PY")
    script = "/work/shared/peers/sequence/bench_bb84.py"
    if not py or not os.path.exists(script):
        return None
    out = subprocess.run([py, script, "10000", "10", "1000"], capture_output=True, text=True,
                         timeout=600).stdout
    m = re.search(r"sifted_bits_per_wall_s=(\d+)", out)
    return {"sifted_bits_per_wall_s": int(m.group(1)) if m else None}


def run() -> dict:
    out: dict = {"have_cython": C.HAVE_CYTHON}
    for n in (10_000, 100_000):
        rate, rate_cpu, f = _cascade(n)
        out[f"cascade_corrected_bits_per_s_2pct_n{n}"] = round(rate)
        out[f"cascade_corrected_bits_per_cpu_s_2pct_n{n}"] = round(rate_cpu)
        out[f"cascade_f_2pct_n{n}"] = round(f, 4)
    rate, rate_cpu = _toeplitz(1_000_000, 500_000)
    out["toeplitz_input_bits_per_s_n1e6_m5e5"] = round(rate)
    out["toeplitz_input_bits_per_cpu_s_n1e6_m5e5"] = round(rate_cpu)
    out["block_50km"] = _block_50km()
    seq = _protocol_block(SEQUENCE_LINK, 200_000_000)
    peer = _sequence_side_by_side()
    seq["sequence_sifted_bits_per_wall_s"] = (peer or {}).get("sifted_bits_per_wall_s") or 3280
    seq["sequence_figure"] = "measured here" if peer else "recorded (peers/sequence/README.md)"
    seq["ratio"] = round(seq["sifted_bits_per_wall_s"] / seq["sequence_sifted_bits_per_wall_s"], 1)
    out["protocol_bb84_10km_sequence_hw"] = seq
    out["protocol_block_50km"] = _protocol_block(dict(length_km=50), 100_000_000)
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
