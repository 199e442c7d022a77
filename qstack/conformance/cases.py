"""The conformance cases: each checks one clause of ``specs/`` against the
target daemon, seen only through its sockets.

A case is an ``async def`` taking the :class:`~qstack.conformance.harness.Harness`,
registered with :func:`case` under its id ``<spec>/<section>/<n>``: ``spec``
the document (``wire`` for ``specs/wire.md``, ``emulation``, ``link``,
``network``, ``transport``), ``section`` the section of that document the clause is in
(its number, or its name for the wire's unnumbered sections: framing,
session, keepalive), ``n`` the
case's number in it. It raises :class:`CaseFailed` (expected, actual) when
the target does not do what the clause says, :class:`CaseSkipped` when it
cannot run here. ``should=True`` marks a SHOULD (run with ``--strict``).
``specs/conformance.md`` lists them.
"""
from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable

import msgpack
import trio

from qstack.conformance.harness import CaseFailed, Harness, RawConn, describe
from qstack.core.errors import ErrorCode
from qstack.core.messages import Message
from qstack.emu.messages import (
    AppAccept, AppClose, AppConnect, AppDataArrived, AppDone, AppFailed, AppIncoming, AppListen,
    AppPeerClosed, AppSendBytes, NodeBoot, NodeStatus, StatusQuery,
)
from qstack.emu.wire import (
    MAX_FRAME_BYTES, Challenge, ErrorFrame, Goodbye, Hello, Keepalive, Proof, Welcome,
    encode_frame, handshake_proof,
)
from qstack.link.messages import (
    Abort, QueueAdd, QueueReject, QueueRequest, QueueSpec, QueueTopUp,
)
from qstack.network.messages import (
    CircuitConfirm, CircuitSetup, CircuitTeardown, CircuitTopUp, LinkStateAd, PairDone, PairLost,
    SegmentExpire, SegmentNotice, Track,
)
from qstack.transport.messages import (
    Ack, Data, EprHeader, Fin, PairRelease, QubitHeader, Rst, Syn, SynAck, Window,
)

__all__ = ["Case", "CASES", "case"]


@dataclass(frozen=True)
class Case:
    """One conformance case (see the module doc)."""

    id: str
    title: str
    should: bool
    fn: Callable[[Harness], Awaitable[None]]

    @property
    def spec(self) -> str:
        return self.id.split("/")[0]

    @property
    def section(self) -> str:
        return self.id.rsplit("/", 1)[0]


CASES: list[Case] = []


def case(id: str, title: str, *, should: bool = False):
    """Register the decorated ``async def fn(h)`` as case ``id``."""
    def register(fn):
        if any(c.id == id for c in CASES):
            raise ValueError(f"duplicate case id {id}")
        CASES.append(Case(id, title, should, fn))
        return fn
    return register


# ---------------------------------------------------------------- helpers

async def _refused_with(conn: RawConn, code: ErrorCode, what: str, h: Harness) -> None:
    """The target sends ``ErrorFrame(code)`` and closes the connection."""
    frame = await conn.until(lambda m: isinstance(m, ErrorFrame), h.timeout_s)
    if frame is None:
        raise CaseFailed(f"{what}: ErrorFrame({code.name} {int(code)}), then the connection "
                         "closed", "the connection closed without an ErrorFrame" if conn.eof
                         else "no ErrorFrame in time: "
                         + ("; ".join(describe(m) for m in conn.frames[:4]) or "nothing"))
    if frame.code != int(code):
        raise CaseFailed(f"{what}: ErrorFrame({code.name} {int(code)})",
                         f"ErrorFrame({frame.code}: {frame.detail})")
    if not await conn.until_closed(h.timeout_s):
        raise CaseFailed(f"{what}: the connection closed after the ErrorFrame",
                         "it stayed open")


@asynccontextmanager
async def _raw(h: Harness, **options) -> AsyncIterator[RawConn]:
    """A raw TCP connection to the target, closed after the block."""
    conn = await RawConn.connect(h.host, h.port, **options)
    try:
        yield conn
    finally:
        await conn.aclose()


@asynccontextmanager
async def _session(h: Harness, name: str = "conformance", kind: str = "conformance",
                   **options) -> AsyncIterator[RawConn]:
    """A raw connection with an established session (as ``kind`` ``name``)."""
    async with _raw(h) as conn:
        session = await conn.handshake(name, kind, h.secret, **options)
        if not session.established:
            raise CaseFailed(f"an established session as {kind} {name!r}",
                             f"{session.close_code!r}: {session.close_detail}")
        yield conn


def _hello(versions=(1,), name="conformance", kind="conformance") -> bytes:
    return encode_frame(Hello(tuple(versions), name, kind, bytes(range(32))))


def _raw_frame(*items) -> bytes:
    body = msgpack.packb(list(items), use_bin_type=True)
    return struct.pack(">I", len(body)) + body


async def _frame_fault(h: Harness, data: bytes, code: ErrorCode, what: str) -> None:
    """An established session gets ``data``: ErrorFrame(code), closed; the
    target then still serves a new connection."""
    async with _session(h) as conn:
        await conn.send(data)
        await _refused_with(conn, code, what, h)
    await h.alive()


# ================================================================ wire: framing

@case("wire/framing/1", "a frame whose length prefix exceeds the maximum frame size is "
                        "refused with FRAME_TOO_LARGE before its body arrives")
async def _oversized(h: Harness) -> None:
    # only the prefix is sent: the target must not wait for 2 GiB of body
    await _frame_fault(h, struct.pack(">I", 0x7FFFFFFF), ErrorCode.FRAME_TOO_LARGE,
                       "a length prefix of 2^31-1 bytes")


@case("wire/framing/2", "a frame of exactly one byte over the maximum is refused "
                        "(FRAME_TOO_LARGE)")
async def _oversized_by_one(h: Harness) -> None:
    await _frame_fault(h, struct.pack(">I", MAX_FRAME_BYTES + 1), ErrorCode.FRAME_TOO_LARGE,
                       f"a length prefix of {MAX_FRAME_BYTES + 1} bytes")


@case("wire/framing/3", "a frame body that is not msgpack is refused with MALFORMED")
async def _malformed(h: Harness) -> None:
    await _frame_fault(h, struct.pack(">I", 1) + b"\xc1", ErrorCode.MALFORMED,
                       "a body of the never-used msgpack byte 0xc1")


@case("wire/framing/4", "a frame of an unregistered type code is refused with UNKNOWN_TYPE")
async def _unknown_type(h: Harness) -> None:
    await _frame_fault(h, _raw_frame(0x06FE, 1), ErrorCode.UNKNOWN_TYPE,
                       "type code 0x06FE (not registered)")


@case("wire/framing/5", "a message of an unsupported layout version is refused with "
                        "UNSUPPORTED_VERSION")
async def _bad_message_version(h: Harness) -> None:
    await _frame_fault(h, _raw_frame(StatusQuery.TYPE_CODE, 99, 1),
                       ErrorCode.UNSUPPORTED_VERSION, "StatusQuery version 99")


@case("wire/framing/6", "a field of the wrong type is refused with BAD_FIELD")
async def _bad_field(h: Harness) -> None:
    await _frame_fault(h, _raw_frame(StatusQuery.TYPE_CODE, 1, "one"), ErrorCode.BAD_FIELD,
                       "StatusQuery with request = 'one'")


@case("wire/framing/7", "a field out of its range is refused with OUT_OF_RANGE")
async def _out_of_range(h: Harness) -> None:
    await _frame_fault(h, _raw_frame(StatusQuery.TYPE_CODE, 1, 0), ErrorCode.OUT_OF_RANGE,
                       "StatusQuery with request = 0 (range 1..2^63-1)")


@case("wire/framing/8", "a stream that ends inside a frame closes that connection; the "
                        "target goes on serving others")
async def _truncated(h: Harness) -> None:
    async with _session(h) as conn:
        await conn.send(struct.pack(">I", 100) + b"\x93" * 10)
        await conn.send_eof()
        if not await conn.until_closed(h.timeout_s):
            raise CaseFailed("the connection closed (a frame cut short by the end of the "
                             "stream)", "it stayed open")
    await h.alive()


@case("wire/framing/11", "a frame of length 0 is refused with MALFORMED")
async def _empty_frame(h: Harness) -> None:
    await _frame_fault(h, struct.pack(">I", 0), ErrorCode.MALFORMED, "a length prefix of 0")


@case("wire/framing/9", "frames split across TCP segments at every byte are reassembled")
async def _byte_by_byte(h: Harness) -> None:
    async with _session(h) as conn:
        data = encode_frame(StatusQuery(77))
        for i in range(len(data)):
            await conn.send(data[i:i + 1])
            await trio.sleep(0.002)
        got = await conn.until(lambda m: isinstance(m, NodeStatus), h.timeout_s)
        if got is None or got.request != 77:
            raise CaseFailed("NodeStatus(request=77) for a StatusQuery sent one byte at a time",
                             describe(got) if got else "nothing")


@case("wire/framing/10", "two frames in one TCP segment are both read, in order")
async def _coalesced(h: Harness) -> None:
    async with _session(h) as conn:
        await conn.send(encode_frame(StatusQuery(5)) + encode_frame(StatusQuery(6)))
        with trio.move_on_after(h.timeout_s):
            while len([m for m in conn.frames if isinstance(m, NodeStatus)]) < 2 and \
                    not conn.eof:
                await conn._read_some()
        got = [m.request for m in conn.frames if isinstance(m, NodeStatus)]
        if got != [5, 6]:
            raise CaseFailed("NodeStatus for requests 5 then 6", str(got))


# ================================================================ wire: the session

@case("wire/session/1", "a Hello with a common version is answered with a Challenge naming "
                        "the highest common version")
async def _challenge(h: Harness) -> None:
    async with _raw(h) as conn:
        await conn.send(_hello(versions=(1, 77)))
        got = await conn.until(lambda m: True, h.timeout_s)
        if not isinstance(got, Challenge) or got.version != 1:
            raise CaseFailed("Challenge(version=1) for a Hello offering (1, 77)",
                             describe(got) if got else "nothing")
        if got.name != h.target:
            raise CaseFailed(f"the Challenge names the target {h.target!r}", got.name)


