# The QNP's per-circuit records as extension types (augmenting circuit.py,
# which stays the one source): where a method of the compiled circuit.py
# types a name with @cython.locals, its fields are read as C struct members
# instead of by generic attribute look-up (docs/compiled-runtime.md, "Typed
# protocol state: the QNP").
#
# The fields MUST be declared in the order of circuit.py's dataclass fields:
# Cython's dataclass takes its __init__ argument order from here
# (tests/test_qnp_typed.py checks it). ``object`` wherever a value may be
# None, a big int or any other type; C types only where the value is always
# a small integer (the path position and link count).

from qstack.core.protocol cimport Protocol


cdef class _Pair:
    cdef public object seq
    cdef public object qubit
    cdef public object bell
    cdef public object fidelity
    cdef public object created_ns
    cdef public object far
    cdef public object held_since
    cdef public object ent_id
    cdef public object meas


cdef class _Circuit:
    cdef public object cid
    cdef public object head
    cdef public object path
    cdef public Py_ssize_t index
    cdef public object request_id
    cdef public object number
    cdef public object min_fidelity
    cdef public object link_fidelity
    cdef public object strategy
    cdef public object cutoff_ns
    cdef public object type
    cdef public object basis
    cdef public object app_tag
    cdef public object correct
    cdef public object labels
    cdef public object phase
    cdef public tuple held
    cdef public tuple swaps
    cdef public tuple busy
    cdef public dict early
    cdef public dict gone
    cdef public dict recent
    cdef public object recent_low
    cdef public object window
    cdef public dict creates
    cdef public object standing
    cdef public object credit
    cdef public dict waiting_track
    cdef public object untracked
    cdef public object requested
    cdef public object lost
    cdef public object delivered
    cdef public object done_seq
    cdef public object lo
    cdef public object hi
    cdef public Py_ssize_t n_links


cdef class _Request:
    cdef public object req
    cdef public object request_id
    cdef public object delivered
    cdef public object circuit
    cdef public object started_ns
    cdef public object failed_links
    cdef public object reopens
    cdef public object allowed


cdef class _Swap:
    cdef public object head
    cdef public object cid
    cdef public _Pair left
    cdef public _Pair right


# The protocol itself (its base is an extension type, core/protocol.pxd): its
# own fields are C struct members in every method (`self` is typed there).
# A Python subclass has its own __dict__ and sets any attribute it likes;
# the compiled class takes only what is declared here.
cdef class QnpProtocol(Protocol):
    cdef public object _basis_rng, linkstate, link_service, default_cutoff_ns, window
    cdef public object num_qubits, purify, link_max_time_ns, link_retry_ns
    cdef public object _next_create_id, _next_cid, _next_rid, _cid_base
    cdef public bint _top_up, _link_standing
    cdef public dict _crossing, circuits, requests, _by_label, _labels_used, _next_label, stats
    cdef public dict _by_head

    # The methods a pair passes through, called from one another: C calls
    # (a Python subclass may still override them). Their record arguments
    # are typed here, not with @cython.locals (Cython refuses both).
    cpdef _circuit_of(self, ev)
    cpdef _circuit(self, head, cid)
    cpdef _named(self, m, out)
    cpdef _take_swap(self, _Circuit c, src, seq)
    cpdef _locate(self, _Circuit c, src, seq, msg)
    cpdef _finish_pair(self, _Circuit c, ok, ops, now_ns, out)
    cpdef _tail_decide(self, _Circuit c, _Pair p, bell, fidelity, created_ns, now_ns, out)
    cpdef _refill(self, _Circuit c, now_ns, out)
    cpdef _swapped(self, _Circuit c, _Pair pl, _Pair pr, m, now_ns, out)
    cpdef _try_swap(self, _Circuit c, now_ns, out)


cpdef _side_of(_Circuit c, src)
cpdef _held_towards(dict held, far)
