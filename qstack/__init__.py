"""qstack: a layered quantum network stack, from photons in fibre to applications.

Run the same protocol and application code in a deterministic discrete-event
simulator or as one process per node on localhost.
"""
from qstack._version import __version__

__all__ = ["__version__"]
