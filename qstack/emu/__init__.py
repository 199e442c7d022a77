"""The multi-process emulation on localhost.

``wire``: frames and the session handshake, sans-I/O (no trio);
``channel``: the trio adaptor (connect, accept, serve, send, receive).
Only this package and ``qstack.sim`` import trio.
"""
