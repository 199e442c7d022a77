"""The emulation's node daemon: one node's protocol stack in its own process.

A :class:`NodeDaemon` is a :class:`~qstack.core.runtime.RuntimeDriver` for
one :class:`~qstack.core.runtime.NodeRuntime` (the same stack the simulator
runs, built by :func:`qstack.api.node_stacks` from the same network file),
carried out over trio in real time:

* messages to another node wait that pair's classical delay (the model's,
  as the simulator computes it; times the run's time scale) and then go
  over a TCP connection to that node's daemon, one connection per direction
  so each pair of nodes' messages stay in order; what arrives is fed to the
  runtime at once. A peer whose connection breaks (its process died) is
  ``PeerDown`` (and ``LinkDown`` for a neighbour) for the protocols; when it
  is reachable again it is ``PeerUp`` (``restarted`` if its boot number
  changed) and ``LinkUp``. A message to an unknown node is ``Undeliverable``
  (``NET_NO_ROUTE``). As in the simulator, a session is up while a path of
  live nodes and links joins the two nodes: the physics server tells every
  daemon which nodes are gone (``PhysNodeState``), the launcher which links
  (``NodeLinkState``), and a peer left without a path is ``PeerDown`` until
  one returns; a message still waiting out its delay when its session
  breaks is lost. A daemon that starts (a restart after a crash) is told by
  the physics server which nodes are gone and which links are down, so it
  does not assume every link up;
* quantum operations go to the physics server (``Phys*``,
  ``StationEntangle``/``StationCancel``), in order; their answers are fed
  back as ``OperationDone`` when the hardware has finished (``done_ns``);
* timers are deadlines on the network's clock (:class:`~qstack.emu.clock.RealClock`);
* applications connect as ``kind="app"`` (:mod:`qstack.emu.client`): their
  requests reach the transport protocol and its indications come back to
  the application that owns the connection; their local operations are
  forwarded to the physics server in order. An application whose connection
  ends (it returned, raised, or was killed) has its connections aborted (the
  far end learns it with ``TRANSPORT_ABORTED``), its listening ports closed
  and its qubits freed.

A protocol that raises while handling an event (a bug) loses that event,
recorded as ``INTERNAL_ERROR``; the daemon goes on serving.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import logging
import random
import sys
from typing import Any, Hashable

import networkx as nx
import trio

from qstack.core.errors import ErrorCode, QStackError
from qstack.core.messages import Message
from qstack.core.protocol import LinkDown, LinkUp, PeerDown, PeerUp, Undeliverable
from qstack.core.runtime import NodeRuntime, RuntimeDriver
from qstack.emu import profiling
from qstack.emu.channel import forward
from qstack.emu.clock import RealClock
from qstack.emu.messages import (
    APP_REF_BITS, CHOSEN_REF_BASE, MAX_REPORTED_FAILURES, OPS, REQUESTS, AppWelcome,
    FailuresQuery, FailuresReport, NodeBoot, NodeFault, NodeLinkState, NodeStatus,
    PhysAllocate, PhysDiscard, PhysLinkState, PhysNodeState, PhysPulseBlock, PhysPulseRecord, PhysQuery,
    PhysReport, PhysResult, PhysSettle, QUIET, QUIET_CONFIRM_EVERY, StatusQuery, as_code,
    event_to_wire, op_to_wire, pulse_record_from_wire, request_from_wire, AppQkdRequest,
    qkd_request_from_wire, qkd_result_to_wire,
)
from qstack.emu.runfile import RunFile, channel_api
from qstack.physical.messages import StationCancel, StationEntangle, StationHerald, key_from_wire, \
    key_to_wire
from qstack.physical.ops import CancelEntangle, Entangle, Herald, PulseBlock, PulseRecord
from qstack.transport import service as svc
from qstack.app.qkd.bb84 import QkdResult
from qstack.app.qkd.messages import PROTOCOL as QKD
from qstack.transport.messages import PROTOCOL as TRANSPORT

__all__ = ["NodeDaemon", "main"]

log = logging.getLogger("qstack.emu.daemon")

#: What a connection that ends raises.
_CLOSED = (QStackError, trio.BrokenResourceError, trio.ClosedResourceError, OSError)
#: A message whose delay is at most this (real ns) leaves at once: less than
#: its trip over localhost takes anyway (sender's writer, the socket, the
#: receiver's reader: well over 50 us in Python), so it still arrives after
#: its delay, one timer wake-up sooner.
AT_ONCE_NS = 20_000
#: How long a starting daemon tries to reach the physics server (s).
PHYSICS_GRACE_S = 30.0
#: Receive-side QKD results a daemon keeps for an application not attached yet.
QKD_UNCLAIMED = 16
#: How long a daemon keeps trying to reach a peer before it is ``PeerDown`` (s).
CONNECT_GRACE_S = 2.0


class _Peer:
    """The outgoing side of the session with one other node."""

    def __init__(self, name: str) -> None:
        self.name = name
        send, recv = trio.open_memory_channel(float("inf"))
        self.queue_send, self.queue_recv = send, recv
        self.up = True            # as the protocols believe (they start assuming so)
        self.boot: int | None = None
        self.last_at = 0          # latest scheduled departure (model ns): order per pair
        self.channel: Any = None
        self.incoming: set = set()  # its connections to us
        self.resetting = False      # the session is being reset on purpose (no LinkDown)
        self.link_told_down = False  # the protocols were told LinkDown (a neighbour)
        self.session = 0            # sessions broken so far (messages in flight die with one)
        self.in_flight = 0          # messages waiting out their delay (timers)


class _App:
    """One application attached to the daemon."""

    def __init__(self, app_id: int, channel: Any) -> None:
        self.app_id = app_id
        self.channel = channel
        send, recv = trio.open_memory_channel(float("inf"))
        self.out_send, self.out_recv = send, recv
        self.conns: set = set()
        self.ports: set = set()
        self.qubits: set = set()
        self.alive = True

    def tell(self, msg: Message) -> None:
        if self.alive:
            self.out_send.send_nowait(msg)


class NodeDaemon(RuntimeDriver):
    """Node ``name`` of the network in ``run`` (see the module doc)."""

    def __init__(self, run: RunFile, name: str, spec: Any | None = None,
                 stack: Any | None = None) -> None:
        from qstack.api import net_delay, node_stacks
        from qstack.config import load_network

        self.run = run
        self.name = name
        self.spec = spec if spec is not None else load_network(run.network)
        if name not in self.spec.nodes:
            raise QStackError(ErrorCode.BAD_CONFIG, f"no node {name!r} in {run.network}")
        self.clock = RealClock(run.epoch_ns, run.time_scale, on_error=self._callback_failed)
        if stack is None:       # (given: a test's own protocols, ``stack(name)`` -> list)
            # (app.qkd on every node: every link has its decoy-BB84 pulse
            # physics, and a block is an application's request, AppQkdRequest)
            stack, _topo = node_stacks(self.spec, seed=run.seed, qkd=True)
        self.neighbours = set(self.spec.neighbours(name))
        self.graph = nx.Graph()
        self.graph.add_nodes_from(self.spec.nodes)
        for link in self.spec.links:
            self.graph.add_edge(link.a, link.b, delay_ns=net_delay(link))
        self.links_down: set[frozenset] = set()
        self.nodes_down: set[str] = set()       # daemons gone (PhysNodeState)
        self.rerouted = trio.Event()            # set (and renewed) when the paths change
        self.delays = nx.single_source_dijkstra_path_length(self.graph, name, weight="delay_ns")
        self.boot = random.SystemRandom().getrandbits(62)
        self.peers: dict[str, _Peer] = {}
        self.apps: dict[int, _App] = {}
        self._next_app = 0
        self._requests = 0
        # request -> what to do with its answer
        self._pending: dict[int, tuple] = {}
        # requests of applications' QUIET operations not confirmed yet (in order)
        self._quiet: collections.deque[int] = collections.deque()
        self._pulse_parts: dict[int, list] = {}    # request -> PhysPulseRecord frames so far
        self._qkd_owner: dict[int, tuple[_App, int]] = {}   # QkdRequest id -> (app, its id)
        self._qkd_unclaimed: list = []             # receive-side results no app was there for
        self._tokens = 0
        self._token_owner: dict[int, tuple[_App, int]] = {}
        self._conn_owner: dict[Any, _App] = {}
        self._port_owner: dict[int, _App] = {}
        self.pairs_made = 0
        self.messages_lost = 0
        self.physics_send: Any = None
        self.nursery: Any = None
        self.runtime = NodeRuntime(name, self, failures=[], stack_factory=lambda: stack(name))
        self.runtime.listeners.append(self._indication)

    # ------------------------------------------------------------------ driver
    @property
    def now(self) -> int:               # type: ignore[override]
        return self.clock.now

    def _callback_failed(self, exc: BaseException) -> None:
        self.runtime.record("daemon", ErrorCode.INTERNAL_ERROR,
                            f"{type(exc).__name__}: {exc}", self.clock.now)
        log.error("%s: %s raised while handling an event (dropped, the node goes on)",
                  self.name, type(exc).__name__, exc_info=exc)

    def _safely(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:      # a protocol's bug: that event is lost, the node goes on
            self._callback_failed(exc)

    def send(self, node: NodeRuntime, protocol: str, dst: str, msg: Any) -> None:
        now = self.clock.now
        delay = self.delays.get(dst) if dst in self.spec.nodes else None
        if delay is None or dst == self.name:
            why = f"unknown node {dst!r}" if dst not in self.spec.nodes else \
                f"no classical path {self.name} -> {dst}"
            self.clock.schedule_at(now, self._safely, self.runtime.feed, protocol,
                                   Undeliverable(dst, msg, ErrorCode.NET_NO_ROUTE, why), now)
            return
        peer = self._peer(dst)
        at = max(now + int(delay), peer.last_at)
        peer.last_at = at
        if not peer.in_flight and (at - now) * self.clock.time_scale <= AT_ONCE_NS:
            # its delay is shorter than the trip itself: no timer (it would
            # only add a wake-up); nothing of this pair waits, so order holds
            peer.queue_send.send_nowait(msg)
        else:
            peer.in_flight += 1
            self.clock.schedule_at(at, self._depart, peer, peer.session, msg)

    def _depart(self, peer: _Peer, session: int, msg: Any) -> None:
        """``msg``'s delay is over: it goes now, unless its session broke
        meanwhile (a message in flight then is lost, as ``specs/faults.md`` says)."""
        peer.in_flight -= 1
        if peer.session == session:
            peer.queue_send.send_nowait(msg)
        else:
            self.messages_lost += 1

    def quantum(self, node: NodeRuntime, protocol: str, op_id: int | None, op: Any) -> None:
        now = self.clock.now
        cls = op.__class__
        if cls is Entangle or isinstance(op, Entangle):
            if op_id is None:
                self.runtime.record(protocol, ErrorCode.INVALID_PARAMETER,
                                    "Entangle needs an op_id: its answer is the herald", now)
                return
            request = self._request(("proto", protocol, op_id, node.incarnation))
            self._to_physics(StationEntangle(request, self.name, op.peer, key_to_wire(op.key),
                                             min(int(op.deadline_ns), (1 << 63) - 1),
                                             float(op.param), int(op.start_ns), bool(op.virtual)))
            return
        if cls is CancelEntangle or isinstance(op, CancelEntangle):
            self._to_physics(StationCancel(self.name, op.peer, key_to_wire(op.key),
                                           bool(op.virtual)))
            if op_id is not None:
                self.clock.schedule_at(now, self._done, protocol, op_id, node.incarnation, None)
            return
        if cls is PulseBlock:
            self._pulse_block(node, protocol, op_id, op)
            return
        request = self._request(("proto", protocol, op_id, node.incarnation))
        try:
            msg = op_to_wire(op, request)
        except QStackError as err:
            self._pending.pop(request, None)
            if op_id is None:
                self.runtime.record(protocol, err.code, err.detail, now)
            else:
                self.clock.schedule_at(now, self._done, protocol, op_id, node.incarnation, err)
            return
        self._to_physics(msg)

    def _pulse_block(self, node: NodeRuntime, protocol: str, op_id: int | None,
                     op: PulseBlock) -> None:
        """A block of QKD pulses: to the physics server, whose link station
        answers with this end's record (``PhysPulseRecord`` frames) when the
        block ends; what cannot go on the wire fails at once, as the
        simulator fails it."""
        now = self.clock.now
        if op_id is None:
            self.runtime.record(protocol, ErrorCode.INVALID_PARAMETER,
                                "PulseBlock needs an op_id: its answer is the record", now)
            return
        request = self._request(("proto", protocol, op_id, node.incarnation))
        try:
            msg = PhysPulseBlock(request, op.peer, key_to_wire(op.key), op.n, op.role)
        except (QStackError, TypeError, ValueError) as err:
            self._pending.pop(request, None)
            self.clock.schedule_at(now, self._done, protocol, op_id, node.incarnation,
                                   PulseRecord(False, reason=f"PulseBlock: {err}"[:1024]))
            return
        self._to_physics(msg)

    def set_timer(self, node: NodeRuntime, protocol: str, key: Hashable, at_ns: int) -> Any:
        return self.clock.schedule_at(at_ns, self._timer, protocol, key)

    def _timer(self, protocol: str, key: Hashable) -> None:
        self.runtime.fire_timer(protocol, key, self.runtime.timers.get((protocol, key)),
                                self.clock.now)

    def cancel_timer(self, handle: Any) -> None:
        self.clock.cancel(handle)

    # ------------------------------------------------------------------ physics answers
    def _request(self, what: tuple) -> int:
        self._requests += 1
        self._pending[self._requests] = what
        return self._requests

    def _to_physics(self, msg: Message) -> None:
        if self.physics_send is None:
            raise QStackError(ErrorCode.EMU_PEER_GONE, "the physics server is not connected")
        self.physics_send.send_nowait(msg)

    def _done(self, protocol: str, op_id: int, incarnation: int, outcome: Any) -> None:
        if self.runtime.incarnation == incarnation:
            self.runtime.op_done(protocol, op_id, outcome, self.clock.now)

    def from_physics(self, msg: Message) -> None:
        """An answer of the physics server."""
        cls = msg.__class__
        if cls is PhysNodeState:
            if msg.node != self.name:
                (self.nodes_down.discard if msg.up else self.nodes_down.add)(msg.node)
                peer = self.peers.get(msg.node)
                if not msg.up and peer is not None:
                    self._peer_down(peer)           # crashed: LinkDown (a neighbour), PeerDown
                self._reroute()
            return
        if cls is PhysLinkState:        # (on connecting: the links down now)
            self.nursery.start_soon(self._link_state, msg.a, msg.b, msg.up)
            return
        if cls is PhysResult:
            quiet = self._quiet
            while quiet and quiet[0] < msg.request:
                # answered in request order: the quiet ones before it succeeded
                self._pending.pop(quiet.popleft(), None)
            what = self._pending.pop(msg.request, None)
            if what is None:
                return
            if what[0] == "app":
                _k, app, app_request, ref = what
                if not msg.ok and ref is not None:
                    app.qubits.discard(ref)
                app.tell(dataclasses.replace(msg, request=app_request))
                return
            _k, protocol, op_id, incarnation = what
            outcome: Any = msg.value if msg.ok else QStackError(as_code(msg.code), msg.detail)
            if op_id is None:
                if not msg.ok:
                    self.runtime.record(protocol, outcome.code, msg.detail, self.clock.now)
                return
            self.clock.schedule_at(msg.done_ns, self._done, protocol, op_id, incarnation, outcome)
        elif cls is StationHerald:
            what = self._pending.pop(msg.request, None)
            if what is None:
                return
            _k, protocol, op_id, incarnation = what
            if msg.ok:
                self.pairs_made += 1
            herald = Herald(msg.ok, msg.qubit if msg.ok else None, msg.bell_index, msg.attempts,
                            msg.emitted_ns, msg.fidelity_estimate, msg.reason,
                            key_from_wire(msg.key))
            self._done(protocol, op_id, incarnation, herald)
        elif cls is PhysReport:
            what = self._pending.pop(msg.request, None)
            if what is not None:
                what[1](msg)
        elif cls is PhysPulseRecord:
            parts = self._pulse_parts.setdefault(msg.request, [])
            parts.append(msg)
            if not msg.last:
                return
            del self._pulse_parts[msg.request]
            what = self._pending.pop(msg.request, None)
            if what is None:
                return
            _k, protocol, op_id, incarnation = what
            try:
                record = pulse_record_from_wire(parts)
            except QStackError as err:
                record = PulseRecord(False, reason=err.detail[:1024])
            self._done(protocol, op_id, incarnation, record)

    # ------------------------------------------------------------------ peers
    def _peer(self, name: str) -> _Peer:
        peer = self.peers.get(name)
        if peer is None:
            peer = self.peers[name] = _Peer(name)
            self.nursery.start_soon(self._peer_writer, peer)
        return peer

    def _peer_down(self, peer: _Peer) -> None:
        """The session with ``peer`` broke: ``PeerDown`` (after ``LinkDown``
        for a neighbour, unless the session was reset on purpose or the link's
        going down was told already)."""
        if peer.up:
            peer.up = False
            peer.session += 1
            now = self.clock.now
            log.info("%s: peer %s down", self.name, peer.name)
            if peer.name in self.neighbours and not peer.resetting and not peer.link_told_down:
                peer.link_told_down = True
                self._safely(self.runtime.broadcast, LinkDown(peer.name), now)
            self._safely(self.runtime.broadcast, PeerDown(peer.name), now)

    def _peer_seen(self, peer: _Peer, boot: int) -> None:
        """``peer`` answered with its boot number: up again if it was down
        (``LinkUp`` first for a neighbour whose link is up and was told down)."""
        restarted = peer.boot is not None and peer.boot != boot
        peer.boot = boot
        peer.resetting = False
        if not peer.up or restarted:
            was_up = peer.up
            peer.up = True
            now = self.clock.now
            log.info("%s: peer %s up%s", self.name, peer.name, " (restarted)" if restarted else "")
            neighbour = peer.name in self.neighbours
            if was_up:          # it restarted between two looks: its old state is gone
                peer.session += 1
                if neighbour and not peer.link_told_down:
                    self._safely(self.runtime.broadcast, LinkDown(peer.name), now)
                    peer.link_told_down = True
                self._safely(self.runtime.broadcast, PeerDown(peer.name), now)
            if neighbour and peer.link_told_down and \
                    frozenset((self.name, peer.name)) not in self.links_down:
                peer.link_told_down = False
                self._safely(self.runtime.broadcast, LinkUp(peer.name), now)
            self._safely(self.runtime.broadcast, PeerUp(peer.name, restarted=restarted), now)

    async def _until_rerouted(self, timeout_s: float) -> None:
        """Sleep ``timeout_s`` (s), or less if the paths change meanwhile."""
        with trio.move_on_after(timeout_s):
            await self.rerouted.wait()

    async def _peer_writer(self, peer: _Peer) -> None:
        open_channel, _accept, ChannelClosed = channel_api()
        port = self.run.nodes.get(peer.name)
        secret = self.run.secret_bytes
        while True:
            # connect, retrying for a grace period (the peer may be starting);
            # with no classical path left (nodes or links down), down until one
            # comes back
            deadline = trio.current_time() + CONNECT_GRACE_S
            ch = None
            while ch is None:
                if peer.name not in self.delays:
                    self._drain_lost(peer)
                    self._peer_down(peer)
                    while peer.name not in self.delays:
                        await self.rerouted.wait()
                    deadline = trio.current_time() + CONNECT_GRACE_S
                try:
                    ch = await open_channel(self.run.host, port, name=self.name, kind="node",
                                            secret=secret, nursery=self.nursery,
                                            keepalive_s=self.run.keepalive_s,
                                            dead_after_s=self.run.dead_after_s)
                except (QStackError, OSError) as exc:
                    if trio.current_time() >= deadline:
                        self._drain_lost(peer)
                        self._peer_down(peer)
                        deadline = float("inf")
                        log.debug("%s: %s unreachable: %s", self.name, peer.name, exc)
                    await self._until_rerouted(0.05 if deadline != float("inf") else 0.5)
            try:
                await ch.send(NodeBoot(self.boot))
                first = await ch.receive()
                if first.__class__ is not NodeBoot:
                    raise QStackError(ErrorCode.UNEXPECTED_EVENT,
                                      f"{peer.name} answered {type(first).__name__}, not NodeBoot")
                self._peer_seen(peer, first.boot)
                peer.channel = ch
                async with trio.open_nursery() as inner:
                    inner.start_soon(self._watch, ch, inner.cancel_scope)
                    inner.start_soon(self._forward, peer, ch, inner.cancel_scope)
            except _CLOSED as exc:
                log.info("%s: connection to %s ended: %s", self.name, peer.name, exc)
            peer.channel = None
            self._drain_lost(peer)
            self._peer_down(peer)
            await ch.aclose()
            await self._until_rerouted(0.02)

    async def _forward(self, peer: _Peer, ch: Any, scope: trio.CancelScope) -> None:
        """Send ``peer``'s queued messages over ``ch`` until it fails (then
        end the connection's tasks: a broken connection is not the daemon's
        end)."""
        try:
            await forward(peer.queue_recv, ch)
        except _CLOSED as exc:
            log.info("%s: sending to %s failed: %s", self.name, peer.name, exc)
        scope.cancel()

    async def _watch(self, ch: Any, scope: trio.CancelScope) -> None:
        """Read the outgoing connection (only keepalives and the close come back)."""
        try:
            async for _msg in ch:
                pass
        except QStackError:
            pass
        scope.cancel()

    def _drain_lost(self, peer: _Peer) -> None:
        while True:
            try:
                peer.queue_recv.receive_nowait()
            except trio.WouldBlock:
                return
            self.messages_lost += 1

    async def _serve_peer(self, ch: Any) -> None:
        """An incoming connection from another node's daemon: feed what it sends."""
        first = await ch.receive()
        if first.__class__ is not NodeBoot:
            await ch.aclose(ErrorCode.UNEXPECTED_EVENT, "expected NodeBoot first")
            return
        if ch.peer not in self.delays:
            # no path of live nodes and links joins us (we learnt it first): not yet
            await ch.aclose(ErrorCode.NET_NO_ROUTE, f"no classical path {self.name} -> {ch.peer}")
            return
        await ch.send(NodeBoot(self.boot))
        peer = self._peer(ch.peer)
        self._peer_seen(peer, first.boot)
        src = ch.peer
        runtime = self.runtime
        peer.incoming.add(ch)
        try:
            async for msg in ch:
                if msg.__class__ is NodeFault:      # the far end resets the session
                    peer.resetting = True
                    self.nursery.start_soon(self._reset, src)
                    break
                try:
                    runtime.message(src, msg, self.clock.now)
                except Exception as exc:   # a protocol's bug: that message is lost
                    self._callback_failed(exc)
        except QStackError as err:
            log.info("%s: connection from %s ended: %s", self.name, src, err)
        finally:
            peer.incoming.discard(ch)
        if peer.boot == first.boot:
            # (a connection from an earlier boot that ends late -- a half-open
            # socket noticed by its keepalive -- says nothing of the new one)
            self._peer_down(peer)

    # ------------------------------------------------------------------ applications
    def _indication(self, ev: Any) -> None:
        """What the transport delivers upward: to the application it belongs to."""
        cls = ev.__class__
        app: _App | None = None
        if cls is QkdResult:
            self._qkd_result(ev)
            return
        if cls is svc.Done or cls is svc.Failed:
            owner = self._token_owner.pop(ev.token, None)
            if owner is None:
                return
            app, token = owner
            ev = dataclasses.replace(ev, token=token)
            if cls is svc.Done and isinstance(ev.value, svc.Conn):
                self._conn_owner[ev.value] = app
                app.conns.add(ev.value)
            if cls is svc.Failed and ev.qubit is not None:
                app.qubits.add(ev.qubit)
        elif cls is svc.Incoming:
            app = self._port_owner.get(ev.port)
            if app is not None:
                self._conn_owner[ev.conn] = app
                app.conns.add(ev.conn)
        elif hasattr(ev, "conn"):
            app = self._conn_owner.get(ev.conn)
            if cls is svc.QubitArrived or cls is svc.EprArrived:
                if app is None:
                    # nobody to give it to: free it (its application is gone)
                    self._discard(ev.qubit)
                    return
                app.qubits.add(ev.qubit)
            if (cls is svc.EprArrived or cls is svc.PairMeasured) and ev.token is not None:
                owner = self._token_owner.get(ev.token)
                if owner is not None:
                    ev = dataclasses.replace(ev, token=owner[1])
        if app is None:
            return
        msg = event_to_wire(ev)
        if msg is not None:
            app.tell(msg)

    def _qkd_result(self, res: Any) -> None:
        """A block's result from ``app.qkd``: the sender's to the application
        that asked; the receiver's to every application attached (each waits
        for the blocks of the peer it names), or, with none attached, kept
        for the next one (at most :data:`QKD_UNCLAIMED` results)."""
        if res.role == "send":
            owner = self._qkd_owner.pop(res.request_id, None)
            if owner is None or not owner[0].alive:
                return
            app, rid = owner
            for frame in qkd_result_to_wire(dataclasses.replace(res, request_id=rid)):
                app.tell(frame)
            return
        if not self.apps:
            self._qkd_unclaimed = (self._qkd_unclaimed + [res])[-QKD_UNCLAIMED:]
            return
        frames = qkd_result_to_wire(res)
        for app in self.apps.values():
            for frame in frames:
                app.tell(frame)

    def _discard(self, ref: Any) -> None:
        request = self._request(("proto", "daemon", None, self.runtime.incarnation))
        self._to_physics(PhysDiscard(request, int(ref)))

    def _app_request(self, app: _App, msg: Message) -> None:
        now = self.clock.now
        cls = msg.__class__
        if cls in REQUESTS:
            req = request_from_wire(msg)
            if hasattr(req, "token"):
                self._tokens += 1
                self._token_owner[self._tokens] = (app, req.token)
                req = dataclasses.replace(req, token=self._tokens)
            if isinstance(req, svc.Listen):
                self._port_owner[req.port] = app
                app.ports.add(req.port)
            elif isinstance(req, svc.Accept):
                self._conn_owner[req.conn] = app
                app.conns.add(req.conn)
            elif isinstance(req, svc.SendQubit):
                app.qubits.discard(req.qubit)
            self.runtime.feed(TRANSPORT, req, now)
            return
        if cls is AppQkdRequest:
            req = qkd_request_from_wire(msg)
            self._tokens += 1
            self._qkd_owner[self._tokens] = (app, req.request_id)
            self.runtime.feed(QKD, dataclasses.replace(req, request_id=self._tokens), now)
            return
        if cls in OPS:
            ref = None
            if cls is PhysAllocate:
                lo = CHOSEN_REF_BASE + (app.app_id << APP_REF_BITS)
                if not lo <= msg.ref < lo + (1 << APP_REF_BITS):
                    app.tell(PhysResult(msg.request, False, None, int(ErrorCode.OUT_OF_RANGE),
                                        f"reference {msg.ref} is not this application's", now))
                    return
                ref = msg.ref
                app.qubits.add(ref)
            elif hasattr(msg, "qubit") and cls is not PhysAllocate:
                app.qubits.discard(msg.qubit)
            elif hasattr(msg, "qubit_a"):
                app.qubits.discard(msg.qubit_a)
                app.qubits.discard(msg.qubit_b)
            request = self._request(("app", app, msg.request, ref))
            fwd = dataclasses.replace(msg, request=request)
            if cls is not PhysSettle:
                fwd = dataclasses.replace(fwd, queued=True)
            if cls in QUIET:            # answered only if it fails
                self._quiet.append(request)
                if len(self._quiet) % QUIET_CONFIRM_EVERY == 0:
                    # a long run of them: a settle of ours, whose answer confirms them
                    self._to_physics(fwd)
                    fwd = PhysSettle(self._request(("proto", "daemon", None,
                                                    self.runtime.incarnation)))
            self._to_physics(fwd)
            return
        raise QStackError(ErrorCode.UNEXPECTED_EVENT,
                          f"an application may not send {cls.__name__}")

    def _app_gone(self, app: _App) -> None:
        """Release what an application left: connections aborted, ports
        closed, qubits freed."""
        app.alive = False
        now = self.clock.now
        for conn in sorted(app.conns):
            if self._conn_owner.get(conn) is app:
                del self._conn_owner[conn]
                self._safely(self.runtime.feed, TRANSPORT,
                             svc.Abort(self._fresh_token(), conn, ErrorCode.TRANSPORT_ABORTED), now)
        for port in sorted(app.ports):
            if self._port_owner.get(port) is app:
                del self._port_owner[port]
                self._safely(self.runtime.feed, TRANSPORT, svc.Unlisten(self._fresh_token(), port),
                             now)
        for ref in sorted(app.qubits):
            self._discard(ref)
        for token in [t for t, (a, _tok) in self._token_owner.items() if a is app]:
            del self._token_owner[token]
        self.apps.pop(app.app_id, None)

    def _fresh_token(self) -> int:
        self._tokens += 1
        return self._tokens

    async def _serve_app(self, ch: Any) -> None:
        self._next_app += 1
        app = _App(self._next_app % (1 << APP_REF_BITS), ch)
        self.apps[app.app_id] = app
        log.info("%s: application %d attached", self.name, app.app_id)
        try:
            await ch.send(AppWelcome(self.name, self.run.epoch_ns, self.run.time_scale,
                                     self.run.seed, app.app_id))
            for res in self._qkd_unclaimed:         # blocks that ended before any app came
                for frame in qkd_result_to_wire(res):
                    app.tell(frame)
            self._qkd_unclaimed.clear()
            async with trio.open_nursery() as inner:
                async def writer() -> None:
                    try:
                        await forward(app.out_recv, ch)
                    except _CLOSED as err:    # it stopped reading, or went away
                        log.info("%s: application %d: %s", self.name, app.app_id, err)
                    inner.cancel_scope.cancel()
                inner.start_soon(writer)
                try:
                    async for msg in ch:
                        try:
                            self._app_request(app, msg)
                        except QStackError as err:
                            log.warning("%s: application %d: %s (connection closed)",
                                        self.name, app.app_id, err)
                            await ch.aclose(err.code, err.detail)
                            break
                        except Exception as exc:
                            self._callback_failed(exc)
                except _CLOSED as err:      # (caught in here: out of a nursery, in a group)
                    log.info("%s: application %d ended: %s", self.name, app.app_id, err)
                finally:
                    inner.cancel_scope.cancel()
        except QStackError as err:
            log.info("%s: application %d ended: %s", self.name, app.app_id, err)
        finally:
            self._app_gone(app)
            log.info("%s: application %d detached", self.name, app.app_id)

    # ------------------------------------------------------------------ control
    async def _serve_control(self, ch: Any) -> None:
        async for msg in ch:
            if msg.__class__ is StatusQuery:
                report = trio.Event()
                box: list = []

                def got(rep: PhysReport) -> None:
                    box.append(rep)
                    report.set()
                self._to_physics(PhysQuery(self._request(("query", got))))
                with trio.move_on_after(2.0):
                    await report.wait()
                qubits = box[0].qubits_in_memory if box else 0
                await ch.send(NodeStatus(msg.request, self.name,
                                         tuple(sorted(p.name for p in self.peers.values()
                                                      if p.up and p.boot is not None)),
                                         qubits, self.pairs_made, len(self.apps),
                                         len(self.runtime.failures),
                                         max(0, self.clock.late_ns_max),
                                         tuple(tuple(sorted(k)) for k in sorted(
                                             self.links_down, key=sorted))))
            elif msg.__class__ is FailuresQuery:
                records = self.runtime.failures
                part = records[msg.since:msg.since + MAX_REPORTED_FAILURES]
                await ch.send(FailuresReport(msg.request, len(records), msg.since,
                                             tuple(int(r.code) for r in part),
                                             tuple(str(r.protocol)[:64] for r in part),
                                             tuple(str(r.detail)[:256] for r in part)))
            elif msg.__class__ is NodeFault and msg.kind == "reset":
                await self._reset(msg.peer)
            elif msg.__class__ is NodeLinkState:
                await self._link_state(msg.a, msg.b, msg.up)

    def _reroute(self) -> None:
        """Classical delays over the nodes and links up; a peer left without
        a path has its session broken (it is ``PeerDown`` until a path
        returns: :meth:`_peer_writer` waits for one)."""
        alive = self.graph.copy()
        alive.remove_edges_from(tuple(k) for k in self.links_down)
        alive.remove_nodes_from(self.nodes_down)
        self.delays = nx.single_source_dijkstra_path_length(alive, self.name, weight="delay_ns")
        self.rerouted.set()
        self.rerouted = trio.Event()
        for peer in list(self.peers.values()):
            if peer.name not in self.delays and peer.up:
                peer.resetting = True           # (LinkDown, if any, was told by its cause)
                self._peer_down(peer)
                self.nursery.start_soon(self._reset, peer.name)

    async def _reset(self, name: str) -> None:
        """The classical session with ``name`` breaks (both ends learn it:
        ``PeerDown``, then ``PeerUp`` when it reconnects) and reconnects."""
        peer = self.peers.get(name)
        if peer is None:
            return
        peer.resetting = True
        ch = peer.channel
        if ch is not None:
            try:            # the far end closes its side too, and knows why
                await ch.send(NodeFault("reset", self.name))
            except (QStackError, OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            await ch.aclose(ErrorCode.EMU_PEER_GONE, "connection reset (fault)")
        for inc in list(peer.incoming):
            await inc.aclose(ErrorCode.EMU_PEER_GONE, "connection reset (fault)")

    async def _link_state(self, a: str, b: str, up: bool) -> None:
        """The link ``a``-``b`` went down or up: classical messages take the
        shortest path left (none: ``Undeliverable``); an end of it is told
        ``LinkDown`` (its session with the other end reset) or ``LinkUp``."""
        key = frozenset((a, b))
        if (key in self.links_down) != up or not self.graph.has_edge(a, b):
            return                  # already so, or no such link
        (self.links_down.discard if up else self.links_down.add)(key)
        other = b if self.name == a else a if self.name == b else None
        peer = self._peer(other) if other is not None else None
        now = self.clock.now
        if peer is not None and not up and not peer.link_told_down:
            peer.link_told_down = True
            self._safely(self.runtime.broadcast, LinkDown(other), now)
        self._reroute()
        if peer is None:
            return
        if up:
            if peer.up and peer.link_told_down:     # (else its reconnection tells it)
                peer.link_told_down = False
                self._safely(self.runtime.broadcast, LinkUp(other), now)
        elif other in self.delays:
            await self._reset(other)                # a path round: the session resets

    # ------------------------------------------------------------------ the process
    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        open_channel, accept_channel, ChannelClosed = channel_api()
        secret = self.run.secret_bytes
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            nursery.start_soon(self.clock.run)
            # listening first: a peer that learns we are back (from the physics
            # server, once we connect to it) finds the port open
            listeners = await trio.open_tcp_listeners(self.run.nodes[self.name], host="127.0.0.1")
            # the physics server starts beside us (net up starts both at once):
            # retried for PHYSICS_GRACE_S
            deadline = trio.current_time() + PHYSICS_GRACE_S
            while True:
                try:
                    physics = await open_channel(self.run.host, self.run.physics_port,
                                                 name=self.name, kind="node", secret=secret,
                                                 nursery=nursery,
                                                 keepalive_s=self.run.keepalive_s,
                                                 dead_after_s=self.run.dead_after_s)
                    break
                except (QStackError, OSError):
                    if trio.current_time() > deadline:
                        raise
                    await trio.sleep(0.02)
            send, recv = trio.open_memory_channel(float("inf"))
            self.physics_send = send

            async def physics_writer() -> None:
                await forward(recv, physics)

            async def physics_reader() -> None:
                try:
                    async for msg in physics:
                        try:
                            self.from_physics(msg)
                        except Exception as exc:
                            self._callback_failed(exc)
                except QStackError as err:
                    log.error("%s: the physics server went away (%s): stopping", self.name, err)
                log.error("%s: the physics server closed the connection: stopping", self.name)
                nursery.cancel_scope.cancel()

            nursery.start_soon(physics_writer)
            nursery.start_soon(physics_reader)

            async def client(stream: trio.SocketStream) -> None:
                try:
                    ch = await accept_channel(stream, name=self.name, kind="node", secret=secret,
                                              nursery=nursery, keepalive_s=self.run.keepalive_s,
                                              dead_after_s=self.run.dead_after_s)
                except QStackError as err:
                    log.warning("%s: refused a connection: %s", self.name, err)
                    return
                except (trio.TooSlowError, OSError, trio.BrokenResourceError, ValueError) as exc:
                    # (ValueError: a hello that does not parse) that connection only
                    log.warning("%s: a connection failed before its hello: %s", self.name, exc)
                    return
                try:
                    try:
                        if ch.peer_kind == "node" and ch.peer in self.spec.nodes \
                                and ch.peer != self.name:   # (never itself: its own messages
                            await self._serve_peer(ch)      # would be fed as a peer's)
                        elif ch.peer_kind == "app":
                            await self._serve_app(ch)
                        elif ch.peer_kind in ("control", "conformance"):
                            await self._serve_control(ch)
                        else:
                            await ch.aclose(ErrorCode.EMU_PEER_GONE,
                                            f"unknown peer {ch.peer!r} ({ch.peer_kind})")
                    # (except*: a failure inside a connection's own task group
                    # comes as an exception group; it ends that connection only)
                    except* (QStackError, trio.BrokenResourceError, trio.ClosedResourceError,
                             OSError) as group:
                        log.info("%s: connection from %s ended: %s", self.name, ch.peer,
                                 group.exceptions[0])
                finally:
                    await ch.aclose()

            self.runtime.start(self.clock.now)
            task_status.started()
            await trio.serve_listeners(client, listeners)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qstack.emu.daemon")
    parser.add_argument("runfile")
    parser.add_argument("node")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {args.node} %(message)s")
    run = RunFile.load(args.runfile)
    daemon = NodeDaemon(run, args.node)
    profiling.run(args.node, daemon.serve)
    return 0


if __name__ == "__main__":
    sys.exit(main())
