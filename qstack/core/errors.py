"""Error codes shared by every layer.

Every failure that crosses a layer boundary or the wire carries a numeric code
from one registry, so that a log line, a wire ERR message and an exception all
name the same thing. Codes are grouped by layer in blocks of 100 (see
``specs/errors.md``): core 1-99, physical 100-199, link 200-299, network
300-399, transport 400-499, application 500-599, emulation 600-699.
"""
from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """The registry of defined error codes (``specs/errors.md`` is normative)."""

    # core: decoding and protocol plumbing (1-99)
    MALFORMED = 1            # bytes are not a msgpack array of the right shape
    UNKNOWN_TYPE = 2         # message type code not registered
    UNSUPPORTED_VERSION = 3  # message version not understood
    BAD_FIELD = 4            # a field or argument has the wrong type or count
    OUT_OF_RANGE = 5         # a field or argument is outside its documented range
    FRAME_TOO_LARGE = 6      # a frame exceeds the maximum size
    UNEXPECTED_EVENT = 7     # a protocol got an event it has no handler for
    BAD_CONFIG = 8           # a configuration file or value is invalid
    INTERNAL_ERROR = 9       # a protocol raised instead of answering (a bug); the node goes on

    # physical (100-199)
    QUBIT_UNAVAILABLE = 100  # the qubit was measured, discarded or never existed
    INVALID_PARAMETER = 101  # a physical parameter is out of its physical range
    MEMORY_FULL = 102        # no free memory slot on the node

    # link (200-299)
    LINK_UNSUPPORTED = 200   # the request cannot be served by this hardware at all
    LINK_NO_TIME = 201       # the hardware cannot meet the fidelity within the time asked
    LINK_NO_RESOURCES = 202  # no memory or communication qubit available now
    LINK_TIMEOUT = 203       # the request's maximum time ran out
    LINK_REJECTED = 204      # the peer rejected the request
    LINK_OUT_OF_MEMORY = 205  # memory exhausted while the request was served
    LINK_EXPIRED = 206       # a delivered pair was lost (cut-off, peer reset)
    LINK_UNKNOWN_PEER = 207  # no link to that node
    LINK_QUEUE_FULL = 208    # the distributed queue is full
    LINK_DOWN = 209          # the link is down, or the peer's session broke (reset, restart)
    LINK_CANCELLED = 210     # the requester withdrew the request (CancelCreate); never in a LinkErr

    # network (300-399)
    NET_NO_ROUTE = 300       # no path to the destination
    NET_UNREACHABLE_FIDELITY = 301  # no path can meet the fidelity
    NET_TIMEOUT = 302        # the request's maximum time ran out
    NET_CIRCUIT_TORN_DOWN = 303  # a node or link on the circuit failed
    NET_REJECTED = 304       # a node on the path refused the circuit
    NET_UNKNOWN_CIRCUIT = 305  # a message names a circuit this node does not know

    # transport (400-499)
    TRANSPORT_NO_PAIR = 400  # no end-to-end pair could be had in time
    TRANSPORT_NOT_CONNECTED = 401
    TRANSPORT_CONNECTION_REFUSED = 402  # nobody listens on that port
    TRANSPORT_TIMEOUT = 403
    TRANSPORT_CLOSED = 404
    TRANSPORT_PORT_IN_USE = 405
    TRANSPORT_HEADER_MISMATCH = 406  # a header names a pair that does not exist
    TRANSPORT_RESET = 407    # the far end restarted or stayed unreachable: its state is gone
    TRANSPORT_ABORTED = 408  # the far end's application ended without closing the connection
    TRANSPORT_NODE_DOWN = 409  # this node crashed: its connections and qubits are gone

    # application (500-599)
    APP_ABORTED = 500        # a protocol aborted (e.g. QBER above threshold)
    APP_KMS_BAD_REQUEST = 520   # a key-management request is malformed or names no key (HTTP 400)
    APP_KMS_UNAUTHORIZED = 521  # the SAE may not have that key or status (HTTP 401)
    APP_KMS_NO_KEY = 522     # the key manager has not enough key material now (HTTP 503)

    # emulation (600-699)
    EMU_PEER_GONE = 600      # a peer process disappeared, went silent or stopped reading
    EMU_AUTH_FAILED = 601    # the peer did not prove the network's secret
    EMU_HANDSHAKE = 602      # a message out of place in the session (before or after the handshake)
    EMU_NOT_READY = 603      # an application message before the session is established
    EMU_CLOSED = 604         # the connection was closed cleanly (Goodbye)


_CODES = {int(code): code for code in ErrorCode}    # (ErrorCode(x) without its ValueError)


def error_code(value: int, default: "ErrorCode") -> "ErrorCode":
    """``value`` (a code from a message) as an :class:`ErrorCode`, or
    ``default`` if it is not a defined one (a newer peer's code, say)."""
    return _CODES.get(value, default)


class QStackError(Exception):
    """An error with a defined code. ``str(err)`` is ``"NAME (code): detail"``."""

    def __init__(self, code: ErrorCode, detail: str = "") -> None:
        self.code = ErrorCode(code)
        self.detail = detail
        super().__init__(f"{self.code.name} ({int(self.code)}): {detail}")


class DecodeError(QStackError):
    """Bytes that are not a valid message; raised by every decoder and nothing else."""


class EncodeError(QStackError, ValueError):
    """A message built with a field of the wrong type or outside its declared
    limits, refused when it is constructed (so it never reaches the wire).
    The code is the one the decoder gives the same fault (``BAD_FIELD``,
    ``OUT_OF_RANGE``); the detail names the class, the field and the value.
    Also a ``ValueError``, as a message's own cross-field checks raise."""


class ConfigError(QStackError, ValueError):
    """A configuration value or file is invalid; the detail names the field."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorCode.BAD_CONFIG, detail)
