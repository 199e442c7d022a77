"""The run file of an emulated network: where everything listens, and its secret.

``qstack net up NETWORK.toml`` writes it (JSON, mode 0600: it holds the
network's secret) and every process of the network reads it: the network
file, the seed and formalism, the clock (``epoch_ns``: the
``time.monotonic_ns()`` reading that is model time 0; ``time_scale``), the
physics server's port and each node daemon's port (also of the nodes
started ``absent``, that another program plays), the process ids, and the
fresh random secret that every connection proves it knows
(``specs/wire.md``, the session). Its default place is
``$XDG_RUNTIME_DIR/qstack/run.json`` (else ``~/.qstack/run.json``);
``--run FILE`` or ``QSTACK_RUN`` name another.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunFile", "default_path", "channel_api"]


def default_path() -> Path:
    """Where ``qstack net`` keeps the run file unless told (``QSTACK_RUN``)."""
    env = os.environ.get("QSTACK_RUN")
    if env:
        return Path(env)
    base = os.environ.get("XDG_RUNTIME_DIR")
    root = Path(base) / "qstack" if base else Path.home() / ".qstack"
    return root / "run.json"


@dataclass
class RunFile:
    """One emulated network's run file (see the module doc)."""

    network: str
    secret: str                         # hex
    epoch_ns: int
    time_scale: float = 1.0
    seed: int = 1
    formalism: str | None = None
    host: str = "127.0.0.1"
    physics_port: int = 0
    nodes: dict[str, int] = field(default_factory=dict)      # node -> daemon port
    pids: dict[str, int] = field(default_factory=dict)       # "physics" / node -> pid
    absent: list[str] = field(default_factory=list)          # nodes not started (ports kept)
    logs: str = ""                      # directory of the processes' logs
    keepalive_s: float = 0.5
    dead_after_s: float = 2.0
    #: model time (ns) when every daemon was ready: the time 0 of the network
    #: file's [faults] schedule (0 until then)
    ready_ns: int = 0
    #: the key management service ([kms]): {"ports": {node: port}, "certs": directory}
    kms: dict = field(default_factory=dict)
    path: str = ""

    def save(self, path: str | Path | None = None) -> Path:
        target = Path(path or self.path or default_path())
        target.parent.mkdir(parents=True, exist_ok=True)
        self.path = str(target)
        tmp = target.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(self), fh, indent=1)
        os.replace(tmp, target)
        return target

    @classmethod
    def load(cls, path: str | Path | None = None) -> "RunFile":
        """Read a run file (``FileNotFoundError`` when no network is up there)."""
        source = Path(path or default_path())
        data: dict[str, Any] = json.loads(source.read_text())
        known = {f for f in cls.__dataclass_fields__}
        run = cls(**{k: v for k, v in data.items() if k in known})
        run.path = str(source)
        return run

    def now_ns(self) -> int:
        """The network's model time now (ns)."""
        from qstack.emu.clock import model_now_ns

        return model_now_ns(self.epoch_ns, self.time_scale)

    @property
    def secret_bytes(self) -> bytes:
        return bytes.fromhex(self.secret)


def channel_api() -> tuple:
    """``(open_channel, accept_channel, ChannelClosed)`` of the emulation's
    authenticated channel (:mod:`qstack.emu.channel`)."""
    from qstack.emu.channel import ChannelClosed, accept_channel, open_channel

    return open_channel, accept_channel, ChannelClosed
