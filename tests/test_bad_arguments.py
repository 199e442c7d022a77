"""Bad arguments are refused at the call, never break a connection or a run (issue 16.8).

Every bad value below is refused where it is given, before anything changes,
with a ``QStackError`` whose code is defined (``BAD_FIELD`` for a wrong type,
``OUT_OF_RANGE`` for a value outside its range, ``INVALID_PARAMETER`` for a
physical parameter that is not physical) and whose detail names the argument
and the value; the qubit involved stays alive and usable, and the socket or
protocol goes on working: every test makes a valid call afterwards.

Simulated runs use the ideal network layer (exact, fast); they are
deterministic, so the checks are exact.
"""
from __future__ import annotations

import numpy as np
import pytest

import qstack
from qstack.config import network_from_dict
from qstack.core.args import END_OF_TIME_NS
from qstack.core.errors import ConfigError, ErrorCode, QStackError
from qstack.physical.device import NodeHardware, QuantumDevice
from qstack.physical.engine import QuantumEngine
from qstack.physical.ops import Allocate, BellMeasure, Gate, Measure
from qstack.sim.apps import run_apps
from qstack.transport import service as svc
from qstack.transport.socket import TransportError
from tests.test_transport_sockets import ideal_net

def expect(code, *words):
    """A check that an exception is a QStackError with ``code`` whose message
    names every one of ``words`` (the argument and its value)."""

    def check(exc):
        assert isinstance(exc, QStackError), repr(exc)
        assert exc.code == code, repr(exc)
        for w in words:
            assert w in str(exc), (w, str(exc))
    return check


def session(alice_body, bob_body=None, **net_kw):
    """alice connects to bob:7 and runs ``alice_body(ctx, sock)``, then sends
    b"after" on the same socket, which bob must receive (after running
    ``bob_body(ctx, sock)`` if given): the socket still works. Returns
    (alice's body result, bob's body result, the network)."""

    async def alice(ctx):
        sock = await ctx.connect("bob", 7)
        out = await alice_body(ctx, sock)
        await sock.send(b"after")
        return out

    async def bob(ctx):
        sock = await ctx.listen(7).accept()
        out = await bob_body(ctx, sock) if bob_body else None
        assert await sock.recv() == b"after"
        return out

    net = ideal_net(**net_kw)
    run = run_apps(net, {"alice": alice, "bob": bob})
    assert not run.errors, run.errors
    return run.results["alice"], run.results["bob"], net


async def refused(call):
    """Await ``call()`` and return the exception it raises (None if none)."""
    try:
        await call()
    except Exception as exc:        # noqa: BLE001 - the test inspects it
        return exc
    return None


def refused_now(call):
    try:
        call()
    except Exception as exc:        # noqa: BLE001
        return exc
    return None


# ---------------------------------------------------------------- the device (protocols' operations)

def _device():
    engine = QuantumEngine(np.random.default_rng(1))
    return QuantumDevice("n", engine, NodeHardware(num_qubits=4), np.random.default_rng(2)), engine


@pytest.mark.parametrize("make_op", [
    # (wrong types are BAD_FIELD, like a string for an angle, the rest INVALID_PARAMETER)
    lambda q: Gate("rx", (q,), (float("nan"),)),
    lambda q: Gate("ry", (q,), ()),                       # the angle is missing
    lambda q: Gate("u", (q,), (np.full((2, 2), np.nan),)),
    lambda q: Gate("u", (q,), (np.eye(3),)),
    lambda q: Gate("u", (q,), (np.array([[1, 1], [0, 1]]),)),   # not unitary
    lambda q: Gate(["x"], (q,)),                            # an unhashable name
    lambda q: Gate("cnot", (q, q)),
    lambda q: Gate("x", q),                                 # qubits not a tuple
    lambda q: Measure(q, (float("nan"), 0.0)),
    lambda q: Measure(q, "Q"),
    lambda q: Measure(q, [0.1]),
    lambda q: BellMeasure(q, q),
])
def test_the_device_refuses_bad_operations_without_touching_the_qubit(make_op):
    dev, engine = _device()
    _, q = dev.execute(Allocate(), 0)
    engine.h(q)
    before = engine.density_matrix([q])
    duration, outcome = dev.execute(make_op(q), 10)
    assert isinstance(outcome, QStackError), outcome
    assert outcome.code == ErrorCode.INVALID_PARAMETER, outcome
    assert duration == 0 and dev.holds(q) and q.alive
    assert np.allclose(engine.density_matrix([q]), before, atol=1e-12)
    _, bit = dev.execute(Measure(q, "X"), 20)      # still usable: |+> measures 0 in X
    assert bit == 0