@case("wire/session/2", "a Hello with no common version is refused with "
                        "UNSUPPORTED_VERSION and the connection closed")
async def _no_common_version(h: Harness) -> None:
    async with _raw(h) as conn:
        await conn.send(_hello(versions=(99, 100)))
        await _refused_with(conn, ErrorCode.UNSUPPORTED_VERSION, "a Hello offering (99, 100)", h)
        if any(isinstance(m, Challenge) for m in conn.frames):
            raise CaseFailed("no Challenge for an unsupported version", "a Challenge")
    await h.alive()


@case("wire/session/3", "a client that does not know the secret is refused with "
                        "EMU_AUTH_FAILED and learns no proof of the server")
async def _wrong_secret(h: Harness) -> None:
    async with _raw(h) as conn:
        nonce = bytes(range(32))
        await conn.send(encode_frame(Hello((1,), "conformance", "conformance", nonce)))
        ch = await conn.until(lambda m: isinstance(m, Challenge), h.timeout_s)
        if ch is None:
            raise CaseFailed("a Challenge", "nothing")
        # a proof made exactly as the spec says, but under another secret
        mac = handshake_proof(b"not the network's secret", "client", ch.version, (1,), nonce,
                              ch.nonce, "conformance", "conformance", ch.name, ch.kind)
        await conn.send(encode_frame(Proof(mac)))
        await _refused_with(conn, ErrorCode.EMU_AUTH_FAILED, "a proof under a wrong secret", h)
        if any(isinstance(m, Welcome) for m in conn.frames):
            raise CaseFailed("no Welcome (the server's proof) to an unproven client",
                             "a Welcome")
    await h.alive()


@case("wire/session/4", "a message sent instead of the Proof is not acted on: "
                        "EMU_HANDSHAKE, connection closed")
async def _inject_before_proof(h: Harness) -> None:
    node = h.need("neighbour")
    inbox = h.inboxes[node]
    mark = inbox.mark()
    async with _raw(h) as conn:
        await conn.send(_hello(name=node, kind="node"))
        got = await conn.until(lambda m: isinstance(m, Challenge), h.timeout_s)
        if got is None:
            raise CaseFailed("a Challenge", "nothing")
        # a transport Syn that, if acted on, would be refused with an Rst to node
        await conn.send(encode_frame(NodeBoot(1)) + encode_frame(Syn(40000, 9, 4)))
        await _refused_with(conn, ErrorCode.EMU_HANDSHAKE, "an application message before "
                                                           "the handshake completed", h)
    # a barrier on the real session: the answer to it comes after any answer to the forgery
    await h.send(node, Syn(40001, 9, 4))
    await inbox.expect(mark, lambda m: isinstance(m, Rst) and m.dst_port == 40001,
                       "Rst to the barrier Syn", h.timeout_s)
    forged = [m for m in inbox.after(mark) if isinstance(m, Rst) and m.dst_port == 40000]
    if forged:
        raise CaseFailed("the unauthenticated Syn was never acted on", describe(forged[0]))


@case("wire/session/5", "a frame before the Hello is refused (EMU_HANDSHAKE) and the "
                        "connection closed")
async def _no_hello(h: Harness) -> None:
    async with _raw(h) as conn:
        await conn.send(encode_frame(StatusQuery(1)))
        await _refused_with(conn, ErrorCode.EMU_HANDSHAKE, "a StatusQuery before the Hello", h)


@case("wire/session/6", "a second Hello in an established session is refused with "
                        "EMU_HANDSHAKE")
async def _duplicate_hello(h: Harness) -> None:
    await _frame_fault(h, _hello(), ErrorCode.EMU_HANDSHAKE, "a Hello after the handshake")


@case("wire/session/7", "a Proof that does not verify is refused with EMU_AUTH_FAILED")
async def _forged_proof(h: Harness) -> None:
    async with _raw(h) as conn:
        await conn.send(_hello())
        if await conn.until(lambda m: isinstance(m, Challenge), h.timeout_s) is None:
            raise CaseFailed("a Challenge", "nothing")
        await conn.send(encode_frame(Proof(bytes(32))))
        await _refused_with(conn, ErrorCode.EMU_AUTH_FAILED, "a Proof of 32 zero bytes", h)


@case("wire/session/8", "a client that says nothing is dropped within the handshake "
                        "timeout", should=True)
async def _silent_client(h: Harness) -> None:
    async with _raw(h) as conn:
        if not await conn.until_closed(5.0 + h.timeout_s):
            raise CaseFailed("the connection closed within the 5 s handshake timeout",
                             "it stayed open")


@case("wire/session/9", "a Goodbye ends the session cleanly: the target closes it and "
                        "goes on serving others")
async def _goodbye(h: Harness) -> None:
    async with _session(h) as conn:
        await conn.send(encode_frame(Goodbye("conformance done")))
        if not await conn.until_closed(h.timeout_s):
            raise CaseFailed("the connection closed after Goodbye", "it stayed open")
        bad = [m for m in conn.frames if isinstance(m, ErrorFrame)]
        if bad:
            raise CaseFailed("a clean close (no ErrorFrame)", describe(bad[0]))
    await h.alive()


# ================================================================ wire: keepalive

@case("wire/keepalive/1", "an idle established session gets a Keepalive within keepalive_s")
async def _keepalive(h: Harness) -> None:
    async with _session(h, keepalive_s=h.keepalive_s, dead_after_s=h.dead_after_s) as conn:
        start = trio.current_time()
        # bound: keepalive_s, checked by a ticker every keepalive_s/2, plus scheduling slack
        bound = 1.5 * h.keepalive_s + 0.5
        got = await conn.until(lambda m: isinstance(m, Keepalive), bound)
        if got is None:
            raise CaseFailed(f"a Keepalive within {bound:g} s of silence",
                             f"none in {trio.current_time() - start:.2f} s")


@case("wire/keepalive/2", "a peer that goes silent is declared gone (EMU_PEER_GONE) within "
                          "dead_after_s plus one tick")
async def _silent_peer(h: Harness) -> None:
    async with _session(h, keepalive_s=h.keepalive_s, dead_after_s=h.dead_after_s) as conn:
        start = trio.current_time()
        bound = h.dead_after_s + h.keepalive_s + 1.0       # + one tick + scheduling slack
        frame = await conn.until(lambda m: isinstance(m, ErrorFrame), bound)
        took = trio.current_time() - start
        if frame is None and not conn.eof:
            raise CaseFailed(f"the target closes a silent session within {bound:g} s",
                             f"still open after {took:.2f} s")
        if frame is not None and frame.code != int(ErrorCode.EMU_PEER_GONE):
            raise CaseFailed("ErrorFrame(EMU_PEER_GONE 600)", describe(frame))
        # never sooner than dead_after_s after our last frame (the Proof, sent
        # a handshake round trip before `start`: 0.1 s allows for that)
        if took < h.dead_after_s - 0.1:
            raise CaseFailed(f"a silent peer kept at least dead_after_s ({h.dead_after_s:g} s)",
                             f"closed after {took:.2f} s")


@case("wire/keepalive/3", "a peer that sends only Keepalives is kept past dead_after_s")
async def _kept_alive(h: Harness) -> None:
    async with _session(h, keepalive_s=h.keepalive_s, dead_after_s=h.dead_after_s) as conn:
        end = trio.current_time() + h.dead_after_s + h.keepalive_s
        while trio.current_time() < end:
            if not await conn.send(encode_frame(Keepalive())):
                raise CaseFailed("the session stays open", "the target closed it")
            await trio.sleep(h.keepalive_s / 2)
        await conn.send(encode_frame(StatusQuery(9)))
        got = await conn.until(lambda m: isinstance(m, NodeStatus), h.timeout_s)
        if got is None:
            raise CaseFailed("NodeStatus after dead_after_s of Keepalives only",
                             "; ".join(describe(m) for m in conn.frames
                                       if not isinstance(m, Keepalive)) or "nothing")


@case("wire/keepalive/4", "a peer that stops in the middle of a frame is declared gone "
                          "(EMU_PEER_GONE) within dead_after_s plus one tick")
async def _stalled_frame(h: Harness) -> None:
    async with _session(h, keepalive_s=h.keepalive_s, dead_after_s=h.dead_after_s) as conn:
        frame = encode_frame(StatusQuery(3))
        await conn.send(frame[:len(frame) - 1])       # all but its last byte, then nothing
        bound = h.dead_after_s + h.keepalive_s + 1.0
        got = await conn.until(lambda m: isinstance(m, ErrorFrame), bound)
        if got is None and not conn.eof:
            raise CaseFailed(f"the target drops a peer stalled inside a frame within {bound:g} s",
                             "still open")
        if got is not None and got.code != int(ErrorCode.EMU_PEER_GONE):
            raise CaseFailed("ErrorFrame(EMU_PEER_GONE 600)", describe(got))


@case("wire/keepalive/5", "a peer that stops reading is dropped within dead_after_s of the "
                          "target's stuck write; the target goes on serving others")
