"""The protocol classes typed for the compiled build (core/protocol.pxd,
link/egp.pxd, network/circuit.pxd; docs/compiled-runtime.md, "Typed protocol
classes").

Compiled, ``Protocol``, the EGP and the QNP are extension types: their fields
are C struct members and the methods a pair passes through are ``cpdef``.
What must hold in both builds, and what these tests check:

* a Python subclass is a protocol as before: it sets any attribute (it has
  an instance ``__dict__``; compiled, the EGP and the QNP themselves take only
  the attributes their ``.pxd`` declares), registers
  handlers with ``@on`` (its own winning over its base's), and a method it
  overrides is the one the compiled code calls;
* the handler registries, which cannot be class attributes of an extension
  type, are built per class on first use and see the whole MRO;
* compiled, the classes are extension types whose own class attributes
  cannot be set (so a test patches by subclassing, never ``EGP.x = ...``).
"""
from __future__ import annotations

import math
import weakref

import pytest

from qstack.core.kernels import compiled_modules, pure_python
from qstack.core.protocol import (
    MessageReceived, OperationDone, Protocol, Started, TimerFired, handlers_of,
    message_handlers_of, on,
)
from qstack.link.egp import EGP
from qstack.network.circuit import QnpProtocol
from qstack.network.routing import Topology
from qstack.network.service import NetErr, NetOk, NetRequest
from qstack.physical.device import NodeHardware
from qstack.physical.pair_model import SimplePairModel

COMPILED = (not pure_python()
            and all(compiled_modules().get(m) for m in
                    ("qstack.core.protocol", "qstack.link.egp", "qstack.network.circuit")))


class Base(Protocol):
    name = "test.base"

    @on(TimerFired)
    def _timer(self, ev, now_ns):
        return None

    @on(Started)
    def _started(self, ev, now_ns):
        return None


class Child(Base):
    name = "test.child"

    def __init__(self, node):
        super().__init__(node)
        self.anything = {"set": "by the subclass"}

    @on(TimerFired)
    def _own_timer(self, ev, now_ns):
        self.fired = ev.key
        return None


def test_a_python_subclass_registers_its_handlers_and_sets_its_attributes():
    assert handlers_of(Base) == {TimerFired: "_timer", Started: "_started"}
    # the subclass's handler wins; the base's others stay
    assert handlers_of(Child) == {TimerFired: "_own_timer", Started: "_started"}
    child = Child("a")
    assert child.handle(TimerFired("k"), 0) == [] and child.fired == "k"
    assert child.anything == {"set": "by the subclass"} and child.node == "a"
    child.later = 3                       # (after construction too)
    assert child.later == 3
    assert weakref.ref(child)() is child
    assert message_handlers_of(Child) == {} and MessageReceived not in handlers_of(Child)


def test_the_qnp_registers_its_message_handlers_from_the_compiled_class():
    handlers = message_handlers_of(QnpProtocol)
    assert len(handlers) > 5 and all(hasattr(QnpProtocol, h) for h in handlers.values())
    assert handlers_of(QnpProtocol)[MessageReceived] == "_dispatch_message"
    assert OperationDone in handlers_of(EGP) and OperationDone in handlers_of(QnpProtocol)


@pytest.mark.skipif(not COMPILED, reason="the protocols run as plain Python here")
def test_compiled_protocols_are_extension_types_with_fixed_class_attributes():
    for cls in (Protocol, EGP, QnpProtocol):
        assert not cls.__flags__ & (1 << 9), cls        # not a heap type (Py_TPFLAGS_HEAPTYPE)
    with pytest.raises(TypeError):
        EGP._pair_made = lambda *a: None
    topo = Topology.chain(2, fidelity=0.9, rate_hz=1e3)
    qnp = QnpProtocol("a", topo)
    # its fields live in the struct; it has no instance __dict__ ...
    assert qnp.circuits == {} and not hasattr(qnp, "__dict__")
    with pytest.raises(AttributeError):
        qnp.extra = 1

    class Mine(QnpProtocol):
        pass

    # ... but a Python subclass has one, as a plain class's subclass would
    mine = Mine("a", topo)
    mine.extra = 1
    assert mine.__dict__ == {"extra": 1} and mine.circuits == {}


