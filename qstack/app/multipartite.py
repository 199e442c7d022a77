"""GHZ and W states among n named nodes, made from bipartite pairs: a group socket.

Every member of a group runs the same call with the same member list and port::

    async def app(ctx):                       # on each of "a", "b", "c"
        group = await multipartite.open_group(ctx, ["a", "b", "c"], port=40)
        q = await group.ghz()                 # this node's qubit of (|000> + |111>)/sqrt2
        w = await group.w()                   # and of (|100> + |010> + |001>)/sqrt3
        bits = await group.gather(bytes([await q.measure("X")]))   # everyone's, by name
        await group.close()

Why the application layer and not the transport: a multipartite state is a
*composition* of what the transport already offers -- pairs (``create_epr``),
teleportation (``send_qubit``), classical bytes, local gates -- with no new
message on the wire, no new state in a protocol object and nothing a
conformance test of a node daemon could see. Written here, against the socket
API only, it runs unchanged under ``qstack.simulate`` and against the
emulation (``qstack run``), and it needs no change to ``specs/``. What would
justify the transport (a network-wide scheduler of the centre's memory, say)
is not needed by n <= a memory's worth of members.

How a group is built. Every pair of members holds one connection (a full
mesh: member i connects to every member listed before it, which accepts), so
that ``broadcast``/``gather`` go straight to every member (everyone talks to
everyone, as leader election needs). The *centre* (the first member unless
named) holds the quantum side:

* **GHZ_n by fusion.** Each other member k creates one EPR pair (Phi+) with
  the centre. The centre keeps its half c_1 of the first pair, applies
  CNOT(c_1 -> c_k) for k >= 2 and measures c_k in Z; the outcome m_k
  (= the XOR of c_1's and member k's bits) goes to member k, which applies
  X^{m_k}. Then c_1, l_1, ..., l_{n-1} hold (|0...0> + |1...1>)/sqrt2.
* **W_n by teleportation.** The centre prepares W_n in its own memory
  (a chain of controlled-RY splits: the excitation on qubit k moves on to
  k+1 with amplitude sqrt((n-k-1)/(n-k))), keeps qubit 0 and teleports
  qubit k to member k (``send_qubit``) as soon as the chain has passed it. (W cannot be fused from Phi+ pairs
  by Pauli corrections alone: its stabiliser is not a Pauli group, so a
  fusion scheme is probabilistic; teleportation is deterministic.)

Fidelity under noise. A Werner pair of fidelity F is Phi+ with a Pauli error
on one half: I with probability F, each of X, Y, Z with q = (1 - F)/3;
teleporting over it is the same Pauli channel on the qubit sent. The centre's
operations commute with those errors (up to the corrections, themselves
Paulis), so each non-centre member's qubit carries one independent Pauli
error and the centre's none:

* GHZ_n: an error string leaves GHZ invariant iff it has no X or Y and an
  even number of Z, otherwise it makes it orthogonal, so
  F_GHZ = sum_{k even} C(n-1, k) F^{n-1-k} q^k = ((F + q)^{n-1} + (F - q)^{n-1}) / 2
  (:func:`ghz_fidelity`; n = 3, F = 0.95: 0.90278).
* W_n: as a depolarising channel rho -> p rho + (1 - p) I/2 with
  p = (4F - 1)/3 on each of the n - 1 teleported qubits; expanding over the
  set A of qubits replaced by I/2 (|A| = a), the reduced state of W_n on the
  others is ((n - a)/n) |W_{n-a}><W_{n-a}| + (a/n) |0..0><0..0|, so
  F_W = sum_a C(n-1, a) p^{n-1-a} (1-p)^a ((n-a)^2 + a^2) / (n^2 2^a)
  (:func:`w_fidelity`).

Memory: the centre holds n - 1 pair halves at once for GHZ_n, and three
qubits (two of the chain, the half of one pair) for W_n.
"""
from __future__ import annotations

import math
from typing import Any, Awaitable, Callable

from qstack.core.errors import ErrorCode
from qstack.transport.socket import NodeContext, QSocket, Qubit, TransportError

__all__ = ["Group", "open_group", "ghz_fidelity", "w_fidelity", "build_w", "mesh_network"]

#: How long a member waits between attempts to connect to a member that does
#: not listen yet (ns): under the emulation members start one by one.
RETRY_NS = 1_000_000