async def _stops_reading(h: Harness) -> None:
    node = h.need("neighbour")
    inbox = h.inboxes[node]
    # an application with a small receive buffer, that stops reading once set up
    async with _raw(h, rcvbuf=4096) as app:
        session = await app.handshake("conformance-slow", "app", h.secret,
                                      keepalive_s=h.keepalive_s, dead_after_s=60.0)
        if not session.established:
            raise CaseFailed("an application session", repr(session.close_code))
        port, conns = _port(), 24
        await app.send_msg(AppListen(1, port, conns))
        if await app.until(lambda m: isinstance(m, AppDone) and m.token == 1,
                           h.timeout_s) is None:
            raise CaseFailed(f"AppDone for AppListen({port})", "nothing")
        srcs = [_port() for _ in range(conns)]
        mark = inbox.mark()
        await h.send(node, *(Syn(src, port, 4) for src in srcs))
        for i in range(conns):
            inc = await app.until(lambda m, i=i: isinstance(m, AppIncoming) and
                                  m.conn.remote_port == srcs[i], h.timeout_s)
            if inc is None:
                raise CaseFailed(f"Incoming for the connection from port {srcs[i]}", "nothing")
            await app.send_msg(AppAccept(2 + i, inc.conn))
        for src in srcs:
            await inbox.expect(mark, lambda m, s=src: isinstance(m, Window) and m.dst_port == s,
                               "Window once accepted", h.timeout_s)
        before = (await h.status()).apps
        # the application reads nothing more: 24 x 4 items of 64 KiB for it (6 MiB)
        payload = bytes(65536)
        for src in srcs:
            await h.send(node, *(Data(src, port, seq, payload) for seq in range(4)))
        start = trio.current_time()
        bound = h.dead_after_s + h.keepalive_s + 3.0        # + the transfer, scheduling
        with trio.move_on_after(bound):
            while (await h.status()).apps >= before:
                await trio.sleep(0.05)
            return
        raise CaseFailed(f"the application that stopped reading dropped within {bound:g} s "
                         f"({before} applications attached before)",
                         f"still attached after {trio.current_time() - start:.1f} s")


# ================================================================ emulation: node sessions

@case("emulation/3/1", "a node session's first message is NodeBoot, answered with the "
                     "target's NodeBoot")
async def _nodeboot(h: Harness) -> None:
    node = h.need("neighbour")
    ch = await h.open(node, "node")
    try:
        await ch.send(NodeBoot(h.boots[node]))
        with trio.move_on_after(h.timeout_s):
            reply = await ch.receive()
            if not isinstance(reply, NodeBoot):
                raise CaseFailed("NodeBoot", describe(reply))
            return
        raise CaseFailed("NodeBoot", "nothing")
    finally:
        await ch.aclose()
        await h.reintroduce(node)


@case("emulation/3/2", "a node session that opens with anything but NodeBoot is closed "
                     "(UNEXPECTED_EVENT) and its message not acted on")
async def _no_nodeboot(h: Harness) -> None:
    node = h.need("neighbour")
    inbox = h.inboxes[node]
    mark = inbox.mark()
    async with _session(h, name=node, kind="node") as conn:
        await conn.send(encode_frame(Syn(40010, 9, 4)))
        await _refused_with(conn, ErrorCode.UNEXPECTED_EVENT, "Syn before NodeBoot", h)
        if any(isinstance(m, NodeBoot) for m in conn.frames):
            raise CaseFailed("no NodeBoot for a session that did not open with one",
                             "a NodeBoot")
    await h.send(node, Syn(40011, 9, 4))
    await inbox.expect(mark, lambda m: isinstance(m, Rst) and m.dst_port == 40011,
                       "Rst to the barrier Syn", h.timeout_s)
    if any(isinstance(m, Rst) and m.dst_port == 40010 for m in inbox.after(mark)):
        raise CaseFailed("the Syn before NodeBoot was not acted on", "it was answered")


@case("emulation/3/3", "a node session from a name that is not a node of the network is "
                     "refused with an ErrorFrame")
async def _stranger_name(h: Harness) -> None:
    await _node_name_refused(h, "nobody-of-this-net", "a name outside the network")


@case("emulation/3/4", "a node session under the target's own name is refused with an "
                     "ErrorFrame")
async def _own_name(h: Harness) -> None:
    await _node_name_refused(h, h.target, "the target's own name")


async def _node_name_refused(h: Harness, name: str, what: str) -> None:
    """A node session as ``name`` (the secret proven, NodeBoot sent) gets an
    ErrorFrame and is closed, never a NodeBoot."""
    async with _raw(h) as conn:
        await conn.handshake(name, "node", h.secret)
        await conn.send(encode_frame(NodeBoot(6)))
        frame = await conn.until(lambda m: isinstance(m, (ErrorFrame, NodeBoot)), h.timeout_s)
        if not isinstance(frame, ErrorFrame):
            raise CaseFailed(f"ErrorFrame for a node session as {name!r} ({what})",
                             describe(frame) if frame else "nothing")
        if not await conn.until_closed(h.timeout_s):
            raise CaseFailed("the connection closed after the ErrorFrame", "it stayed open")


# ================================================================ link layer

def _spec(create_id=1, number=1, atomic=False, min_fidelity=0.5, standing=False,
          consecutive=None):
    return QueueSpec(create_id=create_id, number=number, min_fidelity=min_fidelity,
                     deadline_ns=0, purpose_id=0, type=0, measure_basis="Z", priority=0,
                     atomic=atomic, consecutive=atomic if consecutive is None else consecutive,
                     param=0.1, standing=standing)


@case("link/2/1", "a link message from a node that is not a neighbour is refused "
                  "(LINK_UNKNOWN_PEER recorded), not answered")
async def _link_stranger(h: Harness) -> None:
    node = h.need("stranger")
    mark = await h.fail_mark()
    await h.send(node, QueueRequest(_spec(create_id=11)))
    rec = await h.expect_failure(mark, ErrorCode.LINK_UNKNOWN_PEER,
                                 f"QueueRequest from {node}, no neighbour")
    if rec[1] != "link.egp":
        raise CaseFailed("recorded by link.egp", rec[1])


@case("link/4/1", "a QueueAdd from the follower is an unexpected event (recorded), not "
                  "queued")
async def _queueadd_from_follower(h: Harness) -> None:
    node = h.need("follower")
    mark = await h.fail_mark()
    inbox = h.inboxes[node]
    imark = inbox.mark()
    await h.send(node, QueueAdd(3, node, _spec(create_id=12)))
    await h.expect_failure(mark, ErrorCode.UNEXPECTED_EVENT, f"QueueAdd from follower {node}")
    if any(isinstance(m, QueueReject) for m in inbox.after(imark)):
        raise CaseFailed("no answer to the follower's QueueAdd", "a QueueReject")


@case("link/4/2", "a QueueRequest from the leader is an unexpected event (recorded)")
async def _queuerequest_from_leader(h: Harness) -> None:
    node = h.need("leader")
    mark = await h.fail_mark()
    await h.send(node, QueueRequest(_spec(create_id=13)))
    await h.expect_failure(mark, ErrorCode.UNEXPECTED_EVENT, f"QueueRequest from leader {node}")


async def _queueadd_refused(h: Harness, add: QueueAdd, code: ErrorCode, why: str) -> None:
    """The leader's ``add`` is refused: QueueReject(add.qid, its create_id, code)."""
    node = h.need("leader")
    inbox = h.inboxes[node]
    mark = inbox.mark()
    await h.send(node, add)
    got = await inbox.expect(mark, lambda m: isinstance(m, QueueReject) and m.qid == add.qid,
                             f"QueueReject(qid={add.qid}, {code.name}): {why}", h.timeout_s)
    if got.code != int(code) or got.create_id != add.spec.create_id:
        raise CaseFailed(f"QueueReject(qid={add.qid}, create_id={add.spec.create_id}, "
                         f"code={code.name} {int(code)})", describe(got))


@case("link/4/3", "a QueueAdd whose origin is neither end of the link is refused with "
                  "QueueReject(LINK_REJECTED)")
async def _queueadd_foreign_origin(h: Harness) -> None:
    await _queueadd_refused(h, QueueAdd(101, "somebody-else", _spec(create_id=14)),
                            ErrorCode.LINK_REJECTED, "origin neither end")


@case("link/4/4", "a QueueAdd naming the target as origin for a request it never made is "
                  "refused with QueueReject(LINK_REJECTED)")
async def _queueadd_unknown_local(h: Harness) -> None:
    await _queueadd_refused(h, QueueAdd(102, h.target, _spec(create_id=999)),
                            ErrorCode.LINK_REJECTED, "a request of the target it never made")


@case("link/4/5", "an atomic QueueAdd for more pairs than the memory holds is refused with "
                  "QueueReject(LINK_NO_RESOURCES)")
async def _queueadd_atomic_too_big(h: Harness) -> None:
    await _queueadd_refused(h, QueueAdd(103, h.need("leader"),
                                        _spec(create_id=15, number=65535, atomic=True)),
                            ErrorCode.LINK_NO_RESOURCES, "atomic, 65535 pairs")


@case("link/4/6", "a QueueAdd repeating a known qid is an unexpected event (recorded); "
                  "the leader's Abort then ends the item")
async def _queueadd_duplicate(h: Harness) -> None:
    add = QueueAdd(104, h.need("leader"), _spec(create_id=16))
    await _unexpected_after_add(h, add, add, "a second QueueAdd for qid 104")


async def _unexpected_after_add(h: Harness, add: QueueAdd, then: Message, what: str) -> None:
    """The leader's acceptable ``add`` followed by ``then``, which the target
    records as an unexpected event (``what``); the leader's Abort ends the
    item, and the ``add`` itself is never refused (silence is consent)."""
    node = h.need("leader")
    inbox = h.inboxes[node]
    imark = inbox.mark()
    mark = await h.fail_mark()
    await h.send(node, add, then)
    await h.expect_failure(mark, ErrorCode.UNEXPECTED_EVENT, what)
    await h.send(node, Abort(add.qid, int(ErrorCode.LINK_TIMEOUT), 0))
    if any(isinstance(m, QueueReject) and m.qid == add.qid for m in inbox.after(imark)):
        raise CaseFailed("no QueueReject for an acceptable QueueAdd", "a QueueReject")


@case("link/4/7", "a QueueAdd beyond the queue's capacity is refused with "
                  "QueueReject(LINK_QUEUE_FULL)")
