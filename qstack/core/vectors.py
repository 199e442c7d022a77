"""Test vectors: a message and its wire bytes, kept in ``specs/vectors/``.

Each vector file is JSON: ``{"name", "type", "type_code", "fields", "hex"}``.
The tests check both directions (fields encode to ``hex``, ``hex`` decodes to
fields), so a change in the wire format is caught and must be made in the spec
on purpose. ``python -m qstack.core.vectors write`` writes vectors for the
examples each protocol module lists in ``VECTOR_EXAMPLES``.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path

from qstack.core.messages import Message, as_dict, decode, encode, from_dict, registry

SPEC_DIR = Path(__file__).resolve().parents[2] / "specs" / "vectors"


def import_all_messages() -> None:
    """Import every ``qstack.*.messages`` module so all message classes register."""
    import qstack

    for info in pkgutil.walk_packages(qstack.__path__, "qstack."):
        if info.name.rsplit(".", 1)[-1] in ("messages", "wire"):
            importlib.import_module(info.name)


def vector_of(name: str, msg: Message) -> dict:
    """The JSON-ready vector for ``msg``."""
    return {
        "name": name,
        "type": type(msg).__name__,
        "type_code": type(msg).TYPE_CODE,
        "version": type(msg).VERSION,
        "fields": _jsonable(as_dict(msg)),
        "hex": encode(msg).hex(),
    }


def _jsonable(value):
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def load_vectors(spec_dir: Path = SPEC_DIR) -> list[tuple[Path, dict]]:
    """All message vectors under ``spec_dir`` as (path, vector) pairs (a file
    without a ``type_code`` is another kind of vector, such as the
    emulation's worked handshake, and is checked by its own test)."""
    found = [(p, json.loads(p.read_text())) for p in sorted(spec_dir.rglob("*.json"))]
    return [(p, v) for p, v in found if "type_code" in v]


def check_vector(vector: dict) -> None:
    """Assert a vector holds both ways; raises AssertionError naming the difference."""
    cls = registry()[vector["type_code"]]
    assert cls.__name__ == vector["type"], f"type code {vector['type_code']} is {cls.__name__}"
    msg = from_dict(cls, vector["fields"])
    assert encode(msg).hex() == vector["hex"], f"{vector['name']}: encoding differs"
    assert decode(bytes.fromhex(vector["hex"])) == msg, f"{vector['name']}: decoding differs"


def write_vectors(spec_dir: Path = SPEC_DIR) -> list[Path]:
    """Write the examples of every protocol module (``VECTOR_EXAMPLES``)."""
    import_all_messages()
    written = []
    for modname, module in sorted(sys.modules.items()):
        examples = getattr(module, "VECTOR_EXAMPLES", None)
        if not modname.startswith("qstack.") or examples is None:
            continue
        layer = modname.split(".")[1]
        for name, msg in examples.items():
            path = spec_dir / layer / f"{name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(vector_of(name, msg), indent=2) + "\n")
            written.append(path)
    return written


if __name__ == "__main__":
    if sys.argv[1:] == ["write"]:
        for p in write_vectors():
            print(p)
    else:
        print("usage: python -m qstack.core.vectors write")
