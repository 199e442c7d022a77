"""The transport layer: teleportation with header-to-pair binding, and the socket API.

* :mod:`.socket` -- :class:`QSocket`, :class:`Qubit`, :class:`NodeContext`:
  what applications use (re-exported from :mod:`qstack`);
* :mod:`.protocol` -- ``transport.qtp``, the sans-I/O teleportation transport;
* :mod:`.service` -- the requests and events between sockets and the protocol;
* :mod:`.runtime` -- :class:`TransportRuntime`, what a driver provides to sockets;
* :mod:`.messages` -- wire messages (``specs/transport.md``).
"""
from qstack.transport.protocol import TeleportTransport
from qstack.transport.runtime import TransportRuntime
from qstack.transport.socket import (
    NodeContext, QSocket, Qubit, TransportError, TransportTimeout,
)

__all__ = ["QSocket", "Qubit", "NodeContext", "TransportError", "TransportTimeout",
           "TeleportTransport", "TransportRuntime"]
