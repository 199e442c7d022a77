"""Anonymous transmission of a qubit (Christandl and Wehner, ASIACRYPT 2005, LNCS 3788).

n members of a :class:`~qstack.app.multipartite.Group`; one of them, the
sender S, sends a qubit to the receiver R so that R gets it and nobody --
R included -- learns who S is. Every member calls :func:`transmit` with the
same arguments but its own role (``send``: the qubit if it is the sender,
``to``: the receiver's name, known to the sender only). Three steps, each
made of messages every member sends whatever its role:

1. **Notification.** For each member j in turn, every member splits one bit
   (1 only for S, in j's round, if j = R) into n random shares, one to each
   member; each member sends the XOR of what it received to j alone; j's
   XOR of those is 1 iff j is the receiver. Every message each member sees
   is a uniformly random bit, whoever S is.
2. **Anonymous entanglement.** The group shares GHZ_n. S applies Z^s for a
   random bit s and announces s; R announces a random bit; every other
   member measures X and announces its outcome. R applies Z to the XOR of
   every announcement but its own: S and R then hold Phi+ (the X outcomes
   put their parity on the phase of |1..1>, S's Z^s adds s, R removes both),
   and the announcements are n uniform bits whoever S and R are.
3. **Teleportation.** S Bell-measures its qubit with its half (m1, m2), and
   both bits are broadcast by the same DC-net as step 1 but with every
   share-XOR announced to all; R applies X^{m2} Z^{m1} and holds the qubit.

What the members see depends only on uniformly random bits, so the view of
each member other than S is independent of who S is (tested
statistically). The classical channels between members are assumed
private and authenticated (as in CW05); the protocol does not test the
GHZ state against dishonest members (CW05's verification), so it is
anonymous against honest-but-curious members.

Noise: a Werner pair's Pauli error on S's or R's qubit reaches the
teleported qubit; on another member's qubit, Z or Y flips its X outcome and
so puts a Z on the pair (probability 2(1 - F)/3); the centre's qubit has none.
So under noise the receiver's fidelity is slightly higher when the centre
sends -- a statistical side channel of the star-shaped GHZ construction
(a fixed centre outside the senders, or a GHZ source, removes it).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from qstack.app.multipartite import Group
from qstack.core.errors import ErrorCode, QStackError
from qstack.transport.socket import Qubit

__all__ = ["Transmission", "transmit"]


@dataclass
class Transmission:
    """What a member ends with: ``qubit`` (the receiver's: the qubit sent;
    None for the others), ``receiver`` (whether it was notified as the
    receiver) and ``view``: what it saw, in order -- the bits it received
    in the notification (``notify``), the n announcements of step 2
    (``announced``), the share-XORs of the two teleportation bits
    (``dcnet``), and its own X outcome (``outcome``, None for S and R)."""

    qubit: Qubit | None
    receiver: bool
    view: dict = field(default_factory=dict)


async def _shares(group: Group, bit: int) -> int:
    """Split ``bit`` into one random share per member, send them out and
    return the XOR of the shares this member got (its own included)."""
    rng = group.ctx.rng
    others = group.others
    shares = [int(rng.integers(2)) for _ in others]
    own = bit
    for s in shares:
        own ^= s
    for m, s in zip(others, shares):
        await group.socks[m].send(bytes([s]))
    for m in others:
        own ^= (await group.socks[m].recv())[0]
    return own


async def transmit(group: Group, send: Qubit | None = None, to: str | None = None) -> Transmission:
    """One anonymous transmission over ``group`` (every member calls it; see
    the module doc). The sender passes ``send`` (a qubit of its node) and
    ``to`` (another member); the others pass neither."""
    if (send is None) != (to is None):
        raise QStackError(ErrorCode.INVALID_PARAMETER, "transmit: the sender gives both the "
                                                       "qubit and the receiver, the others neither")
    if to is not None and (to not in group.members or to == group.me):
        raise QStackError(ErrorCode.INVALID_PARAMETER,
                          f"transmit: the receiver {to!r} must be another member")
    rng = group.ctx.rng
    view: dict = {"notify": []}
    # 1. notification: j learns alone whether it is the receiver
    receiver = False
    for j in group.members:
        z = await _shares(group, int(to == j))
        if j == group.me:
            total = z
            for m in group.others:
                got = (await group.socks[m].recv())[0]
                view["notify"].append(got)
                total ^= got
            receiver = total == 1
        else:
            await group.socks[j].send(bytes([z]))
    # 2. anonymous entanglement from GHZ_n
    q = await group.ghz()
    outcome = None
    if send is not None:
        mine = int(rng.integers(2))
        if mine:
            q.z()
    elif receiver:
        mine = int(rng.integers(2))
    else:
        mine = outcome = await q.measure("X")
    said = await group.gather(bytes([mine]))
    view["announced"] = [said[m][0] for m in group.members]
    view["outcome"] = outcome
    if receiver:
        phase = 0
        for m in group.others:
            phase ^= said[m][0]
        if phase:
            q.z()
    # 3. teleportation; its two bits through a public DC-net
    m1 = m2 = 0
    if send is not None:
        send.cnot(q)
        send.h()
        m1, m2 = await send.measure("Z"), await q.measure("Z")
    bits, view["dcnet"] = [], []
    for b in (m1, m2):
        told = await group.gather(bytes([await _shares(group, b)]))
        view["dcnet"].append([told[m][0] for m in group.members])
        parity = 0
        for v in told.values():
            parity ^= v[0]
        bits.append(parity)
    if receiver:
        if bits[1]:
            q.x()
        if bits[0]:
            q.z()
        return Transmission(q, True, view)
    return Transmission(None, False, view)
