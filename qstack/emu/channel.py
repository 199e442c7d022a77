"""The emulation's wire over trio streams: a thin adaptor around :class:`~qstack.emu.wire.Session`.

A :class:`Channel` is one established connection between two emulation
processes. :func:`open_channel` connects and runs the handshake as the
client, :func:`accept_channel` runs it as the server on a stream that was
accepted (inside a ``trio.serve_tcp`` handler), :func:`serve_channels`
does both for a listening port and keeps serving everyone else when one
connection is refused or fails.

Each channel has one background task (started in the caller's nursery) that
reads the socket and ticks the session's keepalive clock; received
application messages wait in a queue for :meth:`Channel.receive`. Writes go
out one frame per ``send_all`` under a lock, shielded from cancellation (a
frame is never cut in half) and bounded by ``dead_after_s``: a peer that has
stopped reading for that long is gone. When the queue holds
``max_queued`` messages the reader stops reading (the sender's TCP window
fills: back-pressure), and while it has stopped, silence is not blamed on
the peer. Every way a channel ends -- the peer's ``Goodbye`` or
``ErrorFrame``, a bad frame, silence, a lost connection, a local
:meth:`Channel.aclose` -- ends in one :class:`ChannelClosed` with a code
(``specs/wire.md`` § "Channels").
"""
from __future__ import annotations

import collections
import logging
import os
import socket
from typing import Callable

import trio

from qstack.core.errors import ErrorCode, QStackError
from qstack.core.messages import Message
from qstack.emu.wire import VERSIONS, Session, SessionClosed

__all__ = ["Channel", "ChannelClosed", "open_channel", "accept_channel", "serve_channels",
           "forward", "MAX_BATCH"]

log = logging.getLogger("qstack.emu")

_READ_BYTES = 1 << 16
_FLUSH_S = 0.5           # longest wait to tell a peer why we close, s
#: Most messages :func:`forward` writes in one socket write (bounds the
#: write's size and how long its encoding holds the event loop).
MAX_BATCH = 256


class ChannelClosed(QStackError):
    """The channel is closed; ``code`` says why: ``EMU_CLOSED`` after a clean
    close, ``EMU_PEER_GONE`` when the peer vanished, went silent or stopped
    reading, otherwise the fault's own code (``EMU_AUTH_FAILED``,
    ``UNSUPPORTED_VERSION``, ``MALFORMED``, ...)."""


def _nodelay(stream: trio.abc.Stream) -> None:
    # Small frames go out at once rather than waiting for Nagle's timer.
    sock = getattr(stream, "socket", None)
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:      # a socket closed under us: the handshake will say so
            pass


def _where(stream: trio.abc.Stream) -> str:
    sock = getattr(stream, "socket", None)
    try:
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except Exception:  # noqa: BLE001 - not a socket, or already closed
        return "?"


