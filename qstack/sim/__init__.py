"""qstack.sim: deterministic discrete-event simulation in integer nanoseconds.

* ``Simulator`` — clock (``now``, ns), event heap (``schedule``, ``cancel``,
  ``run``), named random streams (``rng``) and the coroutine runner
  (``spawn``, ``sleep``, ``future``, ``mailbox``, ``wait_for``).
* The event loop has a Cython kernel and a pure-Python twin with identical
  behaviour; ``HAVE_CYTHON`` tells whether the Cython one is built.

No asyncio or trio is used here; see ``runner.py`` for why.
"""
from qstack.sim.kernel import HAVE_CYTHON, EventHandle, PyEventKernel, kernel_class
from qstack.sim.random import RandomStreams
from qstack.sim.runner import (
    InvalidStateError,
    Mailbox,
    MailboxEmpty,
    SimCancelledError,
    SimFuture,
    SimTask,
    SimTimeout,
    Simulator,
)

__all__ = [
    "Simulator",
    "EventHandle",
    "RandomStreams",
    "SimTask",
    "SimFuture",
    "Mailbox",
    "SimTimeout",
    "SimCancelledError",
    "InvalidStateError",
    "MailboxEmpty",
    "HAVE_CYTHON",
    "PyEventKernel",
    "kernel_class",
]
