"""A deliberately broken node daemon, for tests/test_conformance.py: the
conformance suite must fail the cases that check what it breaks.

``python -m tests.conformance_broken RUNFILE NODE FAULT[,FAULT...]`` runs
:mod:`qstack.emu.daemon` for NODE after patching, in this process only:

* ``version``: a Hello with no common version is answered with a Challenge
  (the server's own version) instead of ``UNSUPPORTED_VERSION``;
* ``secret``: any Proof is accepted (the wrong secret gets in);
* ``nodeboot``: a node session is served without its NodeBoot first (a
  NodeBoot is answered whenever it comes);
* ``refused``: a Syn to a port nobody listens on gets ``Rst(404)``, not 402;
* ``pairlost``: a repeater passes a PairLost on whichever side it came from;
* ``early``: a segment message about a link pair not held (its OK not come)
  is answered with a SegmentExpire instead of waiting for the OK;
* ``late``: late segment traffic for an unknown circuit is refused
  (NET_UNKNOWN_CIRCUIT recorded) instead of dropped silently.
"""
from __future__ import annotations

import dataclasses
import sys


def patch(faults: set[str]) -> None:
    """Break the daemon's code in this process as ``faults`` say."""
    from qstack.core.protocol import SendMessage
    from qstack.emu import daemon, wire
    from qstack.transport import protocol as qtp
    from qstack.transport.messages import Rst

    if "version" in faults:
        def on_hello(self, msg):
            self.peer_name, self.peer_kind = msg.name, msg.kind
            self._move("Hello")
            self.version = max(self.versions)      # whatever the client offered
            self._offered, self._peer_nonce = msg.versions, msg.nonce
            self._queue(wire.Challenge(self.version, self.name, self.kind, self._nonce))
        wire.Session._on_hello = on_hello

    if "secret" in faults:
        def on_proof(self, msg):
            self._move("Proof")                     # no check of the MAC
            self.authenticated = True
            self._queue(wire.Welcome(wire.handshake_proof(*self._transcript("server"))))
        wire.Session._on_proof = on_proof

    if "nodeboot" in faults:
        async def serve_peer(self, ch):
            peer = self._peer(ch.peer)
            async for msg in ch:                   # a NodeBoot is answered whenever it comes,
                if msg.__class__ is daemon.NodeBoot:
                    await ch.send(daemon.NodeBoot(self.boot))
                    self._peer_seen(peer, msg.boot)
                else:                              # and anything before it is fed
                    self.runtime.message(ch.peer, msg, self.clock.now)
        daemon.NodeDaemon._serve_peer = serve_peer

    if "refused" in faults:
        on_syn = qtp.TeleportTransport._on_syn

        def wrong_code(self, src, msg, now_ns):
            out = on_syn(self, src, msg, now_ns)
            return [dataclasses.replace(a, msg=dataclasses.replace(a.msg, code=404))
                    if isinstance(a, SendMessage) and isinstance(a.msg, Rst) and a.msg.code == 402
                    else a for a in out]
        # the handler table holds the name: replace the method it names
        qtp.TeleportTransport._on_syn = wrong_code


    if faults & {"pairlost", "early", "late"}:
        _patch_circuits(faults)


def _patch_circuits(faults: set[str]) -> None:
    from qstack.core.protocol import SendMessage
    from qstack.network import circuit
    from qstack.network.messages import SegmentExpire

    base = circuit.QnpProtocol

    # (a subclass that the stack builder finds under the module's name, not
    # patches of QnpProtocol: compiled, it is an extension type, whose
    # methods cannot be replaced; api.py imports it when it builds a stack)
    class BrokenQnp(base):
        pass

    if "late" in faults:
        circuit._LATE = frozenset()             # (read at each message: the module global)
    if "pairlost" in faults:
        on_lost = base._on_pair_lost

        def any_side(self, src, m, now_ns):
            c = self.circuits.get((m.head, m.circuit_id))
            if c is not None and 0 < c.index < c.n_links:
                return [SendMessage(c.path[c.index + 1], m)]
            return on_lost(self, src, m, now_ns)
        BrokenQnp._on_pair_lost = any_side
    if "early" in faults:
        def answering(handler):
            def wrapped(self, src, m, now_ns):
                out = handler(self, src, m, now_ns)
                c = self.circuits.get((m.head, m.circuit_id))
                side = None if c is None else self._side_of(c, src)
                if c is not None and c.early.pop((side, m.link_seq), None):
                    out = list(out) + [SendMessage(src, SegmentExpire(
                        m.circuit_id, m.head, m.link_seq, "no such pair"))]
                return out
            return wrapped
        for name in ("_on_track", "_on_pair_done", "_on_notice", "_on_expire"):
            setattr(BrokenQnp, name, answering(getattr(base, name)))
    circuit.QnpProtocol = BrokenQnp


def main(argv: list[str]) -> int:
    runfile, node, faults = argv
    patch(set(faults.split(",")))
    from qstack.emu.daemon import main as daemon_main

    return daemon_main([runfile, node])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
