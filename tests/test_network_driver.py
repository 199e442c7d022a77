"""A lean driver for network-layer protocols over an abstract link layer.

The network tests use it to run the sans-I/O network protocols on the real
state engine (:class:`qstack.physical.engine.QuantumEngine`, "bd" or "dm")
without the link layer's protocol: a ``CreateRequest`` submitted to ``link.egp`` on a
link of success probability ``p`` per attempt yields a Werner pair of fidelity
``F`` after a geometric number of attempts (``slot_ns`` each; pairs on one
link are made one after the other), announced to both ends as ``LinkOk``.
Local operations take no time; classical messages take ``delay_ns`` per hop.
This isolates the network layer (its logic, its cost) from the link layer.

The tests at the bottom check the driver itself.
"""
from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qstack.core.protocol import (
    CancelTimer, Deliver, Fail, LinkDown, LinkUp, MessageReceived, OperationDone, PeerDown,
    QuantumOp, SendMessage, StartTimer, Submit, TimerFired,
)
from qstack.core.messages import decode, encode
from qstack.link.service import CreateRequest, EntanglementId, LinkOk
from qstack.physical.engine import QuantumEngine
from qstack.physical.ops import BellMeasure, Discard, Gate, Measure

LINK = "link.egp"


@dataclass
class _Link:
    p: float
    fidelity: float
    up: bool = True
    free_ns: int = 0
    seq: int = 0
    random_bell: bool = True
    slots: int = 1                                    # memory per end of this link
    used: dict = field(default_factory=dict)          # node -> slots in use
    queue: deque = field(default_factory=deque)       # (creator, request) waiting
    busy: bool = False


@dataclass
class _Node:
    name: str
    stack: list = field(default_factory=list)        # protocols, bottom first
    by_name: dict = field(default_factory=dict)
    inbox: list = field(default_factory=list)


