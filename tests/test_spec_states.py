"""The state tables in specs/ are the code's (every protocol's TRANSITIONS)."""
import re
from pathlib import Path

import pytest

from qstack.app.qkd.bb84 import TRANSITIONS as QKD_BLOCK
from qstack.emu.wire import TRANSITIONS as SESSION
from qstack.link.egp import TRANSITIONS as LINK
from qstack.network.circuit import TRANSITIONS as CIRCUIT
from qstack.network.purify import TRANSITIONS as PURIFICATION
from qstack.transport.protocol import TRANSITIONS as CONNECTION

SPECS = Path(__file__).resolve().parents[1] / "specs"
HEADING = re.compile(r"^#### Transitions \(`([\w.]+)\.TRANSITIONS`.*?\n\n\| from \| cause \| to \|\n"
                     r"\|---\|---\|---\|\n((?:\|[^\n]*\|\n)+)", re.M | re.S)


@pytest.mark.parametrize("doc, module, table", [
    ("link.md", "qstack.link.egp", LINK),
    ("network.md", "qstack.network.circuit", CIRCUIT),
    ("network.md", "qstack.network.purify", PURIFICATION),
    ("transport.md", "qstack.transport.protocol", CONNECTION),
    ("wire.md", "qstack.emu.wire", SESSION),
    ("qkd.md", "qstack.app.qkd.bb84", QKD_BLOCK),
])
def test_the_documented_transitions_are_the_codes(doc, module, table):
    found = {m.group(1): m.group(2) for m in HEADING.finditer((SPECS / doc).read_text())}
    assert module in found, f"{doc} has no transitions table for {module}"
    rows = [tuple(cell.strip() for cell in line.strip("|").split("|"))
            for line in found[module].strip().splitlines()]
    assert rows == [(a.name, cause, b.name) for a, cause, b in table.rows()]


def test_an_illegal_move_raises_a_defined_error():
    from qstack.core.errors import ErrorCode
    from qstack.core.states import ProtocolStateError
    from qstack.link.egp import Phase

    with pytest.raises(ProtocolStateError) as info:
        LINK.next(Phase.DOWN, "submit")
    assert info.value.code == ErrorCode.UNEXPECTED_EVENT and "DOWN" in str(info.value)
