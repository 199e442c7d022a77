"""The application layer: what users run on the stack.

* :mod:`.bqc` -- universal blind quantum computation on a brickwork, with trap verification.
* :mod:`.qkd` -- QKD post-processing (sifting, decoy-state estimation, Cascade,
  error verification, privacy amplification) over one block.
* :mod:`.multipartite` -- GHZ and W states among named nodes from pairs (a group socket).
* :mod:`.leader` -- leader election: W states, GHZ coins, random IDs, anonymous.
* :mod:`.secret_sharing` -- Hillery-Bužek-Berthiaume secret sharing over GHZ states.
* :mod:`.anonymous_transmission` -- Christandl-Wehner anonymous qubit transmission.
* :mod:`.chsh` -- the CHSH game and its device-independent randomness bound.
"""
