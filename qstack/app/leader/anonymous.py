"""Leader election in an anonymous network, exact on a perfect W state.

The setting is Tani, Kobayashi and Matsumoto's (STACS 2005; ACM TOCT 4, 1
(2012)): the n candidates run one and the same program, have no identifiers
and know n; each sees only its ports (unlabelled links to the others). No
classical algorithm elects a leader there with certainty in bounded time:
every deterministic one keeps a symmetric network symmetric, and a
randomised one (Itai-Rodeh) can draw a tie in every round. Tani et al.
break the symmetry with quantum computation distributed over the network
itself (n phases of coherent consistency checks and k-dependent unitaries).
We implement the simpler exact protocol that becomes possible once the
network's entanglement service supplies a symmetric state: with a shared
W_n state (D'Hondt and Panangaden, QIC 6, 173 (2006): W solves anonymous
leader election exactly, GHZ cannot -- a GHZ outcome is the same at every
node and leaves the symmetry intact):

1. a *source* -- part of the network, not a candidate -- prepares W_n and
   teleports one qubit to each candidate (W_n is invariant under any
   permutation of the candidates, so the resource names no one);
2. each candidate measures Z and sends its bit on every port;
3. each counts the ones (its own and those received): one -- the candidate
   whose bit is 1 leads, and everyone knows there is exactly one; none or
   several (only under noise: :func:`qstack.app.leader.theory.w_outcome_probs`)
   -- all see the same count, so all tell the source to start again.

With a perfect W state step 3 always counts one: one attempt, exactly. The
candidate's program (:func:`elect`) touches only its sockets, never a
name; :func:`candidate` wires it (over named connections, as the transport
needs) and shuffles its ports, so their order tells it nothing either.
"""
from __future__ import annotations

from dataclasses import dataclass

from qstack.app.leader.election import MAX_ATTEMPTS, _attempts
from qstack.app.multipartite import build_w, open_group
from qstack.core.args import int_arg
from qstack.core.errors import ErrorCode, QStackError
from qstack.transport.socket import NodeContext, QSocket

__all__ = ["AnonymousElection", "elect", "serve_w", "candidate", "source"]

AGAIN, DONE = b"\x00", b"\x01"


@dataclass
class AnonymousElection:
    """What a candidate learns: ``leader`` (whether it is the leader),
    ``attempts`` (>= 1) and ``counts`` (the number of ones of each attempt)."""

    leader: bool
    attempts: int
    counts: list[int]


async def elect(source: QSocket, ports: list[QSocket],
                max_attempts: int = MAX_ATTEMPTS) -> AnonymousElection:
    """One candidate's program: its W qubits come from ``source``, ``ports``
    reach every other candidate (in any order). ``APP_ABORTED`` after
    ``max_attempts`` attempts without a count of one."""
    max_attempts = _attempts(max_attempts)
    counts: list[int] = []
    for attempt in range(1, max_attempts + 1):
        q = await source.recv_qubit()
        bit = await q.measure("Z")
        for port in ports:
            await port.send(bytes([bit]))
        count = bit
        for port in ports:
            count += (await port.recv())[0]
        counts.append(count)
        await source.send(DONE if count == 1 else AGAIN)
        if count == 1:
            return AnonymousElection(bit == 1, attempt, counts)
    raise QStackError(ErrorCode.APP_ABORTED,
                      f"anonymous election: no single leader in {max_attempts} attempts "
                      f"(counts {counts[-8:]})")


async def serve_w(ctx: NodeContext, socks: list[QSocket]) -> int:
    """The source's program: W_n over the candidates behind ``socks`` until
    they report a count of one; returns the number of W states made."""
    made = 0
    while True:
        made += 1

        async def deliver(k, q):
            await socks[k].send_qubit(q)

        await build_w(ctx, len(socks), deliver)
        verdicts = {await sock.recv() for sock in socks}
        if verdicts == {DONE}:
            return made
        if verdicts != {AGAIN}:    # the candidates saw the same count: they agree
            raise QStackError(ErrorCode.APP_ABORTED, f"candidates disagree: {sorted(verdicts)}")


async def candidate(ctx: NodeContext, candidates: list[str], source_name: str, port: int,
                    elections: int = 1,
                    max_attempts: int = MAX_ATTEMPTS) -> list[AnonymousElection]:
    """Wire this candidate to the source and to the other ``candidates`` on
    ``port``, shuffle its ports, and run :func:`elect` ``elections`` times."""
    elections = int_arg("elections", elections, 1, 1 << 20)
    group = await open_group(ctx, [source_name] + list(candidates), port, centre=source_name)
    ports = [group.socks[m] for m in group.others if m != source_name]
    ports = [ports[i] for i in ctx.rng.permutation(len(ports))]
    try:
        return [await elect(group.socks[source_name], ports, max_attempts)
                for _ in range(elections)]
    finally:
        await group.close()


async def source(ctx: NodeContext, candidates: list[str], port: int,
                 elections: int = 1) -> list[int]:
    """The source node's side of :func:`candidate`: the W states made for each election."""
    elections = int_arg("elections", elections, 1, 1 << 20)
    group = await open_group(ctx, [ctx.name] + list(candidates), port)
    try:
        return [await serve_w(ctx, [group.socks[m] for m in candidates])
                for _ in range(elections)]
    finally:
        await group.close()
