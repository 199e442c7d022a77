"""Each node's own view of the network's links, kept by link-state flooding.

Every node starts from its configuration (the network file: every link and
what it gives, all up) and learns changes only from messages, as OSPF's
routers and the RFC 9340 architecture's nodes do; no object is shared between
nodes. ``specs/network.md`` §2 "Link state" is the normative description:

* a node **originates** a :class:`~qstack.network.messages.LinkStateAd` (its
  links, each up or down, with its routing figures) whenever one of its own
  links goes down or up, numbered with its own sequence number;
* a node that receives an advertisement newer than the one it holds from that
  origin keeps it and **floods** it to its other neighbours; an older one is
  answered with the newer it holds; its own, from before a restart (newer than
  what it remembers, or as new and different), makes it jump past that number
  and advertise afresh (its current one coming back round is dropped);
* when a link comes up the two ends **exchange** every advertisement they
  hold, so a node that restarted (and knows only its configuration) catches up;
* a link is up in a node's view when neither end's latest advertisement says
  it is down.

Advertisements do not age: the network's nodes and links come from its
configuration and only their state changes, so an advertisement stands until
its origin sends a newer one (a restarted origin jumps past its old numbers).

:class:`LinkStateDB` is the data structure, sans-I/O: the network layer's
circuit protocol (:class:`~qstack.network.circuit.QnpProtocol`) feeds it the
events and sends what it returns.
"""
from __future__ import annotations

from qstack.network.messages import LinkEntry, LinkStateAd
from qstack.network.routing import Topology

__all__ = ["LinkStateDB"]

_SEQ_MAX = 0xFFFFFFFF


class LinkStateDB:
    """Node ``node``'s link-state database, starting from the configured
    ``topology``. The same configured topology may be given to every node:
    each database copies it before its first change (copy on write), so no
    node ever sees another's view."""

    def __init__(self, node: str, topology: Topology) -> None:
        self.node = node
        self.topology = topology
        self._copied = False
        self.seq = 0                         # this node's last advertisement number
        self.ads: dict[str, LinkStateAd] = {}
        # (origin, neighbour) -> the origin's word on that link (absent: up, as configured)
        self._said: dict[tuple[str, str], bool] = {}

    # ------------------------------------------------------------ own links
    def own_links(self) -> list[str]:
        g = self.topology.graph
        return sorted(g.neighbors(self.node)) if self.node in g else []

    def neighbours_up(self) -> list[str]:
        """The neighbours this node's own links to are up (to flood to)."""
        return [n for n in self.own_links() if self._said.get((self.node, n), True)]

    def _writable(self) -> Topology:
        if not self._copied:
            self.topology = self.topology.copy()
            self._copied = True
        return self.topology

    def set_own(self, neighbour: str, up: bool) -> LinkStateAd | None:
        """This node's link to ``neighbour`` went ``up`` or down: the new
        advertisement to flood, or None if nothing changed."""
        if self._said.get((self.node, neighbour), True) == bool(up):
            return None
        self._writable()
        self._said[(self.node, neighbour)] = bool(up)
        self._recompute(self.node, neighbour)
        return self.originate()

    def originate(self) -> LinkStateAd:
        """A fresh advertisement of this node's links (numbered past every
        one it knows of its own)."""
        self.seq = min(self.seq + 1, _SEQ_MAX)
        g = self.topology.graph
        entries = []
        for nb in self.own_links():
            e = g.edges[self.node, nb]
            entries.append(LinkEntry(nb, self._said.get((self.node, nb), True),
                                     float(e["fidelity"]), float(e["rate_hz"])))
        ad = LinkStateAd(self.node, self.seq, tuple(entries))
        self.ads[self.node] = ad
        return ad

    # ------------------------------------------------------------ others'
    def receive(self, ad: LinkStateAd) -> tuple[bool, LinkStateAd | None]:
        """An advertisement arrived. Returns (flood it on, answer): ``flood``
        if it is news (keep it, pass it to the other neighbours); ``answer``
        a newer advertisement to send back (the sender's is stale) or, for
        this node's own advertisement from before a restart, the fresh one
        to flood to every neighbour."""
        if ad.origin == self.node:
            mine = self.ads.get(self.node)
            if ad.seq > self.seq or (ad.seq == self.seq and ad != mine):
                # the network remembers an advertisement of ours from before a
                # restart (newer, or as new and saying something else): jump past it
                self.seq = ad.seq
                return False, self.originate()
            return False, None           # our own, come round: nothing new
        have = self.ads.get(ad.origin)
        if have is not None and ad.seq < have.seq:
            return False, have
        if have is not None and ad.seq == have.seq:
            return False, None
        self.ads[ad.origin] = ad
        g = self._writable()
        for entry in ad.links:
            a, b = ad.origin, entry.neighbour
            if not g.graph.has_edge(a, b):
                g.add_node(a)
                g.add_node(b)
                g.add_link(a, b, fidelity=entry.fidelity, rate_hz=entry.rate_hz)
            else:
                e = g.graph.edges[a, b]
                if e["fidelity"] != entry.fidelity or e["rate_hz"] != entry.rate_hz:
                    up = e["up"]
                    g.add_link(a, b, fidelity=entry.fidelity, rate_hz=entry.rate_hz,
                               length_km=e.get("length_km", 0.0))
                    g.set_link_up(a, b, up)
            self._said[(a, b)] = entry.up
            self._recompute(a, b)
        return True, None

    def database(self) -> list[LinkStateAd]:
        """Every advertisement held (for a neighbour whose link just came up)."""
        return [self.ads[o] for o in sorted(self.ads)]

    def _recompute(self, a: str, b: str) -> None:
        if self.topology.graph.has_edge(a, b):
            up = self._said.get((a, b), True) and self._said.get((b, a), True)
            self.topology.set_link_up(a, b, up)
