"""The compiled node runtime core (``qstack/core/_runtime.pyx``) and its
pure-Python twin (``PyRuntimeCore``) do the same thing, call by call.

Two runtimes, one on each core, are given the same random script of events
(every action kind, messages with and without a registered handler, timers
restarted, cancelled and fired, deliveries up, down and to the inbox,
failures); everything each hands to its driver, records or delivers must be
equal. A repeater chain run in two processes, one with QSTACK_PURE_PYTHON=1,
gives the same numbers; the switch also runs the protocol modules compiled
from their own source (setup.py's COMPILED_PY) as that source
(docs/compiled-runtime.md)."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qstack.core.errors import ErrorCode
from qstack.core.protocol import (
    CancelTimer, Deliver, Fail, MessageReceived, OperationDone, Protocol, QuantumOp,
    SendMessage, StartTimer, Submit, TimerFired, on, on_message,
)
from qstack.core.runtime import HAVE_CYTHON, PyRuntimeCore, RuntimeBody, RuntimeDriver

ROOT = Path(__file__).resolve().parents[1]

needs_cython = pytest.mark.skipif(not HAVE_CYTHON, reason="qstack.core._runtime not built "
                                  "(or QSTACK_PURE_PYTHON=1)")


@dataclass(frozen=True)
class Do:
    """A test event: the actions (as specs) the protocol given it returns."""
    specs: tuple


@dataclass(frozen=True)
class Ping:
    PROTOCOL = "t.high"
    n: int


@dataclass(frozen=True)
class Pong:                      # no handler registered: goes as MessageReceived
    PROTOCOL = "t.low"
    n: int


def _actions(specs, now):
    out = []
    for kind, arg in specs:
        if kind == "send":
            out.append(SendMessage("peer", Ping(arg)))
        elif kind == "op":
            out.append(QuantumOp(arg, ("gate", arg)))
        elif kind == "timer":
            out.append(StartTimer(("k", arg % 3), arg * 7))
        elif kind == "cancel":
            out.append(CancelTimer(("k", arg % 3)))
        elif kind == "up":
            out.append(Deliver(("up", arg, now)))
        elif kind == "down":
            out.append(Submit(Do((("up", arg),))))
        elif kind == "to_low":
            out.append(Deliver(Do((("fail", arg),)), to="t.low"))
        elif kind == "fail":
            out.append(Fail(ErrorCode.INVALID_PARAMETER, f"fail {arg}"))
    return out


class Low(Protocol):
    name = "t.low"

    @on(Do)
    def _do(self, ev, now_ns):
        return _actions(ev.specs, now_ns)

    @on(TimerFired, OperationDone, MessageReceived)
    def _other(self, ev, now_ns):
        return [Deliver(("low saw", repr(ev), now_ns))]


class High(Low):
    name = "t.high"

    @on_message(Ping)
    def _ping(self, src, msg, now_ns):
        return [Deliver(("ping", src, msg.n, now_ns))]


class Recorder(RuntimeDriver):
    def __init__(self):
        self.calls = []
        self.handles = 0
        self.now = 0

    def send(self, node, protocol, dst, msg):
        self.calls.append(("send", protocol, dst, msg))

    def quantum(self, node, protocol, op_id, op):
        self.calls.append(("quantum", protocol, op_id, op))

    def set_timer(self, node, protocol, key, at_ns):
        self.handles += 1
        self.calls.append(("set_timer", protocol, key, at_ns, self.handles))
        return self.handles

    def cancel_timer(self, handle):
        self.calls.append(("cancel_timer", handle))


class PyNode(RuntimeBody, PyRuntimeCore):
    pass


def _node_classes() -> list:
    """The node on each core there is: the twin's, and the compiled one's where built."""
    classes = [PyNode]
    if HAVE_CYTHON:
        from qstack.core._runtime import RuntimeCore

        class CyNode(RuntimeBody, RuntimeCore):
            pass
        classes.append(CyNode)
    return classes


def _nodes():
    nodes = []
    for cls in _node_classes():
        node = cls("a", Recorder())
        node.add(Low("a"))
        node.add(High("a"))
        node.listeners.append(lambda ev, seen=node.inbox: None)
        nodes.append(node)
    return nodes


def _state(node):
    return (node.driver.calls, node.inbox,
            [(f.time_ns, f.protocol, f.code, f.detail) for f in node.failures],
            sorted(node.timers.items(), key=repr))


KINDS = ["send", "op", "timer", "cancel", "up", "down", "to_low", "fail"]
spec = st.tuples(st.sampled_from(KINDS), st.integers(0, 5))
step = st.one_of(
    st.tuples(st.just("feed"), st.sampled_from(["t.low", "t.high", "t.none"]),
              st.lists(spec, max_size=5)),
    st.tuples(st.just("ping"), st.integers(0, 9), st.just(())),
    st.tuples(st.just("pong"), st.integers(0, 9), st.just(())),
    st.tuples(st.just("fire"), st.integers(0, 2), st.just(())),
    st.tuples(st.just("done"), st.sampled_from(["t.low", "t.high"]), st.just(())),
    st.tuples(st.just("crash"), st.just(0), st.just(())),
)


def _play(node, script):
    for now, (kind, a, b) in enumerate(script):
        if kind == "feed":
            node.feed(a, Do(tuple(b)), now)
        elif kind == "ping":
            node.message("b", Ping(a), now)
        elif kind == "pong":
            node.message("b", Pong(a), now)
        elif kind == "fire":
            for proto in ("t.low", "t.high"):
                handle = node.timers.get((proto, ("k", a)))
                if handle is not None:                              # (as the driver does)
                    node.fire_timer(proto, ("k", a), handle, now)
            node.fire_timer("t.low", ("k", a), "stale", now)       # ignored
        elif kind == "done":
            node.op_done(a, 3, "outcome", now)
        elif kind == "crash":
            node.crash()
            node.restart(now)


@needs_cython
@settings(max_examples=150, deadline=None)
@given(st.lists(step, max_size=25))
def test_both_cores_carry_out_the_same_actions(script):
    py, cy = _nodes()
    _play(py, script)
    _play(cy, script)
    assert _state(py) == _state(cy)


def test_the_python_core_carries_out_every_action_kind():
    """(Runs without the extension too.) One of each, checked by hand."""
    (node, *_) = _nodes()
    node.feed("t.high", Do((("send", 1), ("op", 2), ("timer", 1), ("timer", 1), ("cancel", 1),
                            ("up", 3), ("down", 4), ("to_low", 5), ("fail", 6))), 10)
    calls = node.driver.calls
    assert calls[:2] == [("send", "t.high", "peer", Ping(1)), ("quantum", "t.high", 2, ("gate", 2))]
    assert calls[2:] == [("set_timer", "t.high", ("k", 1), 17, 1), ("cancel_timer", 1),
                         ("set_timer", "t.high", ("k", 1), 17, 2), ("cancel_timer", 2)]
    assert node.inbox == [(10, ("up", 3, 10))]
    # t.low's delivery upward of ("up", 4, 10) reaches t.high, which has no handler for it
    assert [(f.protocol, f.code) for f in node.failures] == [
        ("t.high", ErrorCode.UNEXPECTED_EVENT), ("t.low", ErrorCode.INVALID_PARAMETER),
        ("t.high", ErrorCode.INVALID_PARAMETER)]
    node.feed("t.low", Do((("down", 1),)), 11)       # nothing below the bottom
    assert node.failures[-1].code == ErrorCode.UNEXPECTED_EVENT


_CHAIN = """
import dataclasses
import json
from benchmarks.bench_network import chain_run
from benchmarks.bench_sequence import WORKLOADS, Hardware, qstack_run
from benchmarks.bench_transport import teleport_run
from qstack.core.runtime import HAVE_CYTHON
from qstack.physical import heralding
from qstack.sim import network
keep = ("events", "sim_time_ms", "mean_fidelity", "messages", "quantum_ops", "sim_time_s",
        "fidelity_mean", "fidelity_min", "link_attempts", "qubits", "link_pairs",
        "bit_error_rate")