def test_the_device_says_bad_field_for_an_angle_that_is_not_a_number():
    dev, _ = _device()
    _, q = dev.execute(Allocate(), 0)
    _, outcome = dev.execute(Gate("rz", (q,), ("1",)), 10)
    expect(ErrorCode.BAD_FIELD, "angle", "'1'")(outcome)
    assert dev.holds(q)


# ---------------------------------------------------------------- hardware and links

@pytest.mark.parametrize("field, value", [
    ("gate_1q_ns", 9 * 10**18), ("gate_2q_ns", 10**13), ("measure_ns", -1),
    ("init_ns", 100.5), ("gate_1q_ns", True), ("num_qubits", True), ("num_qubits", 2.0),
])
def test_node_hardware_refuses_durations_that_do_not_fit_simulated_time(field, value):
    with pytest.raises(ValueError) as err:
        NodeHardware(**{field: value})
    assert field in str(err.value)


def test_a_gate_time_of_9e18_ns_is_refused_at_config_load_not_in_the_run():
    spec = {"nodes": {"alice": {"gate_1q_ns": 9 * 10**18}, "bob": {}},
            "links": [["alice", "bob"]]}
    with pytest.raises(ConfigError) as err:
        qstack.simulate(spec, {}, network_layer="ideal")
    assert "gate_1q_ns" in str(err.value)


@pytest.mark.parametrize("length", [1e300, float("inf"), 2e9])
def test_a_fibre_longer_than_simulated_time_allows_is_refused_at_config_load(length):
    spec = {"nodes": ["alice", "bob"], "links": [{"nodes": ["alice", "bob"], "length_km": length}]}
    with pytest.raises(ConfigError) as err:
        network_from_dict(spec)
    assert "length_km" in str(err.value)


@pytest.mark.parametrize("kwargs", [{"length_km": 1e300}, {"attempt_ns": 1e300}])
def test_link_models_refuse_spans_that_overflow_simulated_time(kwargs):
    from qstack.link.schemes import DoubleClickModel

    with pytest.raises(ValueError) as err:
        DoubleClickModel(**kwargs)
    assert next(iter(kwargs)) in str(err.value)


# ---------------------------------------------------------------- the transport protocol

def _opened():
    from tests.test_transport_protocol import opened

    return opened()


def _conn_still_works(t, conn, now=100):
    from tests.test_transport_protocol import delivered, sent
    from qstack.transport.messages import Data

    acts = t.handle(svc.SendBytes(99, conn, b"ok"), now)
    assert [m.payload for m in sent(acts, Data)] == [b"ok"]
    assert [d.token for d in delivered(acts, svc.Done)] == [99]


