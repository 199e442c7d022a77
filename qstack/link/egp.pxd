# Augmenting declarations for egp.py (compiled from its own source, setup.py's
# COMPILED_PY): the EGP's per-link and per-item records become extension
# types, so the compiled EGP reads their fields as C struct members where its
# methods type them (@cython.locals). Plain Python reads them as before.
# docs/compiled-runtime.md, "Typed protocol state".
#
# Fields are `object` unless the value is always of one C type; the counters
# compared on every pair (Entangles out against m) are C integers.

from qstack.core.protocol cimport Protocol


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
    cdef public object ending, fair_key, create_id, purpose_id, number, param, deadline_ns
    cdef public Py_ssize_t out
    cdef public bint finished, local, cancelled, standing, keep, consecutive


cdef class _Measuring:
    cdef public object peer, item, ent_id, bell_index, goodness, created_ns, basis, index


# The protocol itself (its base is an extension type, core/protocol.pxd): its
# own fields are C struct members in every method (`self` is typed there).
# A Python subclass has its own __dict__ and sets any attribute it likes;
# the compiled class takes only what is declared here.
cdef class EGP(Protocol):
    cdef public object t1_ns, t2_ns, num_qubits, cutoff_ns, max_queue, max_memory_retries
    cdef public object memory_backoff_max_ns, rng, _next_create
    cdef public dict links, weights

    # The methods a pair passes through, called from one another: C calls
    # (a Python subclass may still override them). Their record arguments
    # are typed here, not with @cython.locals (Cython refuses both).
    cpdef _herald_ok(self, LinkState link, _Item item, key, h, now)
    cpdef _pair_made(self, LinkState link, _Item item, seq, index, h, now, actions)
    cpdef _follow(self, LinkState link, actions)
    cpdef _schedule(self, LinkState link, now, actions)
    cpdef _resubmit(self, LinkState link, _Item item, key, actions)
    cpdef _entangle(self, LinkState link, _Item item, actions)
    cpdef _allow_more(self, LinkState link, _Item item, number, now, actions)
    cpdef _link_from(self, src, msg)


cpdef _index_ok(_Item item, index)
cpdef _can_submit(LinkState link)
