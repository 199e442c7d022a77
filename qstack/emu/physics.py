"""The emulation's physics server: it owns every qubit's state.

One process per emulated network. It holds the
:class:`~qstack.physical.engine.QuantumEngine`, one
:class:`~qstack.physical.device.QuantumDevice` per node and one
:class:`~qstack.physical.heralding.HeraldingStation` per quantum link, built
from the network file exactly as the simulator builds them, and serves the
node daemons (``specs/wire.md`` § "Emulation messages"):

* ``StationEntangle`` / ``StationCancel`` go to the link's station; its
  ``StationHerald`` answers reach each end at the herald's time (model
  time, :mod:`qstack.emu.clock`);
* ``PhysPulseBlock`` (a decoy-BB84 block of pulses, ``PulseBlock``) goes
  to the link's :class:`~qstack.physical.qkdlink.PulseStation`, the
  simulator's, drawing from the same named random stream
  (``pulses:A-B``, :class:`~qstack.sim.random.RandomStreams` of the run's
  seed), so that the same blocks on a link give the same records as under
  ``qstack.simulate``; each end's record goes back at the block's end as
  ``PhysPulseRecord`` frames;
* ``PhysAllocate``, ``PhysGate``, ``PhysMeasure``, ``PhysBellMeasure``,
  ``PhysDiscard`` run on the node's device at once and are answered at once
  with ``PhysResult`` carrying ``done_ns`` (when the hardware finishes: the
  asker treats the operation as done then); an application's (``queued``)
  allocation, gate or discard is answered only if it failed (``QUIET``).
  Operations marked ``queued`` (an application's) start when the node's
  previous queued operation has finished, as the simulator's ``SimRuntime``
  does; ``PhysSettle`` answers with the time they all have;
* a node may only name its own qubits: another node's qubit, or one that
  does not exist, fails with ``QUBIT_UNAVAILABLE``;
* a daemon whose connection ends (its process died, or it stopped) is a
  crashed node: its memory is emptied and its stations forget its requests
  (their partners get ``"peer down"``); the node reconnecting is a fresh one.

The server never loses or duplicates a qubit: :meth:`PhysicsServer.census`
counts the engine's qubits against the devices' memories.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import numpy as np
import trio

from qstack.core.errors import ErrorCode, QStackError
from qstack.core.messages import Message
from qstack.emu import profiling
from qstack.emu.channel import forward
from qstack.emu.clock import RealClock
from qstack.emu.messages import (
    CHOSEN_REF_BASE, PhysAllocate, PhysBellMeasure, PhysCensus, PhysCensusQuery, PhysDiscard,
    PhysGate, PhysLinkState, PhysMeasure, PhysNodeState, PhysQuery, PhysReport, PhysResult,
    PhysPulseBlock, PhysSettle, QUIET, op_from_wire, pulse_record_to_wire,
)
from qstack.emu.runfile import RunFile, channel_api
from qstack.physical.device import QuantumDevice
from qstack.physical.heralding import HeraldingStation
from qstack.physical.messages import (
    StationCancel, StationEntangle, StationHerald, key_from_wire, key_to_wire,
)
from qstack.physical.ops import Allocate, Entangle, Herald, PulseBlock, PulseRecord

__all__ = ["PhysicsServer", "main"]

log = logging.getLogger("qstack.emu.physics")

_OPS = (PhysAllocate, PhysGate, PhysMeasure, PhysBellMeasure, PhysDiscard)


class _NodeState:
    """What the server keeps of one connected node daemon."""

    def __init__(self, name: str, device: QuantumDevice) -> None:
        self.name = name
        self.device = device
        self.chosen: dict[int, Any] = {}     # chosen reference -> engine qubit
        self.busy_until = 0                  # end of the last queued operation (ns)
        self.outbox: Any = None              # trio send channel to the daemon's writer
        self.session = 0                     # connections so far (a reconnect is a restart)
        self.gone = False                    # its daemon went away (until it reconnects)


class PhysicsServer:
    """The physics of network ``spec`` (a :class:`~qstack.config.NetworkSpec`)
    on ``clock`` (:class:`~qstack.emu.clock.RealClock`), seeded by ``seed``."""

    def __init__(self, spec: Any, clock: RealClock, seed: int = 1, formalism: str | None = None
                 ) -> None:
        from qstack.physical.engine import QuantumEngine

        self.spec = spec
        self.clock = clock
        self.formalism = formalism or spec.formalism
        seeds = np.random.SeedSequence(seed)
        self.engine = QuantumEngine(np.random.default_rng(seeds.spawn(1)[0]))
        self.nodes: dict[str, _NodeState] = {}
        for name, node in spec.nodes.items():
            rng = np.random.default_rng(seeds.spawn(1)[0])
            self.nodes[name] = _NodeState(name, QuantumDevice(name, self.engine, node.hardware,
                                                              rng))
        self.stations: dict[frozenset, HeraldingStation] = {}
        self._side: dict[tuple[str, str], tuple[HeraldingStation, int]] = {}
        from qstack.api import net_delay

        for link in spec.links:
            if link.model is None:
                continue
            a, b = sorted((link.a, link.b))
            st = HeraldingStation((a, b), link.model, self.engine,
                                  (self.nodes[a].device, self.nodes[b].device), clock,
                                  self._herald, np.random.default_rng(seeds.spawn(1)[0]),
                                  np.random.default_rng(seeds.spawn(1)[0]), self.formalism,
                                  net_delay(link))
            self.stations[frozenset((a, b))] = st
            self._side[(a, b)] = (st, 0)
            self._side[(b, a)] = (st, 1)
        self.stats = {"ops": 0, "heralds": 0, "refused": 0}
        # decoy-BB84 pulse blocks: the link's station, made on its first block
        # (as the simulator does), on the simulator's stream for that link
        self.seed = seed
        self.qkd_links = {frozenset((link.a, link.b)): link for link in spec.links
                          if getattr(link, "qkd", None) is not None}
        self.pulse_stations: dict[frozenset, Any] = {}
        self.links_down: set[frozenset] = set()

    # ------------------------------------------------------------------ qubits
    def _qubit_of(self, node: _NodeState, ref: int) -> Any:
        q = node.chosen.get(ref) if ref >= CHOSEN_REF_BASE else self.engine._handles.get(ref)
        if q is None or not node.device.holds(q):
            raise QStackError(ErrorCode.QUBIT_UNAVAILABLE,
                              f"{node.name}: no qubit {ref} in its memory")
        return q

    def _ref_of(self, node: _NodeState, q: Any) -> int:
        return q.id

    def census(self) -> dict[str, Any]:
        """Qubits alive in the engine against qubits held in memories (equal
        unless a qubit was lost or duplicated), and each node's count."""
        per_node = {name: len(n.device.stored_qubits()) for name, n in self.nodes.items()}
        return {"engine": self.engine.num_live_qubits, "held": sum(per_node.values()),
                "per_node": per_node}

    # ------------------------------------------------------------------ requests
    def handle(self, node_name: str, msg: Message) -> Message | None:
        """One request from ``node_name``'s daemon; the immediate answer (or None)."""
        node = self.nodes[node_name]
        cls = msg.__class__
        if cls in _OPS:
            return self._op(node, msg)
        if cls is StationEntangle:
            return self._entangle(node, msg)
        if cls is StationCancel:
            found = self._side.get((node.name, msg.peer))
            if found is not None and not msg.virtual:
                found[0].cancel(found[1], key_from_wire(msg.key))
            return None
        if cls is PhysSettle:
            return PhysResult(msg.request, True, None, 0, "", max(self.clock.now, node.busy_until))
        if cls is PhysQuery:
            pairs = sum(st.pairs_heralded for k, st in self.stations.items() if node.name in k)
            return PhysReport(msg.request, len(node.device.stored_qubits()), pairs,
                              max(0, self.clock.late_ns_max))
        if cls is PhysPulseBlock:
            self._pulse_block(node, msg)
            return None
        if cls is PhysLinkState:
            key = frozenset((msg.a, msg.b))
            (self.links_down.discard if msg.up else self.links_down.add)(key)
            st = self.stations.get(key)
            if st is not None:
                st.set_up(msg.up)
            return None
        raise QStackError(ErrorCode.UNEXPECTED_EVENT,
                          f"the physics server does not take {cls.__name__}")

    def _op(self, node: _NodeState, msg: Message) -> PhysResult | None:
        """Carry out one operation; its answer (None: a queued QUIET one that
        succeeded, which is not answered)."""
        answer = self._carry_out(node, msg)
        if answer.ok and msg.queued and msg.__class__ in QUIET:
            return None
        return answer

    def _carry_out(self, node: _NodeState, msg: Message) -> PhysResult:
        self.stats["ops"] += 1
        now = self.clock.now
        try:
            op = op_from_wire(msg, lambda ref: self._qubit_of(node, ref))
        except QStackError as err:
            return PhysResult(msg.request, False, None, int(err.code), err.detail[:1024], now)
        chosen = msg.ref if msg.__class__ is PhysAllocate else 0
        if chosen and (chosen < CHOSEN_REF_BASE or chosen in node.chosen):
            return PhysResult(msg.request, False, None, int(ErrorCode.OUT_OF_RANGE),
                              f"reference {chosen} is not a free chosen reference", now)
        start = max(now, node.busy_until) if msg.queued else now
        duration, outcome = node.device.execute(op, start)
        done = start + int(duration)
        if msg.queued:
            node.busy_until = done
        if isinstance(outcome, QStackError):
            return PhysResult(msg.request, False, None, int(outcome.code),
                              outcome.detail[:1024], done)
        if op.__class__ is Allocate:
            if chosen:
                node.chosen[chosen] = outcome
                return PhysResult(msg.request, True, chosen, 0, "", done)
            return PhysResult(msg.request, True, self._ref_of(node, outcome), 0, "", done)
        for q in _consumed(op):
            if node.chosen and q in node.chosen.values():
                for k in [k for k, v in node.chosen.items() if v is q]:
                    del node.chosen[k]
        return PhysResult(msg.request, True, None if outcome is None else int(outcome), 0, "",
                          done)

    def _entangle(self, node: _NodeState, msg: StationEntangle) -> Message | None:
        found = self._side.get((node.name, msg.peer))
        key = key_from_wire(msg.key)
        ref = (node.name, node.session, msg.request)
        if found is None or msg.virtual:
            return StationHerald(msg.request, False, 0, 0, 0, 0, 0.0,
                                 f"no quantum link to {msg.peer}"[:64], msg.key)
        st, side = found
        st.submit(side, ref, Entangle(msg.peer, key, msg.deadline_ns, msg.param, msg.start_ns))
        return None

    def _pulse_block(self, node: _NodeState, msg: PhysPulseBlock) -> None:
        """A block of QKD pulses: the link's PulseStation pairs both ends'
        blocks; each end's record is sent when the block ends (model time)."""
        from qstack.physical.fibre import FibreChannel
        from qstack.physical.qkdlink import PulseStation
        from qstack.sim.random import RandomStreams

        now = self.clock.now
        key = frozenset((node.name, msg.peer))
        link = self.qkd_links.get(key) if msg.peer != node.name else None
        if link is None or key in self.links_down:
            why = (f"no QKD link to {msg.peer!r}" if link is None else
                   f"the link to {msg.peer!r} is down")
            self._send_record((node.name, node.session, msg.request), PulseRecord(False,
                                                                                  reason=why))
            return
        st = self.pulse_stations.get(key)
        if st is None:
            a, b = sorted((link.a, link.b))
            model = link.model
            fibre = (model.fibre.with_length(model.length_km) if hasattr(model, "fibre")
                     else FibreChannel(length_km=0.0))
            st = self.pulse_stations[key] = PulseStation(
                (a, b), link.qkd, fibre, RandomStreams(self.seed).get(f"pulses:{a}-{b}"))
        op = PulseBlock(msg.peer, key_from_wire(msg.key), msg.n, msg.role)
        for ref, at, record in st.submit(node.name, (node.name, node.session, msg.request), op,
                                         now):
            self.clock.schedule_at(at, self._send_record, ref, record)

    def _send_record(self, ref: tuple, record: PulseRecord) -> None:
        name, session, request = ref
        node = self.nodes[name]
        if node.session != session or node.outbox is None:
            return                          # that daemon is gone: the block with it
        for frame in pulse_record_to_wire(request, record):
            node.outbox.send_nowait(frame)

    def _herald(self, side: int, ref: tuple, herald: Herald) -> None:
        name, session, request = ref
        node = self.nodes[name]
        if node.session != session or node.outbox is None:
            return                          # that daemon is gone: its memory was emptied
        self.stats["heralds"] += 1
        qubit = 0 if herald.qubit is None else self._ref_of(node, herald.qubit)
        msg = StationHerald(request, bool(herald.ok), qubit, int(herald.bell_index),
                            int(herald.attempts), int(herald.emitted_ns),
                            min(1.0, max(0.0, float(herald.fidelity_estimate))),
                            (herald.reason or "")[:64], key_to_wire(herald.key))
        node.outbox.send_nowait(msg)

    # ------------------------------------------------------------------ sessions
    def attach(self, name: str, outbox: Any) -> None:
        """Node ``name``'s daemon connected (``outbox``: where its answers go).
        It is told which nodes are gone and which links are down; if it was
        gone, the others are told it is back."""
        node = self.nodes[name]
        node.session += 1
        node.outbox = outbox
        for other in self.nodes.values():
            if other.gone:
                outbox.send_nowait(PhysNodeState(other.name, False))
        # the links down now (net fault, the [faults] schedule): a daemon that
        # restarts learns them here rather than assume every link up
        for a, b in sorted(tuple(sorted(k)) for k in self.links_down):
            outbox.send_nowait(PhysLinkState(a, b, False))
        if node.gone:
            node.gone = False
            self._tell_all(PhysNodeState(name, True), but=name)

    def _tell_all(self, msg: Message, but: str) -> None:
        for other in self.nodes.values():
            if other.outbox is not None and other.name != but:
                other.outbox.send_nowait(msg)

    def detach(self, name: str) -> None:
        """Node ``name``'s daemon went away: a crash (memory lost)."""
        node = self.nodes[name]
        node.outbox = None
        node.session += 1
        node.gone = True
        self._tell_all(PhysNodeState(name, False), but=name)
        for (a, _b), (st, side) in self._side.items():
            if a == name:
                st.drop_side(side)
        for key, pst in self.pulse_stations.items():
            if name in key:
                pst.drop(name)
        node.device.reset()
        node.chosen.clear()
        node.busy_until = 0


