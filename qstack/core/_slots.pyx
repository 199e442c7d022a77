# cython: language_level=3, boundscheck=False, wraparound=False
"""Cython twin of the slot setters of ``qstack.core.slots``.

A frozen slotted dataclass's generated ``__init__`` sets each field with
``object.__setattr__``; the constructors ``qstack.core.slots`` generates call
each field's slot descriptor instead (the pure-Python twin, about twice as
fast). :class:`SlotWriter` does the same in one call per object: it writes
the values straight into the object's slots, at the offsets the slot
descriptors name, which is what each descriptor's ``__set__`` does for a
valid object, without a Python-level call per field. The tests build every
message and hot record both ways and require equal objects.

:func:`call_through` sets a record class's vectorcall slot so that
``Record(...)`` runs its generated constructor (the pure-Python twin is the
usual ``object.__new__`` then ``__init__``, which does the same).
"""
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_XDECREF, Py_XINCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE

import types


cdef extern from "Python.h":
    ctypedef PyObject* (*allocfunc)(_Type*, Py_ssize_t)

    ctypedef struct _Type "PyTypeObject":
        allocfunc tp_alloc

    ctypedef struct _MemberDef "PyMemberDef":
        int type
        Py_ssize_t offset
        int flags

    ctypedef struct _MemberDescr "PyMemberDescrObject":
        _MemberDef* d_member

    ctypedef PyObject* (*vectorcallfunc)(PyObject*, PyObject* const*, size_t, PyObject*)

    ctypedef struct _CallType "PyTypeObject":
        vectorcallfunc tp_vectorcall
        Py_ssize_t tp_vectorcall_offset
        unsigned long tp_flags

    PyObject* _vectorcall "PyObject_Vectorcall"(PyObject*, PyObject* const*, size_t, PyObject*)
    PyObject* _dict_get "PyDict_GetItem"(PyObject*, PyObject*)
    void _set_error "PyErr_SetString"(PyObject*, const char*)
    long _HEAPTYPE "Py_TPFLAGS_HEAPTYPE"
    unsigned long _HAVE_VECTORCALL "Py_TPFLAGS_HAVE_VECTORCALL"

# structmember.h: a __slots__ entry is an object member (T_OBJECT_EX) that may be written
cdef enum:
    _T_OBJECT_EX = 16
    _READONLY = 1


cdef _MemberDescr* _object_slot(type cls, str name) except NULL:
    """The descriptor of object slot ``name`` of ``cls`` (or a base), found as
    an attribute look-up finds it (first in the MRO); TypeError if it is not
    an object slot (a property, a class attribute, a ``__dict__`` entry). The
    class's dictionary keeps the descriptor alive."""
    d = next((vars(k)[name] for k in cls.__mro__ if name in vars(k)), None)
    if type(d) is not types.MemberDescriptorType:
        raise TypeError(f"{cls.__name__}.{name} is not a slot")
    cdef _MemberDescr* descr = <_MemberDescr*>d
    if descr.d_member.type != _T_OBJECT_EX:
        raise TypeError(f"{cls.__name__}.{name} is not an object slot")
    return descr


cdef class SlotWriter:
    """Writes the fields ``names`` of instances of ``cls`` straight into their
    slots: ``new(*values)`` makes an instance (as ``object.__new__(cls)``
    then one descriptor ``__set__`` per field would), ``fill(obj, *values)``
    sets the fields of an existing one (an ``__init__``). ``values`` are in
    the order of ``names``; their number must match.

    Raises TypeError at construction if a name is not a writable object slot
    of ``cls`` or if ``cls`` has its own ``__new__`` (then the caller keeps
    the descriptor setters)."""

    cdef object cls
    cdef _Type* tp
    cdef Py_ssize_t n
    cdef Py_ssize_t* offsets

    def __cinit__(self, cls, names):
        names = tuple(names)
        if not isinstance(cls, type) or cls.__new__ is not object.__new__ \
                or getattr(cls, "__abstractmethods__", None):
            raise TypeError(f"{cls!r}: not a plain class built by object.__new__")
        self.offsets = <Py_ssize_t*>PyMem_Malloc(max(1, len(names)) * sizeof(Py_ssize_t))
        if self.offsets == NULL:
            raise MemoryError()
        cdef _MemberDescr* descr
        for i, name in enumerate(names):
            descr = _object_slot(cls, name)
            if descr.d_member.flags & _READONLY:
                raise TypeError(f"{cls.__name__}.{name} is not a writable object slot")
            self.offsets[i] = descr.d_member.offset
        self.n = len(names)
        self.cls = cls
        self.tp = <_Type*>cls

    def __dealloc__(self):
        PyMem_Free(self.offsets)

    cdef inline void _write(self, PyObject* o, tuple values, Py_ssize_t first):
        cdef Py_ssize_t i
        cdef PyObject* v
        cdef PyObject** slot
        cdef PyObject* old
        for i in range(self.n):
            v = PyTuple_GET_ITEM(values, first + i)
            Py_XINCREF(v)
            slot = <PyObject**>((<char*>o) + self.offsets[i])
            old = slot[0]
            slot[0] = v
            Py_XDECREF(old)

    def new(self, *values):
        """A new instance with ``values`` in its fields."""
        if PyTuple_GET_SIZE(values) != self.n:
            raise TypeError(f"{self.cls.__name__}: {self.n} values expected, "
                            f"got {PyTuple_GET_SIZE(values)}")
        cdef PyObject* o = self.tp.tp_alloc(self.tp, 0)
        if o == NULL:
            raise MemoryError()
        obj = <object>o          # (a second reference: the allocation's is given up below)
        Py_DECREF(obj)
        self._write(o, values, 0)
        return obj

    def fill(self, *args):
        """``fill(obj, *values)``: set the fields of ``obj`` (an instance of the class)."""
        if PyTuple_GET_SIZE(args) != self.n + 1:
            raise TypeError(f"{self.cls.__name__}: {self.n} values expected, "
                            f"got {PyTuple_GET_SIZE(args) - 1}")
        obj = <object>PyTuple_GET_ITEM(args, 0)
        if not isinstance(obj, self.cls):
            raise TypeError(f"expected a {self.cls.__name__}, got {type(obj).__name__}")
        self._write(<PyObject*>obj, args, 1)