def mesh_network(names: list[str], pair_fidelity: float = 1.0, *, memory: int = 16,
                 formalism: str = "dm", length_km: float = 1.0) -> dict:
    """A network description (the dict schema of a TOML file) for group work:
    a link between every two of ``names``, each a sender-receiver link of
    ``length_km`` km giving Werner pairs of ``pair_fidelity`` without false
    heralds, memories of ``memory`` qubits that do not decay -- so that what
    a group gets follows from the pairs' fidelity alone."""
    links = [[a, b] for i, a in enumerate(names) for b in names[i + 1:]]
    return {"formalism": formalism,
            "defaults": {"node": {"memory": memory, "t1_s": "inf", "t2_s": "inf"},
                         "link": {"scheme": "sender-receiver", "length_km": length_km,
                                  "false_herald_prob": 0.0, "pair_fidelity": pair_fidelity}},
            "nodes": list(names), "links": links}


def ghz_fidelity(f: float, n: int) -> float:
    """Fidelity with GHZ_n of the state fused from n - 1 Werner pairs of
    fidelity ``f`` (dimensionless): ((F + q)^{n-1} + (F - q)^{n-1})/2, q = (1 - F)/3."""
    q = (1 - f) / 3
    return ((f + q) ** (n - 1) + (f - q) ** (n - 1)) / 2


def w_fidelity(f: float, n: int) -> float:
    """Fidelity with W_n of W_n prepared at the centre and n - 1 of its
    qubits teleported over Werner pairs of fidelity ``f`` (see the module doc)."""
    p = (4 * f - 1) / 3
    return sum(math.comb(n - 1, a) * p ** (n - 1 - a) * (1 - p) ** a
               * ((n - a) ** 2 + a ** 2) / (n * n * 2 ** a) for a in range(n))


def _cry(ctrl: Qubit, target: Qubit, theta: float) -> None:
    """Controlled RY(theta): RY(theta/2), CNOT, RY(-theta/2), CNOT
    (X RY(a) X = RY(-a), so the target turns by theta iff the control is 1)."""
    target.ry(theta / 2)
    ctrl.cnot(target)
    target.ry(-theta / 2)
    ctrl.cnot(target)


async def build_w(ctx: NodeContext, n: int, deliver: Callable[[int, Qubit], Awaitable[Any]]) -> None:
    """Prepare W_n on this node qubit by qubit, handing each to ``deliver(k, q)``
    as soon as it is final (so at most three qubits are in memory at once).

    Qubit 0 starts in |1>; step k (k = 0..n-2) takes a fresh qubit k+1, moves
    the excitation from k to k+1 with amplitude sqrt((n-k-1)/(n-k)) (a
    controlled RY) and clears k where it moved (CNOT(k+1 -> k)): each qubit
    ends with amplitude 1/sqrt(n), and no later step touches qubit k."""
    cur = ctx.qubit()
    cur.x()
    for k in range(n - 1):
        nxt = ctx.qubit()
        _cry(cur, nxt, 2 * math.asin(math.sqrt((n - k - 1) / (n - k))))
        nxt.cnot(cur)
        await deliver(k, cur)
        cur = nxt
    await deliver(n - 1, cur)


