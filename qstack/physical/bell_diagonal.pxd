# Augmenting declarations for bell_diagonal.py (compiled from its own source,
# setup.py's COMPILED_PY): a Bell-diagonal state becomes an extension type
# whose four coefficients the engine and this module read as a C field, and
# the steps of every swap and memory decay are C calls. Plain Python runs the
# same source as before. docs/compiled-runtime.md, "Typed physical layer".

cdef class BellDiagonal:
    # read-only once made: every operation returns a new state
    cdef readonly tuple _c

    cpdef fidelity(self, bell_index=*)
    # (probabilities in C doubles: the same IEEE operations, in the same
    # order, as the twin's Python floats)
    cpdef BellDiagonal _pauli_unchecked(self, double px, double py, double pz)


cpdef tuple _xor_conv(tuple a, tuple b)
cpdef tuple _permute(tuple c, m)
cpdef _check_index(name, v, hi=*)
cpdef BellDiagonal _from_coeffs(tuple c)
# (the engine's swap calls it in C; the states stay untyped arguments, read as
# attributes: a None or another object raises, as in the source)
cpdef swap_bell_diagonal(a, b, bsm_outcome)
