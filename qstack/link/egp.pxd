# Augmenting declarations for egp.py (compiled from its own source, setup.py's
# COMPILED_PY): the EGP's per-link and per-item records become extension
# types, so the compiled EGP reads their fields as C struct members where its
# methods type them (@cython.locals). Plain Python reads them as before.
# docs/compiled-runtime.md, "Typed protocol state".
#
# Fields are `object` unless the value is always of one C type; the counters
# compared on every pair (Entangles out against m) are C integers.

cdef class LinkState:
    cdef public object peer, model, delay, min_hd, hd, next_qid, seq, capacity
    cdef public object phase, follow_ctx, follow_op, bells, last_goodness
    cdef public Py_ssize_t side, out, m, retries
    cdef public bint leader, link_down, session_down
    cdef public dict items, served, delivered, pending, fid_cache, param_cache
    cdef public dict orphans, measured, topups
    cdef public list waiting, free_seqs
    cdef public set cancelled


cdef class _Item:
    cdef public object qid, origin, spec, done, delivered, limit, abort_code, sent
    cdef public object ending, fair_key
    cdef public Py_ssize_t out
    cdef public bint finished, local, cancelled, standing


cdef class _Measuring:
    cdef public object peer, item, ent_id, bell_index, goodness, created_ns, basis, index