async def _queue_full(h: Harness) -> None:
    node = h.need("leader")
    inbox = h.inboxes[node]
    mark = inbox.mark()
    first, most = 20000, 4096
    sent = 0
    try:
        while sent < most:
            # a chunk of QueueAdds, then a barrier: its answer comes after theirs
            barrier = _port()
            await h.send(node, *(QueueAdd(first + i, node, _spec(create_id=first + i))
                                 for i in range(sent, sent + 256)), Syn(barrier, 9, 4))
            sent += 256
            await inbox.expect(mark, _rst_to(barrier), "Rst to the barrier Syn", h.timeout_s)
            full = [m for m in inbox.after(mark) if isinstance(m, QueueReject)]
            if full:
                if full[0].code != int(ErrorCode.LINK_QUEUE_FULL):
                    raise CaseFailed("QueueReject(LINK_QUEUE_FULL 208)", describe(full[0]))
                return
        raise CaseFailed(f"QueueReject(LINK_QUEUE_FULL) within {most} queued items",
                         "every item taken")
    finally:
        # end every item again (silence was consent for those taken)
        await h.send(node, *(Abort(first + i, int(ErrorCode.LINK_TIMEOUT), 0)
                             for i in range(sent)))


@case("link/4/8", "a QueueRequest from the follower is queued by the leader: QueueAdd of "
                  "it (origin the follower, the same spec) back to the follower")
async def _queue_request(h: Harness) -> None:
    node = h.need("follower")
    inbox = h.inboxes[node]
    mark = inbox.mark()
    spec = _spec(create_id=31)
    await h.send(node, QueueRequest(spec))
    add = await inbox.expect(mark, lambda m: isinstance(m, QueueAdd) and m.spec.create_id == 31,
                             "QueueAdd for the follower's request", h.timeout_s)
    try:
        if add.origin != node or add.spec != spec:
            raise CaseFailed(f"QueueAdd(origin={node!r}, spec as requested)", describe(add))
    finally:      # the follower refuses it after all: the leader ends the item, no Abort back
        await h.send(node, QueueReject(add.qid, 31, int(ErrorCode.LINK_REJECTED), "done"))


@case("link/4/9", "the follower's Abort(-1) (its memory stayed full) ends the item the "
                  "leader attempts: Abort(qid, LINK_OUT_OF_MEMORY) back")
async def _follower_abort(h: Harness) -> None:
    node = h.need("follower")
    inbox = h.inboxes[node]
    mark = inbox.mark()
    await h.send(node, QueueRequest(_spec(create_id=32)))
    add = await inbox.expect(mark, lambda m: isinstance(m, QueueAdd) and m.spec.create_id == 32,
                             "QueueAdd for the follower's request", h.timeout_s)
    # no deadline and no Entangle from the follower: the leader is attempting this item
    await h.send(node, Abort(-1, int(ErrorCode.LINK_OUT_OF_MEMORY), 0))
    got = await inbox.expect(mark, lambda m: isinstance(m, Abort) and m.qid == add.qid,
                             f"Abort(qid={add.qid}) ending the item", h.timeout_s)
    if got.code != int(ErrorCode.LINK_OUT_OF_MEMORY) or got.done != 0:
        raise CaseFailed(f"Abort(qid={add.qid}, code=LINK_OUT_OF_MEMORY 205, done=0)",
                         describe(got))


@case("link/4/10", "a standing QueueRequest for pairs in a row is refused with "
                   "QueueReject(-1, LINK_UNSUPPORTED), not queued")
async def _standing_consecutive_refused(h: Harness) -> None:
    node = h.need("follower")
    inbox = h.inboxes[node]
    mark = inbox.mark()
    await h.send(node, QueueRequest(_spec(create_id=33, standing=True, consecutive=True)))
    got = await inbox.expect(
        mark, lambda m: isinstance(m, (QueueReject, QueueAdd)) and (
            m.create_id if isinstance(m, QueueReject) else m.spec.create_id) == 33,
        "QueueReject(-1, create_id=33, LINK_UNSUPPORTED)", h.timeout_s)
    if isinstance(got, QueueAdd):
        await h.send(node, QueueReject(got.qid, 33, int(ErrorCode.LINK_REJECTED), "done"))
    if not isinstance(got, QueueReject) or got.qid != -1 \
            or got.code != int(ErrorCode.LINK_UNSUPPORTED):
        raise CaseFailed("QueueReject(qid=-1, create_id=33, code=LINK_UNSUPPORTED 200)",
                         describe(got))


@case("link/4/11", "a QueueTopUp for an item its sender did not request as standing is an "
                   "unexpected event (recorded); the item is unchanged and the leader's "
                   "Abort ends it")
async def _top_up_not_standing(h: Harness) -> None:
    await _unexpected_after_add(h, QueueAdd(105, h.need("leader"), _spec(create_id=17)),
                                QueueTopUp(105, 3), "a QueueTopUp for qid 105, not a standing item")


# ================================================================ network layer

# Circuit ids and ports start at a random place each run, so that state an
# earlier run left in the target (a circuit, a connection still suspended)
# is never taken for this run's.
_RNG = random.SystemRandom()
_CIRCUITS = [_RNG.randrange(1 << 20, 1 << 31)]


def _setup(h: Harness, head: str, path: tuple, labels: tuple = (1,)) -> CircuitSetup:
    """A setup as the head sends it to its next hop (its own label added)."""
    _CIRCUITS[0] += 1
    return CircuitSetup(circuit_id=_CIRCUITS[0], head=head, path=path, request_id=1, number=1,
                        min_fidelity=0.5, link_fidelity=(0.5,) * (len(path) - 1),
                        link_labels=labels, strategy=0, cutoff_ns=0, type=0,
                        measure_basis="Z", app_tag=0)


async def _confirm(h: Harness, node: str, mark: int, cid: int, what: str) -> CircuitConfirm:
    return await h.inboxes[node].expect(
        mark, lambda m: isinstance(m, CircuitConfirm) and m.circuit_id == cid,
        f"CircuitConfirm for circuit {cid} ({what})", h.timeout_s)


async def _tail_circuit(h: Harness, node: str) -> CircuitSetup:
    """A circuit (node, target) set up by ``node``: the target is its tail."""
    inbox = h.inboxes[node]
    mark = inbox.mark()
    s = _setup(h, node, (node, h.target))
    await h.send(node, s)
    got = await _confirm(h, node, mark, s.circuit_id, "accepted")
    if not got.accepted:
        raise CaseFailed(f"CircuitConfirm(accepted) from the tail {h.target}", describe(got))
    return s


@case("network/2/1", "the tail of a circuit answers its CircuitSetup with an accepted "
                     "CircuitConfirm")
async def _setup_tail(h: Harness) -> None:
    await _tail_circuit(h, h.need("neighbour"))


@case("network/2/2", "a CircuitSetup whose path does not name the target is refused "
                     "(CircuitConfirm NET_REJECTED)")
async def _setup_not_on_path(h: Harness) -> None:
    node = h.need("neighbour")
    mark = h.inboxes[node].mark()
    s = _setup(h, node, (node, "somewhere-else"))
    await h.send(node, s)
    got = await _confirm(h, node, mark, s.circuit_id, "refused")
    if got.accepted or got.code != int(ErrorCode.NET_REJECTED):
        raise CaseFailed("CircuitConfirm(accepted=False, code=NET_REJECTED 304)", describe(got))


async def _setup_refused(h: Harness, sender: str, s: CircuitSetup, what: str) -> None:
    mark = h.inboxes[sender].mark()
    await h.send(sender, s)
    got = await _confirm(h, sender, mark, s.circuit_id, what)
    if got.accepted or got.code != int(ErrorCode.NET_REJECTED):
        raise CaseFailed(f"CircuitConfirm(accepted=False, code=NET_REJECTED 304): {what}",
                         describe(got))


@case("network/2/6", "a CircuitSetup without one link label per link passed is refused "
                     "(NET_REJECTED)")
async def _setup_labels(h: Harness) -> None:
    node = h.need("neighbour")
    await _setup_refused(h, node, _setup(h, node, (node, h.target), labels=()),
                         "no label for the link passed")


@case("network/2/7", "a CircuitSetup from a node that is not the one before the target on "
                     "the path is refused (NET_REJECTED)")
async def _setup_wrong_hop(h: Harness) -> None:
    node, other = h.need("leader"), h.need("follower")
    await _setup_refused(h, node, _setup(h, other, (other, h.target)),
                         f"a setup of a path from {other} sent by {node}")


async def _repeater_circuit(h: Harness):
    """A circuit (leader, target, follower) set up by the leader: the target
    is its repeater. Returns (head, tail, the setup the head sent, the one the
    target forwarded)."""
    head, tail = h.need("leader"), h.need("follower")
    s = _setup(h, head, (head, h.target, tail))
    mark = h.inboxes[tail].mark()
    await h.send(head, s)
    fwd = await h.inboxes[tail].expect(
        mark, lambda m: isinstance(m, CircuitSetup) and m.circuit_id == s.circuit_id,
        f"the CircuitSetup forwarded to {tail}", h.timeout_s)
    return head, tail, s, fwd


@asynccontextmanager
async def _on_repeater_circuit(h: Harness):
    """:func:`_repeater_circuit` for the block, then torn down by its head."""
    head, tail, s, fwd = await _repeater_circuit(h)
    try:
        yield head, tail, s, fwd
    finally:
        await h.send(head, CircuitTeardown(s.circuit_id, head, 0, "done", "", ""))


@case("network/2/11", "a repeater forwards a CircuitSetup to the next hop with its own "
                      "downstream label appended, from its half of the label space")
async def _repeater_forwards(h: Harness) -> None:
    async with _on_repeater_circuit(h) as (head, tail, s, fwd):
        if fwd.link_labels[:1] != s.link_labels or len(fwd.link_labels) != 2:
            raise CaseFailed(f"link_labels {s.link_labels} + one label", describe(fwd))
        label = fwd.link_labels[1]
        # the end whose name sorts first takes 1..32767, the other 32768..65535
        lo, hi = (1, 32767) if h.target < tail else (32768, 65535)
        if not lo <= label <= hi:
            raise CaseFailed(f"a label in {lo}..{hi} ({h.target} vs {tail})", str(label))
        if (fwd.path, fwd.head, fwd.number) != (s.path, s.head, s.number):
            raise CaseFailed("the setup forwarded unchanged but for the label", describe(fwd))


