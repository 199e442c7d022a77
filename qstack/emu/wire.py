"""The emulation's wire, sans-I/O: frames, and the session every connection opens with.

Every connection between emulation processes (node daemon, physics server,
application client, conformance tester) carries **frames**: a 4-byte
big-endian unsigned length, then that many bytes of one message's msgpack
encoding (``specs/wire.md``). A connection starts with a **session**
handshake in which both sides agree on a version of this wire and prove to
each other that they know the network's secret; only then do application
messages flow, with keepalives that let each side notice a silent peer.

This module does no I/O and knows no clock of its own (after h11 and
aioquic): :class:`FrameReader` takes bytes and gives messages, :class:`Session`
takes bytes and the current time and gives messages and bytes to write. The
trio adaptor is :mod:`qstack.emu.channel`.

The exchange (``specs/wire.md`` § "The session")::

    client                                       server
      Hello(versions, name, kind, nonce_c)   ->
                                             <-  Challenge(version, name, kind, nonce_s)
      Proof(mac_c)                           ->
                                             <-  Welcome(mac_s)
      (established: application messages, Keepalive, Goodbye, ErrorFrame)

``mac_c`` and ``mac_s`` are HMAC-SHA256 under the secret over one transcript
(:func:`handshake_transcript`) that differs only in its role byte, so
neither side's proof can be replayed or reflected as the other's. The server
proves itself only after the client has, so a process that does not know
the secret learns no MAC from a server.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field

from qstack.core.args import bytes_arg, float_arg, name_arg, show
from qstack.core.errors import DecodeError, EncodeError, ErrorCode, QStackError, error_code
from qstack.core.messages import MAX_MESSAGE_BYTES, Message, decode, encode, limits, message
from qstack.core.states import State, Transitions

__all__ = [
    "MAX_FRAME_BYTES", "PREFIX_BYTES", "KINDS", "NONCE_BYTES", "PROOF_LABEL",
    "SESSION_PROTOCOL", "VERSIONS",
    "encode_frame", "FrameReader",
    "Hello", "Challenge", "Proof", "Welcome", "Keepalive", "Goodbye", "ErrorFrame",
    "Phase", "TRANSITIONS", "Session", "SessionClosed",
    "handshake_transcript", "handshake_proof", "new_secret",
]

#: Largest frame body (one encoded message), bytes: the codec's limit (1 MiB).
MAX_FRAME_BYTES = MAX_MESSAGE_BYTES
#: Length of the frame's length prefix, bytes (big-endian unsigned).
PREFIX_BYTES = 4
#: What a process says it is in its Hello / Challenge.
KINDS = ("node", "app", "physics", "control", "conformance")
#: Length of each side's handshake nonce, bytes.
NONCE_BYTES = 32
#: The session-wire versions this code speaks (negotiated in the handshake).
VERSIONS = (1,)
#: Domain separation for the handshake proofs (ASCII, NUL-terminated).
PROOF_LABEL = b"qstack emu session proof\x00"
#: The ``PROTOCOL`` of the session's own messages.
SESSION_PROTOCOL = "emu.session"

_PREFIX = struct.Struct(">I")
_NAME = limits(max_len=64)
_KIND = limits(max_len=16)
_NONCE = limits(max_len=NONCE_BYTES)
_MAC = limits(max_len=32)
_VERSION = limits(1, 0xFFFF)
_MAX_VERSIONS = 16
_DETAIL_CHARS = 1024


# ----------------------------------------------------------------------------
# framing

def encode_frame(msg: Message) -> bytes:
    """``msg`` as one frame: its length (4 bytes, big-endian) and its msgpack
    encoding. A message whose encoding is over :data:`MAX_FRAME_BYTES` raises
    :class:`EncodeError` (``FRAME_TOO_LARGE``): no peer would accept it."""
    body = encode(msg)
    if len(body) > MAX_FRAME_BYTES:
        raise EncodeError(ErrorCode.FRAME_TOO_LARGE,
                          f"{type(msg).__name__}: {len(body)} bytes > {MAX_FRAME_BYTES}")
    return _PREFIX.pack(len(body)) + body


class FrameReader:
    """Splits a byte stream into frames and decodes each.

    :meth:`feed` the bytes as they arrive, in pieces of any size; :meth:`next`
    gives the next whole message or None. A length prefix over
    :data:`MAX_FRAME_BYTES` raises ``FRAME_TOO_LARGE`` as soon as its 4 bytes
    are in (the body is never waited for); a body that does not decode raises
    the decoder's :class:`DecodeError`. After an error the reader raises the
    same error again: the stream has lost its framing, so the connection
    must be closed."""

    __slots__ = ("_buf", "_pos", "_error")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0            # start of the first unread frame in _buf
        self._error: DecodeError | None = None

    def feed(self, data: bytes) -> None:
        """Append ``data`` (bytes, bytearray or memoryview) to the stream."""
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message (a partial frame)."""
        return len(self._buf) - self._pos

    @property
    def failed(self) -> DecodeError | None:
        """The error that made this reader unusable, or None."""
        return self._error

    def next(self) -> Message | None:
        """The next complete message, or None if more bytes are needed.
        Raises :class:`DecodeError` (and nothing else)."""
        if self._error is not None:
            raise self._error
        buf, pos = self._buf, self._pos
        have = len(buf) - pos
        if have >= PREFIX_BYTES:
            (size,) = _PREFIX.unpack_from(buf, pos)
            if size > MAX_FRAME_BYTES:
                self._error = DecodeError(ErrorCode.FRAME_TOO_LARGE,
                                          f"frame length {size} > {MAX_FRAME_BYTES}")
                raise self._error
            end = pos + PREFIX_BYTES + size
            if len(buf) >= end:
                self._pos = end
                try:
                    return decode(buf[pos + PREFIX_BYTES:end])
                except DecodeError as exc:
                    self._error = exc
                    raise
        # Drop what was consumed only once the whole frames are used up, so
        # the copy is paid once per received chunk, not per frame.
        if pos:
            del buf[:pos]
            self._pos = 0
        return None


