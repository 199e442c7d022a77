# cython: nonecheck=True
# (compiled: a typed field read through a name that is None raises the
# AttributeError plain Python raises, e.g. a probe that bind_probes never saw)
"""Simulator instruments: what a study reads about delivered pairs that no node could.

A node sees its own half of an end-to-end pair and the protocol's estimate
of its fidelity. The simulator also knows the state the two halves really
share. :class:`PairProbe` sits at the top of both end nodes' stacks (on
``network.qnp``, where :func:`~qstack.sim.chain.build_chain` puts its
``consumer``) and, once both ends have heard of a pair, reads that state's
fidelity to the Bell state announced, after each half's memory decay up to
the moment the second end hears (the engine's, not the protocol's estimate),
records it with the pair's age, and frees both halves. The two ends share
one :class:`PairLedger`.

It is compiled with the per-pair path (``setup.py``'s ``COMPILED_PY``): it
runs once per end per delivered pair, and as interpreted code it cost about
a sixth of a pair's instructions on a two-node link
(``docs/compiled-runtime.md``). The same source is its pure-Python twin.

Only the simulator can do this: in the emulation each node is a process of
its own, and no process holds the other half's state.

    ledger = PairLedger()
    net, names, ends = build_chain(3, consumer=lambda node: PairProbe(node, ledger))
    bind_probes(net, ends)
    net.submit(names[0], NetRequest(names[-1], number=100), to="network.qnp")
    net.run()
    ledger.fidelities()        # one per delivered pair
"""
from __future__ import annotations

from typing import Any

try:
    import cython
except ImportError:              # (Cython is a build tool, not a dependency)
    from qstack._cython_shadow import cython

from qstack.core.errors import ErrorCode, QStackError
from qstack.core.protocol import Protocol, QuantumOp, on
from qstack.network.service import NetErr, NetOk
from qstack.physical.device import QuantumDevice
from qstack.physical.ops import Discard

__all__ = ["PairLedger", "PairProbe", "bind_probes"]


class PairLedger:
    """What the two :class:`PairProbe` ends of a circuit record, shared by both.

    ``pairs``: per delivered pair, in the order the second end heard of
    them, ``(fidelity, age_ns, read_ns)``: the fidelity of the state the two
    halves share with the Bell state the network announced, at the time the
    second end heard (``read_ns``, simulated ns); the age is that time minus
    the herald time (``created_ns``) of the older half's oldest link pair,
    in ns. ``errors``: every ``NetErr`` either end received, and every
    failure to free the far half. ``waiting``: the pairs only one end has
    heard of so far, by pair id ``(head, circuit_id, seq)``: that end's
    device and its ``NetOk``."""

    __slots__ = ("waiting", "pairs", "errors")

    def __init__(self) -> None:
        self.waiting: dict = {}
        self.pairs: list = []
        self.errors: list = []

    def fidelities(self) -> list[float]:
        """The delivered pairs' fidelities, in delivery order."""
        return [pair[0] for pair in self.pairs]

    def ages_ns(self) -> list[int]:
        """The delivered pairs' ages when read (ns), in delivery order."""
        return [pair[1] for pair in self.pairs]

    def read_times_ns(self) -> list[int]:
        """When each delivered pair was read (simulated ns), in delivery order."""
        return [pair[2] for pair in self.pairs]


class PairProbe(Protocol):
    """Top of an end node's stack in a simulation: once both ends hold an
    end-to-end pair, the second end to hear reads the fidelity of the state
    the two qubits share with the Bell state announced (the engine's, after
    each half's memory decay up to now, read without changing the state)
    and the pair's age into the shared ``ledger``, then frees both qubits:
    its own with a ``Discard`` action, the first end's on that node's device
    (the first end only waits). :func:`bind_probes` gives each probe its
    node's device once the network is built. It reads kept pairs (type K).
    Two mistakes stop the run with ``QStackError(INVALID_PARAMETER)`` at
    the first NetOk they meet: a probe never bound, and a pair delivered
    measured (type M or D), which has no qubit to read."""

    name = "sim.pair_probe"

    def __init__(self, node: str, ledger: PairLedger) -> None:
        super().__init__(node)
        if not isinstance(ledger, PairLedger):
            raise TypeError(f"{node}: ledger must be a PairLedger, got {type(ledger).__name__}")
        self.ledger = ledger
        self.device: Any = None

    @on(NetOk)
    @cython.locals(device=QuantumDevice, there=QuantumDevice, ledger=PairLedger)
    def _ok(self, ev: NetOk, now_ns: int):
        # (keyed by the id's fields: a tuple hashes in C, the dataclass's
        # generated __hash__ and __eq__ are Python calls)
        pid = ev.pair_id
        device = self.device
        if device is None:
            raise QStackError(ErrorCode.INVALID_PARAMETER,
                              f"{self.node}: this PairProbe has no device: call "
                              f"bind_probes(net, ends) once the network is built")
        qubit = ev.qubit
        if qubit is None:
            raise QStackError(ErrorCode.INVALID_PARAMETER,
                              f"{self.node}: a PairProbe reads kept pairs (NetRequest type K); "
                              f"pair {pid.head}/{pid.circuit_id}/{pid.seq} came measured, "
                              f"with no qubit")
        ledger = self.ledger
        key = (pid.head, pid.circuit_id, pid.seq)
        first = ledger.waiting.pop(key, None)
        if first is None:
            ledger.waiting[key] = (device, ev)
            return None
        there, other = first
        # the memories decay lazily: the read includes both halves' decay up to now
        fidelity = device.bell_fidelity_now(qubit, there, other.qubit, ev.bell_index, now_ns)
        ledger.pairs.append((fidelity, now_ns - min(ev.created_ns, other.created_ns), now_ns))
        _, failed = there.execute(Discard(other.qubit), now_ns)
        if failed is not None:
            ledger.errors.append(failed)
        return [QuantumOp(None, Discard(qubit))]

    @on(NetErr)
    def _err(self, ev: NetErr, now_ns: int):
        self.ledger.errors.append(ev)


def bind_probes(net: Any, probes: dict) -> None:
    """Give each :class:`PairProbe` in ``probes`` (node name -> probe, as
    :func:`~qstack.sim.chain.build_chain` returns its ends) the device of its
    node on ``net`` (a :class:`~qstack.sim.network.SimNetwork`)."""
    for name, probe in probes.items():
        if not isinstance(probe, PairProbe):
            raise TypeError(f"{name}: {type(probe).__name__} is not a PairProbe")
        probe.device = net.nodes[name].device