@case("network/2/12", "a CircuitConfirm from a node that is not the next hop is refused "
                      "(UNEXPECTED_EVENT recorded); the next hop's is passed back to the head")
async def _repeater_confirm(h: Harness) -> None:
    head, tail, s, fwd = await _repeater_circuit(h)
    try:
        mark = await h.fail_mark()
        hmark = h.inboxes[head].mark()
        # from the head (upstream): not the next hop
        await h.send(head, CircuitConfirm(s.circuit_id, head, True, 0, ""))
        await h.expect_failure(mark, ErrorCode.UNEXPECTED_EVENT,
                               f"a CircuitConfirm from {head}, not the next hop")
        await h.send(tail, CircuitConfirm(s.circuit_id, head, True, 0, ""))
        got = await h.inboxes[head].expect(
            hmark, lambda m: isinstance(m, CircuitConfirm) and m.circuit_id == s.circuit_id,
            f"the tail's CircuitConfirm passed back to {head}", h.timeout_s)
        if not got.accepted:
            raise CaseFailed("CircuitConfirm(accepted) passed on", describe(got))
    finally:
        tmark = h.inboxes[tail].mark()
        await h.send(head, CircuitTeardown(s.circuit_id, head, 0, "done", "", ""))
        # the teardown goes on away from its sender, to the path's other end
        await h.inboxes[tail].expect(
            tmark, lambda m: isinstance(m, CircuitTeardown) and m.circuit_id == s.circuit_id,
            f"the head's CircuitTeardown passed on to {tail}", h.timeout_s)


@case("network/2/13", "the session to a neighbour on a circuit breaking tears the circuit "
                      "down towards its other end (CircuitTeardown NET_CIRCUIT_TORN_DOWN)")
async def _session_breaks(h: Harness) -> None:
    head, tail, s, fwd = await _repeater_circuit(h)
    hmark = h.inboxes[head].mark()
    await h.reintroduce(tail)
    got = await h.inboxes[head].expect(
        hmark, lambda m: isinstance(m, CircuitTeardown) and m.circuit_id == s.circuit_id,
        f"a CircuitTeardown to {head} once the session with {tail} broke", h.timeout_s)
    if got.code != int(ErrorCode.NET_CIRCUIT_TORN_DOWN):
        raise CaseFailed("CircuitTeardown(code=NET_CIRCUIT_TORN_DOWN 303)", describe(got))


@case("network/2/3", "a second CircuitSetup for a circuit the target holds is refused "
                     "(NET_REJECTED)")
async def _setup_twice(h: Harness) -> None:
    node = h.need("neighbour")
    s = await _tail_circuit(h, node)
    mark = h.inboxes[node].mark()
    await h.send(node, s)
    got = await _confirm(h, node, mark, s.circuit_id, "the repeat refused")
    if got.accepted or got.code != int(ErrorCode.NET_REJECTED):
        raise CaseFailed("CircuitConfirm(accepted=False, NET_REJECTED) for the repeat",
                         describe(got))


@case("network/5/1", "a message naming a circuit the target does not know is refused "
                     "(NET_UNKNOWN_CIRCUIT recorded)")
async def _unknown_circuit(h: Harness) -> None:
    node = h.need("neighbour")
    mark = await h.fail_mark()
    await h.send(node, CircuitConfirm(424242, node, True, 0, ""))
    await h.expect_failure(mark, ErrorCode.NET_UNKNOWN_CIRCUIT,
                           "CircuitConfirm for circuit 424242, never set up")


@case("network/5/2", "late segment traffic (Track) for an unknown circuit is dropped "
                     "silently")
async def _late_track(h: Harness) -> None:
    node = h.need("neighbour")
    mark = await h.fail_mark()
    await h.send(node, Track(424243, node, 0, 0, 0.9, 0),
                 CircuitConfirm(424244, node, True, 0, ""))      # the barrier
    await h.expect_failure(mark, ErrorCode.NET_UNKNOWN_CIRCUIT, "the barrier's failure")
    recs = await h.failures_after(mark)
    if any("424243" in d for _c, _p, d in recs):
        raise CaseFailed("no failure for a late Track", "; ".join(d for _c, _p, d in recs))


@case("network/2/4", "a CircuitTeardown from a node that is not next to the target on the "
                     "circuit is ignored (recorded); the circuit stands")
async def _forged_teardown(h: Harness) -> None:
    node = h.need("neighbour")
    forger = h.need("stranger")
    s = await _tail_circuit(h, node)
    mark = await h.fail_mark()
    await h.send(forger, CircuitTeardown(s.circuit_id, s.head, 0, "forged", "", ""))
    await h.expect_failure(mark, ErrorCode.NET_UNKNOWN_CIRCUIT,
                           f"a CircuitTeardown from {forger}, not on the circuit")
    # the circuit is still held: a repeated setup is refused
    imark = h.inboxes[node].mark()
    await h.send(node, s)
    got = await _confirm(h, node, imark, s.circuit_id, "the circuit still stands")
    if got.accepted:
        raise CaseFailed("the circuit survived the forged teardown (repeat setup refused)",
                         "the repeat was accepted: the circuit was torn down")


@case("network/2/5", "a CircuitTeardown from the circuit's previous hop ends the circuit")
async def _real_teardown(h: Harness) -> None:
    node = h.need("neighbour")
    s = await _tail_circuit(h, node)
    await h.send(node, CircuitTeardown(s.circuit_id, s.head, 0, "done", "", ""))
    imark = h.inboxes[node].mark()
    await h.send(node, s)
    got = await _confirm(h, node, imark, s.circuit_id, "a new setup after the teardown")
    if not got.accepted:
        raise CaseFailed("the circuit was forgotten (the same setup accepted again)",
                         describe(got))


# ---------------------------------------------------------------- segment messages on a live circuit
# The tester's nodes make no link pairs with the target (they are absent from
# the physics server), so the target holds no pair of a circuit: what it does
# with segment messages about pairs it does not hold (yet), with PairLost
# (which names an end-to-end pair, not a link pair) and with late traffic
# after a teardown is what these cases check.

def _segment_msgs(s: CircuitSetup, seq: int) -> dict:
    cid, head = s.circuit_id, s.head
    return {"Track": Track(cid, head, seq, 0, 0.9, 0),
            "PairDone": PairDone(cid, head, seq + 1, True, 0, 0, 0.9, 0),
            "SegmentNotice": SegmentNotice(cid, head, seq + 2, 0),
            "SegmentExpire": SegmentExpire(cid, head, seq + 3, "conformance"),
            "PairLost": PairLost(cid, head, 7, "conformance")}


def _about(s: CircuitSetup, kinds: tuple) -> Callable:
    """Matches a message of one of ``kinds`` about circuit ``s``."""
    return lambda m: isinstance(m, kinds) and getattr(m, "circuit_id", None) == s.circuit_id \
        and getattr(m, "head", None) == s.head


async def _barrier(h: Harness, node: str) -> None:
    """A Syn to a closed port from ``node``, answered with an Rst: once it is
    in, everything ``node`` sent before it was handled, and whatever the
    target sent ``node`` for it is in ``node``'s inbox (one session, in order)."""
    port = _port()
    mark = h.inboxes[node].mark()
    await h.send(node, Syn(port, 9, 4))
    await h.inboxes[node].expect(mark, _rst_to(port), f"Rst to the barrier Syn from {node}",
                                 h.timeout_s)


def _nothing_sent_about(h: Harness, s: CircuitSetup, marks: dict, what: str) -> None:
    """No segment message about circuit ``s`` came to any played node since
    ``marks``."""
    kinds = (Track, PairDone, SegmentNotice, SegmentExpire, PairLost, CircuitTeardown)
    for node, mark in marks.items():
        got = [m for m in h.inboxes[node].after(mark) if _about(s, kinds)(m)]
        if got:
            raise CaseFailed(f"nothing sent for {what}", f"to {node}: {describe(got[0])}")


async def _nothing_about(h: Harness, s: CircuitSetup, marks: dict, fmark: int,
                         what: str) -> None:
    """No segment message about circuit ``s`` came to any played node since
    ``marks``, and no failure naming it was recorded since ``fmark``."""
    _nothing_sent_about(h, s, marks, what)
    tag = f"{s.head}/{s.circuit_id}"
    recs = [d for _c, _p, d in await h.failures_after(fmark) if tag in d]
    if recs:
        raise CaseFailed(f"no failure recorded for {what}", "; ".join(recs))


@case("network/2/14", "a repeater forwards a PairLost from the previous hop at once to the "
                      "next hop, unchanged")
async def _pair_lost_forwarded(h: Harness) -> None:
    await _forwarded_unchanged(h, lambda s, head: PairLost(s.circuit_id, head, 3,
                                                           "head's half expired"))


async def _forwarded_unchanged(h: Harness, make: Callable) -> None:
    """On a circuit through the target, the message ``make(setup, head)``
    from the previous hop is passed on to the next hop as it is."""
    async with _on_repeater_circuit(h) as (head, tail, s, _fwd):
        mark = h.inboxes[tail].mark()
        msg = make(s, head)
        await h.send(head, msg)
        got = await h.inboxes[tail].expect(mark, _about(s, (type(msg),)),
                                           f"the {type(msg).__name__} passed on to {tail}",
                                           h.timeout_s)
        if got != msg:
            raise CaseFailed(describe(msg), describe(got))


@case("network/2/15", "a PairLost against the path's direction (from the next hop) is not "
                      "forwarded by a repeater")
async def _pair_lost_backwards(h: Harness) -> None:
    async with _on_repeater_circuit(h) as (head, tail, s, _fwd):
        marks = {n: h.inboxes[n].mark() for n in (head, tail)}
        await h.send(tail, PairLost(s.circuit_id, head, 3, "from the wrong side"))
        await _barrier(h, tail)      # (passed on, it would go ahead of the barrier's Rst)
        for node in (head, tail):
            got = [m for m in h.inboxes[node].after(marks[node]) if _about(s, (PairLost,))(m)]
            if got:
                raise CaseFailed(f"the PairLost from {tail} dropped",
                                 f"passed on to {node}: {describe(got[0])}")


