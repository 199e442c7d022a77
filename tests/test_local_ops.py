"""Local quantum operations: queued in order, outcomes awaited only where the
API already awaits (``specs/transport.md``, "Local operations").

Every application here runs on the simulator's runtime and on
:class:`DeferringRuntime`, a stand-in for a driver whose quantum state is held
elsewhere (the emulator's physics server): it keeps every queued operation
until the node's next await and only then carries them out, reporting their
failures late. The same application gives the same results and timings on both.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from qstack.core.errors import ErrorCode, QStackError
from qstack.physical.device import NodeHardware
from qstack.sim.apps import SimRuntime, run_apps
from qstack.transport.socket import TransportTimeout
from tests.test_transport_sockets import ideal_net, ket

PORT = 7


class DeferringRuntime(SimRuntime):
    """A runtime that answers like a remote driver: a gate or discard only
    joins a queue; the queue is carried out (in order, failures reported to
    their callbacks) when the node next awaits -- an outcome, a settle, a
    sleep or a wait -- i.e. at the same simulated time as the simulator would
    have, so the results can be compared bit for bit."""

    def __init__(self, net, node, protocol):
        super().__init__(net, node, protocol)
        self.queue: list = []
        self.longest = 0           # the longest the queue got: proof it deferred

    def _flush(self) -> None:
        queue, self.queue = self.queue, []
        for op, failed in queue:
            SimRuntime.enqueue(self, op, failed)

    def enqueue(self, op, failed=None):
        self.queue.append((op, failed))
        self.longest = max(self.longest, len(self.queue))

    def allocate(self):
        # A remote driver answers from its slot ledger and queues the init; the
        # stand-in's references come from the simulated device, so it carries
        # out the queue before (a queued Discard frees a slot: same answer).
        self._flush()
        return super().allocate()

    async def outcome(self, op):
        self._flush()
        return await super().outcome(op)

    async def settle(self):
        self._flush()
        await super().settle()

    def sleep(self, delay_ns):
        self._flush()
        return super().sleep(delay_ns)

    async def wait(self, future, timeout_ns):
        self._flush()
        return await super().wait(future, timeout_ns)

    def peek(self, ref):
        self._flush()
        return super().peek(ref)


RUNTIMES = pytest.mark.parametrize("runtime", [SimRuntime, DeferringRuntime],
                                   ids=["sim", "deferring"])


def run(apps, runtime, **net_kw):
    net = ideal_net(**net_kw)
    result = run_apps(net, apps, runtime=runtime)
    return net, result


def runtimes_of(result):
    return {ctx.runtime for ctx in result.contexts.values()}


# ---------------------------------------------------------------- ordering

@RUNTIMES
def test_a_measurement_reflects_every_gate_called_before_it(runtime):
    async def alice(ctx):
        out = []
        q = ctx.qubit()
        q.h(); q.z(); q.h()                      # HZH = X: |1>
        out.append(await q.measure())
        q = ctx.qubit()
        q.x(); q.h()                              # |->
        out.append(await q.measure("X"))
        a, b = ctx.qubit(), ctx.qubit()
        a.x(); a.cnot(b); a.x()                  # |0>|1>
        out.append((await a.measure(), await b.measure()))
        q = ctx.qubit()
        q.ry(math.pi / 3); q.rz(0.7); q.rz(-0.7); q.ry(-math.pi / 3)   # back to |0>
        out.append(await q.measure())
        return out

    _, r = run({"alice": alice}, runtime)
    assert not r.errors, r.errors
    assert r.results["alice"] == [1, 1, (0, 1), 0]


def test_the_deferring_runtime_really_defers():
    seen = {}

    async def alice(ctx):
        q = ctx.qubit()
        before = ctx.runtime.ops_executed
        q.h(); q.s(); q.h()
        seen["after gates"] = ctx.runtime.ops_executed - before     # nothing ran yet
        bit = await q.measure()
        seen["after measure"] = ctx.runtime.ops_executed - before
        return bit

    _, r = run({"alice": alice}, DeferringRuntime)
    assert not r.errors, r.errors
    assert seen == {"after gates": 0, "after measure": 4}


@RUNTIMES
def test_gates_cost_their_time_before_the_outcome_and_the_next_send(runtime):
    hw = NodeHardware(num_qubits=32, t1_ns=math.inf, t2_ns=math.inf)

    async def alice(ctx):
        t0 = ctx.now_ns
        q = ctx.qubit()
        q.h(); q.h(); q.h()
        t_call = ctx.now_ns                       # calling costs nothing
        await q.measure()
        t_measured = ctx.now_ns
        sock = await ctx.connect("bob", PORT)
        q = ctx.qubit()
        q.x(); q.y()
        t1 = ctx.now_ns
        await sock.send(b"x")                     # waits for init + 2 gates first
        return t0, t_call, t_measured, t1, ctx.now_ns

    async def bob(ctx):
        sock = await ctx.listen(PORT).accept()
        return await sock.recv()

    _, r = run({"alice": alice, "bob": bob}, runtime)
    assert not r.errors, r.errors
    t0, t_call, t_measured, t1, t_sent = r.results["alice"]
    assert t_call == t0
    assert t_measured - t0 == hw.init_ns + 3 * hw.gate_1q_ns + hw.measure_ns
    # send() returns once the data was acknowledged: at least the owed ops before
    assert t_sent - t1 >= hw.init_ns + 2 * hw.gate_1q_ns


@RUNTIMES
def test_a_sent_qubit_carries_every_gate_called_before_the_send(runtime):
    states = [(0.3, 0.0), (1.1, 2.0), (math.pi, 0.5), (2.0, -1.0)]

    async def alice(ctx):
        sock = await ctx.connect("bob", PORT)
        for theta, phi in states:
            q = ctx.qubit()
            q.ry(theta)
            q.rz(phi)
            await sock.send_qubit(q)
            with pytest.raises(QStackError) as info:     # after the send: gone
                q.x()
            assert info.value.code == ErrorCode.QUBIT_UNAVAILABLE
        await sock.close()

    async def bob(ctx):
        sock = await ctx.listen(PORT).accept()
        return [(await sock.recv_qubit()).fidelity_to(ket(t, p)) for t, p in states]

    _, r = run({"alice": alice, "bob": bob}, runtime)
    assert not r.errors, r.errors
    assert r.results["bob"] == pytest.approx([1.0] * len(states))


@RUNTIMES
def test_allocation_answers_at_once_and_memory_full_is_raised_by_the_call(runtime):
    async def alice(ctx):
        held = [ctx.qubit() for _ in range(32)]
        with pytest.raises(QStackError) as info:
            ctx.qubit()
        held[0].discard()                          # queued: the next allocate sees it
        q = ctx.qubit()
        return info.value.code, q.alive

    _, r = run({"alice": alice}, runtime)
    assert not r.errors, r.errors
    assert r.results["alice"] == (ErrorCode.MEMORY_FULL, True)


# ---------------------------------------------------------------- errors of queued operations

def _lose(ctx, q):
    """A concurrent failure removes ``q`` from memory (its pair expired, say)."""
    ctx.runtime._flush() if hasattr(ctx.runtime, "_flush") else None
    ctx.runtime.device.free(q.ref)


@RUNTIMES
def test_a_failed_gate_is_raised_by_the_next_send_before_anything_is_requested(runtime):
    async def alice(ctx):
        sock = await ctx.connect("bob", PORT)
        q = ctx.qubit()
        _lose(ctx, q)
        q.h()                                      # returns: the failure comes later
        with pytest.raises(QStackError) as info:
            await sock.send(b"first")             # raised here, nothing sent
        err = info.value
        await sock.send(b"second")                 # reported once: the socket works
        await sock.close()
        return err.code, len(ctx.op_failures)

    async def bob(ctx):
        sock = await ctx.listen(PORT).accept()
        got = [await sock.recv()]
        try:
            got.append(await sock.recv(timeout_ns=10**9))
        except QStackError as err:
            got.append(err.code)
        return got

    _, r = run({"alice": alice, "bob": bob}, runtime)
    assert not r.errors, r.errors
    assert r.results["alice"] == (ErrorCode.QUBIT_UNAVAILABLE, 1)
    assert r.results["bob"] == [b"second", ErrorCode.TRANSPORT_CLOSED]


@RUNTIMES
def test_send_qubit_raises_an_earlier_failure_and_the_qubit_stays_the_callers(runtime):
    async def alice(ctx):
        sock = await ctx.connect("bob", PORT)
        lost, q = ctx.qubit(), ctx.qubit()
        _lose(ctx, lost)
        lost.x()
        q.x()
        with pytest.raises(QStackError) as info:
            await sock.send_qubit(q)
        assert q.alive                             # nothing requested
        await sock.send_qubit(q)
        await sock.close()
        return info.value.code

    async def bob(ctx):
        sock = await ctx.listen(PORT).accept()
        return await (await sock.recv_qubit()).measure()

    _, r = run({"alice": alice, "bob": bob}, runtime)
    assert not r.errors, r.errors
    assert r.results == {"alice": ErrorCode.QUBIT_UNAVAILABLE, "bob": 1}


@RUNTIMES
def test_measure_raises_an_earlier_failure_in_place_of_its_outcome(runtime):
    async def alice(ctx):
        lost, q = ctx.qubit(), ctx.qubit()
        _lose(ctx, lost)
        lost.h()
        lost.z()                                   # a consequence: recorded, not raised again
        q.x()
        with pytest.raises(QStackError) as info:
            await q.measure()
        first = info.value
        measured = not q.alive                     # queued after the failure: carried out
        q2 = ctx.qubit()
        q2.x()
        return first.code, measured, await q2.measure(), len(ctx.op_failures)

    _, r = run({"alice": alice}, runtime)
    assert not r.errors, r.errors
    assert r.results["alice"] == (ErrorCode.QUBIT_UNAVAILABLE, True, 1, 2)


@RUNTIMES
def test_measuring_a_lost_qubit_raises_at_the_measure(runtime):
    async def alice(ctx):
        q = ctx.qubit()
        _lose(ctx, q)
        with pytest.raises(QStackError) as info:
            await q.measure()
        return info.value.code, q.alive, ctx.op_failures

    _, r = run({"alice": alice}, runtime)
    assert not r.errors, r.errors
    assert r.results["alice"] == (ErrorCode.QUBIT_UNAVAILABLE, False, [])


@RUNTIMES
def test_close_does_not_raise_a_queued_failure_and_the_end_logs_it(runtime):
    async def alice(ctx):
        sock = await ctx.connect("bob", PORT)
        q = ctx.qubit()
        _lose(ctx, q)
        q.h()
        await sock.close()                         # settles, does not raise
        return "ended"

    async def bob(ctx):
        sock = await ctx.listen(PORT).accept()
        try:
            await sock.recv()
        except QStackError as err:
            return err.code

    _, r = run({"alice": alice, "bob": bob}, runtime)
    assert not r.errors, r.errors
    assert r.results["alice"] == "ended"
    ctx = r.contexts["alice"]
    assert [e.code for e in ctx.op_failures] == [ErrorCode.QUBIT_UNAVAILABLE]
    warnings = [rec for rec in ctx.log.records if rec[2] == "WARNING"]
    assert len(warnings) == 1 and "QUBIT_UNAVAILABLE" in warnings[0][3]


@RUNTIMES
def test_failures_are_kept_per_application_on_a_shared_node(runtime):
    async def clumsy(ctx):
        q = ctx.qubit()
        _lose(ctx, q)
        q.h()
        await ctx.sleep(1_000)
        with pytest.raises(QStackError) as info:
            await ctx.connect("bob", PORT)
        return info.value.code

    async def tidy(ctx):
        await ctx.sleep(500)                       # after clumsy's failed gate
        q = ctx.qubit()
        q.x()
        return await q.measure(), len(ctx.op_failures)

    async def bob(ctx):
        ctx.listen(PORT)
        await ctx.sleep(10**7)

    _, r = run({"alice": [clumsy, tidy], "bob": bob}, runtime)
    assert not r.errors, r.errors
    assert r.results["alice:clumsy"] == ErrorCode.QUBIT_UNAVAILABLE
    assert r.results["alice:tidy"] == (1, 0)


# ---------------------------------------------------------------- same application, both runtimes

def _mixed_apps():
    """Teleportation with prepared states, EPR pairs measured at once and
    later, classical messages, random choices from ctx.rng, measurements."""

    async def alice(ctx):
        sock = await ctx.connect("bob", PORT)
        out = []
        for i in range(6):
            q = ctx.qubit()
            if ctx.rng.random() < 0.5:
                q.x()
            q.h()
            if i % 3 == 0:
                q.s()
            await sock.send_qubit(q, metadata=bytes([i]))
        halves = await sock.create_epr(3)
        for h in halves:
            h.h()
        out += [await h.measure() for h in halves]
        out += await sock.create_epr(4, measure="X")
        a, b = ctx.qubit(), ctx.qubit()
        a.h(); a.cnot(b)
        out.append((await a.measure(), await b.measure()))
        await sock.send(b"done")
        out.append(ctx.now_ns)
        await sock.close()
        return out

    async def bob(ctx):
        sock = await ctx.listen(PORT).accept()
        out = []
        for _ in range(6):
            q = await sock.recv_qubit()
            if q.metadata[0] % 3 == 0:
                q.sdg()
            q.h()
            out.append(await q.measure())
        halves = await sock.recv_epr(3)
        for h in halves:
            h.h()
        out += [await h.measure() for h in halves]
        out += await sock.recv_epr(4, measure="X")
        out.append(await sock.recv())
        out.append(ctx.now_ns)
        return out

    return {"alice": alice, "bob": bob}


@pytest.mark.parametrize("formalism, fidelity", [("dm", 1.0), ("dm", 0.9), ("bd", 0.85)])
def test_the_same_application_gives_the_same_results_on_both_runtimes(formalism, fidelity):
    outcomes = {}
    for runtime in (SimRuntime, DeferringRuntime):
        net, r = run(_mixed_apps(), runtime, formalism=formalism, fidelity=fidelity, seed=7)
        assert not r.errors, r.errors
        outcomes[runtime] = (r.results, r.finished_ns, r.end_ns, net.sim.now,
                             sorted(rt.ops_executed for rt in runtimes_of(r)))
        if runtime is DeferringRuntime:
            assert max(rt.longest for rt in runtimes_of(r)) >= 2     # it did defer
    assert outcomes[SimRuntime] == outcomes[DeferringRuntime]
    if fidelity == 1.0:     # perfect pairs: bob undoes alice's preparation exactly
        results = outcomes[SimRuntime][0]
        assert results["bob"][-2] == b"done"
