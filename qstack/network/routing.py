"""Routing on the network's topology (networkx): paths and per-link fidelity targets.

Each link carries what the link layer can deliver on it: ``fidelity`` (the
best Werner fidelity of its pairs) and ``rate_hz`` (pairs per second at that
fidelity). The routing metric of a link is :func:`~qstack.network.theory.link_cost`
(expected seconds per pair, divided by the pair's Werner parameter, so noisy
links count as long); paths are enumerated cheapest first
(:func:`networkx.shortest_simple_paths`, Yen's algorithm), and the first path
that can meet the requested end-to-end fidelity wins.

Per-link targets invert the Werner swap formula: ``n`` links each of Werner
parameter ``w_e2e ** (1/n)`` swap to exactly ``w_e2e``. A link that cannot
deliver its share directly gets recurrence purification (the fewest rounds
of DEJMPS, :func:`~qstack.network.theory.purification_plan`) if purification
is allowed; a path whose links cannot reach their targets even so is skipped.

A link marked down (:meth:`Topology.set_link_up`) is left out of every path,
so traffic takes another one. Each node routes on its own copy, kept up to
date by link-state flooding (:mod:`qstack.network.linkstate`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import islice

import networkx as nx

from qstack.core.errors import ErrorCode, QStackError

from .theory import link_cost, link_target_fidelity, purification_plan, werner_fidelity, werner_param

__all__ = ["Topology", "Route", "RoutingError"]


class RoutingError(QStackError):
    """No route: ``NET_NO_ROUTE`` (no path at all) or ``NET_UNREACHABLE_FIDELITY``."""


@dataclass(frozen=True, slots=True)
class Route:
    """A path and what each of its links must deliver.

    ``link_fidelity[i]`` is the fidelity link ``path[i]``-``path[i+1]`` is asked
    for (the link layer's ``min_fidelity``), ``purify_rounds[i]`` how many
    DEJMPS rounds reach it from the link's raw fidelity (0: none),
    ``fidelity`` the end-to-end estimate, ``cost`` the summed link metric
    (seconds per usable pair, see :func:`~qstack.network.theory.link_cost`).
    """

    path: tuple[str, ...]
    link_fidelity: tuple[float, ...]
    purify_rounds: tuple[int, ...]
    fidelity: float
    cost: float

    @property
    def hops(self) -> int:
        return len(self.path) - 1


class Topology:
    """The network graph with link capabilities.

    Node names are strings; ``add_link(a, b, fidelity=, rate_hz=, length_km=)``
    describes the link layer's best on that link. ``graph`` is the underlying
    :class:`networkx.Graph` (edge attributes ``fidelity``, ``rate_hz``,
    ``length_km``, ``up``, ``cost``).
    """

    def __init__(self, graph: nx.Graph | None = None) -> None:
        self.graph = nx.Graph()
        if graph is not None:
            for n, attrs in graph.nodes(data=True):
                self.add_node(n, attrs.get("memory"))
            for a, b, attrs in graph.edges(data=True):
                self.add_link(a, b, **{k: attrs[k] for k in ("fidelity", "rate_hz", "length_km")
                                       if k in attrs})

    # -- building -------------------------------------------------------------
    def add_node(self, name: str, memory: int | None = None) -> None:
        """Add node ``name``; ``memory``: its memory slots, if known (the
        circuits' flow control shares each link's memory by it)."""
        if memory is None:
            self.graph.add_node(name)
        else:
            self.graph.add_node(name, memory=int(memory))

    def memory(self, name: str) -> int | None:
        """Node ``name``'s memory slots, None if not known."""
        attrs = self.graph.nodes.get(name)
        return attrs.get("memory") if attrs is not None else None

    def add_link(self, a: str, b: str, fidelity: float = 1.0, rate_hz: float = 1.0,
                 length_km: float = 0.0) -> None:
        """Add (or replace) the link a-b: best ``fidelity`` (0..1) at
        ``rate_hz`` pairs per second; ``length_km`` is informational."""
        if not 0.0 <= fidelity <= 1.0:
            raise ValueError(f"fidelity must be in [0, 1], got {fidelity}")
        if rate_hz < 0:
            raise ValueError(f"rate_hz must be >= 0, got {rate_hz}")
        self.graph.add_edge(a, b, fidelity=float(fidelity), rate_hz=float(rate_hz),
                            length_km=float(length_km), up=True,
                            cost=link_cost(rate_hz, fidelity))

    @classmethod
    def chain(cls, n: int, fidelity: float = 1.0, rate_hz: float = 1.0, prefix: str = "n") -> "Topology":
        """A chain ``n0 - n1 - ... - n(n-1)`` of identical links."""
        t = cls()
        names = [f"{prefix}{i}" for i in range(n)]
        for name in names:
            t.add_node(name)
        for a, b in zip(names, names[1:]):
            t.add_link(a, b, fidelity=fidelity, rate_hz=rate_hz)
        return t

    def set_link_up(self, a: str, b: str, up: bool) -> None:
        """Mark the link a-b up or down (a down link is in no route)."""
        if not self.graph.has_edge(a, b):
            raise KeyError(f"no link {a}-{b}")
        self.graph.edges[a, b]["up"] = bool(up)

    def link_up(self, a: str, b: str) -> bool:
        return self.graph.has_edge(a, b) and self.graph.edges[a, b]["up"]

    def neighbours(self, node: str) -> list[str]:
        return list(self.graph.neighbors(node))

    # -- routing --------------------------------------------------------------
    def copy(self) -> "Topology":
        """An independent copy (each node keeps its own view)."""
        t = Topology()
        t.graph = self.graph.copy()
        return t

    def _live(self, exclude: frozenset | set = frozenset()) -> nx.Graph:
        # A copy without the down links and without links that can never carry
        # a usable pair (infinite cost); a copy, not a filtered view, because
        # path search on views re-runs the filter on every edge lookup.
        g = nx.Graph()
        g.add_nodes_from(self.graph.nodes)
        g.add_edges_from((a, b, {"cost": d["cost"]}) for a, b, d in self.graph.edges(data=True)
                         if d["up"] and math.isfinite(d["cost"])
                         and (not exclude or frozenset((a, b)) not in exclude))
        return g

    def paths(self, src: str, dst: str, k: int = 4) -> list[tuple[str, ...]]:
        """Up to ``k`` loop-free paths from ``src`` to ``dst``, cheapest first
        (summed link cost). Empty if none."""
        if src not in self.graph or dst not in self.graph or src == dst:
            return []
        try:
            gen = nx.shortest_simple_paths(self._live(), src, dst, weight="cost")
            return [tuple(p) for p in islice(gen, k)]
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            return []

    def plan(self, path: tuple[str, ...], min_fidelity: float,
             purify: bool = True, max_rounds: int = 6) -> Route | None:
        """Per-link targets for ``path`` to deliver ``min_fidelity`` end to end,
        or None if its links cannot."""
        n = len(path) - 1
        target = link_target_fidelity(min_fidelity, n) if min_fidelity > 0.25 else 0.0
        fids, rounds, cost = [], [], 0.0
        w_total = 1.0
        for a, b in zip(path, path[1:]):
            e = self.graph.edges[a, b]
            f_raw = e["fidelity"]
            if f_raw + 1e-12 >= target:
                fids.append(target)
                rounds.append(0)
                cost += e["cost"]
                w_total *= werner_param(max(target, 0.25)) if target > 0 else werner_param(f_raw)
                continue
            if not purify:
                return None
            plan = purification_plan(f_raw, target, "dejmps", max_rounds)
            if plan is None:
                return None
            k, f_out, raw_per_out = plan
            fids.append(target)
            rounds.append(k)
            cost += e["cost"] * raw_per_out
            w_total *= werner_param(target)
        return Route(path=tuple(path), link_fidelity=tuple(fids), purify_rounds=tuple(rounds),
                     fidelity=werner_fidelity(w_total), cost=cost)

    def route(self, src: str, dst: str, min_fidelity: float = 0.0, k: int = 8,
              purify: bool = True, exclude: frozenset | set = frozenset()) -> Route:
        """The cheapest of the ``k`` cheapest paths that can meet ``min_fidelity``
        (``exclude``: links, as frozensets of their two ends, not to use).

        Raises :class:`RoutingError` with ``NET_NO_ROUTE`` when no path joins
        the two nodes over links that are up, or ``NET_UNREACHABLE_FIDELITY``
        when paths exist but none can reach the fidelity."""
        if src not in self.graph or dst not in self.graph or src == dst:
            raise RoutingError(ErrorCode.NET_NO_ROUTE, f"no path from {src} to {dst}")
        live = self._live(exclude)
        try:
            best = tuple(nx.shortest_path(live, src, dst, weight="cost"))
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            raise RoutingError(ErrorCode.NET_NO_ROUTE, f"no path from {src} to {dst}") from None
        # The cheapest path usually meets the target: plan it first, and pay
        # for Yen's k-shortest enumeration only when it does not.
        plan = self.plan(best, min_fidelity, purify)
        if plan is not None:
            return plan
        candidates = [tuple(p) for p in islice(
            nx.shortest_simple_paths(live, src, dst, weight="cost"), k)]
        plans = [p for p in (self.plan(path, min_fidelity, purify) for path in candidates) if p]
        if not plans:
            raise RoutingError(ErrorCode.NET_UNREACHABLE_FIDELITY,
                               f"none of {len(candidates)} paths from {src} to {dst} reaches "
                               f"fidelity {min_fidelity}")
        return min(plans, key=lambda r: r.cost)