@case("network/2/18", "a repeater forwards a CircuitTopUp from the previous hop at once to "
                      "the next hop, unchanged")
async def _top_up_forwarded(h: Harness) -> None:
    await _forwarded_unchanged(h, lambda s, head: CircuitTopUp(s.circuit_id, head, 3))


@case("network/2/19", "a CircuitTopUp from the next hop (against the path's direction) is "
                      "ignored (NET_UNKNOWN_CIRCUIT recorded), not forwarded")
async def _top_up_backwards(h: Harness) -> None:
    async with _on_repeater_circuit(h) as (head, tail, s, _fwd):
        fmark = await h.fail_mark()
        hmark = h.inboxes[head].mark()
        await h.send(tail, CircuitTopUp(s.circuit_id, head, 3))
        await h.expect_failure(fmark, ErrorCode.NET_UNKNOWN_CIRCUIT,
                               f"a CircuitTopUp from {tail}, the next hop")
        await _barrier(h, tail)
        got = [m for m in h.inboxes[head].after(hmark) if _about(s, (CircuitTopUp,))(m)]
        if got:
            raise CaseFailed(f"the CircuitTopUp from {tail} dropped",
                             f"passed on to {head}: {describe(got[0])}")


@case("network/2/16", "the tail ignores a PairLost for a pair it did not deliver: nothing "
                      "answered or recorded, the circuit stands")
async def _pair_lost_unknown_pair(h: Harness) -> None:
    node = h.need("neighbour")
    s = await _tail_circuit(h, node)
    fmark = await h.fail_mark()
    marks = {node: h.inboxes[node].mark()}
    await h.send(node, PairLost(s.circuit_id, node, 5, "never delivered"))
    await _barrier(h, node)
    await _nothing_about(h, s, marks, fmark, "a PairLost for a pair never delivered")
    await _still_stands(h, node, s)


async def _still_stands(h: Harness, node: str, s: CircuitSetup) -> None:
    """The target still holds circuit ``s`` (set up by ``node``): a repeat of
    its setup is refused."""
    imark = h.inboxes[node].mark()
    await h.send(node, s)
    got = await _confirm(h, node, imark, s.circuit_id, "the circuit still stands")
    if got.accepted:
        raise CaseFailed("the circuit still held (the repeated setup refused)",
                         "the repeat was accepted: the circuit was gone")


@case("network/2/20", "the tail of a one-link circuit drops a Track (it decides on its own "
                      "link pair): UNEXPECTED_EVENT recorded, nothing answered, the circuit stands")
async def _one_link_track(h: Harness) -> None:
    node = h.need("neighbour")
    s = await _tail_circuit(h, node)
    fmark = await h.fail_mark()
    marks = {node: h.inboxes[node].mark()}
    await h.send(node, _segment_msgs(s, 100)["Track"])
    _code, _proto, detail = await h.expect_failure(
        fmark, ErrorCode.UNEXPECTED_EVENT, "the Track of a one-link circuit dropped")
    if f"{s.head}/{s.circuit_id}" not in detail:
        raise CaseFailed(f"the failure names circuit {s.head}/{s.circuit_id}", detail)
    await _barrier(h, node)
    _nothing_sent_about(h, s, marks, "a Track on a one-link circuit")
    await _still_stands(h, node, s)


@case("network/2/17", "segment messages about a link pair whose link-layer OK has not come "
                      "yet wait for it: neither answered nor refused")
async def _segment_waits(h: Harness) -> None:
    async with _on_repeater_circuit(h) as (head, tail, s, _fwd):
        fmark = await h.fail_mark()
        marks = {n: h.inboxes[n].mark() for n in (head, tail)}
        msgs = _segment_msgs(s, 100)
        # Track and SegmentExpire travel from the head's side, PairDone and
        # SegmentNotice from the tail's: each names a pair the target never got
        await h.send(head, msgs["Track"], msgs["SegmentExpire"])
        await h.send(tail, msgs["PairDone"], msgs["SegmentNotice"])
        await _barrier(h, head)
        await _barrier(h, tail)
        await _nothing_about(h, s, marks, fmark,
                             "Track, SegmentExpire, PairDone, SegmentNotice of pairs not held")


@case("network/5/3", "late segment messages (Track, PairDone, SegmentNotice, SegmentExpire, "
                     "PairLost, CircuitTeardown) for a circuit torn down are dropped silently")
async def _late_after_teardown(h: Harness) -> None:
    node = h.need("neighbour")
    s = await _tail_circuit(h, node)
    await h.send(node, CircuitTeardown(s.circuit_id, s.head, 0, "done", "", ""))
    fmark = await h.fail_mark()
    marks = {node: h.inboxes[node].mark()}
    await h.send(node, *_segment_msgs(s, 200).values(),
                 CircuitTeardown(s.circuit_id, s.head, 0, "again", "", ""))
    await _barrier(h, node)
    await _nothing_about(h, s, marks, fmark, "late traffic of a circuit torn down")


async def _held_seq(h: Harness, src: str, origin: str) -> int:
    """The number of the advertisement of ``origin`` the target holds (0 if
    none: then it holds this probe's). Advertisements do not age, so a case
    must number its own past what an earlier run left. The probe, number 0,
    is older than any held one and so answered with it; a Syn to a closed
    port after it is the barrier."""
    inbox = h.inboxes[src]
    mark = inbox.mark()
    barrier = _port()
    await h.send(src, LinkStateAd(origin, 0, ()), Syn(barrier, 9, 4))
    await inbox.expect(mark, _rst_to(barrier), "Rst to the barrier Syn", h.timeout_s)
    held = [m.seq for m in inbox.after(mark) if isinstance(m, LinkStateAd) and
            m.origin == origin]
    return max(held, default=0)


@case("network/2/8", "a newer link-state advertisement is kept and flooded to the other "
                     "neighbours; an older one is answered with the newer held")
async def _flood(h: Harness) -> None:
    src, other = h.need("follower"), h.need("leader")
    origin = h.roles.stranger or "somewhere"
    base = await _held_seq(h, src, origin)
    ad = LinkStateAd(origin, base + 10, ())
    omark, smark = h.inboxes[other].mark(), h.inboxes[src].mark()
    await h.send(src, ad)
    await h.inboxes[other].expect(omark, lambda m: m == ad,
                                  f"the advertisement of {origin} flooded on", h.timeout_s)
    await h.send(src, LinkStateAd(origin, base + 3, ()))
    await h.inboxes[src].expect(smark, lambda m: m == ad,
                                f"the newer advertisement of {origin} back to the sender of "
                                "an older one", h.timeout_s)


@case("network/2/9", "an advertisement equal to the one held is dropped (not flooded again)")
async def _flood_equal(h: Harness) -> None:
    src, other = h.need("follower"), h.need("leader")
    origin = h.roles.stranger or "somewhere"
    ad = LinkStateAd(origin, await _held_seq(h, src, origin) + 1, ())
    omark = h.inboxes[other].mark()
    await h.send(src, ad)
    await h.inboxes[other].expect(omark, lambda m: m == ad, "the advertisement flooded on",
                                  h.timeout_s)
    omark, smark = h.inboxes[other].mark(), h.inboxes[src].mark()
    # the same again, then an older one as the barrier (its answer comes back to src)
    await h.send(src, ad, LinkStateAd(origin, ad.seq - 1, ()))
    await h.inboxes[src].expect(smark, lambda m: m == ad, "the barrier's answer", h.timeout_s)
    again = [m for m in h.inboxes[other].after(omark) if m == ad]
    if again:
        raise CaseFailed("an equal advertisement dropped", "it was flooded again")


@case("network/2/10", "the target's own advertisement with a larger number makes it "
                      "advertise afresh past that number, to every neighbour")
async def _own_ad(h: Harness) -> None:
    src, other = h.need("follower"), h.need("leader")
    # the target's link to src going down and up makes it advertise: its number is seen
    omark = h.inboxes[other].mark()
    await h.reintroduce(src)
    await h.inboxes[other].expect(omark, lambda m: isinstance(m, LinkStateAd) and
                                  m.origin == h.target, f"an advertisement of {h.target} when "
                                  f"its link to {src} went down and up", h.timeout_s)
    await trio.sleep(0.05)          # (both of them: down, then up)
    seq = max(m.seq for m in h.inboxes[other].after(omark)
              if isinstance(m, LinkStateAd) and m.origin == h.target) + 5
    mark = h.inboxes[src].mark()
    await h.send(src, LinkStateAd(h.target, seq, ()))
    got = await h.inboxes[src].expect(mark, lambda m: isinstance(m, LinkStateAd) and
                                      m.origin == h.target and m.seq > seq,
                                      f"a LinkStateAd of {h.target} numbered past {seq}",
                                      h.timeout_s)
    if not got.links:
        raise CaseFailed(f"the fresh advertisement lists {h.target}'s links", describe(got))


# ================================================================ transport layer

_PORTS = [_RNG.randrange(10000, 60000)]


def _port() -> int:
    _PORTS[0] += 1
    return _PORTS[0]


async def _connecting(h: Harness, node: str):
    """An application on the target connecting to ``node``: (app, its
    token, the Syn the target sent)."""
    app = await h.app()
    inbox = h.inboxes[node]
    mark = inbox.mark()
    tok, port, local = app.token(), _port(), _port()
    await app.send(AppConnect(tok, node, port, local_port=local))
    syn = await inbox.expect(mark, lambda m: isinstance(m, Syn) and m.src_port == local,
                             f"a Syn from port {local} for the application's connect",
                             h.timeout_s)
    if syn.dst_port != port:
        raise CaseFailed(f"Syn(src_port={local}, dst_port={port})", describe(syn))
    return app, tok, syn


async def _answer(h: Harness, app, tok: int, what: str):
    """The application's answer (Done or Failed) to request ``tok``."""
    return await app.inbox.expect(0, lambda m: getattr(m, "token", None) == tok, what,
                                  h.timeout_s)


