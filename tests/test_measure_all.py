"""``ctx.measure_all``: a batch of measurements queued together
(``specs/transport.md``, "Local operations").

It must give what measuring the qubits one after the other gives -- the same
outcomes, the same finishing time, the same failures -- on the simulator's
runtime, on the deferring stand-in of ``test_local_ops`` and on
:class:`BatchingRuntime`, a runtime that overrides ``outcomes`` the way the
emulation does (every operation queued first, then one wait until the last
has finished). Under the emulation, ``EmuRuntime.outcomes`` sends every
measurement before the first answer comes back (one round trip for the lot).
"""
from __future__ import annotations

import time

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from qstack.core.errors import ErrorCode, QStackError
from qstack.emu.client import EmuRuntime, merge_consumed
from qstack.emu.messages import AppConsumed, AppWelcome, PhysMeasure, PhysResult, PhysSettle, WConn
from qstack.physical.ops import Measure
from qstack.sim.apps import SimRuntime
from qstack.transport.socket import NodeContext
from tests.test_local_ops import DeferringRuntime, _lose, run


class BatchingRuntime(SimRuntime):
    """``outcomes`` as a remote driver does it: every operation carried out
    at once, in order, then one wait until the last has finished."""

    batches = 0

    async def outcomes(self, ops):
        BatchingRuntime.batches += 1
        out = [self._execute(op) for op in ops]
        wait = self.busy_until - self.sim.now
        if wait > 0:
            await self.sim.sleep(wait)
        return out


ALL = pytest.mark.parametrize("runtime", [SimRuntime, DeferringRuntime, BatchingRuntime],
                              ids=["sim", "deferring", "batching"])


def _prepared(ctx, bits):
    """Qubits in |+> (bit 0) or |-> (bit 1): measured in X they give ``bits``."""
    out = []
    for b in bits:
        q = ctx.qubit()
        if b:
            q.x()
        q.h()
        out.append(q)
    return out


BITS = [0, 1, 1, 0, 1, 0, 0, 1]


@ALL
def test_measure_all_gives_the_outcomes_and_the_time_of_one_by_one(runtime):
    async def together(ctx):
        qs = _prepared(ctx, BITS)
        got = await ctx.measure_all(qs, "X")
        return got, ctx.now_ns, [q.alive for q in qs]

    async def one_by_one(ctx):
        qs = _prepared(ctx, BITS)
        got = [await q.measure("X") for q in qs]
        return got, ctx.now_ns, [q.alive for q in qs]

    results = []
    for app in (together, one_by_one):
        # (the default hardware's gates and readouts take time: 100 ns, 2 us)
        _, r = run({"alice": app}, runtime)
        assert not r.errors, r.errors
        results.append(r.results["alice"])
    assert results[0][0] == BITS
    assert results[0] == results[1]          # outcomes, finishing time, every qubit consumed
    assert results[0][2] == [False] * len(BITS)


def test_the_batching_runtime_is_asked_once_per_batch():
    BatchingRuntime.batches = 0

    async def alice(ctx):
        return await ctx.measure_all(_prepared(ctx, BITS), "X")

    _, r = run({"alice": alice}, BatchingRuntime)
    assert r.results["alice"] == BITS
    assert BatchingRuntime.batches == 1


@ALL
def test_an_empty_batch_measures_nothing(runtime):
    async def alice(ctx):
        return await ctx.measure_all([], "Z")

    _, r = run({"alice": alice}, runtime)
    assert r.results["alice"] == []


@ALL
@pytest.mark.parametrize("case", ["basis", "twice", "not a qubit", "measured", "other app"])
def test_a_bad_batch_is_refused_before_anything_is_measured(runtime, case):
    async def alice(ctx):
        qs = _prepared(ctx, [0, 1, 1])
        batch, basis = list(qs), "X"
        if case == "basis":
            basis = "W"
        elif case == "twice":
            batch.append(qs[0])
        elif case == "not a qubit":
            batch.append(7)
        elif case == "measured":
            extra = ctx.qubit()
            await extra.measure()
            batch.append(extra)
        elif case == "other app":
            other = NodeContext(ctx.runtime, ctx.client, app="other")
            batch.append(other.qubit())
        with pytest.raises(QStackError) as info:
            await ctx.measure_all(batch, basis)
        # nothing was measured: the three are still usable, and give their bits
        return info.value.code, [q.alive for q in qs], await ctx.measure_all(qs, "X")

    _, r = run({"alice": alice}, runtime)
    assert not r.errors, r.errors
    code, alive, bits = r.results["alice"]
    expected = {"basis": (ErrorCode.INVALID_PARAMETER, ErrorCode.BAD_FIELD),
                "twice": (ErrorCode.INVALID_PARAMETER,), "not a qubit": (ErrorCode.BAD_FIELD,),
                "measured": (ErrorCode.QUBIT_UNAVAILABLE,),
                "other app": (ErrorCode.INVALID_PARAMETER,)}[case]
    assert code in expected
    assert alive == [True, True, True] and bits == [0, 1, 1]


