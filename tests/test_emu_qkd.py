"""Decoy BB84 under the emulation: the physics server serves ``PulseBlock``
with the simulator's station and random stream, over ``PhysPulseRecord``
frames (``specs/emulation.md`` §5), and ``app.qkd`` runs in every daemon.

The same application file (``tests/emu_qkd_apps.py``) runs as two ``qstack
run`` processes against a network of real processes and under
``qstack.simulate`` with the same seed. The pulse records come from the same
named stream (``pulses:alice-bob`` of the run's seed) and the QKD protocols
draw their own randomness from the seed, not from the clock, so the design
makes the runs identical draw for draw: both ends' keys are equal, and equal
to the simulator's, bit for bit (compared by SHA-256)."""
from __future__ import annotations

import ast
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import qstack.api as api
from qstack.app.qkd.bb84 import QkdResult
from qstack.app.qkd.estimation import FiniteKeyEstimate
from qstack.app.qkd.postprocess import LeakRecord
from qstack.config import load_network
from qstack.core.messages import decode, encode
from qstack.emu.messages import (
    PULSE_RECORD_EVENTS, QKD_KEY_PART_BYTES, PhysPulseRecord, pulse_record_from_wire,
    pulse_record_to_wire, qkd_result_from_wire, qkd_result_to_wire,
)
from qstack.emu.wire import MAX_FRAME_BYTES
from qstack.physical.fibre import FibreChannel
from qstack.physical.ops import PulseBlock
from qstack.physical.qkdlink import PulseStation

from .test_emu import running

# real processes, sockets or wall-clock timeouts: `make test` runs these alone, not beside
# the parallel workers that take the rest of the suite
pytestmark = pytest.mark.realtime

ROOT = Path(__file__).resolve().parents[1]
NET = Path(__file__).resolve().parent / "qkd_emu.toml"
APPS = Path(__file__).resolve().parent / "emu_qkd_apps.py"
SEED = 5


def _station_records(n: int, seed: int = 3):
    """Both ends' records of one block of ``n`` pulses over the test network's link."""
    link = load_network(NET).links[0]
    st = PulseStation(("alice", "bob"), link.qkd,
                      link.model.fibre.with_length(link.model.length_km)
                      if hasattr(link.model, "fibre") else FibreChannel(length_km=0.0),
                      np.random.default_rng(seed))
    assert st.submit("alice", "a", PulseBlock("bob", ("k",), n, "send"), 0) == []
    out = {ref: rec for ref, _at, rec in st.submit("bob", "b", PulseBlock("alice", ("k",), n,
                                                                          "receive"), 0)}
    return out["a"], out["b"]


def test_a_large_record_is_cut_into_frames_within_the_frame_limit_and_comes_back_whole():
    alice, bob = _station_records(6_000_000)
    assert alice.index.size > 2 * PULSE_RECORD_EVENTS      # (so that it takes >= 3 frames)
    for rec in (alice, bob):
        frames = pulse_record_to_wire(7, rec)
        assert len(frames) == math.ceil(rec.index.size / PULSE_RECORD_EVENTS)
        assert [f.last for f in frames] == [False] * (len(frames) - 1) + [True]
        wire = [encode(f) for f in frames]
        assert max(len(w) for w in wire) <= MAX_FRAME_BYTES
        back = pulse_record_from_wire([decode(w) for w in wire])
        for name in ("index", "basis", "bit", "cls"):
            assert np.array_equal(getattr(back, name), getattr(rec, name)), name
        for name in ("ok", "role", "n_pulses", "sent_per_class", "start_ns", "end_ns",
                     "period_ns", "intensities", "class_probs"):
            assert getattr(back, name) == getattr(rec, name), name


def test_a_record_with_a_frame_missing_is_refused():
    alice, _bob = _station_records(6_000_000)
    frames = pulse_record_to_wire(7, alice)
    from qstack.core.errors import ErrorCode, QStackError

    with pytest.raises(QStackError) as err:
        pulse_record_from_wire(frames[:1] + frames[2:])
    assert err.value.code == ErrorCode.MALFORMED
    failed = pulse_record_to_wire(8, type(alice)(False, reason="the link to 'bob' is down"))
    assert failed == [PhysPulseRecord(8, 0, True, False, reason="the link to 'bob' is down")]
    assert pulse_record_from_wire(failed).reason == "the link to 'bob' is down"


def test_a_qkd_result_crosses_the_app_wire_whole_nan_and_long_keys_included():
    key = np.random.default_rng(1).integers(0, 2, 8 * QKD_KEY_PART_BYTES + 13).astype(np.uint8)
    est = FiniteKeyEstimate((10, 5, 1), (3, 2, 0), (0, 1, 0), 1.0, 2.0, 3.0, 4.0, 0.5, 0.02, 0.01,
                            1e-10, 1e-15, True)           # (s_key0_upper: NaN)
    res = QkdResult(True, "send", "bob", 4, 9, key=key, qber_test_per_class=(0.01, math.nan),
                    estimate=est, leaks=LeakRecord(100, 50, 12.5, 7), cascade_rounds=4)
    frames = qkd_result_to_wire(res)
    assert len(frames) == 2 and all(len(encode(f)) <= MAX_FRAME_BYTES for f in frames)
    back = qkd_result_from_wire([decode(encode(f)) for f in frames])
    assert np.array_equal(back.key, key) and back.leaks == res.leaks
    assert back.qber_test_per_class[0] == 0.01 and math.isnan(back.qber_test_per_class[1])
    assert math.isnan(back.qber_key) and math.isnan(back.estimate.s_key0_upper)
    assert back.estimate.phase_error == 0.02 and back.code is None


