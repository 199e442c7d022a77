"""QKD: the classical post-processing of a block, each step its own module.

* :mod:`.sifting` -- basis reconciliation, per intensity class;
* :mod:`.estimation` -- decoy-state bounds: asymptotic (Ma-Qi-Zhao-Lo 2005),
  finite-key with two decoys (Lim-Curty-Walenta-Xu-Zbinden 2014) and with one
  (Rusca-Boaron-Grünenfelder-Martin-Zbinden 2018); the PLOB bound;
* :mod:`.cascade` -- Cascade error correction as parity queries and answers (Cython kernel);
* :mod:`.verification` -- error verification with a universal hash (ε_cor);
* :mod:`.amplification` -- privacy amplification by Toeplitz hashing via FFT;
* :mod:`.postprocess` -- the pipeline over one block, with abort reasons and every leak counted;
* :mod:`.entangled` -- BBM92 and E91 as applications over a socket (``specs/qkd-entangled.md``);
* :mod:`.relay` -- trusted-node relay of their keys between non-neighbours (``network.trusted``);
* :mod:`.keystore` -- a KME's key store, the sans-I/O core of ETSI GS QKD 014 (``specs/kms.md``).

The application layer: imports qstack.core and the layers below, never the
simulator or the emulation.
"""