# ---------------------------------------------------------------- reading a field in C

cdef Py_ssize_t slot_offset(type cls, str name) except -1:
    """Where instances of ``cls`` keep field ``name`` (an object slot of
    ``cls`` or a base), for ``slot_field`` (``_slots.pxd``); TypeError if it
    is not an object slot."""
    return _object_slot(cls, name).d_member.offset


def read_slot(obj, cls, name):
    """``slot_field(obj, cls, slot_offset(cls, name), name)``, from Python:
    what the kernels read, for the test that compares it with ``getattr``."""
    return slot_field(obj, cls, slot_offset(cls, name), name)


# ---------------------------------------------------------------- obj.field as fast as a slot read

# A compiled module reads ``record.field`` through the type's tp_getattro, the
# generic look-up (the MRO's type cache, the slot's descriptor, its getter:
# about a hundred machine instructions), where CPython's interpreter keeps an
# inline cache per read. read_through gives a record class a tp_getattro that
# first looks the name up among the class's field names (by address, in a
# small table: the names are interned, as every attribute name in compiled
# code is) and reads that slot; anything else (another name, an equal but not interned name, an
# empty slot, a subclass) goes to the generic look-up, so every read gives
# the same value or raises the same error.

cdef extern from "Python.h":
    ctypedef PyObject* (*getattrofunc)(PyObject*, PyObject*)

    ctypedef struct _AttrType "PyTypeObject":
        getattrofunc tp_getattro

    PyObject* _generic_getattr "PyObject_GenericGetAttr"(PyObject*, PyObject*)
    void _incref "Py_INCREF"(PyObject*)
    PyObject* _type_of "(PyObject*)Py_TYPE"(PyObject*)

cdef enum:
    _READ_SIZE_BITS = 9
    _READ_SIZE = 512        # (2 ** _READ_SIZE_BITS; each record class takes one entry)
    _READ_PROBES = 32
    _READ_FIELDS = 32       # (a class with more fields keeps the generic look-up)

cdef enum:
    _READ_BUCKET_BITS = 6   # (64 buckets: a field's bucket is the top 6 bits of its
                            # name's address times the class's odd multiplier)
    _READ_BUCKETS = 64
    _NO_FIELD = -1
    _SHARED = -2            # (two fields' names fall in the bucket: compare them all)

cdef enum:
    _FREE_CAP = 32          # (freed instances kept per recycled class; a pair makes one or two of each)
    _SLOTS_MAX = 64

# One entry per registered class, for read_through and recycle_through both
# (open addressing from _class_index, linear probing; entries are never
# removed): the reader's part is valid where ``reads``, the recycler's where
# ``recycles``.
ctypedef struct _Entry:
    PyObject* cls                       # (held in _read_classes or _recycled: never freed)
    bint reads
    Py_ssize_t n
    PyObject* names[_READ_FIELDS]       # (interned; held in _read_classes)
    Py_ssize_t offsets[_READ_FIELDS]
    size_t mult                         # (chosen so that no two names share a bucket, if one does)
    signed char bucket[_READ_BUCKETS]   # the field whose name falls here, _NO_FIELD or _SHARED
    bint recycles
    Py_ssize_t nslots
    Py_ssize_t slots[_SLOTS_MAX]        # every object slot of the class and its bases
    Py_ssize_t nfree
    PyObject* free[_FREE_CAP]           # untracked, every slot empty, no reference to the class


cdef inline size_t _bucket_of(size_t address, size_t mult) noexcept:
    return (address * mult) >> (8 * sizeof(size_t) - _READ_BUCKET_BITS)


cdef extern from *:
    """
    #define __QS_GOLDEN ((size_t)0x9E3779B97F4A7C15ULL)  /* 2**64 / the golden ratio, odd */
    """
    size_t _GOLDEN "__QS_GOLDEN"


cdef inline size_t _class_index(PyObject* cls) noexcept:
    # (the top bits of the address times the golden ratio: classes allocated
    # near each other spread over the table)
    return (<size_t>cls * _GOLDEN) >> (8 * sizeof(size_t) - _READ_SIZE_BITS)