@ALL
def test_a_lost_qubit_fails_its_measurement_and_the_others_are_still_measured(runtime):
    async def alice(ctx):
        qs = _prepared(ctx, [1, 0, 1, 1])
        _lose(ctx, qs[1])
        held = len(ctx.runtime.device.stored_qubits())
        with pytest.raises(QStackError) as info:
            await ctx.measure_all(qs, "X")
        # the lost one is gone; the others were measured: out of the memory
        return info.value.code, [q.alive for q in qs], held, \
            len(ctx.runtime.device.stored_qubits())

    _, r = run({"alice": alice}, runtime)
    assert not r.errors, r.errors
    code, alive, held, left = r.results["alice"]
    assert code == ErrorCode.QUBIT_UNAVAILABLE
    assert alive == [False, False, False, False]
    assert (held, left) == (3, 0)


# ---------------------------------------------------------------- the emulation's runtime

class _Channel:
    """What EmuRuntime needs of a channel here: nothing (its outbox is read directly)."""


def test_the_emulation_runtime_sends_every_measurement_before_the_first_answer():
    async def main():
        welcome = AppWelcome("alice", time.monotonic_ns(), 1.0, 1, 3)
        async with trio.open_nursery() as nursery:
            rt = EmuRuntime(_Channel(), welcome, nursery)
            got: dict = {}

            async def ask():
                got["out"] = await rt.outcomes([Measure(11, "Z"), Measure(12, "X"),
                                                Measure(13, "Y")])

            nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            sent = []
            while True:
                try:
                    sent.append(rt._outbox_recv.receive_nowait())
                except trio.WouldBlock:
                    break
            # all three are out, in order, while none has been answered
            assert [type(m) for m in sent] == [PhysMeasure] * 3
            assert [m.qubit for m in sent] == [11, 12, 13]
            assert [m.basis for m in sent] == ["Z", "X", "Y"]
            assert all(m.queued for m in sent)
            assert "out" not in got
            # answers, in order; the second failed
            rt._arrived(PhysResult(sent[0].request, True, 1, 0, "", 0))
            rt._arrived(PhysResult(sent[1].request, False, None,
                                   int(ErrorCode.QUBIT_UNAVAILABLE), "gone", 0))
            await trio.testing.wait_all_tasks_blocked()
            assert "out" not in got                  # the last is still awaited
            rt._arrived(PhysResult(sent[2].request, True, 0, 0, "", 0))
            await trio.testing.wait_all_tasks_blocked()
            out = got["out"]
            assert out[0] == 1 and out[2] == 0
            assert isinstance(out[1], QStackError) and out[1].code == ErrorCode.QUBIT_UNAVAILABLE

    trio.run(main)


def test_the_physics_server_answers_an_applications_gates_only_when_they_fail():
    """specs/emulation.md §5: queued PhysAllocate / PhysGate / PhysDiscard are
    answered only if they fail; a protocol's (not queued), and every
    measurement and settle, always."""
    from qstack.config import network_from_dict
    from qstack.emu.clock import RealClock
    from qstack.emu.messages import CHOSEN_REF_BASE, PhysAllocate, PhysDiscard, PhysGate
    from qstack.emu.physics import PhysicsServer

    spec = network_from_dict({"nodes": ["a", "b"], "links": [["a", "b"]]})
    server = PhysicsServer(spec, RealClock(time.monotonic_ns()))
    ref = CHOSEN_REF_BASE + 5
    assert server.handle("a", PhysAllocate(1, ref, queued=True)) is None
    assert server.handle("a", PhysGate(2, "h", (ref,), (), queued=True)) is None
    failed = server.handle("a", PhysGate(3, "h", (ref + 1,), (), queued=True))
    assert not failed.ok and failed.code == int(ErrorCode.QUBIT_UNAVAILABLE)
    assert server.handle("a", PhysGate(4, "z", (ref,), (), queued=False)).ok   # a protocol's
    assert server.handle("a", PhysSettle(5)).ok
    assert server.handle("a", PhysMeasure(6, ref, "X", queued=True)).value == 1   # |->
    ref2 = CHOSEN_REF_BASE + 6
    assert server.handle("a", PhysAllocate(7, ref2, queued=True)) is None
    assert server.handle("a", PhysDiscard(8, ref2, queued=True)) is None
    assert not server.handle("a", PhysDiscard(9, ref2, queued=True)).ok        # gone already
    assert server.census()["engine"] == 0


# ---------------------------------------------------------------- the window's news, joined

_CONNS = [WConn(5, "bob", 7), WConn(6, "bob", 7)]


@given(st.lists(st.one_of(st.tuples(st.just("c"), st.integers(0, 1), st.integers(1, 5)),
                          st.tuples(st.just("s"), st.integers(1, 100), st.just(0))),
                max_size=40))
def test_merged_consumed_say_the_same_in_the_same_order(items):
    """Invariants of merge_consumed: every other message keeps its place
    relative to the rest; between two of them, each connection's total count
    is the same; no two AppConsumed of one connection stay side by side."""
    batch = [AppConsumed(_CONNS[a], b) if kind == "c" else PhysSettle(a)
             for kind, a, b in items]
    out = merge_consumed(batch)

    def segments(msgs):
        segs, cur = [], {}
        for m in msgs:
            if m.__class__ is AppConsumed:
                cur[m.conn] = cur.get(m.conn, 0) + m.count
            else:
                segs.append((cur, m))
                cur = {}
        return segs + [(cur, None)]

    assert segments(out) == segments(batch)
    assert all(not (x.__class__ is y.__class__ is AppConsumed and x.conn == y.conn)
               for x, y in zip(out, out[1:]))