class LinkNet:
    """Nodes stacked with network protocols over emulated links (see module doc)."""

    def __init__(self, seed: int = 1, formalism: str = "bd", delay_ns: int = 1000,
                 slot_ns: int = 1000, check_wire: bool = False, consume: bool = False) -> None:
        self.engine = QuantumEngine(seed)
        self.rng = np.random.default_rng(seed + 7919)
        self.formalism = formalism
        self.delay_ns = delay_ns
        self.slot_ns = slot_ns
        self.check_wire = check_wire
        self.nodes: dict[str, _Node] = {}
        self.links: dict[frozenset, _Link] = {}
        self.now = 0
        self._heap: list = []
        self._ready: deque = deque()
        self._tick = itertools.count()
        self._timers: dict = {}
        self.errors: list = []
        self.messages = 0
        self.events = 0
        self.attempts = 0
        self._owner: dict = {}
        # consume: the "application" frees delivered pairs once both ends have
        # them, recording (pair_id, bell_index, fidelity) in self.pairs
        self.consume = consume
        self.pairs: list = []
        self._half: dict = {}

    # -- building ------------------------------------------------------------
    def add_node(self, name: str) -> None:
        self.nodes[name] = _Node(name)

    def add_link(self, a: str, b: str, p: float = 1.0, fidelity: float = 1.0,
                 random_bell: bool = True, slots: int = 1) -> None:
        """Link a-b: success probability ``p`` per attempt, Werner pairs of
        ``fidelity`` in a uniformly random Bell state (``random_bell``) or Phi+;
        each end has ``slots`` memory qubits for this link: no pair is made
        while either end's are all in use (the back-pressure a real link
        layer applies)."""
        self.links[frozenset((a, b))] = _Link(p, fidelity, random_bell=random_bell, slots=slots,
                                              used={a: 0, b: 0})

    def add_protocol(self, node: str, proto: Any) -> Any:
        n = self.nodes[node]
        n.stack.append(proto)
        n.by_name[proto.name] = proto
        return proto

    def set_link_up(self, a: str, b: str, up: bool, notify: bool = True) -> None:
        self.links[frozenset((a, b))].up = up
        if notify:
            # as SimNetwork does: the link's ends are told (its session with it resets)
            events = (LinkDown, PeerDown) if not up else (LinkUp,)
            for x, y in ((a, b), (b, a)):
                for event in events:
                    for proto in self.nodes[x].stack:
                        self._at(self.now, self._handle, x, proto, event(y))

    def inbox(self, node: str) -> list:
        return self.nodes[node].inbox

    # -- running -------------------------------------------------------------
    def submit(self, node: str, request: Any, to: str) -> None:
        self._at(self.now, self._handle, node, self.nodes[node].by_name[to], request)

    def _at(self, t: int, fn, *args) -> None:
        if t <= self.now:
            self._ready.append((fn, args))
        else:
            heapq.heappush(self._heap, (t, next(self._tick), fn, args))

    def run(self, until_ns: int | None = None, stop=None, max_events: int = 50_000_000) -> None:
        ready, heap = self._ready, self._heap
        while self.events < max_events:
            if ready:
                fn, args = ready.popleft()
            elif heap:
                t = heap[0][0]
                if until_ns is not None and t > until_ns:
                    self.now = until_ns
                    return
                t, _, fn, args = heapq.heappop(heap)
                self.now = t
            else:
                return
            self.events += 1
            fn(*args)
            if stop is not None and not ready and stop():
                return

    # -- carrying out actions ------------------------------------------------
    def _handle(self, node: str, proto: Any, event: Any) -> None:
        for a in proto.handle(event, self.now):
            self._act(node, proto, a)

    def _act(self, node: str, proto: Any, a: Any) -> None:
        tp = type(a)
        if tp is SendMessage:
            self.messages += 1
            msg = a.msg
            if self.check_wire:
                msg = decode(encode(msg))
            dst = self.nodes[a.dst]
            target = dst.by_name.get(type(msg).PROTOCOL)
            if target is not None:
                self._at(self.now + self.delay_ns, self._handle, a.dst, target,
                         MessageReceived(node, msg))
        elif tp is QuantumOp:
            self._at(self.now, self._handle, node, proto,
                     OperationDone(a.op_id, self._execute(a.op)))
        elif tp is Submit:
            n = self.nodes[node]
            target = n.by_name.get(a.to) if a.to else n.stack[n.stack.index(proto) - 1]
            if target is not None and target is not proto:
                self._at(self.now, self._handle, node, target, a.request)
            elif a.to == LINK or a.to is None:
                self._create(node, proto, a.request)
        elif tp is Deliver:
            n = self.nodes[node]
            i = n.stack.index(proto)
            target = n.by_name.get(a.to) if a.to else (n.stack[i + 1] if i + 1 < len(n.stack) else None)
            if target is None:
                n.inbox.append((self.now, a.event))
                if self.consume:
                    self._consume(a.event)
            else:
                self._at(self.now, self._handle, node, target, a.event)
        elif tp is StartTimer:
            key = (node, proto.name, a.key)
            gen = next(self._tick)
            self._timers[key] = gen
            self._at(self.now + max(1, a.delay_ns), self._timer, node, proto, a.key, gen)
        elif tp is CancelTimer:
            self._timers.pop((node, proto.name, a.key), None)
        elif tp is Fail:
            self.errors.append((self.now, node, proto.name, a.code, a.detail))

    def _consume(self, ev: Any) -> None:
        q = getattr(ev, "qubit", None)
        pid = getattr(ev, "pair_id", None)
        if q is None or pid is None:
            return
        other = self._half.pop(pid, None)
        if other is None:
            self._half[pid] = ev
            return
        f = self.engine.bell_fidelity(q, other.qubit, ev.bell_index)
        self.pairs.append((pid, ev.bell_index, other.bell_index, f, self.now))
        for x in (q, other.qubit):
            self.engine.discard(x)
            self._release(x)

    def _timer(self, node: str, proto: Any, key: Any, gen: int) -> None:
        k = (node, proto.name, key)
        if self._timers.get(k) == gen:
            del self._timers[k]
            self._handle(node, proto, TimerFired(key))

    def _execute(self, op: Any) -> Any:
        e = self.engine
        tp = type(op)
        try:
            if tp is BellMeasure:
                out = e.bsm(op.qubit_a, op.qubit_b)
                self._release(op.qubit_a)
                self._release(op.qubit_b)
                return out
            if tp is Discard:
                e.discard(op.qubit)
                self._release(op.qubit)
                return None
            if tp is Measure:
                out = e.measure(op.qubit, op.basis)
                e.discard(op.qubit)
                self._release(op.qubit)
                return out
            if tp is Gate:
                if op.name == "cnot":
                    e.cnot(*op.qubits)
                elif op.name in ("rx", "ry", "rz"):
                    getattr(e, op.name)(op.qubits[0], *op.params)
                else:
                    getattr(e, op.name)(*op.qubits)
                return None
        except Exception as exc:   # reported to the protocol, as the real driver does
            return exc
        return ValueError(f"unsupported op {op!r}")

    # -- the emulated link layer ---------------------------------------------
    def _release(self, q: Any) -> None:
        owner = self._owner.pop(q.id, None)
        if owner is not None:
            link, node = owner
            link.used[node] -= 1
            self._pump(link)

    def _create(self, node: str, proto: Any, req: CreateRequest) -> None:
        if not isinstance(req, CreateRequest):
            return   # Release: this emulated link layer tracks no delivered pairs
        link = self.links.get(frozenset((node, req.remote)))
        if link is None or not link.up:
            return   # never served (a real EGP would time out)
        for _ in range(req.number):
            link.queue.append((node, req))
        self._pump(link)

    def _pump(self, link: _Link) -> None:
        # one pair at a time per link, and only into free memory at both ends
        if link.busy or not link.queue or not link.up:
            return
        a, req = link.queue[0]
        if link.used[a] >= link.slots or link.used[req.remote] >= link.slots:
            return
        link.queue.popleft()
        link.used[a] += 1
        link.used[req.remote] += 1
        link.busy = True
        attempts = int(self.rng.geometric(link.p)) if link.p < 1.0 else 1
        self.attempts += attempts
        self._at(self.now + attempts * self.slot_ns, self._herald, a, req.remote, req, link)

    def _herald(self, a: str, b: str, req: CreateRequest, link: _Link) -> None:
        link.busy = False
        if not link.up:
            link.used[a] -= 1
            link.used[b] -= 1
            return
        bell = int(self.rng.integers(4)) if link.random_bell else 0
        qa, qb = self.engine.bell_pair(bell, link.fidelity, self.formalism)
        self._owner[qa.id] = (link, a)
        self._owner[qb.id] = (link, b)
        link.seq += 1
        ent = EntanglementId(a, b, link.seq)
        for me, other, q in ((a, b, qa), (b, a, qb)):
            target = self.nodes[me].stack[0]   # the lowest protocol consumes the link's OKs
            ok = LinkOk(create_id=0, ent_id=ent, remote=other, bell_index=bell,
                        goodness=link.fidelity, created_ns=self.now, purpose_id=req.purpose_id,
                        qubit=q, request_done=True)
            self._handle(me, target, ok)
        self._pump(link)


# ---------------------------------------------------------------- self-tests

def test_driver_delivers_werner_pairs_to_both_ends():
    from qstack.core.protocol import Protocol, on

    class Sink(Protocol):
        name = "test.sink"

        @on(LinkOk)
        def _ok(self, ev, now):
            return [Deliver(ev)]

    net = LinkNet(seed=3)
    for n in ("a", "b"):
        net.add_node(n)
        net.add_protocol(n, Sink(n))
    net.add_link("a", "b", p=0.1, fidelity=0.9, slots=3)
    net._act("a", net.nodes["a"].stack[0], Submit(CreateRequest("b", number=3), to=LINK))
    net.run()
    oks_a = [e for _, e in net.inbox("a")]
    oks_b = [e for _, e in net.inbox("b")]
    assert len(oks_a) == len(oks_b) == 3
    for x, y in zip(oks_a, oks_b):
        assert x.ent_id == y.ent_id and x.bell_index == y.bell_index
        assert abs(net.engine.bell_fidelity(x.qubit, y.qubit, x.bell_index) - 0.9) < 1e-12