cdef _Entry _entries[_READ_SIZE]
cdef dict _read_classes = {}            # class -> its interned field names


cdef inline _Entry* _entry_of(PyObject* cls) noexcept:
    # cls's entry, or NULL
    cdef size_t i = _class_index(cls)
    cdef Py_ssize_t probe
    for probe in range(_READ_PROBES):
        if _entries[i].cls == cls:
            return &_entries[i]
        if _entries[i].cls == NULL:
            return NULL
        i = (i + 1) & (_READ_SIZE - 1)
    return NULL


cdef _Entry* _entry_for(type cls) except NULL:
    # cls's entry, or a free one claimed for it (TypeError if none is near its place)
    cdef size_t i = _class_index(<PyObject*>cls)
    cdef Py_ssize_t probe
    for probe in range(_READ_PROBES):
        if _entries[i].cls == <PyObject*>cls:
            return &_entries[i]
        if _entries[i].cls == NULL:
            _entries[i].cls = <PyObject*>cls     # (reads and recycles still False)
            return &_entries[i]
        i = (i + 1) & (_READ_SIZE - 1)
    raise TypeError(f"{cls.__name__}: the classes' table is full here")


cdef PyObject* _read_field(PyObject* obj, PyObject* name) noexcept:
    # the tp_getattro of the classes read_through registered
    cdef _Entry* reader = _entry_of(_type_of(obj))
    cdef Py_ssize_t k
    cdef PyObject* value
    if reader != NULL and reader.reads:
        k = reader.bucket[_bucket_of(<size_t>name, reader.mult)]
        if k == _SHARED:
            for k in range(reader.n):
                if reader.names[k] == name:
                    break
            else:
                k = _NO_FIELD
        elif k != _NO_FIELD and reader.names[k] != name:
            k = _NO_FIELD
        if k != _NO_FIELD:
            value = (<PyObject**>((<char*>obj) + reader.offsets[k]))[0]
            if value != NULL:
                _incref(value)
                return value
            # (an empty slot: the generic look-up raises)
    return _generic_getattr(obj, name)


def read_through(cls, names):
    """Let ``obj.<name>`` for the fields ``names`` of ``cls`` (object slots)
    read the slot directly from any code (a C read in place of the generic
    look-up; see above). TypeError if ``cls`` is not a class defined in
    Python with the generic attribute look-up, or a name is not an object
    slot of it; then nothing changes. Registering a class again is allowed
    and changes nothing."""
    import sys
    if not isinstance(cls, type) or not (<_CallType*>cls).tp_flags & _HEAPTYPE:
        raise TypeError(f"{cls!r}: only classes defined in Python")
    if cls in _read_classes:
        return
    if (<_AttrType*>cls).tp_getattro != _generic_getattr:
        raise TypeError(f"{cls.__name__} has its own attribute look-up")
    interned = tuple(sys.intern(str(n)) for n in names)
    if len(interned) > _READ_FIELDS:
        raise TypeError(f"{cls.__name__}: more than {_READ_FIELDS} fields")
    offsets = [_object_slot(cls, n).d_member.offset for n in interned]
    # an odd multiplier under which the names' buckets differ (the first of
    # a fixed sequence; names allocated near each other often share low bits)
    cdef size_t mult = 0, trial
    cdef Py_ssize_t probe, k
    for probe in range(256):
        trial = (_GOLDEN + <size_t>probe * <size_t>0x632BE59BD9B4E01AULL) | 1
        if len({_bucket_of(<size_t><PyObject*>n, trial) for n in interned}) == len(interned):
            mult = trial
            break
    if mult == 0:
        mult = _GOLDEN          # (then some buckets are shared)
    cdef _Entry* e = _entry_for(cls)
    _read_classes[cls] = interned       # (keeps the class and the names alive)
    e.n = len(interned)
    e.mult = mult
    cdef size_t b
    for b in range(_READ_BUCKETS):
        e.bucket[b] = _NO_FIELD
    for k in range(len(interned)):
        e.names[k] = <PyObject*>interned[k]
        e.offsets[k] = offsets[k]
        b = _bucket_of(<size_t><PyObject*>interned[k], mult)
        e.bucket[b] = k if e.bucket[b] == _NO_FIELD else _SHARED
    e.reads = True
    (<_AttrType*>cls).tp_getattro = _read_field


def reads_through(cls):
    """True if ``cls``'s instances are read by :func:`read_through`'s look-up."""
    return isinstance(cls, type) and cls in _read_classes \
        and (<_AttrType*>cls).tp_getattro == _read_field


# ---------------------------------------------------------------- a record's memory, reused

# A record lives for one event or one message, and CPython's generic
# allocation and deallocation of an instance of a class defined in Python
# (PyType_GenericAlloc; subtype_dealloc, which walks the class and its bases
# for slots, a __dict__, weak references and finalizers) cost about 400
# machine instructions a record: about a tenth of the work per pair.
# recycle_through gives a record class the deallocator CPython's own
# tuples have (untrack, the trashcan against deep recursion, clear the
# slots, keep the memory on the class's free list) and an allocator that
# takes from that list, so the next record of the class reuses the memory.
# Nothing else changes: the instance, its refcount, its class's refcount
# and the garbage collector's tracking are what the generic functions give.

