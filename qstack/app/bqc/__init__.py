"""Universal blind quantum computation (Broadbent, Fitzsimons and Kashefi, FOCS 2009).

A client with a few single-qubit preparations has a server compute for it
without learning the computation, its input or its output:

* :mod:`.circuit` -- gate circuits (H, S, T, Rz(k pi/4), CNOT, ...);
* :mod:`.brickwork` -- the brickwork graph (public) and measurement patterns
  with their flow corrections (secret);
* :mod:`.compiler` -- circuits to brickwork patterns;
* :mod:`.rounds` -- the client's side of one round without I/O: the
  one-time pads, the angles ``delta``, the decoding, the trap checks; the
  wire format;
* :mod:`.client` -- the client over a socket: :func:`run_rounds`, and
  :func:`verify` (test rounds with traps, Leichtle et al. 2021);
* :mod:`.server` -- the server over a socket (:func:`serve`) and
  deviations for testing the verification.

Applications use only the socket API (``qstack.transport.socket``); they run
under ``qstack.simulate`` and the emulation alike.
"""
from .brickwork import Brickwork, Pattern
from .circuit import Circuit
from .client import RoundResult, Verdict, run_rounds, verify
from .compiler import compile_circuit, layers_needed
from .rounds import Round
from .server import Deviation, FlipOutcomes, ServerView, WrongAngle, serve

__all__ = ["Brickwork", "Pattern", "Circuit", "compile_circuit", "layers_needed", "Round",
           "run_rounds", "verify", "RoundResult", "Verdict", "serve", "ServerView",
           "Deviation", "FlipOutcomes", "WrongAngle"]
