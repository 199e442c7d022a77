"""Faults a user schedules to break a network on purpose (``specs/faults.md``).

A :class:`Fault` is one of

* ``crash``: node ``nodes[0]`` crashes at ``at_ns`` (its protocols and its
  memory are lost); with ``after_ns`` it restarts that much later, with a
  fresh stack and an empty memory;
* ``link_down``: the link ``nodes[0]``-``nodes[1]`` (quantum channel and the
  direct classical channel) goes down at ``at_ns``; with ``after_ns`` it comes
  back up that much later;
* ``reset``: the classical session between ``nodes[0]`` and ``nodes[1]``
  breaks at ``at_ns``: messages in flight between them are lost, both are
  told, and it reconnects (as a TCP connection reset and re-opened).

Times are integer nanoseconds from the start of the run. Drivers carry them
out (:meth:`qstack.sim.network.SimNetwork.schedule_faults`); the network file
describes them in a ``[faults]`` table (:func:`qstack.config.load_network`)
and ``qstack.simulate(..., faults=[...])`` takes them as :class:`Fault` or as
the same tables (dicts).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from qstack.core.errors import ConfigError

__all__ = ["Fault", "KINDS", "faults_from_tables"]

#: Fault kinds: the key naming the fault in a table, and the key of its "after".
KINDS = {"crash": "restart_after_s", "link_down": "up_after_s", "reset": None}

_MAX_NS = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class Fault:
    """One scheduled fault (see the module doc); times in ns."""

    kind: str
    at_ns: int
    nodes: tuple[str, ...]
    after_ns: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind: expected one of {', '.join(KINDS)}, got {self.kind!r}")
        want = 1 if self.kind == "crash" else 2
        if len(self.nodes) != want or not all(isinstance(n, str) for n in self.nodes):
            raise ValueError(f"a {self.kind} fault names {want} node(s), got {self.nodes!r}")
        for name, v in (("at_ns", self.at_ns), ("after_ns", self.after_ns)):
            if v is None and name == "after_ns":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _MAX_NS:
                raise ValueError(f"{name}: expected an integer number of ns >= 0, got {v!r}")
        if self.after_ns is not None and self.kind == "reset":
            raise ValueError("a reset reconnects by itself: it takes no 'after'")


def _seconds(value: Any, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
            or not 0 <= value <= _MAX_NS / 1e9:
        raise ConfigError(f"{where}.{key}: expected a number of seconds >= 0 (at most "
                          f"{_MAX_NS / 1e9:.4g}), got {value!r}")
    return int(round(value * 1e9))


def faults_from_tables(tables: Iterable[Any], where: str = "faults.events",
                       nodes: Iterable[str] | None = None,
                       links: Iterable[frozenset] | None = None) -> tuple[Fault, ...]:
    """:class:`Fault` objects from tables (dicts) ``{"at_s": 0.5, "crash":
    "repeater", "restart_after_s": 0.2}``, ``{"at_s": 1, "link_down": ["a",
    "b"], "up_after_s": 0.1}``, ``{"at_s": 2, "reset": ["a", "c"]}`` (or
    Fault objects, kept). ``nodes`` and ``links`` (frozensets of two names),
    if given, are checked against. Errors are ConfigError naming the table."""
    known = set(nodes) if nodes is not None else None
    known_links = set(links) if links is not None else None
    out = []
    for i, t in enumerate(tables):
        here = f"{where}[{i}]"
        if isinstance(t, Fault):
            out.append(t)
            continue
        if not isinstance(t, dict):
            raise ConfigError(f"{here}: expected a table, got {t!r}")
        kinds = [k for k in KINDS if k in t]
        if len(kinds) != 1:
            raise ConfigError(f"{here}: expected exactly one of {', '.join(KINDS)}, got "
                              f"{', '.join(kinds) or 'none'}")
        kind = kinds[0]
        allowed = {"at_s", kind} | ({KINDS[kind]} if KINDS[kind] else set())
        for key in t:
            if key not in allowed:
                raise ConfigError(f"{here}.{key}: unknown key for a {kind} fault; expected "
                                  f"{', '.join(sorted(allowed))}")
        if "at_s" not in t:
            raise ConfigError(f"{here}.at_s: missing (when the fault happens, seconds)")
        at = _seconds(t["at_s"], here, "at_s")
        who = t[kind]
        names = (who,) if kind == "crash" else tuple(who) if isinstance(who, list) else None
        if names is None or not all(isinstance(n, str) for n in names) or \
                len(names) != (1 if kind == "crash" else 2):
            what = "a node name" if kind == "crash" else "two node names [a, b]"
            raise ConfigError(f"{here}.{kind}: expected {what}, got {who!r}")
        for n in names:
            if known is not None and n not in known:
                raise ConfigError(f"{here}.{kind}: unknown node {n!r}")
        if kind == "link_down" and known_links is not None and frozenset(names) not in known_links:
            raise ConfigError(f"{here}.link_down: no link {names[0]}-{names[1]}")
        if kind != "crash" and names[0] == names[1]:
            raise ConfigError(f"{here}.{kind}: expected two different nodes, got {names[0]!r} twice")
        after = KINDS[kind]
        after_ns = _seconds(t[after], here, after) if after and after in t else None
        out.append(Fault(kind, at, names, after_ns))
    return tuple(out)