cdef extern from *:
    """
    /* set by the module to _release: the slots cleared, the memory kept or freed */
    static void (*__qs_release)(PyObject *) = NULL;

    /* A recycled record class's tp_dealloc; called too by a subclass's
       subtype_dealloc (which cleared the subclass's own slots) as its base's. */
    static void __qs_recycle_dealloc(PyObject *o) {
        PyObject_GC_UnTrack(o);
        Py_TRASHCAN_BEGIN(o, __qs_recycle_dealloc)
        __qs_release(o);
        Py_TRASHCAN_END
    }
    """
    void (*_release_hook "__qs_release")(PyObject*) noexcept
    void _recycle_dealloc "__qs_recycle_dealloc"(PyObject*) noexcept

cdef extern from "Python.h":
    ctypedef void (*destructor)(PyObject*)
    ctypedef void (*freefunc)(void*)

    ctypedef struct _LifeType "PyTypeObject":
        Py_ssize_t tp_basicsize
        Py_ssize_t tp_itemsize
        destructor tp_dealloc
        allocfunc tp_alloc
        freefunc tp_free
        void* tp_finalize
        void* tp_del
        Py_ssize_t tp_dictoffset
        Py_ssize_t tp_weaklistoffset
        unsigned long tp_flags
        _Type* tp_base

    PyObject* _generic_alloc "PyType_GenericAlloc"(_Type*, Py_ssize_t)
    void _gc_del "PyObject_GC_Del"(void*)
    PyObject* _object_init "PyObject_Init"(PyObject*, _Type*)
    void _gc_track "PyObject_GC_Track"(void*)
    void _decref "Py_DECREF"(PyObject*)
    long _HAVE_GC "Py_TPFLAGS_HAVE_GC"

cdef set _recycled = set()              # recycled classes (keeps each alive: its entry's pointer stays valid)


cdef PyObject* _recycle_alloc(_Type* tp, Py_ssize_t nitems) noexcept:
    # the recycled class's tp_alloc (a subclass gets PyType_GenericAlloc)
    cdef _Entry* r = _entry_of(<PyObject*>tp)
    cdef PyObject* o
    if r != NULL and r.recycles and r.nfree > 0 and nitems == 0:
        r.nfree -= 1
        o = r.free[r.nfree]
        _object_init(o, tp)         # (its class, a reference to the class, refcount 1)
        _gc_track(o)                # (as PyType_GenericAlloc: tracked, every slot empty)
        return o
    return _generic_alloc(tp, nitems)


cdef void _release(PyObject* o) noexcept:
    cdef PyObject* tp = _type_of(o)
    cdef PyObject* cls = tp
    cdef _Entry* r = _entry_of(cls)
    cdef Py_ssize_t k
    cdef PyObject** slot
    cdef PyObject* value
    while r == NULL or not r.recycles:  # a subclass's instance: its recycled base's slots
        cls = <PyObject*>(<_LifeType*>cls).tp_base
        r = _entry_of(cls)
    for k in range(r.nslots):
        slot = <PyObject**>((<char*>o) + r.slots[k])
        value = slot[0]
        if value != NULL:
            slot[0] = NULL
            _decref(value)
    if cls == tp and r.nfree < _FREE_CAP:
        r.free[r.nfree] = o
        r.nfree += 1
    else:
        (<_LifeType*>tp).tp_free(o)
    _decref(tp)                     # (every heap type's deallocator gives up its instance's reference)

_release_hook = _release


def recycle_through(cls):
    """Reuse the memory of ``cls``'s instances (see above). TypeError, and
    nothing changes, unless ``cls`` is a class defined in Python whose
    instances are nothing but object slots (its own and its bases', every
    base defined in Python but ``object``): no ``__dict__``, no weak
    references, no ``__del__``, the generic allocation and deallocation.
    Registering a class again changes nothing."""
    if not isinstance(cls, type) or not (<_CallType*>cls).tp_flags & _HEAPTYPE:
        raise TypeError(f"{cls!r}: only classes defined in Python")
    if cls in _recycled:
        return
    cdef _LifeType* tp = <_LifeType*>cls
    if not tp.tp_flags & _HAVE_GC or tp.tp_alloc != <allocfunc>_generic_alloc \
            or tp.tp_free != <freefunc>_gc_del or tp.tp_itemsize != 0:
        raise TypeError(f"{cls.__name__}: not the generic allocation")
    if tp.tp_dictoffset != 0 or tp.tp_weaklistoffset != 0 or tp.tp_finalize != NULL \
            or tp.tp_del != NULL:
        raise TypeError(f"{cls.__name__}: a __dict__, weak references or a finalizer")
    mro = cls.__mro__
    bases = mro[:len(mro) - 1]
    if mro[len(mro) - 1] is not object or any(
            not (<_CallType*>k).tp_flags & _HEAPTYPE
            or (<_LifeType*>k).tp_dealloc != tp.tp_dealloc for k in bases):
        raise TypeError(f"{cls.__name__}: a base not defined in Python")
    offsets = []
    cdef _MemberDescr* descr
    for k in bases:
        for v in vars(k).values():
            if type(v) is types.MemberDescriptorType:
                descr = <_MemberDescr*>v
                if descr.d_member.type != _T_OBJECT_EX or descr.d_member.flags & _READONLY:
                    raise TypeError(f"{cls.__name__}: a slot that is not an object's")
                offsets.append(descr.d_member.offset)
    # nothing in an instance but its header and these slots: a cleared one is as new
    if len(set(offsets)) != len(offsets) or len(offsets) > _SLOTS_MAX \
            or tp.tp_basicsize != <Py_ssize_t>sizeof(PyObject) + len(offsets) * <Py_ssize_t>sizeof(PyObject*):
        raise TypeError(f"{cls.__name__}: its layout is not its slots")
    cdef _Entry* e = _entry_for(cls)
    _recycled.add(cls)
    e.nslots = len(offsets)
    cdef Py_ssize_t j
    for j in range(len(offsets)):
        e.slots[j] = offsets[j]
    e.nfree = 0
    e.recycles = True
    tp.tp_alloc = <allocfunc>_recycle_alloc
    tp.tp_dealloc = <destructor>_recycle_dealloc


