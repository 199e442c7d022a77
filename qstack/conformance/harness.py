"""The conformance tester's side of the wire: raw connections, impersonated
nodes, and what the target daemon tells them.

A :class:`Harness` holds everything a case needs to provoke the target and
watch it answer:

* :class:`RawConn`: a TCP connection driven by hand, byte by byte, for the
  session cases (a hello with a wrong secret, a malformed frame, silence);
* the **absent nodes** of the network (``qstack net up --absent``): the
  harness listens on their ports, so that when the target sends to one of
  them it reaches the harness (it answers the target's ``NodeBoot`` with
  its own and keeps every message in that node's inbox), and it connects to
  the target as them (kind ``node``, ``NodeBoot`` first);
* a control connection (kind ``conformance``) for ``StatusQuery`` and
  ``FailuresQuery``: a refusal the specs say is *recorded* (a protocol's
  ``Fail``) rather than answered is seen in the target's failure records;
* application connections (kind ``app``) for the transport cases that need
  a listening application.

Times are seconds of trio's clock.
"""
from __future__ import annotations

import random
import socket
from dataclasses import dataclass, field
from typing import Any, Callable

import trio

from qstack.core.errors import DecodeError, ErrorCode, QStackError
from qstack.core.messages import Message
from qstack.emu.channel import ChannelClosed, accept_channel, open_channel
from qstack.emu.messages import (
    AppWelcome, FailuresQuery, FailuresReport, NodeBoot, NodeStatus, StatusQuery,
)
from qstack.emu.runfile import RunFile
from qstack.emu.wire import VERSIONS, FrameReader, Session, SessionClosed

__all__ = ["Harness", "RawConn", "CaseFailed", "CaseSkipped", "Inbox", "Roles"]


class CaseFailed(Exception):
    """A case's check did not hold: what the spec expects and what came."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"expected {expected}; got {actual}")
        self.expected = expected
        self.actual = actual


class CaseSkipped(Exception):
    """A case cannot run against this target (e.g. no absent node in the
    role it needs); the reason is its message."""


def describe(msg: Any) -> str:
    """A message in one short line (for reports)."""
    text = repr(msg)
    return text if len(text) <= 200 else text[:197] + "..."


# ---------------------------------------------------------------- raw connections

class RawConn:
    """A TCP connection to the target driven by hand: send any bytes, read
    frames as they come, see when the target closes."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.reader = FrameReader()
        self.frames: list[Message] = []
        self.eof = False
        self.bad: DecodeError | None = None      # the target sent a frame we cannot decode
        self.session: Session | None = None

    @classmethod
    async def connect(cls, host: str, port: int, rcvbuf: int | None = None) -> "RawConn":
        """Connect to ``host:port``; ``rcvbuf`` (bytes) shrinks this side's
        receive buffer first (a peer that reads slowly fills up soon)."""
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            await sock.connect((host, port))
        except OSError as exc:
            sock.close()
            raise CaseFailed(f"the target accepts a TCP connection at {host}:{port}",
                             f"{exc}") from None
        stream = trio.SocketStream(sock)
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(stream)

    async def send_msg(self, msg: Message) -> bool:
        """Send an application message over the established session."""
        return await self.send(self.session.send(msg))

    async def send(self, data: bytes) -> bool:
        """Write ``data``; False if the target has closed the connection."""
        try:
            await self.stream.send_all(data)
            return True
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return False

    async def send_eof(self) -> None:
        """Half-close: the target reads the end of the stream."""
        try:
            await self.stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    async def _read_some(self) -> bool:
        try:
            data = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            data = b""
        if not data:
            self.eof = True
            return False
        self._take(data)
        return True

    def _take(self, data: bytes) -> None:
        """Record the frames in ``data`` (every frame the target sent, the
        session's own included)."""
        self.reader.feed(data)
        while self.bad is None:
            try:
                msg = self.reader.next()
            except DecodeError as exc:
                self.bad = exc
                break
            if msg is None:
                break
            self.frames.append(msg)

    async def until(self, match: Callable[[Message], bool], timeout_s: float) -> Message | None:
        """The first frame (already read or arriving within ``timeout_s``)
        that ``match`` accepts, or None (the target closed, or time ran out)."""
        seen = 0
        with trio.move_on_after(timeout_s):
            while True:
                for msg in self.frames[seen:]:
                    if match(msg):
                        return msg
                seen = len(self.frames)
                if self.eof or self.bad is not None:
                    return None
                await self._read_some()
        return None

    async def until_closed(self, timeout_s: float) -> bool:
        """Read until the target closes the connection (True) or ``timeout_s``
        passes (False)."""
        with trio.move_on_after(timeout_s):
            while not self.eof:
                await self._read_some()
        return self.eof

    async def handshake(self, name: str, kind: str, secret: bytes,
                        versions: tuple[int, ...] = VERSIONS, timeout_s: float = 3.0,
                        keepalive_s: float = 0.5, dead_after_s: float = 2.0) -> Session:
        """Run the client's side of the session handshake; the Session (check
        ``established`` / ``close_code``). Every frame the target sends, from
        its Challenge on, is in :attr:`frames`."""
        session = Session("client", name, kind, secret, versions, keepalive_s=keepalive_s,
                          dead_after_s=dead_after_s)
        self.session = session
        for frame in session.initiate():
            await self.send(frame)
        with trio.move_on_after(timeout_s):
            while not session.established and not session.closed:
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    data = b""
                self._take(data)
                try:
                    session.receive_data(data)
                except SessionClosed:
                    pass
                out = session.data_to_send()
                if out:
                    await self.send(out)
                if not data:
                    self.eof = True
                    break
        return session

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.stream.aclose()