BAD_REQUESTS = [
    (lambda c: svc.Connect(5, "bob", -1), ErrorCode.OUT_OF_RANGE, "port"),
    (lambda c: svc.Connect(5, "bob", 7.0), ErrorCode.BAD_FIELD, "port"),
    (lambda c: svc.Connect(5, None, 7), ErrorCode.BAD_FIELD, "remote"),
    (lambda c: svc.Connect(5, "bob", 7, local_port=-4), ErrorCode.OUT_OF_RANGE, "local_port"),
    (lambda c: svc.Connect(5, "bob", 7, timeout_ns=-1), ErrorCode.OUT_OF_RANGE, "timeout_ns"),
    (lambda c: svc.Listen(5, "7"), ErrorCode.BAD_FIELD, "port"),
    (lambda c: svc.Listen(5, True), ErrorCode.BAD_FIELD, "port"),
    (lambda c: svc.Unlisten(5, None), ErrorCode.BAD_FIELD, "port"),
    (lambda c: svc.SendQubit(5, c, object(), b"x" * 1025), ErrorCode.OUT_OF_RANGE, "metadata"),
    (lambda c: svc.SendQubit(5, c, object(), "meta"), ErrorCode.BAD_FIELD, "metadata"),
    (lambda c: svc.SendQubit(5, c, object(), b"", float("nan")), ErrorCode.OUT_OF_RANGE,
     "min_fidelity"),
    (lambda c: svc.SendQubit(5, c, object(), b"", 0.5, 1.5), ErrorCode.BAD_FIELD, "timeout_ns"),
    (lambda c: svc.CreateEpr(5, c, 1.5), ErrorCode.BAD_FIELD, "number"),
    (lambda c: svc.CreateEpr(5, c, 0), ErrorCode.OUT_OF_RANGE, "number"),
    (lambda c: svc.CreateEpr(5, c, 1, 1.01), ErrorCode.OUT_OF_RANGE, "min_fidelity"),
    (lambda c: svc.CreateEpr(5, c, 1, 0.5, None, b"x" * 1025), ErrorCode.OUT_OF_RANGE,
     "metadata"),
    (lambda c: svc.CreateEpr(5, c, 1, 0.5, -7), ErrorCode.OUT_OF_RANGE, "timeout_ns"),
    (lambda c: svc.SendBytes(5, c, "text"), ErrorCode.BAD_FIELD, "data"),
    (lambda c: svc.SendBytes(5, c, None), ErrorCode.BAD_FIELD, "data"),
    (lambda c: svc.SendBytes(5, c, b"x" * 65537), ErrorCode.OUT_OF_RANGE, "data"),
    (lambda c: svc.Close(5, ("not", "a", "conn")), ErrorCode.BAD_FIELD, "conn"),
    (lambda c: svc.SendBytes(5, ["unhashable"], b"x"), ErrorCode.BAD_FIELD, "conn"),
]


@pytest.mark.parametrize("make, code, word", BAD_REQUESTS)
def test_the_transport_answers_a_bad_request_with_failed_and_goes_on(make, code, word):
    from tests.test_transport_protocol import delivered

    t, conn = _opened()
    before = dict(t.conns)
    acts = t.handle(make(conn), 50)                 # never an exception out of handle
    (failed,) = delivered(acts, svc.Failed)
    assert (failed.token, failed.code) == (5, code), failed
    assert word in failed.detail
    assert t.conns.keys() == before.keys()          # nothing half-made
    _conn_still_works(t, conn)


def test_a_min_fidelity_of_1_01_no_longer_wedges_the_connection():
    """It used to raise a ValueError (NetRequest's check) from inside the
    handler with the item left queued, so every later request raised too."""
    from qstack.core.protocol import Submit
    from tests.test_transport_protocol import delivered

    t, conn = _opened()
    acts = t.handle(svc.CreateEpr(5, conn, 1, 1.01), 50)
    assert [f.code for f in delivered(acts, svc.Failed)] == [ErrorCode.OUT_OF_RANGE]
    assert not [a for a in acts if isinstance(a, Submit)]     # no NetRequest went down
    acts = t.handle(svc.CreateEpr(6, conn, 1, 0.9), 60)
    (req,) = [a.request for a in acts if isinstance(a, Submit)]
    assert req.min_fidelity == 0.9      # the next request is served as if nothing happened


# ---------------------------------------------------------------- create_epr

