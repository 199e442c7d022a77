"""specs/errors.md lists every error code with its number, and codes sit in their layer's block."""
import re
from pathlib import Path

from qstack.core.errors import ErrorCode

SPEC = Path(__file__).resolve().parents[1] / "specs" / "errors.md"
BLOCK_OF_PREFIX = {"LINK_": 200, "NET_": 300, "TRANSPORT_": 400, "APP_": 500, "EMU_": 600}


def test_errors_spec_matches_code():
    rows = re.findall(r"^\| (\d+) \| `([A-Z_]+)` \|", SPEC.read_text(), re.M)
    assert {(int(n), name) for n, name in rows} == {(int(c), c.name) for c in ErrorCode}


def test_codes_sit_in_their_layer_block():
    for c in ErrorCode:
        block = next((b for p, b in BLOCK_OF_PREFIX.items() if c.name.startswith(p)), None)
        if block is not None:
            assert block <= c < block + 100, c
        else:  # core (1-99) or physical (100-199)
            assert 1 <= c < 200, c


def test_layer_documents_list_their_layer_codes():
    # Each layer document's error section names every code of its block, with its number.
    docs = {"link.md": "LINK_", "network.md": "NET_", "transport.md": "TRANSPORT_"}
    for doc, prefix in docs.items():
        lines = (SPEC.parent / doc).read_text().splitlines()
        for c in ErrorCode:
            if c.name.startswith(prefix):
                assert any(f"`{c.name}`" in ln and str(int(c)) in ln for ln in lines), (doc, c)
