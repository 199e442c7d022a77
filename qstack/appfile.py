"""Application files: a Python file whose module-level ``APPS`` maps node
names to the ``async def`` functions each node runs (``qstack sim --app``,
``qstack run --app``, an experiment's ``app`` tasks).

Loading one checks it as a network file is checked: any failure raises
:class:`~qstack.core.errors.ConfigError` with one line that names the file
and, where there is one, the line, so a run never starts on a bad file. It
lives below the command line and the experiments, which both load such
files (the experiments' worker processes load them without the CLI).
"""
from __future__ import annotations

import os

from qstack.core.errors import ConfigError

__all__ = ["load_apps", "one_line", "app_line"]


def load_apps(path: str, nodes: object = None) -> dict:
    """The ``APPS`` dict of the Python file ``path`` ({node: async fn(ctx)}).

    Any failure to get it (no file, a syntax error, an exception at import,
    no APPS, or APPS naming a node not in ``nodes`` or holding something
    other than async functions) raises :class:`ConfigError` with a one-line
    message that names the file and, where there is one, the line."""
    import inspect     # (imported when a file is loaded: the CLI starts without them)
    import runpy

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
        raise ConfigError(f"{app_line(path, exc)}: {type(exc).__name__} while importing: "
                          f"{one_line(exc)}") from None
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


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line (each run of white space one blank),
    cut to 300 characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def app_line(path: str, exc: BaseException) -> str:
    """``path:line`` of the deepest frame of ``exc`` in the file ``path``."""
    line = None
    tb = exc.__traceback__
    target = os.path.abspath(path)
    while tb is not None:
        if os.path.abspath(tb.tb_frame.f_code.co_filename) == target:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f"{path}:{line}" if line else path