@pytest.mark.parametrize("kwargs, code, words", [
    ({"min_fidelity": 1.01}, ErrorCode.OUT_OF_RANGE, ["min_fidelity", "1.01"]),
    ({"min_fidelity": float("nan")}, ErrorCode.OUT_OF_RANGE, ["min_fidelity", "nan"]),
    ({"min_fidelity": -0.1}, ErrorCode.OUT_OF_RANGE, ["min_fidelity", "-0.1"]),
    ({"min_fidelity": "0.5"}, ErrorCode.BAD_FIELD, ["min_fidelity", "'0.5'"]),
    ({"number": 1.5}, ErrorCode.BAD_FIELD, ["number", "1.5"]),
    ({"number": True}, ErrorCode.BAD_FIELD, ["number", "True"]),
    ({"number": 0}, ErrorCode.OUT_OF_RANGE, ["number", "0"]),
    ({"number": 65536}, ErrorCode.OUT_OF_RANGE, ["number", "65536"]),
    ({"measure": "Q"}, ErrorCode.INVALID_PARAMETER, ["basis", "'Q'"]),
    ({"measure": (float("nan"), 0.0)}, ErrorCode.INVALID_PARAMETER, ["basis", "nan"]),
    ({"timeout_ns": -1}, ErrorCode.OUT_OF_RANGE, ["timeout_ns", "-1"]),
    ({"timeout_ns": 1.5}, ErrorCode.BAD_FIELD, ["timeout_ns", "1.5"]),
])
def test_create_epr_refuses_bad_arguments_and_the_socket_keeps_working(kwargs, code, words):
    async def alice(ctx, sock):
        err = await refused(lambda: sock.create_epr(**kwargs))
        made_by_then = ctx.runtime.net.ideal.made
        pair = await sock.create_epr(1)          # a valid call afterwards succeeds
        return err, made_by_then, len(pair)

    async def bob(ctx, sock):
        return len(await sock.recv_epr(1))

    (err, made, n), got, _ = session(alice, bob)
    expect(code, *words)(err)
    assert isinstance(err, TransportError)
    assert made == 0            # refused before any pair was asked for
    assert (n, got) == (1, 1)


def test_create_epr_truncated_nothing_before():
    """``create_epr(1.5)`` used to make one pair (int(1.5)); now it makes none."""
    async def alice(ctx, sock):
        return await refused(lambda: sock.create_epr(1.5))

    err, _, net = session(alice)
    expect(ErrorCode.BAD_FIELD, "number", "1.5")(err)
    assert net.ideal.made == 0


# ---------------------------------------------------------------- send_qubit / metadata

@pytest.mark.parametrize("kwargs, code, words", [
    ({"metadata": b"x" * 1025}, ErrorCode.OUT_OF_RANGE, ["metadata", "1025", "1024"]),
    ({"metadata": "text"}, ErrorCode.BAD_FIELD, ["metadata", "'text'"]),
    ({"metadata": 5}, ErrorCode.BAD_FIELD, ["metadata", "5"]),    # not b"\0" * 5
    ({"min_fidelity": 1.01}, ErrorCode.OUT_OF_RANGE, ["min_fidelity", "1.01"]),
    ({"min_fidelity": float("inf")}, ErrorCode.OUT_OF_RANGE, ["min_fidelity", "inf"]),
    ({"timeout_ns": -5}, ErrorCode.OUT_OF_RANGE, ["timeout_ns", "-5"]),
    ({"timeout_ns": "1"}, ErrorCode.BAD_FIELD, ["timeout_ns", "'1'"]),
])
def test_send_qubit_refuses_bad_arguments_and_the_qubit_stays_usable(kwargs, code, words):
    async def alice(ctx, sock):
        q = ctx.qubit()
        q.x()
        err = await refused(lambda: sock.send_qubit(q, **kwargs))
        alive = q.alive
        await sock.send_qubit(q, b"m" * 1024)    # the same qubit, valid this time
        return err, alive, q.alive

    async def bob(ctx, sock):
        q = await sock.recv_qubit()
        return q.metadata, await q.measure()

    (err, alive_after_refusal, alive_after_send), (meta, bit), _ = session(alice, bob)
    expect(code, *words)(err)
    assert alive_after_refusal and not alive_after_send
    assert (meta, bit) == (b"m" * 1024, 1)    # fidelity-1 pairs: |1> arrives as |1>