# ---------------------------------------------------------------- impersonated nodes

class Inbox:
    """Messages the target sent to one impersonated node, in order."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.messages: list[Message] = []
        self._changed = trio.Event()

    def put(self, msg: Message) -> None:
        self.messages.append(msg)
        self._changed.set()
        self._changed = trio.Event()

    def mark(self) -> int:
        """A place in the inbox: later looks see only what came after it."""
        return len(self.messages)

    async def expect(self, mark: int, match: Callable[[Message], bool], expected: str,
                     timeout_s: float) -> Message:
        """The first message after ``mark`` that ``match`` accepts; raises
        :class:`CaseFailed` (``expected``; what came instead) if none comes
        within ``timeout_s``."""
        seen = mark
        with trio.move_on_after(timeout_s):
            while True:
                for msg in self.messages[seen:]:
                    if match(msg):
                        return msg
                seen = len(self.messages)
                await self._changed.wait()
        got = self.messages[mark:]
        raise CaseFailed(f"{expected} (to {self.node}, within {timeout_s:g} s)",
                         "; ".join(describe(m) for m in got[:6]) or "nothing")

    def after(self, mark: int) -> list[Message]:
        return self.messages[mark:]


@dataclass
class Roles:
    """The absent nodes the harness can play, by what they are to the target
    (``specs/link.md`` §4: of two neighbours the smaller name leads)."""

    leader: str | None = None        # a neighbour whose name sorts before the target's
    follower: str | None = None      # a neighbour whose name sorts after it
    stranger: str | None = None      # a node with no link to the target
    all: list[str] = field(default_factory=list)

    @property
    def neighbour(self) -> str | None:
        return self.follower or self.leader


class Harness:
    """The tester's state for one run against the target at ``host:port``.

    ``secret``: the network's secret (bytes); ``run``: the run file, which
    names the absent nodes the harness plays (without it only the session
    cases can run); ``timeout_s`` (s): how long a case waits for an answer.
    Use inside a nursery: ``await harness.start(nursery)``."""

    def __init__(self, host: str, port: int, secret: bytes, run: RunFile | None = None,
                 timeout_s: float = 2.0) -> None:
        self.host = host
        self.port = port
        self.secret = secret
        self.run = run
        self.timeout_s = timeout_s
        self.keepalive_s = run.keepalive_s if run else 0.5
        self.dead_after_s = run.dead_after_s if run else 2.0
        self.target = ""
        self.roles = Roles()
        self.inboxes: dict[str, Inbox] = {}
        self.boots: dict[str, int] = {}
        self._nodes: dict[str, Any] = {}             # node -> channel to the target
        self._control: Any = None
        self._requests = 0
        self.nursery: Any = None
        self._listeners: list = []
        self.spec: Any = None

    # ------------------------------------------------------------ set-up
    async def start(self, nursery: trio.Nursery) -> None:
        """Learn the target's name (from its handshake), listen on the absent
        nodes' ports, and introduce each to the target (``NodeBoot``)."""
        self.nursery = nursery
        ch = await self.control()
        self.target = ch.peer
        if self.run is None:
            return
        from qstack.config import load_network

        self.spec = load_network(self.run.network)
        absent = [a for a in self.run.absent if a != self.target]
        neighbours = set(self.spec.neighbours(self.target))
        roles = Roles(all=list(absent))
        for name in sorted(absent):
            if name in neighbours and name < self.target and roles.leader is None:
                roles.leader = name
            elif name in neighbours and name > self.target and roles.follower is None:
                roles.follower = name
            elif name not in neighbours and roles.stranger is None:
                roles.stranger = name
        self.roles = roles
        rng = random.SystemRandom()
        for name in absent:
            self.inboxes[name] = Inbox(name)
            self.boots[name] = rng.getrandbits(62)
            listeners = await trio.open_tcp_listeners(self.run.nodes[name], host=self.host)
            self._listeners.extend(listeners)
            nursery.start_soon(trio.serve_listeners,
                               lambda stream, n=name: self._serve(n, stream), listeners)
        for name in absent:
            await self.node(name)

    def need(self, role: str) -> str:
        """The absent node in ``role`` (``leader``, ``follower``,
        ``neighbour``, ``stranger``), or skip the case."""
        name = getattr(self.roles, role)
        if name is None:
            raise CaseSkipped(f"no absent node is the target's {role} (start the network "
                              f"with `qstack net up --absent ...`, see specs/conformance.md)")
        return name

    async def _serve(self, node: str, stream: trio.SocketStream) -> None:
        """The target connected to ``node``: answer its NodeBoot, keep what it sends."""
        async with trio.open_nursery() as nursery:
            try:
                ch = await accept_channel(stream, name=node, kind="node", secret=self.secret,
                                          nursery=nursery, keepalive_s=self.keepalive_s,
                                          dead_after_s=self.dead_after_s)
            except (ChannelClosed, QStackError, OSError):
                return
            inbox = self.inboxes[node]
            try:
                first = await ch.receive()
                inbox.put(first)
                if isinstance(first, NodeBoot):
                    await ch.send(NodeBoot(self.boots[node]))
                async for msg in ch:
                    inbox.put(msg)
            except (ChannelClosed, QStackError):
                pass
            finally:
                nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True):
                    await ch.aclose()

    # ------------------------------------------------------------ connections
    async def open(self, name: str, kind: str, **options: Any) -> Any:
        """A new authenticated channel to the target as ``name`` of ``kind``."""
        try:
            return await open_channel(self.host, self.port, name=name, kind=kind,
                                      secret=self.secret, nursery=self.nursery,
                                      keepalive_s=self.keepalive_s,
                                      dead_after_s=self.dead_after_s,
                                      connect_timeout_s=options.pop("timeout_s", 3.0),
                                      **options)
        except ChannelClosed as exc:
            raise CaseFailed(f"a {kind} session as {name!r} with the network's secret",
                             f"refused: {exc.code.name} ({int(exc.code)}) {exc.detail}") from None

    async def control(self) -> Any:
        """The control connection (kind ``conformance``)."""
        if self._control is None or self._control.closed:
            self._control = await self.open("conformance", "conformance")
        return self._control

    async def node(self, name: str) -> Any:
        """The channel to the target as node ``name`` (``NodeBoot`` exchanged)."""
        ch = self._nodes.get(name)
        if ch is not None and not ch.closed:
            return ch
        ch = await self.open(name, "node")
        await ch.send(NodeBoot(self.boots[name]))
        with trio.move_on_after(self.timeout_s):
            reply = await ch.receive()
            if isinstance(reply, NodeBoot):
                self._nodes[name] = ch
                return ch
            raise CaseFailed("NodeBoot in answer to NodeBoot", describe(reply))
        raise CaseFailed("NodeBoot in answer to NodeBoot", "nothing")

    async def reintroduce(self, name: str, restart: bool = False) -> None:
        """Close the channel as node ``name`` and open a fresh one, until the
        target counts ``name`` up again (after a case ended a session as it:
        a node session that ends is that peer down for the target).
        ``restart``: come back with a new boot number, as a node that
        restarted (and so remembers nothing)."""
        old = self._nodes.pop(name, None)
        if old is not None:
            await old.aclose()
        if restart:
            self.boots[name] = random.SystemRandom().getrandbits(62)
        await trio.sleep(0.1)           # its close is handled before the new hello
        await self.node(name)
        with trio.move_on_after(self.timeout_s):
            while name not in (await self.status()).peers_up:
                await trio.sleep(0.02)

    async def send(self, name: str, *msgs: Message) -> None:
        """Send ``msgs`` to the target as node ``name``, in order."""
        ch = await self.node(name)
        for msg in msgs:
            await ch.send(msg)

    async def app(self) -> "AppConn":
        """A new application attached to the target (its ``AppWelcome`` read)."""
        ch = await self.open("conformance-app", "app")
        conn = AppConn(ch)
        with trio.move_on_after(self.timeout_s):
            first = await ch.receive()
            if not isinstance(first, AppWelcome):
                raise CaseFailed("AppWelcome first on an application connection",
                                 describe(first))
            conn.welcome = first
            self.nursery.start_soon(conn.pump)
            return conn
        raise CaseFailed("AppWelcome first on an application connection", "nothing")

    # ------------------------------------------------------------ the target's records
    async def _ask(self, msg_cls: type, *args: Any) -> Any:
        ch = await self.control()
        self._requests += 1
        await ch.send(msg_cls(self._requests, *args))
        with trio.move_on_after(self.timeout_s):
            while True:
                reply = await ch.receive()
                if getattr(reply, "request", None) == self._requests:
                    return reply
        raise CaseFailed(f"an answer to {msg_cls.__name__}", "nothing")

    async def status(self) -> NodeStatus:
        return await self._ask(StatusQuery)

    async def failures(self, since: int = 0) -> FailuresReport:
        reply = await self._ask(FailuresQuery, since)
        if not isinstance(reply, FailuresReport):
            raise CaseFailed("FailuresReport", describe(reply))
        return reply

    async def fail_mark(self) -> int:
        """The number of failures the target has recorded (a place to look from)."""
        return (await self.failures(1 << 62)).total

    async def expect_failure(self, mark: int, code: ErrorCode, expected: str) -> tuple:
        """Wait until the target has recorded a failure with ``code`` after
        ``mark``; its (code, protocol, detail). Raises :class:`CaseFailed`."""
        seen: FailuresReport | None = None
        with trio.move_on_after(self.timeout_s):
            while True:
                seen = await self.failures(mark)
                for rec in zip(seen.codes, seen.protocols, seen.details):
                    if rec[0] == int(code):
                        return rec
                await trio.sleep(0.02)
        got = "; ".join(f"{c} {p}: {d}" for c, p, d in zip(seen.codes, seen.protocols,
                                                            seen.details)) if seen else ""
        raise CaseFailed(f"{expected}: a recorded failure {code.name} ({int(code)})",
                         got or "no failure recorded")

    async def failures_after(self, mark: int) -> list[tuple]:
        rep = await self.failures(mark)
        return list(zip(rep.codes, rep.protocols, rep.details))

    async def alive(self) -> NodeStatus:
        """Check the target still serves a new connection (StatusQuery on a
        fresh control session)."""
        ch = await self.open("conformance-2", "conformance")
        try:
            await ch.send(StatusQuery(1))
            with trio.move_on_after(self.timeout_s):
                reply = await ch.receive()
                if isinstance(reply, NodeStatus):
                    return reply
            raise CaseFailed("the target goes on serving others: NodeStatus on a new "
                             "connection", "no answer")
        finally:
            await ch.aclose()


class AppConn:
    """An application attached to the target, for the transport cases."""

    def __init__(self, ch: Any) -> None:
        self.ch = ch
        self.welcome: AppWelcome | None = None
        self.inbox = Inbox("the application")
        self._tokens = 0

    def token(self) -> int:
        self._tokens += 1
        return self._tokens

    async def pump(self) -> None:
        try:
            async for msg in self.ch:
                self.inbox.put(msg)
        except (ChannelClosed, QStackError):
            pass

    async def send(self, msg: Message) -> None:
        await self.ch.send(msg)

    async def aclose(self) -> None:
        await self.ch.aclose()
