"""qstack: a layered quantum network stack, from photons in fibre to applications.

Run the same protocol and application code in a deterministic discrete-event
simulator or as one process per node on localhost::

    import qstack

    async def alice(ctx):
        async with await ctx.connect("bob", 7) as sock:
            q = ctx.qubit()
            q.h()
            await sock.send_qubit(q)

    async def bob(ctx):
        sock = await ctx.listen(7).accept()
        return await (await sock.recv_qubit()).measure("X")

    net = qstack.load_network("network.toml")     # or a dict, see qstack.config
    result = qstack.simulate(net, {"alice": alice, "bob": bob}, seed=1)
    print(result.results["bob"], result.table())

The same functions run against an emulated network (``qstack net up
network.toml``: one process per node) with ``qstack run bob app.py``, or from
a trio program::

    async with qstack.connect("bob") as ctx:
        print(await bob(ctx))
"""
from qstack._version import __version__
from qstack import _compiled

# before any protocol module is imported: QSTACK_PURE_PYTHON=1 (or a .py edited
# after its build) runs a compiled module's own source (qstack/_compiled.py)
_compiled.install()


def _warn_if_pure_python() -> None:
    """One warning when the Cython kernels are not built (an install without
    a C compiler falls back to the pure-Python twins: same results, slower)."""
    import os
    from importlib.machinery import EXTENSION_SUFFIXES
    from pathlib import Path

    # looked for on disk, not imported: `import qstack` stays light
    sim = Path(__file__).parent / "sim"
    built = any((sim / f"_kernel{suffix}").exists() for suffix in EXTENSION_SUFFIXES)
    if not built and os.environ.get("QSTACK_REQUIRE_CYTHON") != "1":
        import warnings

        warnings.warn("qstack: the Cython kernels are not built (no C compiler at install?); "
                      "running on the pure-Python twins (same results, slower)",
                      RuntimeWarning, stacklevel=2)


_warn_if_pure_python()

#: Public names, imported on first use so that ``import qstack`` stays light.
_EXPORTS = {
    "simulate": "qstack.api",
    "build_network": "qstack.api",
    "SimulationResult": "qstack.api",
    "load_network": "qstack.config",
    "network_from_dict": "qstack.config",
    "NetworkSpec": "qstack.config",
    "QSocket": "qstack.transport.socket",
    "Qubit": "qstack.transport.socket",
    "NodeContext": "qstack.transport.socket",
    "TransportError": "qstack.transport.socket",
    "TransportTimeout": "qstack.transport.socket",
    "QStackError": "qstack.core.errors",
    "ErrorCode": "qstack.core.errors",
    "ConfigError": "qstack.core.errors",
    "connect": "qstack.emu.client",
    "run_app": "qstack.emu.client",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'qstack' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