# ----------------------------------------------------------------------------
# the session's messages (0x0600-0x061F)

def _check_peer(name: str, kind: str, nonce: bytes) -> None:
    """The rules a Hello's and a Challenge's sender fields share."""
    if not name:
        raise ValueError("name must not be empty")
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    _exactly("nonce", nonce, NONCE_BYTES)


def _exactly(what: str, value: bytes, size: int) -> None:
    if len(value) != size:
        raise ValueError(f"{what} has {len(value)} bytes, not {size}")


@message(SESSION_PROTOCOL, 0x0600)
@dataclass(frozen=True, slots=True)
class Hello(Message):
    """Client -> server, first frame: the session versions the client speaks,
    who it is, and its fresh random nonce. Its layout stays at version 1 for
    good, so that peers of any later version can still negotiate."""

    versions: tuple[int, ...] = field(metadata=limits(1, 0xFFFF, max_len=_MAX_VERSIONS))
    name: str = field(metadata=_NAME)
    kind: str = field(metadata=_KIND)
    nonce: bytes = field(metadata=_NONCE)

    def __post_init__(self) -> None:
        if not self.versions:
            raise ValueError("versions must not be empty")
        _check_peer(self.name, self.kind, self.nonce)


@message(SESSION_PROTOCOL, 0x0601)
@dataclass(frozen=True, slots=True)
class Challenge(Message):
    """Server -> client: the version chosen (the highest both speak), who the
    server is, and the server's fresh random nonce."""

    version: int = field(metadata=_VERSION)
    name: str = field(metadata=_NAME)
    kind: str = field(metadata=_KIND)
    nonce: bytes = field(metadata=_NONCE)

    def __post_init__(self) -> None:
        _check_peer(self.name, self.kind, self.nonce)


@message(SESSION_PROTOCOL, 0x0602)
@dataclass(frozen=True, slots=True)
class Proof(Message):
    """Client -> server: the client's HMAC over the transcript (role ``C``)."""

    mac: bytes = field(metadata=_MAC)

    def __post_init__(self) -> None:
        _exactly("mac", self.mac, 32)