def _consumed(op: Any) -> tuple:
    name = op.__class__.__name__
    if name == "Measure" or name == "Discard":
        return (op.qubit,)
    if name == "BellMeasure":
        return (op.qubit_a, op.qubit_b)
    return ()


# ---------------------------------------------------------------- the process

async def serve(run: RunFile, server: PhysicsServer | None = None, *,
                task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run the physics server of ``run`` until cancelled (``server``: one
    built already, on its own clock; default: built from the run's network file)."""
    open_channel, accept_channel, ChannelClosed = channel_api()
    if server is None:
        from qstack.config import load_network

        spec = load_network(run.network)
        clock = RealClock(run.epoch_ns, run.time_scale,
                          on_error=lambda exc: log.exception("timer callback failed",
                                                             exc_info=exc))
        server = PhysicsServer(spec, clock, seed=run.seed, formalism=run.formalism)
    clock = server.clock
    secret = bytes.fromhex(run.secret)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(clock.run)

        async def client(stream: trio.SocketStream) -> None:
            try:
                ch = await accept_channel(stream, name="physics", kind="physics", secret=secret,
                                          nursery=nursery, keepalive_s=run.keepalive_s,
                                          dead_after_s=run.dead_after_s)
            except QStackError as err:
                log.warning("refused a connection: %s", err)
                return
            except (trio.TooSlowError, OSError, trio.BrokenResourceError, ValueError) as exc:
                # (ValueError: a hello that does not parse) that connection only
                log.warning("a connection failed before its hello: %s", exc)
                return
            if ch.peer_kind == "node" and ch.peer in server.nodes:
                await _serve_node(server, ch)
            elif ch.peer_kind in ("control",):
                await _serve_control(server, ch)
            else:
                await ch.aclose(ErrorCode.EMU_PEER_GONE, f"unknown peer {ch.peer!r}")

        listeners = await trio.open_tcp_listeners(run.physics_port, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(client, listeners)


async def _serve_node(server: PhysicsServer, ch: Any) -> None:
    name = ch.peer
    send, recv = trio.open_memory_channel(float("inf"))
    server.attach(name, send)
    log.info("node %s attached", name)

    async def writer() -> None:
        await forward(recv, ch)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            try:
                async for msg in ch:
                    try:
                        answer = server.handle(name, msg)
                    except QStackError as err:
                        log.warning("%s: %s", name, err)
                        continue
                    if answer is not None:
                        send.send_nowait(answer)
            finally:
                nursery.cancel_scope.cancel()
    except Exception as exc:   # the connection broke: the node is gone
        log.info("node %s: connection ended (%s)", name, exc)
    finally:
        if server.nodes[name].outbox is send:
            server.detach(name)
            log.info("node %s detached: its memory is emptied", name)


async def _serve_control(server: PhysicsServer, ch: Any) -> None:
    async for msg in ch:
        if msg.__class__ is PhysCensusQuery:
            c = server.census()
            await ch.send(PhysCensus(msg.request, c["engine"], c["held"],
                                     tuple(c["per_node"]), tuple(c["per_node"].values())))
            continue
        try:
            answer = server.handle(next(iter(server.nodes)), msg) \
                if msg.__class__ is PhysLinkState else None
        except QStackError as err:
            log.warning("control: %s", err)
            continue
        if answer is not None:
            await ch.send(answer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qstack.emu.physics")
    parser.add_argument("runfile")
    args = parser.parse_args(argv)
    run = RunFile.load(args.runfile)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s physics %(message)s",
                        stream=sys.stderr)
    profiling.run("physics", serve, run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
