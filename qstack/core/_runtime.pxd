# The compiled runtime core's declarations, for the simulator driver
# (qstack/sim/_driver.pyx) to reach a node's fields and its hot path in C.

cdef class EventCallback:
    """A kernel event's callback that the compiled kernel fires by a C call."""
    cdef readonly str name           # (its __qualname__: the method it stands for)
    cdef int fire(self, tuple args) except -1


cdef class DriverHooks:
    """What a compiled driver carries out for a node directly: its messages
    and quantum operations (a C call each, no executor object between)."""
    cdef int send_c(self, RuntimeCore node, object protocol, object action,
                    object now) except -1
    cdef int op_c(self, RuntimeCore node, object protocol, object action,
                  object now) except -1
    # its heralding stations' deliver callback, ``_herald_arrives`` (a station
    # made with that bound method calls this instead: qstack/physical/_heralding.pyx)
    cdef int herald_c(self, object side, object ref, object herald) except -1
    # ``clock.schedule_at(time_ns, callback, *args)`` for a station whose
    # deliver callback is this driver's: a C call when ``clock`` is the
    # driver's own compiled kernel
    cdef object at_c(self, object clock, object time_ns, object callback, tuple args)
    # ``clock.now`` for such a station (a C read when ``clock`` is the
    # driver's own compiled kernel)
    cdef object now_c(self, object clock)


cdef class RuntimeCore:
    cdef public object name
    cdef public object driver
    cdef public object failures
    cdef public object stack_factory
    cdef public dict protocols
    cdef public list stack
    cdef public list inbox
    cdef public list listeners
    cdef public dict timers
    cdef public bint up
    cdef public object incarnation
    cdef public dict _handlers
    cdef public dict _on_message
    cdef public dict above
    cdef public dict below
    cdef public dict _run
    cdef public DriverHooks hooks
    cdef list _hc                    # (the handler cache of _feed; None: empty)

    cdef int _feed(self, object protocol, object event, object now) except -1
    cdef int message_c(self, object src, object msg, object now) except -1
    cdef int _carry_out(self, object protocol, object actions, object now) except -1
    cdef int _start_timer_c(self, object protocol, object action, object now) except -1
    cdef int _cancel_timer_c(self, object protocol, object action, object now) except -1
    cdef int _deliver_c(self, object protocol, object action, object now) except -1
    cdef int _submit_c(self, object protocol, object action, object now) except -1