class Group:
    """One member's end of a group: sockets to every other member, by name.

    Made by :func:`open_group`. ``members`` (the list as given), ``me``,
    ``centre``, ``socks`` ({member: QSocket}). Every member must call the
    same methods in the same order (each is one step of a joint protocol)."""

    def __init__(self, ctx: NodeContext, members: list[str], centre: str,
                 socks: dict[str, QSocket]) -> None:
        self.ctx = ctx
        self.members = list(members)
        self.me = ctx.name
        self.centre = centre
        self.socks = socks

    @property
    def n(self) -> int:
        return len(self.members)

    @property
    def others(self) -> list[str]:
        """The other members, in the group's order."""
        return [m for m in self.members if m != self.me]

    @property
    def leaves(self) -> list[str]:
        """The members other than the centre, in the group's order."""
        return [m for m in self.members if m != self.centre]

    # -------------------------------------------------------- classical
    async def broadcast(self, data: bytes) -> None:
        """Send ``data`` (bytes, at most 65536) to every other member."""
        for m in self.others:
            await self.socks[m].send(data)

    async def gather(self, data: bytes, timeout_ns: int | None = None) -> dict[str, bytes]:
        """Broadcast ``data`` and return every member's message of this round
        ({member: bytes}, this member's own included). Each connection keeps
        order, so the k-th gather of every member pairs up."""
        await self.broadcast(data)
        out = {self.me: bytes(data)}
        for m in self.others:
            out[m] = await self.socks[m].recv(timeout_ns)
        return out

    # -------------------------------------------------------- quantum
    async def ghz(self, *, min_fidelity: float = 0.0, timeout_ns: int | None = None) -> Qubit:
        """This member's qubit of (|0...0> + |1...1>)/sqrt2 over the group,
        fused at the centre from one pair per other member (``min_fidelity``
        of each pair, in [0, 1])."""
        if self.n == 1:
            return self.ctx.qubit()
        if self.me != self.centre:
            sock = self.socks[self.centre]
            (q,) = await sock.create_epr(1, min_fidelity=min_fidelity, timeout_ns=timeout_ns)
            (m,) = await sock.recv(timeout_ns)
            if m:
                q.x()
            return q
        halves = []
        for leaf in self.leaves:
            (h,) = await self.socks[leaf].recv_epr(1, timeout_ns=timeout_ns)
            halves.append(h)
        keep = halves[0]
        await self.socks[self.leaves[0]].send(b"\x00")       # the first needs no correction
        for leaf, h in zip(self.leaves[1:], halves[1:]):
            keep.cnot(h)
            await self.socks[leaf].send(bytes([await h.measure("Z")]))
        return keep

    async def w(self, *, min_fidelity: float = 0.0, timeout_ns: int | None = None) -> Qubit:
        """This member's qubit of W_n = (|10..0> + |01..0> + ... + |0..01>)/sqrt(n)
        over the group: prepared at the centre, teleported to the others."""
        if self.me != self.centre:
            return await self.socks[self.centre].recv_qubit(timeout_ns)
        kept: list[Qubit] = []

        async def deliver(k: int, q: Qubit) -> None:
            if k == 0:
                kept.append(q)
            else:
                await self.socks[self.leaves[k - 1]].send_qubit(
                    q, min_fidelity=min_fidelity, timeout_ns=timeout_ns)

        await build_w(self.ctx, self.n, deliver)
        return kept[0]

    async def close(self) -> None:
        """Close every connection of this member."""
        for sock in self.socks.values():
            await sock.close()


async def open_group(ctx: NodeContext, members: list[str], port: int, *,
                     centre: str | None = None, timeout_ns: int | None = None) -> Group:
    """Join the group ``members`` (distinct node names, this node among them)
    on ``port`` (0..65535): connect to every member listed before this one
    (retrying every :data:`RETRY_NS` ns while it does not listen yet, for at
    most ``timeout_ns``, None: without limit) and accept every member listed
    after. ``centre`` (default the first member) fuses and prepares the states.
    Bad input raises ``TransportError`` (``INVALID_PARAMETER``)."""
    members = list(members)
    if len(set(members)) != len(members) or not members:
        raise TransportError(ErrorCode.INVALID_PARAMETER,
                             f"members: expected distinct node names, got {members!r}")
    if ctx.name not in members:
        raise TransportError(ErrorCode.INVALID_PARAMETER,
                             f"members: {ctx.name} is not one of {members!r}")
    centre = members[0] if centre is None else centre
    if centre not in members:
        raise TransportError(ErrorCode.INVALID_PARAMETER,
                             f"centre: {centre!r} is not one of {members!r}")
    me = members.index(ctx.name)
    later = members[me + 1:]
    server = ctx.listen(port, backlog=max(1, len(later))) if later else None
    socks: dict[str, QSocket] = {}
    deadline = None if timeout_ns is None else ctx.now_ns + timeout_ns
    for m in members[:me]:
        while True:
            try:
                socks[m] = await ctx.connect(m, port, timeout_ns=timeout_ns)
                break
            except TransportError as err:
                late = deadline is not None and ctx.now_ns + RETRY_NS > deadline
                if err.code != ErrorCode.TRANSPORT_CONNECTION_REFUSED or late:
                    raise
                await ctx.sleep(RETRY_NS)
    while len(socks) < len(members) - 1:
        sock = await server.accept(timeout_ns)
        if sock.remote not in later or sock.remote in socks:
            await sock.close()          # not a member of this group: not ours
            continue
        socks[sock.remote] = sock
    if server is not None:
        await server.close()
    return Group(ctx, members, centre, socks)
