"""The application layer: what users run on the stack.

* :mod:`.bqc` -- universal blind quantum computation on a brickwork, with trap verification.
* :mod:`.qkd` -- QKD post-processing (sifting, decoy-state estimation, Cascade,
  error verification, privacy amplification) over one block.
"""
