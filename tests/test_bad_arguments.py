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