def recycles(cls):
    """True if ``cls``'s instances are allocated and freed by
    :func:`recycle_through`'s functions."""
    return isinstance(cls, type) and cls in _recycled \
        and (<_LifeType*>cls).tp_dealloc == <destructor>_recycle_dealloc


def recycled_count(cls):
    """How many freed instances of ``cls`` wait on its free list (0 if none or not recycled)."""
    cdef _Entry* r = _entry_of(<PyObject*>cls) if isinstance(cls, type) else NULL
    return 0 if r == NULL or not r.recycles else r.nfree


# ---------------------------------------------------------------- Record(...) as fast as make(...)

# class -> the function that builds its instances (see call_through); it
# holds a reference to each, so the table below may keep plain pointers
cdef dict _makers = {}

# The same for the classes whose maker is a Maker, looked up by the class's
# address (open addressing, linear probing; entries are never removed, only
# updated): Cls(...) is on every pair's path many times, and a dict look-up
# of a type object costs more than the construction's own checks.
cdef enum:
    _FAST_SIZE = 512        # (a power of two; a few dozen classes use a Maker)
    _FAST_PROBES = 32       # (then the dict: a crowded table costs no long scans)

cdef PyObject* _fast_cls[_FAST_SIZE]
cdef PyObject* _fast_make[_FAST_SIZE]


cdef inline Py_ssize_t _fast_slot(PyObject* cls) noexcept:
    # cls's entry, or the free entry where it would go; -1 if neither is
    # within _FAST_PROBES entries of its place
    cdef size_t i = (<size_t>cls >> 4) & (_FAST_SIZE - 1)
    cdef Py_ssize_t n
    for n in range(_FAST_PROBES):
        if _fast_cls[i] == cls or _fast_cls[i] == NULL:
            return i
        i = (i + 1) & (_FAST_SIZE - 1)
    return -1


cdef PyObject* _call_maker(PyObject* cls, PyObject* const* args, size_t nargsf,
                           PyObject* kwnames) noexcept:
    # the class's tp_vectorcall: Cls(...) is make(...)
    cdef PyObject* make = _dict_get(<PyObject*>_makers, cls)
    if make == NULL:        # (not reached: only classes in _makers get this slot)
        _set_error(<PyObject*>TypeError, b"no constructor registered for this class")
        return NULL
    return _vectorcall(make, args, nargsf, kwnames)


def call_through(cls, make):
    """Make ``cls(...)`` call ``make(...)`` directly, instead of
    ``object.__new__`` then ``cls.__init__``: the class's vectorcall slot
    (``tp_vectorcall``, which CPython documents for type objects and never
    inherits: a subclass is built the usual way). ``make`` must build the
    same object as the class's own ``__init__`` would, checks included."""
    if not isinstance(cls, type) or not (<_CallType*>cls).tp_flags & _HEAPTYPE:
        raise TypeError(f"{cls!r}: only classes defined in Python")
    if not callable(make):
        raise TypeError("make must be callable")
    _makers[cls] = make
    cdef Py_ssize_t i = _fast_slot(<PyObject*>cls)
    if i >= 0:              # (else _call_made asks the dict)
        _fast_cls[i] = <PyObject*>cls
        _fast_make[i] = <PyObject*>make if type(make) is Maker else NULL
    if type(make) is Maker:
        (<_CallType*>cls).tp_vectorcall = <vectorcallfunc>_call_made
    else:
        (<_CallType*>cls).tp_vectorcall = _call_maker


# ---------------------------------------------------------------- Maker: a generated constructor in C

cdef extern from "Python.h":
    PyObject** _tuple_items "PySequence_Fast_ITEMS"(object)
    Py_ssize_t _vc_nargs "PyVectorcall_NARGS"(size_t)
    long long _as_ll "PyLong_AsLongLongAndOverflow"(PyObject*, int*) except? -1
    double _as_double "PyFloat_AS_DOUBLE"(PyObject*)
    Py_ssize_t _str_len "PyUnicode_GET_LENGTH"(PyObject*)
    Py_ssize_t _bytes_len "PyBytes_GET_SIZE"(PyObject*)
    int _str_eq "PyUnicode_Compare"(PyObject*, PyObject*) except? -1
    bint _is_str "PyUnicode_CheckExact"(PyObject*)

