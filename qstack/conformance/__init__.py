"""Black-box conformance tests of a node daemon against ``specs/``
(``qstack conformance``; ``specs/conformance.md``).

The tester speaks to a running daemon only through its sockets, the way
h2spec tests an HTTP/2 server: it opens sessions by hand (a bad version, a
wrong secret, malformed frames, silence), plays the network's absent nodes
(``qstack net up --absent``) to send the daemon link, network and transport
messages and read its answers, and reads the failures the daemon recorded.
"""
from qstack.conformance.cases import CASES, Case
from qstack.conformance.runner import Result, run, select, write_junit

__all__ = ["CASES", "Case", "Result", "run", "select", "write_junit"]