class Channel:
    """An established connection: send and receive application messages.

    ``peer``, ``peer_kind``: who the other side proved to be; ``version``: the
    session version agreed. Built by :func:`open_channel` /
    :func:`accept_channel`, not directly."""

    def __init__(self, stream: trio.abc.Stream, session: Session, early: list[Message],
                 max_queued: int) -> None:
        self._stream = stream
        self._session = session
        self.peer: str = session.peer_name or ""
        self.peer_kind: str = session.peer_kind or ""
        self.version: int = session.version or 0
        self._lock = trio.Lock()
        self._queue: collections.deque[Message] = collections.deque(early)
        self._arrived = trio.lowlevel.ParkingLot()
        self._drained = trio.lowlevel.ParkingLot()
        self._max_queued = max_queued
        self._paused = False
        self._error: ChannelClosed | None = None
        self._scope = trio.CancelScope()
        self._tick_s = session.keepalive_s / 2
        # the stream's trio socket, written directly (see _write); None: not a socket
        sock = getattr(stream, "socket", None)
        self._sock = sock if isinstance(sock, trio.socket.SocketType) else None
        self._writing_since: float | None = None      # a write under way since (s)
        self._stuck: tuple | None = None              # why the ticker closed a stuck write
        if session.closed:        # the peer closed right after the handshake
            self._error = ChannelClosed(session.close_code, session.close_detail)

    def __repr__(self) -> str:
        state = "open" if self._error is None else f"closed {self._error.code.name}"
        return f"<Channel to {self.peer_kind} {self.peer!r} v{self.version} {state}>"

    @property
    def closed(self) -> bool:
        return self._error is not None

    @property
    def close_code(self) -> ErrorCode | None:
        """Why the channel closed (None while it is open)."""
        return None if self._error is None else self._error.code

    # ------------------------------------------------------------ public
    async def send(self, msg: Message) -> None:
        """Send one application message. Safe from several tasks at once
        (frames never interleave); returns once the frame is written to the
        socket. Raises :class:`ChannelClosed` if the channel is closed or
        closes while sending (``EMU_PEER_GONE`` if the peer stopped reading
        for ``dead_after_s``)."""
        if self._error is not None:
            raise self._error
        try:
            frame = self._session.send(msg)
        except SessionClosed as exc:
            raise ChannelClosed(exc.code, exc.detail) from None
        await self._write(frame)

    async def send_many(self, msgs: "list[Message]") -> None:
        """Send ``msgs`` in order, their frames in one socket write (the
        same bytes as one :meth:`send` each, fewer system calls and wake-ups
        on both sides). A message that cannot be encoded raises, as
        :meth:`send` does, after the ones before it were written."""
        if self._error is not None:
            raise self._error
        session = self._session
        frames = []
        failure: BaseException | None = None
        for msg in msgs:
            try:
                frames.append(session.send(msg))
            except SessionClosed as exc:
                failure = ChannelClosed(exc.code, exc.detail)
                break
            except QStackError as exc:
                failure = exc
                break
        if frames:
            await self._write(frames[0] if len(frames) == 1 else b"".join(frames))
        if failure is not None:
            raise failure

    async def receive(self) -> Message:
        """The next application message. Messages that arrived before the
        channel closed are still given; after them :class:`ChannelClosed`."""
        while True:
            queue = self._queue
            if queue:
                msg = queue.popleft()
                if self._paused and len(queue) <= self._max_queued // 2:
                    self._drained.unpark_all()
                return msg
            if self._error is not None:
                raise self._error
            await self._arrived.park()

    async def aclose(self, code: ErrorCode | None = None, detail: str = "") -> None:
        """Close: tell the peer (a ``Goodbye``, or an ``ErrorFrame`` with
        ``code``) where it can still hear, then close the connection.
        Idempotent; never raises :class:`ChannelClosed`."""
        if self._error is not None:
            return
        self._session.close(code, detail)
        await self._finish(self._session.close_code, self._session.close_detail or detail)

    def __aiter__(self) -> "Channel":
        return self

    async def __anext__(self) -> Message:
        """The next message; iteration ends on a clean close (``EMU_CLOSED``)
        and raises :class:`ChannelClosed` on any other."""
        try:
            return await self.receive()
        except ChannelClosed as exc:
            if exc.code == ErrorCode.EMU_CLOSED:
                raise StopAsyncIteration from None
            raise

    # ------------------------------------------------------------ internals
    async def _write(self, data: bytes, limit_s: float | None = None) -> None:
        """Write ``data`` whole, one writer at a time. A caller's cancellation
        can stop a write only before its first byte (half a frame would break
        the stream for good). A write blocked for ``dead_after_s`` means the
        peer stopped reading: the ticker closes the channel (the ticker's own
        writes give up after ``limit_s``, s). A failure closes the channel
        and raises :class:`ChannelClosed`."""
        lock = self._lock
        if lock.locked():
            await lock.acquire()
        else:
            lock.acquire_nowait()     # uncontended: no scheduler round trip
        failure = None
        try:
            if self._error is not None:
                raise self._error
            now = self._writing_since = trio.current_time()
            rest_by = now + self._session.dead_after_s
            sock = self._sock
            try:
                sent = 0
                if sock is not None:
                    # What fits in the socket's buffer goes at once, without
                    # the scheduler round trip of a trio send (a cancellation
                    # still stops the write before its first byte)
                    await trio.lowlevel.checkpoint_if_cancelled()
                    try:
                        sent = os.write(sock.fileno(), data)
                    except BlockingIOError:
                        sent = 0
                if sock is not None and not sent:
                    # A trio socket's send sends something or, when cancelled,
                    # nothing: the first attempt needs no shield.
                    if limit_s is None:
                        sent = await sock.send(data)
                    else:
                        with trio.move_on_after(limit_s):
                            sent = await sock.send(data)
                        if not sent:
                            failure = self._stalled(now)
                if sent < len(data) and failure is None:
                    with trio.CancelScope(shield=True, deadline=rest_by) as rest:
                        if sock is None:
                            await self._stream.send_all(data)
                        else:
                            view = memoryview(data)
                            while sent < len(data):
                                sent += await sock.send(view[sent:])
                    if rest.cancelled_caught:
                        failure = self._stalled(now)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                failure = self._stuck or (ErrorCode.EMU_PEER_GONE,
                                          f"connection lost while sending: {exc!r}")
            finally:
                self._writing_since = None
        finally:
            lock.release()
        if failure is not None:
            self._session.close(*failure)   # queued, never written: the stream is stuck
            await self._finish(*failure, flush=False)
            raise self._error

    def _stalled(self, since: float) -> tuple:
        self._stuck = (ErrorCode.EMU_PEER_GONE,
                       f"a write waited {trio.current_time() - since:.3f} s (dead_after_s="
                       f"{self._session.dead_after_s:g}): the peer stopped reading")
        return self._stuck

    async def _finish(self, code: ErrorCode, detail: str, flush: bool = True) -> None:
        """Mark closed (once), tell the peer what the session queued, close the
        stream, stop the background task, wake every waiter."""
        if self._error is not None:
            return
        self._error = ChannelClosed(code, detail)
        if code not in (ErrorCode.EMU_CLOSED, ErrorCode.EMU_PEER_GONE):
            log.warning("closed %s %r (%s): %s (%d) %s", self.peer_kind, self.peer,
                        _where(self._stream), code.name, int(code), detail)
        out = self._session.data_to_send()
        if flush and out:
            # after any frame being written (a sender holds the lock), briefly
            with trio.move_on_after(_FLUSH_S) as scope:
                scope.shield = True
                async with self._lock:
                    try:
                        await self._stream.send_all(out)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass
        with trio.CancelScope(shield=True):
            await self._stream.aclose()
        self._scope.cancel()
        self._arrived.unpark_all()
        self._drained.unpark_all()

    async def _background(self) -> None:
        """Read the socket and tick the keepalive clock until the channel closes."""
        try:
            with self._scope:
                if self._error is not None:
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._ticker)
                    await self._reader()
        finally:
            if self._error is None:
                # cancelled from outside (its owner's nursery is going away):
                # close the socket now, as a dying process's kernel would,
                # rather than whenever the garbage collector finds it -- a
                # peer must not see an old connection end after a new one began
                self._error = ChannelClosed(ErrorCode.EMU_CLOSED, "the owner went away")
                self._arrived.unpark_all()
                self._drained.unpark_all()
                await trio.aclose_forcefully(self._stream)

    async def _reader(self) -> None:
        session, stream, queue = self._session, self._stream, self._queue
        while self._error is None:
            if len(queue) >= self._max_queued:
                self._paused = True
                await self._drained.park()
                self._paused = False
                continue
            try:
                data = await stream.receive_some(_READ_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                session.close(ErrorCode.EMU_PEER_GONE, f"connection lost: {exc!r}")
                await self._finish(ErrorCode.EMU_PEER_GONE, f"connection lost: {exc!r}",
                                   flush=False)
                return
            try:
                got = session.receive_data(data, trio.current_time())
            except SessionClosed as exc:
                got = exc.messages
            if got:
                queue.extend(got)
                self._arrived.unpark_all()
            if session.closed:
                await self._finish(session.close_code, session.close_detail)
                return

    async def _ticker(self) -> None:
        session = self._session
        while self._error is None:
            await trio.sleep(self._tick_s)
            now = trio.current_time()
            since = self._writing_since
            if since is not None and now - since > session.dead_after_s:
                failure = self._stalled(since)
                session.close(*failure)          # queued, never written: the stream is stuck
                await self._finish(*failure, flush=False)
                return
            session.tick(now, check_peer=not self._paused)
            if session.closed:
                await self._finish(session.close_code, session.close_detail)
                return
            if self._lock.locked():
                continue     # a frame is going out anyway; the keepalive waits its turn
            out = session.data_to_send()
            if out:
                try:
                    await self._write(out, limit_s=session.dead_after_s)
                except ChannelClosed:
                    return


async def forward(queue: trio.MemoryReceiveChannel, channel: Channel,
                  merge: Callable[[list], list] | None = None) -> None:
    """Send what arrives on ``queue`` over ``channel``, in order, until
    ``queue`` closes. Each wake-up takes every message queued by then (at
    most :data:`MAX_BATCH`) and writes them with one :meth:`Channel.send_many`:
    messages produced while the event loop handled one burst of input leave
    together. ``merge`` (optional) rewrites each batch before it is sent (it
    may join messages that say the same thing twice). Raises what
    :meth:`Channel.send_many` raises."""
    batch: list = []
    async for msg in queue:
        batch.append(msg)
        while len(batch) < MAX_BATCH:
            try:
                batch.append(queue.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        out, batch = batch, []
        await channel.send_many(out if merge is None or len(out) < 2 else merge(out))


async def _handshake(stream: trio.abc.Stream, session: Session) -> list[Message]:
    """Run the handshake on ``stream``; the application messages that came in
    with its last frame. Raises :class:`ChannelClosed` (the stream closed)."""
    try:
        for frame in session.initiate():
            await stream.send_all(frame)
        early: list[Message] = []
        while not session.authenticated and not session.closed:
            data = await stream.receive_some(_READ_BYTES)
            try:
                early = session.receive_data(data, trio.current_time())
            except SessionClosed:
                pass
            out = session.data_to_send()
            if out:
                await stream.send_all(out)
        if not session.authenticated:
            raise ChannelClosed(session.close_code, session.close_detail)
        return early
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        raise ChannelClosed(ErrorCode.EMU_PEER_GONE,
                            f"connection lost during the handshake: {exc!r}") from None


async def _establish(stream: trio.abc.Stream, session: Session, nursery: trio.Nursery,
                     timeout_s: float, max_queued: int) -> Channel:
    _nodelay(stream)
    try:
        with trio.move_on_after(timeout_s) as scope:
            early = await _handshake(stream, session)
        if scope.cancelled_caught:
            session.close(ErrorCode.EMU_PEER_GONE, f"no handshake within {timeout_s:g} s")
            raise ChannelClosed(ErrorCode.EMU_PEER_GONE,
                                f"the handshake did not finish within {timeout_s:g} s")
    except ChannelClosed as exc:
        if exc.code != ErrorCode.EMU_PEER_GONE:
            log.warning("refused %s %r (%s) as %s: %s (%d) %s", session.peer_kind,
                        session.peer_name, _where(stream), session.role, exc.code.name,
                        int(exc.code), exc.detail)
        out = session.data_to_send()
        with trio.move_on_after(_FLUSH_S) as flush:
            flush.shield = True
            try:
                if out:
                    await stream.send_all(out)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
        with trio.CancelScope(shield=True):
            await stream.aclose()
        raise
    channel = Channel(stream, session, early, max_queued)
    if channel.closed:          # the peer closed within the handshake's last data
        with trio.CancelScope(shield=True):
            await stream.aclose()
    else:
        nursery.start_soon(channel._background)
    return channel


async def open_channel(host: str, port: int, *, name: str, kind: str, secret: bytes,
                       nursery: trio.Nursery, keepalive_s: float = 0.5,
                       dead_after_s: float = 2.0, connect_timeout_s: float = 5.0,
                       versions: tuple[int, ...] = VERSIONS,
                       max_queued: int = 65536) -> Channel:
    """Connect to ``host:port`` over TCP and run the handshake as the client
    ``name`` of ``kind`` with the network's ``secret``. ``keepalive_s`` and
    ``dead_after_s`` (s) as in :class:`~qstack.emu.wire.Session`;
    ``connect_timeout_s`` (s) bounds connecting and the handshake together;
    ``max_queued`` (messages) is the receive queue past which reading stops.
    The channel's background task runs in ``nursery``. Raises
    :class:`ChannelClosed`: the refusal's code (``EMU_AUTH_FAILED``,
    ``UNSUPPORTED_VERSION``, ...), or ``EMU_PEER_GONE`` when nobody accepts
    or answers in time."""
    session = Session("client", name, kind, secret, versions, keepalive_s=keepalive_s,
                      dead_after_s=dead_after_s)
    deadline = trio.current_time() + connect_timeout_s
    stream = None
    with trio.move_on_at(deadline):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise ChannelClosed(ErrorCode.EMU_PEER_GONE,
                                f"cannot connect to {host}:{port}: {exc}") from None
    if stream is None:
        raise ChannelClosed(ErrorCode.EMU_PEER_GONE,
                            f"nobody accepted at {host}:{port} within {connect_timeout_s:g} s")
    return await _establish(stream, session, nursery,
                            max(deadline - trio.current_time(), 0.0), max_queued)


async def accept_channel(stream: trio.abc.Stream, *, name: str, kind: str, secret: bytes,
                         nursery: trio.Nursery, handshake_timeout_s: float = 5.0,
                         keepalive_s: float = 0.5, dead_after_s: float = 2.0,
                         versions: tuple[int, ...] = VERSIONS,
                         max_queued: int = 65536) -> Channel:
    """Run the handshake as the server on an accepted ``stream`` (arguments
    as :func:`open_channel`; ``handshake_timeout_s`` (s) bounds it). A
    refused client is told why (an ``ErrorFrame``), logged (a warning on
    ``qstack.emu``), its stream closed, and :class:`ChannelClosed` raised."""
    session = Session("server", name, kind, secret, versions, keepalive_s=keepalive_s,
                      dead_after_s=dead_after_s)
    return await _establish(stream, session, nursery, handshake_timeout_s, max_queued)


async def serve_channels(handler, port: int, *, name: str, kind: str, secret: bytes,
                         host: str = "127.0.0.1", task_status=trio.TASK_STATUS_IGNORED,
                         **options) -> None:
    """Listen on ``host:port`` (port 0: a free one) and run ``await
    handler(channel)`` for every client that completes the handshake, each
    in its own task; the channel is closed when the handler returns. A
    refused client, or a :class:`ChannelClosed` out of a handler, ends that
    connection only; so does any other exception out of a handler (a bug:
    logged, and the client gets ``ErrorFrame(INTERNAL_ERROR)``). ``task_status.started`` gets the listening port.
    ``options`` go to :func:`accept_channel`."""

    async def connection(stream: trio.SocketStream) -> None:
        async with trio.open_nursery() as nursery:
            try:
                channel = await accept_channel(stream, name=name, kind=kind, secret=secret,
                                               nursery=nursery, **options)
            except ChannelClosed:
                return
            code = None
            try:
                await handler(channel)
            except ChannelClosed as exc:
                log.info("%r ended: %s", channel, exc)
            except Exception:    # noqa: BLE001 - a handler's bug ends its connection only
                log.exception("handler failed on %r", channel)
                code = ErrorCode.INTERNAL_ERROR
            finally:
                with trio.CancelScope(shield=True):
                    await channel.aclose(code, "the server's handler failed" if code else "")

    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, connection, listeners)
        task_status.started(bound)