# field test kinds (Maker); what each accepts is exactly what the generated
# Python test of qstack.core.messages._fast_test accepts
cdef enum:
    K_NONE = 0      # no test (records)
    K_INT = 1       # exact int within [ilo, ihi]
    K_FLOAT = 2     # exact float within [flo, fhi] (NaN fails)
    K_BOOL = 3      # exact bool
    K_STR = 4       # exact str of at most maxlen characters
    K_BYTES = 5     # exact bytes of at most maxlen bytes
    K_CLASS = 6     # exactly of class aux[i]
    K_PY = 7        # aux[i](value) is true
    K_SLOW = 8      # always the slow check

cdef enum:
    _MAX_FIELDS = 64

cdef object _REQUIRED = object()


cdef class Maker:
    """A generated constructor in C: builds instances of ``cls`` with fields
    ``names`` from the call's arguments as the Python function
    ``def make(<names with defaults>): <checks>; o = new(...); <post>``
    that :mod:`qstack.core.messages` and :func:`qstack.core.protocol.fast_init`
    generate does (the pure-Python twin): the same parameters, defaults and
    default factories, the same checks (a field's fast test, and for a value
    that fails it the field's slow check, which accepts it or raises), the
    same object; then ``post(obj)`` if given.

    ``defaults``: per field the default value or ``None`` with ``required``
    true; ``factories``: per field a default factory or None; ``tests``: per
    field ``(kind, a, b, optional)`` (see the kinds above), ``slow``: per
    field the slow check or None. ``Cls(...)`` reaches it without a Python
    frame through :func:`call_through`."""

    cdef SlotWriter writer           # (where each field's slot is)
    cdef _Type* tp
    cdef Py_ssize_t n
    cdef Py_ssize_t* offsets         # (the writer's)
    cdef tuple names
    cdef tuple defaults
    cdef tuple factories
    cdef tuple aux
    cdef tuple slow
    cdef object post
    cdef object qualname
    cdef bint any_factory
    cdef bint checks                 # (some field has a test: not every kind "none")
    cdef Py_ssize_t fast_min         # (see _call's first lines)
    # the keyword names of the last call that had some, and the field each
    # names: a call site passes the same interned names every time (NetOk's
    # thirteen, twice per end-to-end pair), so they are matched once
    cdef tuple kw_names
    cdef Py_ssize_t kw_index[_MAX_FIELDS]
    # the number of positional arguments of the last keyword call that
    # succeeded with kw_names, -1 for none: a call with as many and the same
    # names gives every required field, and each field once (that call did),
    # so a class with nothing to check or make takes the short path below
    cdef Py_ssize_t kw_nargs
    cdef vectorcallfunc vc           # (make(...) without an args tuple: see _maker_vectorcall)
    cdef char* required
    cdef char* kinds
    cdef char* optional
    cdef long long* ilo
    cdef long long* ihi
    cdef double* flo
    cdef double* fhi
    cdef Py_ssize_t* maxlen

    def __cinit__(self, cls, names, defaults, required, factories, tests, slow, post, qualname):
        cdef Py_ssize_t i
        self.vc = <vectorcallfunc>_maker_vectorcall
        self.kw_nargs = -1
        if not _maker_vectorcall_on:
            _vectorcall_makers(self)
        names = tuple(names)
        self.n = len(names)
        if self.n > _MAX_FIELDS:
            raise TypeError(f"{cls.__name__}: more than {_MAX_FIELDS} fields")
        self.writer = SlotWriter(cls, names)     # (TypeError if it cannot write cls)
        self.offsets = self.writer.offsets
        self.tp = self.writer.tp
        n = max(1, self.n)
        self.required = <char*>PyMem_Malloc(n)
        self.kinds = <char*>PyMem_Malloc(n)
        self.optional = <char*>PyMem_Malloc(n)
        self.ilo = <long long*>PyMem_Malloc(n * sizeof(long long))
        self.ihi = <long long*>PyMem_Malloc(n * sizeof(long long))
        self.flo = <double*>PyMem_Malloc(n * sizeof(double))
        self.fhi = <double*>PyMem_Malloc(n * sizeof(double))
        self.maxlen = <Py_ssize_t*>PyMem_Malloc(n * sizeof(Py_ssize_t))
        if (self.required == NULL or self.kinds == NULL
                or self.optional == NULL or self.ilo == NULL or self.ihi == NULL
                or self.flo == NULL or self.fhi == NULL or self.maxlen == NULL):
            raise MemoryError()
        aux = []
        for i in range(self.n):
            self.required[i] = bool(required[i])
            kind, a, b, opt = tests[i]
            self.kinds[i] = kind
            self.optional[i] = bool(opt)
            self.ilo[i] = self.ihi[i] = 0
            self.flo[i] = self.fhi[i] = 0.0
            self.maxlen[i] = 0
            if kind == K_INT:
                self.ilo[i], self.ihi[i] = a, b
            elif kind == K_FLOAT:
                self.flo[i], self.fhi[i] = a, b
            elif kind == K_STR or kind == K_BYTES:
                self.maxlen[i] = a
            elif kind == K_CLASS or kind == K_PY:
                pass
            elif kind != K_NONE and kind != K_BOOL and kind != K_SLOW:
                raise ValueError(f"unknown field test kind {kind}")
            aux.append(a)
        self.names = tuple(str(x) for x in names)
        self.defaults = tuple(defaults)
        self.factories = tuple(factories)
        self.any_factory = any(f is not None for f in self.factories)
        self.aux = tuple(aux)
        self.slow = tuple(slow)
        self.post = post
        self.qualname = qualname
        if not (len(self.defaults) == len(self.factories) == len(self.slow) == self.n
                and len(required) == len(tests) == self.n):
            raise ValueError("one default, factory, test and slow check per field")
        # The fewest positional arguments a call may give and take the short
        # path: every field's test is "none" (events, actions, records; a wire
        # message's fields are checked), and every field after them has a
        # plain default (no required field, no factory). n + 1: never.
        self.fast_min = self.n + 1
        self.checks = not all(self.kinds[i] == K_NONE for i in range(self.n))
        if not self.checks:
            self.fast_min = 0
            for i in range(self.n):
                if self.required[i] or self.factories[i] is not None:
                    self.fast_min = i + 1

    def __dealloc__(self):
        PyMem_Free(self.required)
        PyMem_Free(self.kinds)
        PyMem_Free(self.optional)
        PyMem_Free(self.ilo)
        PyMem_Free(self.ihi)
        PyMem_Free(self.flo)
        PyMem_Free(self.fhi)
        PyMem_Free(self.maxlen)

    @property
    def __qualname__(self):
        return self.qualname

    @property
    def __name__(self):
        return self.qualname

    def __repr__(self):
        return f"<Maker {self.qualname}>"

    cdef bint _fast(self, Py_ssize_t i, object v) except -1:
        # the field's fast test (see the kinds); False: the slow check decides
        cdef int kind = self.kinds[i]
        cdef int overflow = 0
        cdef long long x
        cdef double d
        if kind == K_NONE:
            return True
        if self.optional[i] and v is None:
            return True
        if kind == K_INT:
            if type(v) is not int:
                return False
            x = _as_ll(<PyObject*>v, &overflow)
            return overflow == 0 and self.ilo[i] <= x <= self.ihi[i]
        if kind == K_FLOAT:
            if type(v) is not float:
                return False
            d = _as_double(<PyObject*>v)
            return self.flo[i] <= d <= self.fhi[i]
        if kind == K_BOOL:
            return type(v) is bool
        if kind == K_STR:
            return type(v) is str and _str_len(<PyObject*>v) <= self.maxlen[i]
        if kind == K_BYTES:
            return type(v) is bytes and _bytes_len(<PyObject*>v) <= self.maxlen[i]
        if kind == K_CLASS:
            return type(v) is self.aux[i]
        if kind == K_PY:
            return bool(self.aux[i](v))
        return False

    cdef object _call(self, PyObject** args, Py_ssize_t nargs, PyObject* kwnames):
        cdef PyObject* vals[_MAX_FIELDS]
        cdef Py_ssize_t i, j, nkw
        cdef PyObject* key
        cdef bint same
        cdef list made = None
        if kwnames == NULL and self.fast_min <= nargs <= self.n:
            # the short path (most calls on the hot path: positional, nothing
            # to check): the same values as below, without its per-field loops
            for i in range(self.n):
                vals[i] = args[i] if i < nargs else PyTuple_GET_ITEM(self.defaults, i)
            return self._build(vals)
        if kwnames != NULL and nargs == self.kw_nargs \
                and self._same_kw_names(kwnames, PyTuple_GET_SIZE(<object>kwnames)):
            # the short path of a keyword call site (NetOk's thirteen names,
            # twice per end-to-end pair): the last call's field for each name
            nkw = PyTuple_GET_SIZE(<object>kwnames)
            for i in range(nargs, self.n):
                vals[i] = PyTuple_GET_ITEM(self.defaults, i)
            for i in range(nargs):
                vals[i] = args[i]
            for j in range(nkw):
                vals[self.kw_index[j]] = args[nargs + j]
            return self._build(vals)
        if nargs > self.n:
            raise TypeError(f"{self.qualname}() takes {self.n} positional arguments but "
                            f"{nargs} were given")
        for i in range(self.n):
            vals[i] = args[i] if i < nargs else NULL
        if kwnames != NULL:
            nkw = PyTuple_GET_SIZE(<object>kwnames)
            same = self._same_kw_names(kwnames, nkw)
            self.kw_nargs = -1              # (set again once this call has succeeded)
            if not same:
                self.kw_names = None        # (kw_index is rewritten below)
            for j in range(nkw):
                key = PyTuple_GET_ITEM(<object>kwnames, j)
                if same:
                    i = self.kw_index[j]
                else:
                    i = self._index(key)
                    if i < 0:
                        raise TypeError(f"{self.qualname}() got an unexpected keyword "
                                        f"argument {<object>key!r}")
                if vals[i] != NULL:
                    raise TypeError(f"{self.qualname}() got multiple values for argument "
                                    f"{<object>key!r}")
                vals[i] = args[nargs + j]
                if not same:
                    # (j < n: the j keywords before it named j distinct fields)
                    self.kw_index[j] = i
            if not same:
                self.kw_names = <tuple>kwnames
        for i in range(self.n):
            if vals[i] == NULL:
                if self.required[i]:
                    missing = [self.names[k] for k in range(self.n)
                               if vals[k] == NULL and self.required[k]]
                    raise TypeError(f"{self.qualname}() missing {len(missing)} required "
                                    f"positional argument{'s' if len(missing) > 1 else ''}: "
                                    + ", ".join(repr(m) for m in missing))
                if self.factories[i] is None:
                    vals[i] = PyTuple_GET_ITEM(self.defaults, i)
        if self.checks:
            for i in range(self.n):
                if vals[i] != NULL and not self._fast(i, <object>vals[i]):
                    self.slow[i](<object>vals[i])
        if self.any_factory:
            made = []
            for i in range(self.n):
                if vals[i] == NULL:
                    value = self.factories[i]()
                    made.append(value)
                    vals[i] = <PyObject*>value
        obj = self._build(vals)        # (made keeps the factories' values alive until then)
        if kwnames != NULL and not self.checks and not self.any_factory:
            self.kw_nargs = nargs      # (the short path above serves its like from now on)
        return obj

    cdef object _build(self, PyObject** vals):
        # a new instance with the n values in its slots, then post(obj)
        cdef Py_ssize_t i
        cdef PyObject** slot
        cdef PyObject* o = self.tp.tp_alloc(self.tp, 0)
        if o == NULL:
            raise MemoryError()
        obj = <object>o          # (a second reference: the allocation's is given up below)
        Py_DECREF(obj)
        for i in range(self.n):
            Py_XINCREF(vals[i])
            slot = <PyObject**>((<char*>o) + self.offsets[i])
            slot[0] = vals[i]
        if self.post is not None:
            self.post(obj)
        return obj

    cdef bint _same_kw_names(self, PyObject* kwnames, Py_ssize_t nkw) noexcept:
        # the same names as the last keyword call, in the same order (the
        # very same string objects: kw_names holds them, so none was freed
        # and another made at its address)
        cdef Py_ssize_t j
        if self.kw_names is None or PyTuple_GET_SIZE(self.kw_names) != nkw:
            return False
        for j in range(nkw):
            if PyTuple_GET_ITEM(self.kw_names, j) != PyTuple_GET_ITEM(<object>kwnames, j):
                return False
        return True

    cdef Py_ssize_t _index(self, PyObject* key) except -2:
        cdef Py_ssize_t i
        for i in range(self.n):
            if PyTuple_GET_ITEM(self.names, i) == key:
                return i
        if _is_str(key):
            for i in range(self.n):
                if _str_eq(PyTuple_GET_ITEM(self.names, i), key) == 0:
                    return i
        return -1

    def __call__(self, *args, **kwargs):
        if not kwargs:
            return self._call(_tuple_items(args), PyTuple_GET_SIZE(args), NULL)
        both = args + tuple(kwargs.values())
        names = tuple(kwargs)
        return self._call(_tuple_items(both), PyTuple_GET_SIZE(args), <PyObject*>names)