from qstack.core.kernels import compiled_modules
out = {"compiled": [HAVE_CYTHON, heralding.HAVE_CYTHON, network.HAVE_CYTHON,
                    *compiled_modules().values()]}   # (the protocols compiled from their source)
for name, r in (("chain", chain_run(8, pairs=40)), ("wire", chain_run(4, pairs=10, check_wire=True)),
                ("dm", chain_run(4, pairs=10, formalism="dm")),
                ("teleport", teleport_run(10, "bd")), ("ideal", teleport_run(20, "bd", "ideal")),
                # (multiplexed links, pipelined circuit, T2, the pair probe reading each pair)
                ("seq2", qstack_run(WORKLOADS[0], Hardware(), 200, 10, "auto")),
                ("seq5", qstack_run(WORKLOADS[3], Hardware(), 40, 10, "auto"))):
    out[name] = {k: v for k, v in r.items() if k in keep}
print(json.dumps(out))
"""


@needs_cython
def test_runs_give_the_same_numbers_compiled_and_on_the_twins():
    """Chains (bd, dm, with the wire check), teleportation (full stack and
    the ideal network layer) and two SeQUeNCe-matched workloads read by the
    pair probe: every compiled piece against its twin at once."""
    out = []
    for pure in ("0", "1"):
        env = dict(os.environ, QSTACK_PURE_PYTHON=pure, PYTHONPATH=str(ROOT))
        env.pop("QSTACK_REQUIRE_CYTHON", None)
        proc = subprocess.run([sys.executable, "-c", _CHAIN], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        out.append(json.loads(proc.stdout))
    compiled = [o.pop("compiled") for o in out]
    assert len(compiled[0]) == len(compiled[1]) > 3
    assert compiled == [[True] * len(compiled[0]), [False] * len(compiled[1])]
    assert out[0] == out[1]


# ---------------------------------------------------------------- the compiled core's handler cache

_EVENTS = [dataclasses.make_dataclass(f"_E{j}", [("n", int)], frozen=True) for j in range(12)]
_NAMES = [f"t.p{i}" for i in range(12)]      # (one string object per name, used again and again)


def _logging_protocol(i: int, log: list, generation: int) -> Protocol:
    """Protocol ``t.p{i}`` with one handler per event class, each logging
    (its generation, i, the class's number, n)."""
    ns = {"name": _NAMES[i], "BESIDE": True}
    for j, ev_cls in enumerate(_EVENTS):
        def handler(self, ev, now_ns, j=j):
            log.append((generation, i, j, ev.n))
        ns[f"_e{j}"] = on(ev_cls)(handler)
    return type(f"_P{i}", (Protocol,), ns)("a")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("feed"), st.integers(0, 11), st.integers(0, 11), st.booleans()),
    st.tuples(st.just("replace"), st.integers(0, 11), st.just(0), st.just(False)),
    st.tuples(st.just("crash"), st.just(0), st.just(0), st.just(False))), max_size=150))