def test_metadata_over_the_wire_limit_no_longer_ends_the_run():
    """It used to raise a DecodeError out of the simulator when the header
    was checked on the wire; now the send is refused and the run goes on."""
    async def alice(ctx, sock):
        q = ctx.qubit()
        err = await refused(lambda: sock.send_qubit(q, metadata=b"x" * 2000))
        q.discard()
        return err

    err, _, _ = session(alice)
    expect(ErrorCode.OUT_OF_RANGE, "metadata", "2000")(err)


# ---------------------------------------------------------------- send / recv

@pytest.mark.parametrize("data, code", [
    (b"x" * 65537, ErrorCode.OUT_OF_RANGE),
    ("text", ErrorCode.BAD_FIELD),
    (None, ErrorCode.BAD_FIELD),
    (3, ErrorCode.BAD_FIELD),
])
def test_send_refuses_what_is_not_bytes_or_too_long(data, code):
    async def alice(ctx, sock):
        return await refused(lambda: sock.send(data))

    err, _, _ = session(alice)
    expect(code, "data")(err)


@pytest.mark.parametrize("call, code, words", [
    (lambda s: s.recv(timeout_ns=-1), ErrorCode.OUT_OF_RANGE, ["timeout_ns", "-1"]),
    (lambda s: s.recv(timeout_ns=2.5), ErrorCode.BAD_FIELD, ["timeout_ns", "2.5"]),
    (lambda s: s.recv_qubit(timeout_ns=True), ErrorCode.BAD_FIELD, ["timeout_ns", "True"]),
    (lambda s: s.recv_epr(1.5), ErrorCode.BAD_FIELD, ["number", "1.5"]),
    (lambda s: s.recv_epr(0), ErrorCode.OUT_OF_RANGE, ["number", "0"]),
    (lambda s: s.recv_epr(1, measure="W"), ErrorCode.INVALID_PARAMETER, ["basis", "'W'"]),
    (lambda s: s.recv_epr(1, timeout_ns=-3), ErrorCode.OUT_OF_RANGE, ["timeout_ns", "-3"]),
])
def test_receive_calls_refuse_bad_arguments(call, code, words):
    async def bob(ctx, sock):
        return await refused(lambda: call(sock))

    _, err, _ = session(lambda ctx, sock: _noop(), bob)
    expect(code, *words)(err)


async def _noop():
    return None


def test_a_timeout_past_the_end_of_simulated_time_means_no_limit():
    """2**63-1 ns is a valid timeout; it can never run out (time ends at
    2**62 ns), so it is no limit rather than a timer the kernel cannot hold."""
    async def alice(ctx, sock):
        await ctx.sleep(1_000_000)
        await sock.send(b"late")

    async def bob(ctx, sock):
        return await sock.recv(timeout_ns=2**63 - 1)

    _, got, _ = session(alice, bob)
    assert got == b"late"


# ---------------------------------------------------------------- connect / listen / accept

@pytest.mark.parametrize("args, kwargs, code, words", [
    (("bob", -1), {}, ErrorCode.OUT_OF_RANGE, ["port", "-1"]),
    (("bob", 65536), {}, ErrorCode.OUT_OF_RANGE, ["port", "65536"]),
    (("bob", 7.0), {}, ErrorCode.BAD_FIELD, ["port", "7.0"]),
    (("bob", "7"), {}, ErrorCode.BAD_FIELD, ["port", "'7'"]),
    ((5, 7), {}, ErrorCode.BAD_FIELD, ["node", "5"]),
    (("", 7), {}, ErrorCode.OUT_OF_RANGE, ["node", "''"]),
    (("b" * 65, 7), {}, ErrorCode.OUT_OF_RANGE, ["node"]),
    (("bob", 7), {"timeout_ns": -1}, ErrorCode.OUT_OF_RANGE, ["timeout_ns", "-1"]),
    (("bob", 7), {"local_port": 70000}, ErrorCode.OUT_OF_RANGE, ["local_port", "70000"]),
])
def test_connect_refuses_bad_arguments(args, kwargs, code, words):
    async def alice(ctx, sock):
        err = await refused(lambda: ctx.socket().connect(*args, **kwargs))
        return err, len(ctx.client.runtime.net.node("alice").protocols["transport.qtp"].conns)

    (err, conns), _, _ = session(alice)
    expect(code, *words)(err)
    assert conns == 1           # no half-made connection left behind