@case("transport/3/8", "the connecting end: a SynAck opens the connection (Done with it); "
                       "items go out only below the limit the far end gave")
async def _connect_window(h: Harness) -> None:
    node = h.need("neighbour")
    inbox = h.inboxes[node]
    app, tok, syn = await _connecting(h, node)
    try:
        await h.send(node, SynAck(syn.dst_port, syn.src_port, 0))      # limit 0: nothing yet
        done = await _answer(h, app, tok, "Done for the connect")
        if not isinstance(done, AppDone) or done.conn is None or done.conn.remote != node:
            raise CaseFailed(f"Done(conn to {node})", describe(done))
        mark = inbox.mark()
        await app.send(AppSendBytes(app.token(), done.conn, b"held"))
        await trio.sleep(0.2)
        early = [m for m in inbox.after(mark) if isinstance(m, Data)]
        if early:
            raise CaseFailed("no Data while the far end's limit is 0", describe(early[0]))
        await h.send(node, Window(syn.dst_port, syn.src_port, 1))
        data = await inbox.expect(mark, lambda m: isinstance(m, Data), "Data once Window(1) "
                                  "came", h.timeout_s)
        if data.seq != 0 or data.payload != b"held" or data.src_port != syn.src_port:
            raise CaseFailed("Data(seq=0, payload=b'held')", describe(data))
    finally:
        await app.aclose()


@case("transport/3/9", "the connecting end: an Rst in answer to its Syn fails the connect "
                       "with the Rst's code")
async def _connect_refused(h: Harness) -> None:
    node = h.need("neighbour")
    app, tok, syn = await _connecting(h, node)
    try:
        await h.send(node, Rst(syn.dst_port, syn.src_port,
                               int(ErrorCode.TRANSPORT_CONNECTION_REFUSED), "conformance"))
        failed = await _answer(h, app, tok, "Failed for the connect")
        if not isinstance(failed, AppFailed) or \
                failed.code != int(ErrorCode.TRANSPORT_CONNECTION_REFUSED):
            raise CaseFailed("Failed(code=TRANSPORT_CONNECTION_REFUSED 402)", describe(failed))
    finally:
        await app.aclose()


@case("transport/6/5", "Close is a full close: Fin(tx_seq) goes out only once everything "
                       "sent is acknowledged")
async def _close_after_ack(h: Harness) -> None:
    node = h.need("neighbour")
    inbox = h.inboxes[node]
    app, tok, syn = await _connecting(h, node)
    try:
        await h.send(node, SynAck(syn.dst_port, syn.src_port, 4))
        done = await _answer(h, app, tok, "Done for the connect")
        mark = inbox.mark()
        await app.send(AppSendBytes(app.token(), done.conn, b"last"))
        await inbox.expect(mark, lambda m: isinstance(m, Data), "Data", h.timeout_s)
        await app.send(AppClose(app.token(), done.conn))
        await trio.sleep(0.2)
        early = [m for m in inbox.after(mark) if isinstance(m, Fin)]
        if early:
            raise CaseFailed("no Fin while item 0 is unacknowledged", describe(early[0]))
        await h.send(node, Ack(syn.dst_port, syn.src_port, 0, 0, 5))
        fin = await inbox.expect(mark, lambda m: isinstance(m, Fin), "Fin once item 0 was "
                                 "acknowledged", h.timeout_s)
        if fin.seq != 1:
            raise CaseFailed("Fin(seq=1)", describe(fin))
    finally:
        await app.aclose()


def _rst_to(port: int, code: ErrorCode | None = None):
    return lambda m: isinstance(m, Rst) and m.dst_port == port and (
        code is None or m.code == int(code))


@case("transport/3/1", "a Syn to a port nobody listens on is refused with "
                       "Rst(TRANSPORT_CONNECTION_REFUSED)")
async def _syn_refused(h: Harness) -> None:
    node = h.need("neighbour")
    inbox = h.inboxes[node]
    mark = inbox.mark()
    src = _port()
    await h.send(node, Syn(src, 9, 4))
    got = await inbox.expect(mark, _rst_to(src), "Rst(402)", h.timeout_s)
    if got.code != int(ErrorCode.TRANSPORT_CONNECTION_REFUSED) or got.src_port != 9:
        raise CaseFailed(f"Rst(src_port=9, dst_port={src}, code=402)", describe(got))


async def _not_connected(h: Harness, make) -> None:
    """``make(src_port)`` names a connection the target does not have: it
    answers with Rst(TRANSPORT_NOT_CONNECTED) to that port."""
    node = h.need("neighbour")
    inbox = h.inboxes[node]
    mark = inbox.mark()
    src = _port()
    await h.send(node, make(src))
    await inbox.expect(mark, _rst_to(src, ErrorCode.TRANSPORT_NOT_CONNECTED), "Rst(401)",
                       h.timeout_s)


@case("transport/3/2", "a SynAck for a connection the target does not have is answered "
                       "with Rst(TRANSPORT_NOT_CONNECTED)")
async def _synack_unknown(h: Harness) -> None:
    await _not_connected(h, lambda src: SynAck(src, 50000, 4))


@case("transport/3/3", "a Window for a connection the target does not have is answered "
                       "with Rst(TRANSPORT_NOT_CONNECTED)")
async def _window_unknown(h: Harness) -> None:
    await _not_connected(h, lambda src: Window(src, 50001, 8))


@case("transport/3/4", "an item (Data) for a connection the target does not have is "
                       "answered with Rst(TRANSPORT_NOT_CONNECTED)")
async def _data_unknown(h: Harness) -> None:
    await _not_connected(h, lambda src: Data(src, 50002, 0, b"x"))


@case("transport/3/5", "an Rst, Fin or Ack for an unknown connection is ignored: an Rst is "
                       "never answered")
async def _rst_unanswered(h: Harness) -> None:
    node = h.need("neighbour")
    inbox = h.inboxes[node]
    mark = inbox.mark()
    a, b, c, barrier = _port(), _port(), _port(), _port()
    await h.send(node, Rst(a, 50003, int(ErrorCode.TRANSPORT_ABORTED), "x"), Fin(b, 50004, 0),
                 Ack(c, 50005, 0, 0, 4), Syn(barrier, 9, 4))
    await inbox.expect(mark, _rst_to(barrier), "Rst to the barrier Syn", h.timeout_s)
    answers = [m for m in inbox.after(mark) if isinstance(m, Rst) and m.dst_port in (a, b, c)]
    if answers:
        raise CaseFailed("no answer to Rst, Fin, Ack of no connection", describe(answers[0]))


@case("transport/6/4", "an Rst with a code that is no known error code aborts with "
                       "TRANSPORT_CLOSED")
async def _rst_unknown_code(h: Harness) -> None:
    node = h.need("neighbour")
    app, port, src, conn = await _accepted(h, node)
    try:
        amark = app.inbox.mark()
        await h.send(node, Rst(src, port, 499, "no such code"))
        got = await app.inbox.expect(amark, lambda m: isinstance(m, AppPeerClosed),
                                     "PeerClosed", h.timeout_s)
        if got.code != int(ErrorCode.TRANSPORT_CLOSED):
            raise CaseFailed("PeerClosed(code=TRANSPORT_CLOSED 404) for Rst(499)", describe(got))
    finally:
        await app.aclose()


@case("transport/5/1", "a header naming a pair its sender does not head is refused: "
                       "Rst(TRANSPORT_HEADER_MISMATCH) and a recorded failure")
async def _header_mismatch(h: Harness) -> None:
    node = h.need("neighbour")
    inbox = h.inboxes[node]
    mark = inbox.mark()
    fmark = await h.fail_mark()
    src = _port()
    await h.send(node, QubitHeader(src, 50006, 0, (h.target, 1, 0), False, False, 0, b""))
    await inbox.expect(mark, _rst_to(src, ErrorCode.TRANSPORT_HEADER_MISMATCH), "Rst(406)",
                       h.timeout_s)
    await h.expect_failure(fmark, ErrorCode.TRANSPORT_HEADER_MISMATCH,
                           "a header for a pair the target heads")


@case("transport/5/5", "an EprHeader naming a pair its sender does not head is refused: "
                       "Rst(TRANSPORT_HEADER_MISMATCH)")
async def _epr_header_mismatch(h: Harness) -> None:
    node = h.need("neighbour")
    inbox = h.inboxes[node]
    mark = inbox.mark()
    src = _port()
    await h.send(node, EprHeader(src, 50007, 0, (h.target, 3, 0), 0, b""))
    await inbox.expect(mark, _rst_to(src, ErrorCode.TRANSPORT_HEADER_MISMATCH), "Rst(406)",
                       h.timeout_s)


@case("transport/5/2", "a PairRelease naming a pair its sender does not head is refused "
                       "(TRANSPORT_HEADER_MISMATCH recorded)")
async def _release_mismatch(h: Harness) -> None:
    node = h.need("neighbour")
    fmark = await h.fail_mark()
    await h.send(node, PairRelease((h.target, 2, 0)))
    await h.expect_failure(fmark, ErrorCode.TRANSPORT_HEADER_MISMATCH,
                           "a PairRelease for a pair the target heads")


async def _open_conn(h: Harness, node: str, backlog: int = 16):
    """An application on the target listening on a fresh port, and a
    connection to it from ``node``: (app, port, src_port, conn as the app names it)."""
    app = await h.app()
    port, src = _port(), _port()
    tok = app.token()
    amark = app.inbox.mark()
    await app.send(AppListen(tok, port, backlog))
    done = await app.inbox.expect(amark, lambda m: getattr(m, "token", None) == tok,
                                  f"the answer to AppListen({port})", h.timeout_s)
    if not isinstance(done, AppDone):
        raise CaseFailed(f"AppDone for AppListen({port})", describe(done))
    return app, port, src


@case("transport/3/6", "a Syn to a listening port is taken: SynAck(limit 0) before Accept, "
                       "Incoming to the application, Window once accepted")