@message(SESSION_PROTOCOL, 0x0603)
@dataclass(frozen=True, slots=True)
class Welcome(Message):
    """Server -> client: the server's HMAC over the transcript (role ``S``);
    sent once the client's proof verified, it establishes the session."""

    mac: bytes = field(metadata=_MAC)

    def __post_init__(self) -> None:
        _exactly("mac", self.mac, 32)


@message(SESSION_PROTOCOL, 0x0604)
@dataclass(frozen=True, slots=True)
class Keepalive(Message):
    """Either way, once established: sent when nothing else was sent for
    ``keepalive_s``, so the peer knows this side is alive."""


@message(SESSION_PROTOCOL, 0x0605)
@dataclass(frozen=True, slots=True)
class Goodbye(Message):
    """Either way: a clean close; the sender sends nothing after it."""

    reason: str = field(default="", metadata=limits(max_len=_DETAIL_CHARS))


@message(SESSION_PROTOCOL, 0x0606)
@dataclass(frozen=True, slots=True)
class ErrorFrame(Message):
    """Either way: the sender closes the connection because of a fault with
    this code (``specs/errors.md``); it sends nothing after it."""

    code: int = field(metadata=limits(0, 0xFFFF))
    detail: str = field(default="", metadata=limits(max_len=_DETAIL_CHARS))


VECTOR_EXAMPLES = {
    "hello": Hello(versions=(1,), name="alice", kind="node", nonce=bytes(range(32))),
    "hello_two_versions": Hello(versions=(2, 1), name="app-1", kind="app",
                                nonce=bytes(range(32, 64))),
    "challenge": Challenge(version=1, name="physics", kind="physics",
                           nonce=bytes(range(64, 96))),
    "proof": Proof(mac=bytes(range(0xA0, 0xC0))),
    "welcome": Welcome(mac=bytes(range(0xC0, 0xE0))),
    "keepalive": Keepalive(),
    "goodbye": Goodbye(reason="shutting down"),
    "error_frame": ErrorFrame(code=601, detail="proof did not verify"),
}


# ----------------------------------------------------------------------------
# the proof