def test_every_event_reaches_the_handler_the_stack_has_now(script):
    """The compiled core keeps the handler of each (protocol name, event
    class) last seen in a 64-entry direct-mapped cache (``_runtime.pyx``,
    ``_feed``), keyed by the two objects' addresses. 144 pairs of 12
    protocols and 12 event classes overflow it and collide in it; names are
    given as the interned string or as an equal string built afresh (a
    different object); a protocol replaced in the stack, or a node crashed
    and restarted, must be reached anew, never through a stale entry. Every
    event reaches the handler of the protocol in the stack now, on both cores."""
    for node_cls in _node_classes():
        log: list = []
        node = node_cls("a", Recorder())
        generation = [0] * 12
        for i in range(12):
            node.add(_logging_protocol(i, log, 0))
        expected = []
        for n, (kind, i, j, fresh) in enumerate(script):
            if kind == "feed":
                name = "".join(["t.p", str(i)]) if fresh else _NAMES[i]
                node.feed(name, _EVENTS[j](n), n)
                expected.append((generation[i], i, j, n))
            elif kind == "replace":
                generation[i] += 1
                node.protocols[_NAMES[i]] = _logging_protocol(i, log, generation[i])
                node._restack()
            else:
                node.crash()
                node.restart(n)
        assert log == expected, node_cls

