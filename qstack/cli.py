"""The ``qstack`` command."""
from __future__ import annotations

import argparse
import sys

from qstack._version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qstack",
        description="qstack: a layered quantum network stack (simulate and emulate "
                    "quantum-internet protocols from photons to applications).",
    )
    parser.add_argument("--version", action="version", version=f"qstack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the demo network and print its metrics")
    demo.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    demo.add_argument("--qubits", type=int, default=None,
                      help="qubits to teleport (default: the demo's own)")

    sim = sub.add_parser(
        "sim", help="simulate applications on a network described in TOML",
        description="Run the applications of APP.py (its module-level APPS = {node: async "
                    "def fn(ctx)}) on the network of NETWORK.toml in simulated time, and "
                    "print their results and the run's metrics.",
        epilog="exit status: 0 every application returned; 1 an application failed (raised "
               "or timed out; each is printed as FAILED); 2 bad input: a bad option, a "
               "network file that does not load, or an application file that cannot be "
               "read, does not import (syntax error, exception at import) or has no valid "
               "APPS; the reason is printed on one line.")
    sim.add_argument("network", help="network description (TOML), see qstack.config")
    sim.add_argument("app", help="Python file defining APPS = {node: async def fn(ctx), ...}")
    sim.add_argument("--seed", type=_seed, default=1, help="random seed, an integer >= 0 "
                     "(default 1)")
    sim.add_argument("--formalism", choices=("bd", "dm"), default=None,
                     help="two-qubit state formalism (default: the file's, else bd)")
    sim.add_argument("--until", type=_seconds, default=None, metavar="SECONDS",
                     help="stop after this much simulated time (seconds; default one "
                          "simulated hour: every run ends)")
    sim.add_argument("--network-layer", choices=("qnp", "ideal"), default="qnp",
                     help="qnp: link + network layers; ideal: Werner pairs on request")
    sim.add_argument("--purify", action="store_true",
                     help="purify links (DEJMPS) where a request needs more fidelity "
                          "than a link gives raw (qnp layer)")
    sim.add_argument("--json", metavar="FILE", default=None,
                     help="also write results and metrics to FILE as JSON")
    return parser


def _seed(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _seconds(text: str) -> float:
    from qstack.config import MAX_TIME_NS

    value = float(text)
    if not (value > 0 and value * 1e9 <= MAX_TIME_NS):     # NaN fails too
        raise ValueError(text)
    return value


_seed.__name__ = "integer >= 0"               # argparse names the type in its message
_seconds.__name__ = "number of seconds > 0"


def load_apps(path: str, nodes: object = None) -> dict:
    """The ``APPS`` dict of the Python file ``path`` ({node: async fn(ctx)}).

    Any failure to get it (no file, a syntax error, an exception at import,
    no APPS, or APPS naming a node not in ``nodes`` or holding something
    other than async functions) raises :class:`ConfigError` with a one-line
    message that names the file and, where there is one, the line."""
    import inspect
    import runpy

    from qstack.core.errors import ConfigError

    try:
        namespace = runpy.run_path(path, run_name="__qstack_app__")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such application file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except SyntaxError as exc:
        raise ConfigError(f"{exc.filename or path}:{exc.lineno}: {type(exc).__name__}: "
                          f"{exc.msg}") from None
    except (Exception, SystemExit) as exc:  # the application's own code raised at import
        raise ConfigError(f"{_app_line(path, exc)}: {type(exc).__name__} while importing: "
                          f"{_one_line(exc)}") from None
    apps = namespace.get("APPS")
    if not isinstance(apps, dict) or not apps:
        raise ConfigError(f"{path}: expected a module-level APPS = {{node: async def fn(ctx)}}, "
                          f"got {'none' if apps is None else type(apps).__name__}")
    for node, fns in apps.items():
        if nodes is not None and node not in nodes:
            raise ConfigError(f"{path}: APPS[{node!r}]: no such node in the network (nodes: "
                              f"{', '.join(map(str, nodes))})")
        for fn in (fns if isinstance(fns, (list, tuple)) else [fns]):
            if not inspect.iscoroutinefunction(fn):
                raise ConfigError(f"{path}: APPS[{node!r}]: expected an async def function "
                                  f"taking the node context, got {fn!r}")
    return apps


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _app_line(path: str, exc: BaseException) -> str:
    """``path:line`` of the deepest frame of ``exc`` in the file ``path``."""
    import os

    line = None
    tb = exc.__traceback__
    target = os.path.abspath(path)
    while tb is not None:
        if os.path.abspath(tb.tb_frame.f_code.co_filename) == target:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f"{path}:{line}" if line else path


def run_sim(args: argparse.Namespace) -> int:
    """``qstack sim``: 0 when every application returned, 1 when one failed,
    2 on bad input (the network or application file), with a one-line reason."""
    import json

    import qstack.api as api
    from qstack.core.errors import QStackError

    try:
        spec = api.load_network(args.network)
        apps = load_apps(args.app, spec.nodes)
        result = api.simulate(spec, apps, seed=args.seed, formalism=args.formalism,
                              until_s=api.DEFAULT_UNTIL_S if args.until is None else args.until,
                              network_layer=args.network_layer,
                              purify=args.purify)
    except QStackError as exc:
        print(f"qstack sim: error {int(exc.code)} {exc.code.name}: {_one_line(exc.detail)}",
              file=sys.stderr)
        return 2
    print(f"network {args.network}: {len(spec.nodes)} nodes, {len(spec.links)} links, "
          f"formalism {args.formalism or spec.formalism}, seed {args.seed}\n")
    for name, value in sorted(result.results.items()):
        text = repr(value)
        print(f"  {name}: {text if len(text) <= 200 else text[:197] + '...'}")
    for name, exc in sorted(result.errors.items()):
        print(f"  {name}: FAILED {type(exc).__name__}: {exc}")
    print()
    print(result.table())
    if args.json:
        payload = {"results": {k: repr(v) for k, v in result.results.items()},
                   "errors": {k: f"{type(e).__name__}: {e}" for k, e in result.errors.items()},
                   "metrics": result.metrics}
        try:
            with open(args.json, "w") as fh:
                json.dump(payload, fh, indent=2, default=str)
        except OSError as exc:
            print(f"qstack sim: cannot write {args.json} ({exc.strerror or exc})",
                  file=sys.stderr)
            return 2
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from qstack.demo import main as demo_main
        extra = [] if args.qubits is None else ["--qubits", str(args.qubits)]
        return demo_main(["--seed", str(args.seed), *extra])
    if args.command == "sim":
        return run_sim(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