def _text(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


def handshake_transcript(role: str, version: int, offered: tuple[int, ...],
                         client_nonce: bytes, server_nonce: bytes,
                         client_name: str, client_kind: str,
                         server_name: str, server_kind: str) -> bytes:
    """The bytes a handshake proof is the HMAC of (``specs/wire.md`` gives the
    layout): :data:`PROOF_LABEL`, the role byte (``C`` for the client's
    proof, ``S`` for the server's), the chosen version (u16), the versions the
    client offered (u8 count, u16 each, in its order), both nonces (client's
    first), then both names and kinds (u16 length + UTF-8 each: client name,
    client kind, server name, server kind). Integers big-endian."""
    if role not in ("client", "server"):
        raise ValueError(f"role {role!r}")
    return b"".join((
        PROOF_LABEL, b"C" if role == "client" else b"S",
        struct.pack(">HB", version, len(offered)),
        b"".join(struct.pack(">H", v) for v in offered),
        client_nonce, server_nonce,
        _text(client_name), _text(client_kind), _text(server_name), _text(server_kind),
    ))


def handshake_proof(secret: bytes, role: str, *transcript_args) -> bytes:
    """HMAC-SHA256 under ``secret`` of :func:`handshake_transcript` (``role``
    and the rest of its arguments), 32 bytes."""
    return hmac.new(secret, handshake_transcript(role, *transcript_args), hashlib.sha256).digest()


def new_secret() -> bytes:
    """A fresh network secret: 32 random bytes from the OS."""
    return os.urandom(32)


# ----------------------------------------------------------------------------
# the session state machine

class Phase(State):
    """Where a :class:`Session` is."""

    IDLE = "idle"                       # client, before initiate()
    AWAIT_HELLO = "await hello"         # server, before the client's Hello
    HELLO_SENT = "hello sent"           # client
    CHALLENGE_SENT = "challenge sent"   # server
    PROOF_SENT = "proof sent"           # client
    ESTABLISHED = "established"
    CLOSED = "closed"


_OPEN = (Phase.IDLE, Phase.AWAIT_HELLO, Phase.HELLO_SENT, Phase.CHALLENGE_SENT,
         Phase.PROOF_SENT, Phase.ESTABLISHED)

#: Every allowed move. Causes: the received session message's class name,
#: "application" (any other message), "initiate", "tick" (keepalive time);
#: "fault" (a bad frame, a failed check, silence, end of stream), "close"
#: (this side closes). A received message the table does not allow is a
#: fault with ``EMU_HANDSHAKE``.
TRANSITIONS = Transitions("emu.session", {
    (Phase.IDLE, "initiate"): Phase.HELLO_SENT,
    (Phase.AWAIT_HELLO, "Hello"): Phase.CHALLENGE_SENT,
    (Phase.HELLO_SENT, "Challenge"): Phase.PROOF_SENT,
    (Phase.CHALLENGE_SENT, "Proof"): Phase.ESTABLISHED,
    (Phase.PROOF_SENT, "Welcome"): Phase.ESTABLISHED,
    (Phase.ESTABLISHED, "application"): Phase.ESTABLISHED,
    (Phase.ESTABLISHED, "Keepalive"): Phase.ESTABLISHED,
    (Phase.ESTABLISHED, "tick"): Phase.ESTABLISHED,
    **{(p, cause): Phase.CLOSED for p in _OPEN
       for cause in ("Goodbye", "ErrorFrame", "fault", "close")},
})


class SessionClosed(QStackError):
    """The session is closed: ``code`` says why (``EMU_CLOSED`` for a clean
    close). ``messages`` holds the application messages that arrived before
    the fault in the call that raised it (already delivered ones are not
    repeated)."""

    def __init__(self, code: ErrorCode, detail: str = "",
                 messages: list[Message] | None = None) -> None:
        super().__init__(code, detail)
        self.messages = messages or []


class Session:
    """One end of a connection: handshake, keepalives, close (sans-I/O).

    ``role`` is ``"client"`` (speaks first) or ``"server"``; ``name`` (1-64
    characters) and ``kind`` (one of :data:`KINDS`) say who this side is;
    ``secret`` (bytes, non-empty) is the network's; ``versions`` the session
    versions this side speaks. ``keepalive_s`` (s): send a ``Keepalive`` when
    nothing was sent for this long; ``dead_after_s`` (s): the peer is dead
    when nothing arrived for this long. ``nonce`` (32 bytes) fixes this
    side's nonce for reproducible tests; by default it is fresh from the OS.

    Drive it with :meth:`initiate` (client), :meth:`receive_data`,
    :meth:`tick`, :meth:`send` and :meth:`close`, and write out what
    :meth:`data_to_send` gives after each. Any fault closes it, queues an
    ``ErrorFrame`` with the fault's code where the peer can still read it,
    and records the code (:attr:`close_code`).
    """

    def __init__(self, role: str, name: str, kind: str, secret: bytes,
                 versions: tuple[int, ...] = VERSIONS, *, keepalive_s: float = 0.5,
                 dead_after_s: float = 2.0, nonce: bytes | None = None) -> None:
        if role not in ("client", "server"):
            raise QStackError(ErrorCode.OUT_OF_RANGE, f"role={show(role)}: 'client' or 'server'")
        self.role = role
        self.name = name_arg("name", name)
        if kind not in KINDS:
            raise QStackError(ErrorCode.OUT_OF_RANGE, f"kind={show(kind)}: one of {KINDS}")
        self.kind = kind
        self._secret = bytes_arg("secret", secret, 1 << 16)
        if not self._secret:
            raise QStackError(ErrorCode.OUT_OF_RANGE, "secret: must not be empty")
        try:
            versions = tuple(versions)
        except TypeError:
            raise QStackError(ErrorCode.BAD_FIELD, f"versions={show(versions)}: "
                                                   "expected integers") from None
        if not 1 <= len(versions) <= _MAX_VERSIONS or any(
                type(v) is not int or not 1 <= v <= 0xFFFF for v in versions):
            raise QStackError(ErrorCode.OUT_OF_RANGE, f"versions={show(versions)}: 1 to "
                                                      f"{_MAX_VERSIONS} integers in 1..65535")
        self.versions = versions
        self.keepalive_s = float_arg("keepalive_s", keepalive_s, 1e-6)
        self.dead_after_s = float_arg("dead_after_s", dead_after_s, self.keepalive_s)
        if nonce is None:
            nonce = os.urandom(NONCE_BYTES)
        elif bytes_arg("nonce", nonce, NONCE_BYTES).__len__() != NONCE_BYTES:
            raise QStackError(ErrorCode.OUT_OF_RANGE, f"nonce: {NONCE_BYTES} bytes")
        self._nonce = bytes(nonce)
        self._phase = Phase.IDLE if role == "client" else Phase.AWAIT_HELLO
        self._reader = FrameReader()
        self._out: list[bytes] = []
        self.peer_name: str | None = None
        self.peer_kind: str | None = None
        self.version: int | None = None
        #: True once the peer proved the secret (stays True after a close)
        self.authenticated = False
        self.close_code: ErrorCode | None = None
        self.close_detail = ""
        # the handshake's transcript parts, known once both sides have spoken
        self._offered: tuple[int, ...] = ()
        self._peer_nonce = b""
        # keepalive clock (s): stamps of the last frame in and out; a flag
        # stands for "something moved since the last tick" when no time was given
        self._last_rx: float | None = None
        self._last_tx: float | None = None
        self._rx_moved = False
        self._tx_moved = False

    # ------------------------------------------------------------ state
    @property
    def phase(self) -> Phase:
        """The current state (:class:`Phase`)."""
        return self._phase

    @property
    def established(self) -> bool:
        """True once both sides have proved the secret (until closed)."""
        return self._phase is Phase.ESTABLISHED

    @property
    def closed(self) -> bool:
        return self._phase is Phase.CLOSED

    def _move(self, cause: str) -> None:
        self._phase = TRANSITIONS.next(self._phase, cause)

    def _queue(self, msg: Message) -> None:
        self._out.append(encode_frame(msg))
        self._tx_moved = True

    def _fault(self, code: ErrorCode, detail: str, tell: bool = True) -> None:
        """Close because of a fault; tell the peer unless it cannot hear."""
        if self._phase is Phase.CLOSED:
            return
        if tell:
            self._queue(ErrorFrame(int(code), detail[:_DETAIL_CHARS]))
        self._move("fault")
        self.close_code, self.close_detail = ErrorCode(code), detail

    def _closed_error(self, messages: list[Message] | None = None) -> SessionClosed:
        return SessionClosed(self.close_code, self.close_detail, messages)

    # ------------------------------------------------------------ driving
    def initiate(self) -> list[bytes]:
        """Start the handshake: the frames to write (the client's Hello; none
        for a server, which waits for one)."""
        if self.role == "server":
            return []
        self._move("initiate")
        self._queue(Hello(self.versions, self.name, self.kind, self._nonce))
        data = self.data_to_send()
        return [data] if data else []

    def data_to_send(self) -> bytes:
        """The queued frames (handshake replies, keepalives, a closing
        ErrorFrame or Goodbye), to write in order; empties the queue."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def send(self, msg: Message) -> bytes:
        """The frame that carries application message ``msg``; only once
        established (``EMU_NOT_READY`` before; :class:`SessionClosed` after).
        Session messages are the session's own: ``BAD_FIELD``."""
        if self._phase is not Phase.ESTABLISHED:
            if self._phase is Phase.CLOSED:
                raise self._closed_error()
            raise QStackError(ErrorCode.EMU_NOT_READY,
                              f"send({type(msg).__name__}) in phase {self._phase.name}: "
                              "the handshake has not completed")
        if not isinstance(msg, Message) or msg.PROTOCOL == SESSION_PROTOCOL:
            raise QStackError(ErrorCode.BAD_FIELD, f"send: {type(msg).__name__} is not an "
                                                   "application message")
        self._tx_moved = True
        return encode_frame(msg)

    def close(self, code: ErrorCode | None = None, detail: str = "") -> None:
        """Close from this side: queue a ``Goodbye`` (``code`` None: a clean
        close, recorded as ``EMU_CLOSED``) or an ``ErrorFrame`` with
        ``code``. Nothing happens if already closed."""
        if self._phase is Phase.CLOSED:
            return
        if code is None:
            self._queue(Goodbye(detail[:_DETAIL_CHARS]))
            recorded = ErrorCode.EMU_CLOSED
        else:
            recorded = ErrorCode(code)
            self._queue(ErrorFrame(int(recorded), detail[:_DETAIL_CHARS]))
        self._move("close")
        self.close_code, self.close_detail = recorded, detail or "closed by this side"

    def tick(self, now_s: float, check_peer: bool = True) -> None:
        """Keepalive timing at time ``now_s`` (s, any monotonic clock):
        queue a ``Keepalive`` when established and nothing was sent for
        ``keepalive_s``; declare the peer dead (``EMU_PEER_GONE``) when
        nothing arrived for more than ``dead_after_s``. Frames that moved
        without a time given count as moved at this tick. ``check_peer``
        False skips the second check and restarts the silence clock: the
        caller itself has stopped reading, so silence says nothing about the
        peer, which gets a whole ``dead_after_s`` once reading resumes."""
        if self._phase is Phase.CLOSED:
            return
        if self._last_rx is None or self._rx_moved or not check_peer:
            self._last_rx, self._rx_moved = now_s, False
        if self._last_tx is None or self._tx_moved:
            self._last_tx, self._tx_moved = now_s, False
        silent = now_s - self._last_rx
        if check_peer and silent > self.dead_after_s:
            self._fault(ErrorCode.EMU_PEER_GONE,
                        f"nothing received from {self.peer_name or 'the peer'} for {silent:.3f} s "
                        f"(dead_after_s={self.dead_after_s:g})")
            return
        if self._phase is Phase.ESTABLISHED and now_s - self._last_tx >= self.keepalive_s:
            self._move("tick")
            self._queue(Keepalive())
            self._last_tx, self._tx_moved = now_s, False

    def receive_data(self, data: bytes, now_s: float | None = None) -> list[Message]:
        """Feed bytes received at ``now_s`` (s, the :meth:`tick` clock; None:
        stamped at the next tick); ``b""`` means the peer closed the stream.
        Returns the application messages that arrived (none before the
        handshake completes); session messages are handled here and any
        answer is queued (:meth:`data_to_send`). Raises
        :class:`SessionClosed` (and nothing else) if the session is closed
        or this data closes it with a fault; a clean ``Goodbye`` returns the
        messages before it and closes, and the next call raises."""
        if self._phase is Phase.CLOSED:
            raise self._closed_error()
        if now_s is None:
            self._rx_moved = True
        else:
            self._last_rx, self._rx_moved = now_s, False
        if not data:
            buffered = self._reader.buffered
            if buffered:
                self._fault(ErrorCode.MALFORMED, f"stream ended inside a frame "
                                                 f"({buffered} bytes of it)", tell=False)
            else:
                self._fault(ErrorCode.EMU_PEER_GONE, "the peer closed the stream without "
                                                     "Goodbye", tell=False)
            raise self._closed_error()
        reader = self._reader
        reader.feed(data)
        delivered: list[Message] = []
        while True:
            try:
                msg = reader.next()
            except DecodeError as exc:
                self._fault(exc.code, f"bad frame: {exc.detail}")
                break
            if msg is None:
                break
            if msg.PROTOCOL != SESSION_PROTOCOL:
                if self._phase is Phase.ESTABLISHED:
                    delivered.append(msg)
                    continue
                self._fault(ErrorCode.EMU_HANDSHAKE, f"{type(msg).__name__} before the handshake "
                                                     f"completed (phase {self._phase.name})")
                break
            self._on_session_message(msg)
            if self._phase is Phase.CLOSED:
                break
        if self._phase is Phase.CLOSED and self.close_code is not ErrorCode.EMU_CLOSED:
            raise self._closed_error(delivered)
        return delivered

    # ------------------------------------------------------------ the handshake
    def _on_session_message(self, msg: Message) -> None:
        cause = type(msg).__name__
        if not TRANSITIONS.allows(self._phase, cause):
            self._fault(ErrorCode.EMU_HANDSHAKE,
                        f"{cause} is out of place for a {self.role} in phase {self._phase.name}")
            return
        getattr(self, f"_on_{cause.lower()}")(msg)

    def _transcript(self, role: str) -> tuple:
        client = (self.name, self.kind) if self.role == "client" else (self.peer_name, self.peer_kind)
        server = (self.peer_name, self.peer_kind) if self.role == "client" else (self.name, self.kind)
        nonces = ((self._nonce, self._peer_nonce) if self.role == "client"
                  else (self._peer_nonce, self._nonce))
        return (self._secret, role, self.version, self._offered, *nonces, *client, *server)

    def _on_hello(self, msg: Hello) -> None:                  # server
        self.peer_name, self.peer_kind = msg.name, msg.kind
        common = set(msg.versions) & set(self.versions)
        if not common:
            self._fault(ErrorCode.UNSUPPORTED_VERSION,
                        f"no common version: offered {list(msg.versions)}, "
                        f"supported {list(self.versions)}")
            return
        self._move("Hello")
        self.version = max(common)
        self._offered, self._peer_nonce = msg.versions, msg.nonce
        self._queue(Challenge(self.version, self.name, self.kind, self._nonce))

    def _on_challenge(self, msg: Challenge) -> None:          # client
        self.peer_name, self.peer_kind = msg.name, msg.kind
        if msg.version not in self.versions:
            self._fault(ErrorCode.UNSUPPORTED_VERSION,
                        f"server chose version {msg.version}, offered {list(self.versions)}")
            return
        if hmac.compare_digest(msg.nonce, self._nonce):
            # our own nonce sent back: a reflection, not a peer
            self._fault(ErrorCode.EMU_AUTH_FAILED, "the challenge repeats this side's nonce")
            return
        self._move("Challenge")
        self.version, self._offered, self._peer_nonce = msg.version, self.versions, msg.nonce
        self._queue(Proof(handshake_proof(*self._transcript("client"))))

    def _on_proof(self, msg: Proof) -> None:                  # server
        if self._verify(msg.mac, "client"):
            self._queue(Welcome(handshake_proof(*self._transcript("server"))))

    def _on_welcome(self, msg: Welcome) -> None:              # client
        self._verify(msg.mac, "server")

    def _verify(self, mac: bytes, role: str) -> bool:
        """Check the peer's proof (``role`` is the peer's); establish or fail."""
        if not hmac.compare_digest(mac, handshake_proof(*self._transcript(role))):
            self._fault(ErrorCode.EMU_AUTH_FAILED,
                        f"{self.peer_kind} {self.peer_name!r}: proof did not verify "
                        "(not the network's secret)")
            return False
        self._move("Proof" if role == "client" else "Welcome")
        self.authenticated = True
        return True

    def _on_keepalive(self, msg: Keepalive) -> None:
        self._move("Keepalive")

    def _on_goodbye(self, msg: Goodbye) -> None:
        self._move("Goodbye")
        self.close_code = ErrorCode.EMU_CLOSED
        self.close_detail = f"the peer said goodbye: {msg.reason}" if msg.reason else \
            "the peer said goodbye"

    def _on_errorframe(self, msg: ErrorFrame) -> None:
        self._move("ErrorFrame")
        code = error_code(msg.code, ErrorCode.EMU_PEER_GONE)
        self.close_code = code
        self.close_detail = f"the peer closed with {msg.code}: {msg.detail}"

