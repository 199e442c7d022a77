"""QKD: the classical post-processing of a block, each step its own module.

* :mod:`.sifting` -- basis reconciliation, per intensity class;
* :mod:`.estimation` -- decoy-state bounds: asymptotic (Ma-Qi-Zhao-Lo 2005) and
  finite-key (Lim-Curty-Walenta-Xu-Zbinden 2014); the PLOB bound;
* :mod:`.cascade` -- Cascade error correction as parity queries and answers (Cython kernel);
* :mod:`.verification` -- error verification with a universal hash (ε_cor);
* :mod:`.amplification` -- privacy amplification by Toeplitz hashing via FFT;
* :mod:`.postprocess` -- the pipeline over one block, with abort reasons and every leak counted.

The application layer: imports qstack.core and the layers below, never the
simulator or the emulation.
"""
