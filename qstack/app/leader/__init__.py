"""Leader election among the nodes of a quantum network.

* :mod:`.election` -- among named members of a group: from W states (one
  measurement each), from GHZ coins (rounds of elimination), and the
  classical baseline (random IDs); failures detected and repeated;
* :mod:`.anonymous` -- candidates without identifiers, exact on a perfect
  W state supplied by a source (after Tani, Kobayashi and Matsumoto; the
  protocol of D'Hondt and Panangaden);
* :mod:`.theory` -- their closed forms under Werner noise.

Application code: uses the socket API only (runs under ``qstack.simulate``
and the emulation).
"""
from qstack.app.leader.anonymous import AnonymousElection, candidate, elect, serve_w, source
from qstack.app.leader.election import (
    Election, classical_election, coin_election, w_election,
)

__all__ = ["Election", "w_election", "coin_election", "classical_election",
           "AnonymousElection", "elect", "serve_w", "candidate", "source"]