@pytest.mark.parametrize("port, code", [
    (-1, ErrorCode.OUT_OF_RANGE), (65536, ErrorCode.OUT_OF_RANGE), (True, ErrorCode.BAD_FIELD),
    ("7", ErrorCode.BAD_FIELD), (8.0, ErrorCode.BAD_FIELD),
])
def test_listen_refuses_bad_ports(port, code):
    async def bob(ctx, sock):
        err = refused_now(lambda: ctx.listen(port))
        assert ctx.listen(8).listening_port == 8     # a valid listen afterwards works
        return err

    _, err, _ = session(lambda ctx, sock: _noop(), bob)
    expect(code, "port")(err)


def test_accept_refuses_a_bad_timeout():
    async def bob(ctx, sock):
        return await refused(lambda: ctx.listen(9).accept(timeout_ns=-2))

    _, err, _ = session(lambda ctx, sock: _noop(), bob)
    expect(ErrorCode.OUT_OF_RANGE, "timeout_ns", "-2")(err)


# ---------------------------------------------------------------- sleep

@pytest.mark.parametrize("delay, code", [
    (10**30, ErrorCode.OUT_OF_RANGE),
    (2**62, ErrorCode.OUT_OF_RANGE),            # past the end of simulated time
    (-1, ErrorCode.OUT_OF_RANGE),
    (1.5, ErrorCode.BAD_FIELD),
    (None, ErrorCode.BAD_FIELD),
])
def test_sleep_refuses_bad_delays_and_the_run_goes_on(delay, code):
    async def alice(ctx, sock):
        return await refused(lambda: ctx.sleep(delay))

    err, _, _ = session(alice)
    expect(code, "delay_ns")(err)


def test_sleeping_to_the_end_of_simulated_time_is_allowed_but_not_beyond():
    async def alice(ctx):
        await ctx.sleep(END_OF_TIME_NS - ctx.now_ns - 500)
        err = refused_now(ctx.qubit)            # init (1000 ns) would end past the end
        late = await refused(lambda: ctx.sleep(501))
        await ctx.sleep(500)
        return err, late, ctx.now_ns

    net = ideal_net()
    run = run_apps(net, {"alice": alice})
    assert not run.errors, run.errors
    err, late, now = run.results["alice"]
    expect(ErrorCode.OUT_OF_RANGE, "end of simulated time")(err)
    expect(ErrorCode.OUT_OF_RANGE, "delay_ns", "501")(late)
    assert now == END_OF_TIME_NS


# ---------------------------------------------------------------- qubits

@pytest.mark.parametrize("gate, arg, code", [
    ("rx", float("nan"), ErrorCode.INVALID_PARAMETER),
    ("ry", float("inf"), ErrorCode.INVALID_PARAMETER),
    ("rz", "0.5", ErrorCode.BAD_FIELD),
    ("rx", None, ErrorCode.BAD_FIELD),
])
def test_rotations_refuse_non_finite_angles_and_leave_the_qubit_untouched(gate, arg, code):
    async def alice(ctx, sock):
        q = ctx.qubit()
        q.h()
        before = q.peek()
        err = refused_now(lambda: getattr(q, gate)(arg))
        after = q.peek()
        q.h()
        return err, before, after, await q.measure()

    (err, before, after, bit), _, _ = session(alice)
    expect(code, "theta")(err)
    assert np.allclose(before, after, atol=1e-12)      # exact: nothing was applied
    assert bit == 0                                    # H H |0> = |0>, noiseless