def test_an_override_of_a_cpdef_method_is_what_the_compiled_protocol_calls(monkeypatch):
    """A Python subclass of the EGP that overrides a method the compiled EGP
    calls in C (``_pair_made``) and one the base declares (``start_op``):
    both overrides run, once per pair and once per Entangle, and the pairs
    are delivered as without them."""
    import tests.netstack
    from tests.netstack import inbox, stack_net

    made, started = [], []

    class Watched(EGP):
        def _pair_made(self, link, item, seq, index, h, now, actions):
            made.append(self.node)
            return super()._pair_made(link, item, seq, index, h, now, actions)

        def start_op(self, op, context):
            started.append(type(op).__name__)
            return super().start_op(op, context)

    monkeypatch.setattr(tests.netstack, "EGP", Watched)
    names = ["n0", "n1", "n2"]                     # (Topology.chain's names)
    model = SimplePairModel(0.3, 0.95, 1_000, 1_000, 1_000)
    hw = NodeHardware(num_qubits=8, t1_ns=math.inf, t2_ns=math.inf)
    topo = Topology.chain(3, fidelity=0.95, rate_hz=1e3)
    net, _ = stack_net(names, {("n0", "n1"): model, ("n1", "n2"): model},
                       lambda n: [QnpProtocol(n, topo, num_qubits=8)], hardware=hw, sink=True)
    net.submit("n0", NetRequest("n2", number=5), to="network.qnp")
    net.run()
    assert len(inbox(net, "n0", NetOk)) == 5
    assert not net.errors and not inbox(net, "n0", NetErr)
    # every link pair passed through the override at both of its ends
    assert len(made) >= 2 * 2 * 5 and set(made) == set(names)
    assert "Entangle" in started


def test_an_override_of_start_op_serves_every_entangle_of_a_multiplexed_link(monkeypatch):
    """With several generation processes per link the follower keeps m
    Entangles out in a loop (``EGP._follow``). Compiled, that loop once
    called a bound ``start_op`` through a wrapper that dropped the cpdef
    method's override flag (gcc warned of the pointer type), so a subclass's
    override could be skipped. Every Entangle at every node goes through the
    override: at least one per link pair at each of its ends."""
    import collections

    import tests.netstack
    from tests.netstack import inbox, stack_net

    started = collections.Counter()

    class Watched(EGP):
        def start_op(self, op, context):
            if type(op).__name__ == "Entangle":
                started[self.node] += 1
            return super().start_op(op, context)

    monkeypatch.setattr(tests.netstack, "EGP", Watched)
    names = ["n0", "n1", "n2"]
    model = SimplePairModel(0.3, 0.95, 1_000, 1_000, 1_000)
    hw = NodeHardware(num_qubits=8, communication_qubits=4, t1_ns=math.inf, t2_ns=math.inf)
    topo = Topology.chain(3, fidelity=0.95, rate_hz=1e3)
    net, _ = stack_net(names, {("n0", "n1"): model, ("n1", "n2"): model},
                       lambda n: [QnpProtocol(n, topo, num_qubits=8)], hardware=hw, sink=True)
    net.submit("n0", NetRequest("n2", number=20), to="network.qnp")
    net.run()
    assert len(inbox(net, "n0", NetOk)) == 20 and not net.errors
    assert all(egp.links[peer].m == 4 for name in names
               for egp in [net.nodes[name].protocols["link.egp"]] for peer in egp.links)
    for name in names:
        heralded = sum(link.pairs_heralded for ends, link in net.links.items()
                       if name in ends)
        assert started[name] >= heralded > 0, (name, started[name], heralded)


def test_a_handler_patched_before_the_class_is_first_used_is_still_its_handler(monkeypatch):
    """The registries are built on a class's first use, not with the class. A
    handler replaced on its class before then by an unmarked function (as the
    conformance suite's broken daemon and some tests do) still handles what
    the original was marked for, as when the registries were built with the
    class; a class used first and patched after behaves the same."""

    def fresh():
        class Patched(Protocol):
            @on(TimerFired)
            def _timer(self, ev, now_ns):
                return ["original"]
        return Patched

    def replaced(self, ev, now_ns):
        return ["replaced"]

    before = fresh()                              # patched, then first used
    monkeypatch.setattr(before, "_timer", replaced)
    assert before("a").handle(TimerFired("k"), 0) == ["replaced"]
    assert handlers_of(before) == {TimerFired: "_timer"}
    after = fresh()                               # first used, then patched
    assert after("a").handle(TimerFired("k"), 0) == ["original"]
    monkeypatch.setattr(after, "_timer", replaced)
    assert after("a").handle(TimerFired("k"), 0) == ["replaced"]
