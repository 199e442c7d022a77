"""Every message any layer declares: vectors hold both ways, its decoder
survives fuzzing (random and mutated bytes raise only DecodeError), and its
layer's document (specs/physical.md, link.md, network.md, transport.md; the
emulation's in wire.md) lists it with its type code and its fields in wire
order."""
import dataclasses
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qstack.core import DecodeError, decode, encode
from qstack.core.messages import registry
from qstack.core.vectors import check_vector, import_all_messages, load_vectors
from tests.strategies import message_strategy

import_all_messages()
PROTOCOL_MESSAGES = sorted((cls for code, cls in registry().items() if code < 0xFF00),
                           key=lambda c: c.TYPE_CODE)
VECTORS = load_vectors()


@pytest.mark.parametrize("path, vector", VECTORS, ids=[p.stem for p, _ in VECTORS])
def test_vector_both_ways(path, vector):
    check_vector(vector)


def test_every_message_has_a_vector():
    covered = {v["type_code"] for _, v in VECTORS}
    missing = [c.__name__ for c in PROTOCOL_MESSAGES if c.TYPE_CODE not in covered]
    assert not missing, f"messages without a test vector in specs/vectors/: {missing}"


@pytest.mark.parametrize("cls", PROTOCOL_MESSAGES, ids=lambda c: c.__name__)
@settings(max_examples=40)
@given(data=st.data())
def test_fuzz_decoder(cls, data):
    msg = data.draw(message_strategy(cls))
    wire = encode(msg)
    assert decode(wire) == msg
    # mutate: flip bytes, truncate, extend
    mutated = bytearray(wire)
    for _ in range(data.draw(st.integers(1, 4))):
        if mutated:
            i = data.draw(st.integers(0, len(mutated) - 1))
            mutated[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    for candidate in (bytes(mutated), wire[:cut], wire + data.draw(st.binary(max_size=4))):
        try:
            decode(candidate)
        except DecodeError:
            pass


# ---------------------------------------------------------------- the layer documents

SPECS = Path(__file__).resolve().parents[1] / "specs"
#: A message row of a layer document: | 0x0405 | `QubitHeader` | fields | sent |
MESSAGE_ROW = re.compile(r"^\| 0x([0-9A-Fa-f]{4}) \| `(\w+)` \| ([^\n]*?) \| [^\n]*\|$", re.M)
LAYER_DOCS = ("physical.md", "link.md", "network.md", "transport.md", "wire.md",
              "emulation.md", "qkd.md")


def _documented_messages():
    return [(doc, int(code, 16), name, re.findall(r"`(\w+)`", fields))
            for doc in LAYER_DOCS
            for code, name, fields in MESSAGE_ROW.findall((SPECS / doc).read_text())]


def test_layer_documents_list_every_message_with_its_type_code():
    documented = {(code, name) for _, code, name, _ in _documented_messages()}
    declared = {(c.TYPE_CODE, c.__name__) for c in PROTOCOL_MESSAGES}
    assert documented == declared


@pytest.mark.parametrize("doc, code, name, fields", _documented_messages(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_layer_documents_give_the_fields_in_wire_order(doc, code, name, fields):
    cls = registry()[code]
    assert fields == [f.name for f in dataclasses.fields(cls)], f"{doc}: {name}"


def test_station_keys_cross_the_wire_unchanged():
    """The heralding station's wire form keeps a pair key exactly (it only
    compares keys, so a key must come back equal to what the node sent)."""
    from qstack.core.messages import decode, encode
    from qstack.physical.messages import StationEntangle, key_from_wire, key_to_wire

    for key in (("egp", 3, 0), ("ideal", "alice", 2**32 - 1, 7), None, 5, "k"):
        m = StationEntangle(1, "a", "b", key_to_wire(key), 1 << 62, 0.0, 0)
        assert key_from_wire(decode(encode(m)).key) == key