@pytest.mark.parametrize("basis, words", [
    ("Q", ["basis", "'Q'"]),
    ((float("nan"), 0.0), ["basis", "nan"]),
    ((0.0, float("inf")), ["basis", "inf"]),
    ((1.0,), ["basis"]),
    (5, ["basis", "5"]),
    (None, ["basis", "None"]),
])
def test_measure_refuses_bad_bases_before_the_qubit_is_measured(basis, words):
    async def alice(ctx, sock):
        device = ctx.runtime.device
        q = ctx.qubit()
        q.x()
        slots = device.used_slots
        err = await refused(lambda: q.measure(basis))
        kept = (q.alive, device.used_slots == slots)
        return err, kept, await q.measure("Z"), device.used_slots == slots - 1

    (err, kept, bit, freed), _, _ = session(alice)
    code = ErrorCode.BAD_FIELD if basis in (5, None) else ErrorCode.INVALID_PARAMETER
    expect(code, *words)(err)
    assert kept == (True, True)         # alive, and its slot still held
    assert (bit, freed) == (1, True)


def test_a_two_qubit_gate_needs_another_qubit():
    async def alice(ctx, sock):
        q = ctx.qubit()
        same = refused_now(lambda: q.cnot(q))
        other = refused_now(lambda: q.cz("q"))
        return same, other, q.alive

    (same, other, alive), _, _ = session(alice)
    expect(ErrorCode.INVALID_PARAMETER, "itself")(same)
    expect(ErrorCode.BAD_FIELD, "other")(other)
    assert alive


# ---------------------------------------------------------------- the simulator's clock

@pytest.mark.parametrize("backend", ["python", "cython"])
def test_the_simulator_refuses_a_sleep_its_clock_cannot_hold(backend):
    from qstack.sim.kernel import CyEventKernel
    from qstack.sim.runner import Simulator

    if backend == "cython" and CyEventKernel is None:
        pytest.skip("Cython kernel not built")
    sim = Simulator(backend=backend)

    async def task():
        await sim.sleep(10)
        with pytest.raises(ValueError, match="largest simulated time"):
            sim.sleep(2**63 - 10)               # 10 + that > 2**63 - 1
        fut = sim.future()
        sim.schedule(5, fut.set_result, "x")
        return await sim.wait_for(fut, 2**63 - 1)   # can never run out: no timer

    assert sim.run_until_complete(task()) == "x"


# ---------------------------------------------------------------- run_apps

def test_the_same_function_twice_for_one_node_runs_twice_under_distinct_names():
    async def worker(ctx):
        await ctx.sleep(1_000)
        return ctx.app

    net = ideal_net()
    run = run_apps(net, {"alice": [worker, worker], "bob": worker})
    assert not run.errors
    assert run.results == {"alice:worker#0": "alice:worker#0",
                           "alice:worker#1": "alice:worker#1", "bob": "bob"}


def test_every_application_is_checked_before_any_starts():
    async def fine(ctx):
        return 1

    def not_async(ctx):
        return 2

    net = ideal_net()
    with pytest.raises(TypeError) as err:
        run_apps(net, {"alice": fine, "bob": [fine, not_async]})
    assert "not_async" in str(err.value) and "bob" in str(err.value)
    assert net.sim.pending == 0         # nothing was spawned
    with pytest.raises(ValueError, match="carol"):
        run_apps(net, {"carol": fine})


# ---------------------------------------------------------------- nothing escapes a run

class _Boom(Exception):
    pass


