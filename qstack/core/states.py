"""A protocol's states and their transitions, written down in one table.

After h11's ``_state.py``: every protocol whose objects (a link, a circuit,
a connection) move through states names the states in an ``Enum`` and lists
every allowed move in one :class:`Transitions` table, keyed by (state, cause)
where the cause names what made it move (an event, a message, a timer). A
move the table does not list is a bug or a peer breaking the protocol, and
raises :class:`ProtocolStateError` (``UNEXPECTED_EVENT``) instead of
silently doing something; the protocol turns it into a ``Fail`` and goes on
serving (``specs/protocol.md``, "Conventions")::

    class Phase(State):
        IDLE = "idle"
        BUSY = "busy"

    TRANSITIONS = Transitions("link", {
        (Phase.IDLE, "start"): Phase.BUSY,
        (Phase.BUSY, "done"): Phase.IDLE,
    })

    link.phase = TRANSITIONS.next(link.phase, "start")
"""
from __future__ import annotations

from enum import Enum
from typing import Iterable

from qstack.core.errors import ErrorCode, QStackError

__all__ = ["Transitions", "ProtocolStateError", "State"]


class State(Enum):
    """Base of a protocol's state enums: members hash by identity (a C slot),
    so a state table lookup costs a dict lookup, not a Python call."""

    __hash__ = object.__hash__


class ProtocolStateError(QStackError):
    """A move the state table does not allow (``UNEXPECTED_EVENT``)."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorCode.UNEXPECTED_EVENT, detail)


class Transitions:
    """The allowed moves of ``what`` (a name for errors): ``{(state, cause):
    next state}``."""

    def __init__(self, what: str, table: dict[tuple[Enum, str], Enum]) -> None:
        self.what = what
        self.table = dict(table)

    def next(self, state: Enum, cause: str) -> Enum:
        """The state after ``cause`` in ``state``; raises ProtocolStateError if
        the table does not allow it."""
        nxt = self.table.get((state, cause))
        if nxt is None:
            raise ProtocolStateError(f"{self.what}: {cause} is not allowed in state "
                                     f"{state.name}")
        return nxt

    def allows(self, state: Enum, cause: str) -> bool:
        return (state, cause) in self.table

    def by_cause(self, cause: str) -> dict[Enum, Enum]:
        """``{state: next}`` for the moves ``cause`` makes: the table's rows for
        one cause, for a move made once per pair (``moves[state]``: one
        look-up of an identity-hashed state, no key tuple built and hashed).
        A state it lacks raises ``KeyError``; :meth:`next` then names the
        move that is not allowed."""
        return {state: nxt for (state, c), nxt in self.table.items() if c == cause}

    def causes(self) -> list[str]:
        return sorted({cause for _, cause in self.table})

    def states(self) -> list[Enum]:
        seen: list[Enum] = []
        for (a, _), b in self.table.items():
            for s in (a, b):
                if s not in seen:
                    seen.append(s)
        return seen

    def rows(self) -> Iterable[tuple[Enum, str, Enum]]:
        """(state, cause, next) for every allowed move, in table order."""
        for (a, cause), b in self.table.items():
            yield a, cause, b
