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
    * :meth:`execute` runs a local quantum operation (``qstack.physical.ops``)
      on the node's device and returns its outcome at once (raising the
      ``QStackError`` a failed operation reports); the operation's duration
      is owed, and :meth:`settle` waits until everything executed so far has
      finished -- so gates called without ``await`` still cost their time
      before the next network operation or measurement result;
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

    @abstractmethod
    def subscribe(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(event)`` for every event the transport delivers upward."""

    @abstractmethod
    def execute(self, op: Any) -> Any:
        """Run local operation ``op`` now; return its outcome (its duration is owed)."""

    @abstractmethod
    async def settle(self) -> None:
        """Wait until the local operations executed so far have finished."""

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