async def _syn_accept(h: Harness) -> None:
    node = h.need("neighbour")
    inbox = h.inboxes[node]
    app, port, src = await _open_conn(h, node)
    try:
        mark, amark = inbox.mark(), app.inbox.mark()
        await h.send(node, Syn(src, port, 4))
        ack = await inbox.expect(mark, lambda m: isinstance(m, SynAck) and m.dst_port == src,
                                 "SynAck", h.timeout_s)
        if ack.limit != 0 or ack.src_port != port:
            raise CaseFailed(f"SynAck(src_port={port}, dst_port={src}, limit=0)", describe(ack))
        inc = await app.inbox.expect(amark, lambda m: isinstance(m, AppIncoming),
                                     "Incoming to the listening application", h.timeout_s)
        mark = inbox.mark()
        await h.send(node, Syn(src, port, 4))        # a repeated Syn: answered again
        await inbox.expect(mark, lambda m: isinstance(m, SynAck) and m.dst_port == src,
                           "SynAck again for a repeated Syn", h.timeout_s)
        mark = inbox.mark()
        await app.send(AppAccept(app.token(), inc.conn))
        win = await inbox.expect(mark, lambda m: isinstance(m, Window) and m.dst_port == src,
                                 "Window once the application accepted", h.timeout_s)
        if win.limit < 1:
            raise CaseFailed("Window(limit >= 1)", describe(win))
    finally:
        await app.aclose()


@case("transport/3/7", "a Syn beyond the listener's backlog is refused with "
                       "Rst(TRANSPORT_CONNECTION_REFUSED)")
async def _backlog(h: Harness) -> None:
    node = h.need("neighbour")
    inbox = h.inboxes[node]
    app, port, src = await _open_conn(h, node, backlog=1)
    try:
        mark = inbox.mark()
        src2 = _port()
        await h.send(node, Syn(src, port, 4), Syn(src2, port, 4))
        await inbox.expect(mark, lambda m: isinstance(m, SynAck) and m.dst_port == src,
                           "SynAck for the first", h.timeout_s)
        await inbox.expect(mark, _rst_to(src2, ErrorCode.TRANSPORT_CONNECTION_REFUSED),
                           "Rst(402) for the second (backlog 1)", h.timeout_s)
    finally:
        await app.aclose()


async def _accepted(h: Harness, node: str):
    app, port, src = await _open_conn(h, node)
    inbox = h.inboxes[node]
    mark, amark = inbox.mark(), app.inbox.mark()
    await h.send(node, Syn(src, port, 4))
    inc = await app.inbox.expect(amark, lambda m: isinstance(m, AppIncoming), "Incoming",
                                 h.timeout_s)
    await app.send(AppAccept(app.token(), inc.conn))
    await inbox.expect(mark, lambda m: isinstance(m, Window) and m.dst_port == src, "Window",
                       h.timeout_s)
    return app, port, src, inc.conn


@case("transport/5/3", "items are delivered strictly by seq whatever order they arrive in, "
                       "and acknowledged once delivered (Acks with code 0, cumulative, in "
                       "increasing seq, up to the last)")
async def _ordering(h: Harness) -> None:
    node = h.need("neighbour")
    inbox = h.inboxes[node]
    app, port, src, conn = await _accepted(h, node)
    try:
        mark, amark = inbox.mark(), app.inbox.mark()
        await h.send(node, Data(src, port, 2, b"two"), Data(src, port, 1, b"one"),
                     Data(src, port, 0, b"zero"))
        for seq in range(3):
            await app.inbox.expect(amark, lambda m, s=seq: isinstance(m, AppDataArrived)
                                   and m.seq == s, f"DataArrived seq {seq}", h.timeout_s)
        got = [(m.seq, m.data) for m in app.inbox.after(amark) if isinstance(m, AppDataArrived)]
        if got != [(0, b"zero"), (1, b"one"), (2, b"two")]:
            raise CaseFailed("DataArrived 0, 1, 2 in order", str(got))
        # one Ack may cover several items (code 0 is cumulative, specs/transport.md §5)
        await inbox.expect(mark, lambda m: isinstance(m, Ack) and m.seq == 2
                           and m.dst_port == src, "Ack(2), covering 0..2", h.timeout_s)
        acks = [m for m in inbox.after(mark) if isinstance(m, Ack) and m.dst_port == src]
        seqs = [m.seq for m in acks]
        if any(m.code for m in acks) or seqs != sorted(set(seqs)) or seqs[-1] != 2:
            raise CaseFailed("Acks with code 0 in increasing seq, the last Ack(2)",
                             ", ".join(describe(m) for m in acks))
    finally:
        await app.aclose()


@case("transport/5/4", "a duplicate item is acknowledged again and not delivered twice")
async def _duplicate_item(h: Harness) -> None:
    node = h.need("neighbour")
    inbox = h.inboxes[node]
    app, port, src, conn = await _accepted(h, node)
    try:
        amark = app.inbox.mark()
        await h.send(node, Data(src, port, 0, b"a"))
        await app.inbox.expect(amark, lambda m: isinstance(m, AppDataArrived), "DataArrived",
                               h.timeout_s)
        mark = inbox.mark()
        await h.send(node, Data(src, port, 0, b"a"), Data(src, port, 1, b"b"))
        await inbox.expect(mark, lambda m: isinstance(m, Ack) and m.seq == 0 and
                           m.dst_port == src, "Ack(0) again for the duplicate", h.timeout_s)
        await app.inbox.expect(amark, lambda m: isinstance(m, AppDataArrived) and m.seq == 1,
                               "DataArrived seq 1", h.timeout_s)
        got = [m.seq for m in app.inbox.after(amark) if isinstance(m, AppDataArrived)]
        if got != [0, 1]:
            raise CaseFailed("each item delivered once: seq 0, 1", str(got))
    finally:
        await app.aclose()


@case("transport/6/1", "Fin(seq) is delivered as PeerClosed once every item below seq is "
                       "delivered")
async def _fin(h: Harness) -> None:
    node = h.need("neighbour")
    app, port, src, conn = await _accepted(h, node)
    try:
        amark = app.inbox.mark()
        await h.send(node, Fin(src, port, 2), Data(src, port, 1, b"1"))
        await trio.sleep(0.05)
        early = [m for m in app.inbox.after(amark) if isinstance(m, AppPeerClosed)]
        if early:
            raise CaseFailed("no PeerClosed while item 0 is missing", describe(early[0]))
        await h.send(node, Data(src, port, 0, b"0"))
        await app.inbox.expect(amark, lambda m: isinstance(m, AppPeerClosed) and m.code is None,
                               "PeerClosed (orderly) after items 0 and 1", h.timeout_s)
        seqs = [m.seq if isinstance(m, AppDataArrived) else "closed"
                for m in app.inbox.after(amark)
                if isinstance(m, (AppDataArrived, AppPeerClosed))]
        if seqs != [0, 1, "closed"]:
            raise CaseFailed("DataArrived 0, 1, then PeerClosed", str(seqs))
    finally:
        await app.aclose()


@case("transport/6/2", "an Rst aborts the connection: PeerClosed with its code")
async def _rst_aborts(h: Harness) -> None:
    node = h.need("neighbour")
    inbox = h.inboxes[node]
    app, port, src, conn = await _accepted(h, node)
    try:
        amark, mark = app.inbox.mark(), inbox.mark()
        await h.send(node, Rst(src, port, int(ErrorCode.TRANSPORT_ABORTED), "conformance"))
        got = await app.inbox.expect(amark, lambda m: isinstance(m, AppPeerClosed),
                                     "PeerClosed", h.timeout_s)
        if got.code != int(ErrorCode.TRANSPORT_ABORTED):
            raise CaseFailed("PeerClosed(code=408)", describe(got))
        # the connection is gone: an item for it now gets Rst(401)
        await h.send(node, Data(src, port, 0, b"late"))
        await inbox.expect(mark, _rst_to(src, ErrorCode.TRANSPORT_NOT_CONNECTED),
                           "Rst(401) for an item after the abort", h.timeout_s)
        if any(isinstance(m, Rst) and m.dst_port == src and m.code ==
               int(ErrorCode.TRANSPORT_ABORTED) for m in inbox.after(mark)):
            raise CaseFailed("the Rst not answered", "an Rst back")
    finally:
        await app.aclose()


@case("transport/6/6", "the far end coming back restarted (a new NodeBoot number) aborts "
                       "its connections with TRANSPORT_RESET")
async def _far_end_restarted(h: Harness) -> None:
    node = h.need("neighbour")
    app, port, src, conn = await _accepted(h, node)
    try:
        amark = app.inbox.mark()
        await h.reintroduce(node, restart=True)
        got = await app.inbox.expect(amark, lambda m: isinstance(m, AppPeerClosed),
                                     f"PeerClosed once {node} came back restarted", h.timeout_s)
        if got.code != int(ErrorCode.TRANSPORT_RESET):
            raise CaseFailed("PeerClosed(code=TRANSPORT_RESET 407)", describe(got))
    finally:
        await app.aclose()


@case("transport/6/3", "an application that ends without closing has its connections "
                       "aborted: Rst(TRANSPORT_ABORTED) to the far end")
async def _app_gone(h: Harness) -> None:
    node = h.need("neighbour")
    inbox = h.inboxes[node]
    app, port, src, conn = await _accepted(h, node)
    mark = inbox.mark()
    await app.aclose()
    await inbox.expect(mark, _rst_to(src, ErrorCode.TRANSPORT_ABORTED), "Rst(408)",
                       h.timeout_s)



_SPECS = ("wire", "emulation", "link", "network", "transport")
_WIRE_SECTIONS = ("framing", "session", "keepalive")


def _order(c: Case) -> tuple:
    spec, section, n = c.id.split("/")
    sec = (_WIRE_SECTIONS.index(section), 0) if spec == "wire" else \
        tuple(int(x) for x in section.split("."))
    return (_SPECS.index(spec), sec, int(n))


CASES.sort(key=_order)     # the catalogue in the specs' order, whatever the order above