def test_a_protocol_that_raises_does_not_end_the_run(monkeypatch):
    """A bug in a protocol's handler (simulated: the transport raises on the
    first Data message it receives) loses that event, not the run: the other
    applications finish, the fault is recorded with its node and protocol."""
    from qstack.transport import protocol as qtp
    from qstack.transport.messages import Data

    real = qtp.TeleportTransport._on_data
    calls = []

    def flaky(self, src, msg, now_ns):
        calls.append(msg.payload)
        if msg.payload == b"boom":
            raise _Boom("injected")
        return real(self, src, msg, now_ns)

    monkeypatch.setattr(qtp.TeleportTransport, "_on_data", flaky)

    async def alice(ctx):
        sock = await ctx.connect("bob", 7)
        await sock.send(b"boom")
        await sock.send(b"fine")
        return "sent"

    async def bob(ctx):
        sock = await ctx.listen(7).accept()
        return await sock.recv(timeout_ns=10**9)

    async def carol(ctx):
        await ctx.sleep(10**6)
        return "unaffected"

    net = ideal_net(nodes=("alice", "bob", "carol"))
    run = run_apps(net, {"alice": alice, "bob": bob, "carol": carol})
    assert run.results["alice"] == "sent" and run.results["carol"] == "unaffected"
    assert calls[0] == b"boom"
    assert [type(f) for f in run.faults] == [_Boom]
    (rec,) = [r for r in net.errors if r.code == ErrorCode.INTERNAL_ERROR]
    assert (rec.node, rec.protocol) == ("bob", "transport.qtp") and "injected" in rec.detail


def test_a_protocol_that_raises_on_a_call_gives_the_app_a_qstack_error(monkeypatch):
    from qstack.transport.protocol import TeleportTransport

    def broken(self, req, now_ns):
        raise _Boom("listen is broken")

    monkeypatch.setattr(TeleportTransport, "_listen", broken)

    async def bob(ctx):
        err = refused_now(lambda: ctx.listen(7))
        return err, dict(ctx.client._pending)

    net = ideal_net()
    run = run_apps(net, {"bob": bob})
    err, pending = run.results["bob"]
    expect(ErrorCode.INTERNAL_ERROR, "_Boom", "listen is broken")(err)
    assert isinstance(err.__cause__, _Boom) and pending == {}


# ---------------------------------------------------------------- values without a repr

HUGE = 10**5000     # more digits than int -> str allows (4300): repr() raises


def test_a_value_without_a_repr_is_still_refused_with_a_code():
    """Formatting the error must not fail on the value itself."""
    from qstack.core.errors import EncodeError
    from qstack.network.messages import Track

    with pytest.raises(EncodeError) as err:
        Track(HUGE, "a", 1, 0, 0.5, 0)
    expect(ErrorCode.OUT_OF_RANGE, "circuit_id", "bits")(err.value)
    dev, _ = _device()
    _, q = dev.execute(Allocate(), 0)
    expect(ErrorCode.BAD_FIELD, "basis")(dev.execute(Measure(q, HUGE), 1)[1])
    expect(ErrorCode.QUBIT_UNAVAILABLE, "bits")(dev.execute(Measure(HUGE, "Z"), 1)[1])

    async def alice(ctx, sock):
        q = ctx.qubit()
        errors = [await refused(lambda: sock.create_epr(HUGE)),
                  await refused(lambda: sock.send_qubit(q, min_fidelity=HUGE)),
                  await refused(lambda: ctx.sleep(HUGE)),
                  await refused(lambda: q.measure(HUGE)),
                  refused_now(lambda: q.cnot(HUGE))]
        q.discard()
        return [e.code for e in errors]

    codes, _, _ = session(alice)
    assert codes == [ErrorCode.OUT_OF_RANGE, ErrorCode.OUT_OF_RANGE, ErrorCode.OUT_OF_RANGE,
                     ErrorCode.BAD_FIELD, ErrorCode.BAD_FIELD]


def test_a_request_type_without_a_check_passes_unchanged():
    """check_request knows the requests of this service; another one (a
    request type added later) goes to its handler as it is."""
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Other:
        token: int
        port: object

    req = Other(1, "not checked here")
    assert svc.check_request(req, 0) is req