def _qstack_run(run, node: str, apps: Path = APPS) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "qstack.cli", "run", "--run", run.path, node,
                             str(apps)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _run_apps(network: Path, apps: Path, tmp_path, timeout_s: float) -> dict:
    """``qstack run`` of bob's and alice's applications of ``apps`` against
    ``network`` up in real processes: what each printed, as a Python value."""
    with running(network, tmp_path, SEED) as run:
        procs = {node: _qstack_run(run, node, apps) for node in ("bob", "alice")}
        out = {}
        try:
            # (alice's first: if it fails, bob would wait for it to the timeout)
            for node, proc in reversed(procs.items()):
                stdout, stderr = proc.communicate(timeout=timeout_s)
                assert proc.returncode == 0, (node, stdout, stderr)
                assert stdout.startswith(f"{node}: "), stdout
                out[node] = ast.literal_eval(stdout[len(node) + 2:].strip())
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    return out


def test_decoy_bb84_under_qstack_run_gives_both_ends_the_simulators_key(tmp_path):
    out = _run_apps(NET, APPS, tmp_path, 120)
    a, b = out["alice"], out["bob"]
    assert a["ok"] and b["ok"], (a, b)
    assert a["key_bits"] > 0 and a["key_sha256"] == b["key_sha256"]
    assert a["n_pulses"] == b["n_pulses"] == 300_000 and a["sifted"] == b["sifted"]
    import runpy

    sim = api.simulate(NET, runpy.run_path(str(APPS))["APPS"], seed=SEED, qkd=True, until_s=60)
    sim.raise_errors()
    assert sim.results == out


def test_a_wait_that_gave_up_does_not_swallow_the_next_result():
    """``qkd.bb84_receive`` under the emulation's futures (TrioFuture, which a
    timeout leaves pending): the first wait times out, the block's result
    then goes to the second wait, not to the abandoned first one."""
    import trio

    from qstack.app.qkd import api as qkd
    from qstack.emu.client import EmuRuntime, TrioFuture

    class Runtime:                    # the parts of EmuRuntime the QKD client uses
        time_scale = 1.0
        wait = EmuRuntime.wait
        _real_s = EmuRuntime._real_s

        def __init__(self):
            self.callbacks = []

        def subscribe(self, cb):
            self.callbacks.append(cb)

        def future(self):
            return TrioFuture()

    class Ctx:
        runtime = Runtime()

    async def main():
        ctx = Ctx()
        with trio.fail_after(10), pytest.raises(TimeoutError):
            await qkd.bb84_receive(ctx, "alice", timeout_ns=1_000_000)
        got = []
        with trio.fail_after(10):
            await both(ctx, got)
        assert [r.block_id for r in got] == [1]

    async def both(ctx, got):
        async with trio.open_nursery() as nursery:
            async def second():
                got.append(await qkd.bb84_receive(ctx, "alice"))
            nursery.start_soon(second)
            await trio.sleep(0.01)
            for cb in ctx.runtime.callbacks:
                cb(QkdResult(True, "receive", "alice", 1))

    trio.run(main)


MD_NET = Path(__file__).resolve().parent / "emu_md.toml"
MD_APPS = Path(__file__).resolve().parent / "emu_md_apps.py"


def test_bbm92_over_measure_directly_pairs_under_qstack_run_gives_keys_that_agree(tmp_path):
    """The same application file under ``qstack run`` (three daemons, a physics
    server, two application processes: the MeasurePairs / PairMeasured app
    wire) and under ``qstack.simulate``: both ends' keys agree in each, and the
    QBER of the test bits is that of the Werner pair through one repeater,
    2(1 - F)/3 with F = 0.99^2 + 0.01^2/3 (0.0133; 3,000 pairs give ~450
    test bits: within 4 sigma = 0.021)."""
    import runpy

    f = 0.99 * 0.99 + 0.01 * 0.01 / 3
    q_want = 2 * (1 - f) / 3
    out = _run_apps(MD_NET, MD_APPS, tmp_path, 300)
    sim = api.simulate(MD_NET, runpy.run_path(str(MD_APPS))["APPS"], seed=SEED, until_s=600)
    sim.raise_errors()
    for a, b in ((out["alice"], out["bob"]), (sim.results["alice"], sim.results["bob"])):
        assert a["ok"] and b["ok"], (a, b)
        assert a["key_bits"] > 0 and a["key_sha256"] == b["key_sha256"]
        assert a["pairs"] == b["pairs"] == 3_000 and a["sifted"] == b["sifted"]
        sigma = math.sqrt(q_want * (1 - q_want) / (0.3 * a["sifted"]))
        assert abs(a["qber"] - q_want) <= 4 * sigma, (a["qber"], q_want)
