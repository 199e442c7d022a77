"""Benchmark: message types as they are (frozen slotted dataclasses with the
codec of qstack.core.messages) against msgspec Structs and a typed Cython
class (issue 22: "measure them against typed Cython classes and choose").

The record is the network layer's ``Track`` message (6 fields, checked
ranges), sent once per swap on the chain benchmark's hot path. Figures are
nanoseconds per operation (best of 5 repeats, wall clock; a shared machine
moves them by ~20%, the ratios less):

* ``construct``: build one record with its checks (the dataclass through
  its generated checked ``__init__`` and through ``fast_constructor``;
  ``msgspec.Struct`` with ``Meta`` constraints is checked only on decode, so
  its construction is unchecked; the Cython class checks in ``__init__``);
* ``read``: read all six fields;
* ``encode`` / ``decode``: msgpack round trip (qstack's codec validates on
  decode; msgspec's typed decoder validates the constraints).

    python -m benchmarks.bench_msgspec        # JSON; needs msgspec (pip) and Cython

msgspec is not a dependency of qstack: the benchmark is skipped without it.
"""
import json
import timeit
from typing import Annotated

from qstack.core.messages import decode, encode
from qstack.core.protocol import fast_constructor
from qstack.network.messages import Track

ARGS = (7, "n0001", 123456, 2, 0.987, 1_000_000)
N = 20_000


def _best(stmt, number: int = N) -> float:
    """ns per call of ``stmt`` (a zero-argument callable), best of 5."""
    return round(min(timeit.repeat(stmt, number=number, repeat=5)) / number * 1e9, 1)


def _read(t):
    return (t.circuit_id, t.head, t.link_seq, t.bell_index, t.fidelity, t.created_ns)


def run() -> dict:
    out: dict = {}
    make = fast_constructor(Track)
    t = Track(*ARGS)
    data = encode(t)
    out["dataclass"] = {
        "construct": _best(lambda: Track(*ARGS)),
        "construct_fast_constructor": _best(lambda: make(*ARGS)),
        "read": _best(lambda: _read(t)),
        "encode": _best(lambda: encode(t)),
        "decode": _best(lambda: decode(data)),
        "bytes": len(data),
    }
    try:
        import msgspec
    except ImportError:
        out["msgspec"] = "not installed (pip install msgspec)"
    else:
        U32 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFFFFFF)]
        U64 = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]

        class MsTrack(msgspec.Struct, frozen=True, array_like=True):
            circuit_id: U32
            head: Annotated[str, msgspec.Meta(max_length=64)]
            link_seq: U64
            bell_index: Annotated[int, msgspec.Meta(ge=0, le=3)]
            fidelity: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
            created_ns: U64

        enc = msgspec.msgpack.Encoder()
        dec = msgspec.msgpack.Decoder(MsTrack)
        m = MsTrack(*ARGS)
        mdata = enc.encode(m)
        out["msgspec"] = {
            "version": msgspec.__version__,
            "construct_unchecked": _best(lambda: MsTrack(*ARGS)),
            "construct_checked_via_convert": _best(
                lambda: msgspec.convert(ARGS, MsTrack)),
            "read": _best(lambda: _read(m)),
            "encode": _best(lambda: enc.encode(m)),
            "decode": _best(lambda: dec.decode(mdata)),
            "bytes": len(mdata),
        }
    try:
        import pyximport
        pyximport.install(language_level=3)
        from benchmarks._record import CyTrack
    except Exception as exc:   # (no compiler, no Cython)
        out["cython"] = f"not built: {exc}"
    else:
        import msgpack
        c = CyTrack(*ARGS)
        cdata = msgpack.packb(c.as_list())
        out["cython"] = {
            "construct": _best(lambda: CyTrack(*ARGS)),
            "read": _best(lambda: _read(c)),
            "encode_msgpack_list": _best(lambda: msgpack.packb(c.as_list())),
            "decode_msgpack_list": _best(lambda: CyTrack(*msgpack.unpackb(cdata))),
            "bytes": len(cdata),
        }
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
