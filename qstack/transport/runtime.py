"""What a driver provides so that the socket API can run on it.

The socket API (:mod:`qstack.transport.socket`) is written once, against this
small interface; the simulator implements it in simulated time
(:class:`qstack.sim.apps.SimRuntime`, coroutines run by the kernel's runner)
and the emulator over trio in real time. Application code sees neither.

A runtime belongs to one node. Its futures are awaitable objects with
``done()``, ``result()``, ``set_result(value)`` and ``set_exception(exc)``;
completing one must not resume the awaiting coroutine synchronously (both
drivers wake it from their event loop), so completing futures from inside a
delivery callback is safe.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, Awaitable, Callable

__all__ = ["TransportRuntime", "RuntimeFuture"]


class RuntimeFuture(ABC):
    """The future interface the socket API relies on (structural: the
    simulator's ``SimFuture`` and a trio-based future both fit)."""

    @abstractmethod
    def done(self) -> bool: ...

    @abstractmethod
    def result(self) -> Any: ...

    @abstractmethod
    def set_result(self, value: Any) -> None: ...

    @abstractmethod
    def set_exception(self, exc: BaseException) -> None: ...


class TransportRuntime(ABC):
    """One node's connection between the socket API and a driver.

    * ``node``: the node's name;
    * :meth:`submit` hands a request (``qstack.transport.service``) to the
      node's transport protocol; what the protocol delivers upward reaches the
      callbacks registered with :meth:`subscribe`;
    * local quantum operations (``qstack.physical.ops``) on the node's
      device, whose state may be held elsewhere (the emulator's physics
      server): :meth:`enqueue` queues one whose outcome nobody waits for (a
      gate, a discard) and returns at once; :meth:`outcome` queues one after
      everything before it and awaits its outcome (a measurement);
      :meth:`allocate` hands out a fresh qubit's reference at once; and
      :meth:`settle` waits until everything queued so far has been carried
      out and has finished. Operations run in the order they were called;
      their durations are owed to the node's processor, so gates called
      without ``await`` still cost their time before the next network
      operation or measurement result (``specs/transport.md``, "Local
      operations");
    * :meth:`now_ns`, :meth:`sleep`, :meth:`future`, :meth:`wait`: the clock
      (simulated or real, integer nanoseconds) and waiting.
    """

    node: str

    @abstractmethod
    def now_ns(self) -> int:
        """The node's clock, nanoseconds."""

    @abstractmethod
    def sleep(self, delay_ns: int) -> Awaitable[None]:
        """Resume ``delay_ns`` nanoseconds later."""

    @abstractmethod
    def future(self) -> Any:
        """A new pending future (see :class:`RuntimeFuture`)."""

    @abstractmethod
    async def wait(self, future: Any, timeout_ns: int | None) -> Any:
        """Await ``future`` for at most ``timeout_ns`` (None: no limit); raise
        the builtin ``TimeoutError`` when the time runs out."""

    @abstractmethod
    def submit(self, request: Any) -> None:
        """Hand ``request`` to this node's transport protocol now."""

    def submit_to(self, protocol: str, request: Any) -> None:
        """Hand ``request`` to the node's protocol ``protocol`` (one beside
        the socket stack, e.g. ``app.qkd``); what it delivers reaches the
        :meth:`subscribe` callbacks too. A driver that carries no such
        requests refuses with ``UNEXPECTED_EVENT``."""
        from qstack.core.errors import ErrorCode, QStackError

        raise QStackError(ErrorCode.UNEXPECTED_EVENT, f"this driver ({type(self).__name__}) "
                          f"carries no requests to {protocol}")

    @abstractmethod
    def subscribe(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(event)`` for every event the transport delivers upward."""

    @abstractmethod
    def allocate(self) -> Any:
        """A fresh qubit in ``|0>``: its reference, at once.

        The node's memory slots are the node's to count even when their state
        is held elsewhere, so a driver answers from its own ledger: a refusal
        (``MEMORY_FULL``, ``TRANSPORT_NODE_DOWN``, ``OUT_OF_RANGE`` past the
        end of simulated time) is raised here, and the initialisation runs
        after every operation queued before (its duration is owed)."""

    @abstractmethod
    def enqueue(self, op: Any, failed: Callable[[Any], None] | None = None) -> None:
        """Queue local operation ``op`` after those queued before; return at
        once, without waiting for it (no round trip). Should it fail, the
        driver calls ``failed(err)`` with the ``QStackError`` (at once or
        later, but before any :meth:`outcome` or :meth:`settle` awaited after
        this call returns); ``failed=None``: the caller does not care."""

    @abstractmethod
    async def outcome(self, op: Any) -> Any:
        """Queue local operation ``op`` after everything queued before it and
        return its outcome once it has finished (raising the ``QStackError``
        it failed with)."""

    async def outcomes(self, ops: list) -> list:
        """Queue ``ops`` in order (after everything queued before) and return
        each one's outcome, or the ``QStackError`` it failed with, once the
        last has finished. A failure of one does not stop the others. This
        default awaits :meth:`outcome` for each in turn; a driver for which
        each answer is a round trip sends them all first. An error that is
        not one operation's (the node is down) is raised."""
        from qstack.core.errors import QStackError

        out: list = []
        for op in ops:
            try:
                out.append(await self.outcome(op))
            except QStackError as err:
                out.append(err)
        return out

    @abstractmethod
    async def settle(self) -> None:
        """Wait until the local operations queued so far have been carried
        out and have finished (their failures reported to ``failed``)."""

    def peek(self, ref: Any) -> Any:
        """The density matrix (numpy, 2x2) of local qubit ``ref`` as it is now,
        without disturbing it: an oracle view for tests and demos that only a
        simulated state can give. Runtimes without one raise ``NotImplementedError``."""
        raise NotImplementedError(f"{type(self).__name__} cannot peek at a qubit's state")

    def rng(self) -> Any:
        """A numpy random Generator for the applications of this node
        (drivers give a seeded, reproducible one)."""
        import numpy as np

        return np.random.default_rng()

    def logger(self) -> logging.Logger:
        return logging.getLogger(f"qstack.app.{self.node}")