# A Maker is called directly where a module keeps fast_constructor(Cls) as a
# name (``_done(op_id, outcome)``, ``_herald(...)``): several per pair. Through
# tp_call (``__call__``) each such call builds an argument tuple and an empty
# keyword dict, and CPython's tp_call bridge checks the result: about 400
# instructions more than the construction. The vectorcall protocol (PEP 590)
# passes the caller's argument array as it is, as ``Cls(...)`` already does
# through _call_made. Cython gives a cdef class's ``__call__`` only tp_call,
# so the offset of the instance's ``vc`` field and the flag are set on the type
# here, before the first Maker exists (no call can have taken the other path).
cdef bint _maker_vectorcall_on = False


cdef void _vectorcall_makers(Maker first) noexcept:
    global _maker_vectorcall_on
    cdef _CallType* tp = <_CallType*>Maker
    tp.tp_vectorcall_offset = <Py_ssize_t>(<char*>&first.vc - <char*><PyObject*>first)
    tp.tp_flags |= _HAVE_VECTORCALL
    _maker_vectorcall_on = True


cdef PyObject* _maker_vectorcall(PyObject* make, PyObject* const* args, size_t nargsf,
                                 PyObject* kwnames) except NULL:
    # make(...): the same _call as __call__ (the keyword values follow the
    # positional ones in args, as __call__ arranges them)
    result = (<Maker>make)._call(<PyObject**>args, _vc_nargs(nargsf), kwnames)
    Py_XINCREF(<PyObject*>result)
    return <PyObject*>result


cdef PyObject* _call_made(PyObject* cls, PyObject* const* args, size_t nargsf,
                          PyObject* kwnames) except NULL:
    # the class's tp_vectorcall when its maker is a Maker: Cls(...) in C
    cdef Py_ssize_t i = _fast_slot(cls)
    cdef PyObject* make = NULL
    if i >= 0 and _fast_cls[i] == cls:
        make = _fast_make[i]
    if make == NULL:
        make = _dict_get(<PyObject*>_makers, cls)
    result = (<Maker>make)._call(<PyObject**>args, _vc_nargs(nargsf), kwnames)
    Py_XINCREF(<PyObject*>result)
    return <PyObject*>result
