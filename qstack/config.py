"""Network descriptions in TOML: nodes, links, defaults.

The smallest file that works::

    nodes = ["alice", "bob"]
    links = [["alice", "bob"]]

A fuller one (every key optional; units are in the key names)::

    formalism = "bd"                 # "bd" (fast, Bell-diagonal) or "dm"

    [defaults.node]                  # applied to every node, then overridden
    memory = 8                       # memory slots (qubits)
    t2_s = 1.0                       # dephasing time, seconds ("inf": none)

    [defaults.link]
    scheme = "double-click"          # single-click, double-click, midpoint-source, sender-receiver
    length_km = 10

    [nodes.alice]
    gate_2q_depolar = 0.001

    [nodes.repeater]
    [nodes.bob]

    [[links]]
    nodes = ["alice", "repeater"]
    length_km = 25
    loss_db_per_km = 0.2
    detector_efficiency = 0.9

    [[links]]
    nodes = ["repeater", "bob"]

Node keys: ``memory`` (or ``num_qubits``), ``t1_s``/``t2_s`` (or ``t1_ns``/``t2_ns``),
``gate_1q_ns``, ``gate_2q_ns``, ``measure_ns``, ``init_ns``, ``gate_1q_depolar``,
``gate_2q_depolar``, ``measure_flip_prob`` (:class:`qstack.physical.device.NodeHardware`).

Link keys: ``nodes`` (two names), ``scheme``, ``length_km``, ``loss_db_per_km``,
``detector_efficiency``, ``dark_count_prob``, ``classical_delay_ns``, and the
scheme's own parameters (:mod:`qstack.link.schemes`: e.g. ``emission_efficiency``,
``visibility``, ``attempt_ns``, ``pair_fidelity``). A bad file raises
:class:`~qstack.core.errors.ConfigError` naming the field and what was expected.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qstack.core.errors import ConfigError
from qstack.physical.device import NodeHardware

__all__ = ["NetworkSpec", "NodeSpec", "LinkSpec", "load_network", "network_from_dict", "SCHEMES"]

#: Scheme names accepted in ``scheme = ...`` and the model class each builds.
SCHEMES = {
    "single-click": "SingleClickModel",
    "double-click": "DoubleClickModel",
    "midpoint-source": "MidpointSourceModel",
    "sender-receiver": "SenderReceiverModel",
}

_NODE_ALIASES = {"memory": "num_qubits"}
_SECONDS = {"t1_s": "t1_ns", "t2_s": "t2_ns"}
_LINK_OWN = {"nodes", "scheme", "length_km", "loss_db_per_km", "detector_efficiency",
             "dark_count_prob", "classical_delay_ns"}


@dataclass(frozen=True)
class NodeSpec:
    """A node: its name and hardware."""

    name: str
    hardware: NodeHardware = field(default_factory=NodeHardware)


@dataclass(frozen=True)
class LinkSpec:
    """A quantum link between ``a`` and ``b`` and the model of its physics."""

    a: str
    b: str
    scheme: str
    model: Any
    length_km: float
    classical_delay_ns: int | None = None


@dataclass(frozen=True)
class NetworkSpec:
    """A whole network, as :func:`load_network` returns it and
    :func:`qstack.simulate` takes it. ``formalism``: "bd" or "dm"."""

    nodes: dict[str, NodeSpec]
    links: tuple[LinkSpec, ...]
    formalism: str = "bd"
    source: str = ""

    @classmethod
    def chain(cls, names: list[str], **link: Any) -> "NetworkSpec":
        """A chain ``names[0] - names[1] - ...`` with the same link keys on every link."""
        return network_from_dict({"nodes": list(names),
                                  "links": [dict(link, nodes=[a, b])
                                            for a, b in zip(names, names[1:])]})

    def neighbours(self, node: str) -> dict[str, LinkSpec]:
        out = {}
        for link in self.links:
            if link.a == node:
                out[link.b] = link
            elif link.b == node:
                out[link.a] = link
        return out


def load_network(path: str | Path) -> NetworkSpec:
    """Read a TOML network description (see the module doc)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return network_from_dict(data, source=str(path))


def _where(source: str, key: str) -> str:
    return f"{source}: {key}" if source else key


def _number(value: Any, key: str, *, integer: bool = False, allow_inf: bool = False) -> float:
    if isinstance(value, str) and allow_inf and value.strip().lower() in ("inf", "infinity"):
        return math.inf
    what = "an integer" if integer else "a number"
    if allow_inf:
        what += ' or "inf"'
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: expected {what}, got {value!r}")
    if integer and not float(value).is_integer():
        raise ConfigError(f"{key}: expected {what}, got {value!r}")
    return value


def _node_hardware(name: str, table: dict, source: str) -> NodeHardware:
    kwargs: dict[str, Any] = {}
    known = {f.name: f for f in dataclasses.fields(NodeHardware)}
    for key, value in table.items():
        where = _where(source, f"nodes.{name}.{key}")
        target = _NODE_ALIASES.get(key, key)
        if key in _SECONDS:
            kwargs[_SECONDS[key]] = float(_number(value, where, allow_inf=True)) * 1e9
            continue
        if target not in known:
            allowed = sorted(set(known) | set(_NODE_ALIASES) | set(_SECONDS))
            raise ConfigError(f"{where}: unknown node key; expected one of {', '.join(allowed)}")
        ftype = known[target].type
        if ftype in ("int", int):
            v = _number(value, where, integer=True)
            kwargs[target] = int(v)
        else:
            kwargs[target] = float(_number(value, where, allow_inf=target in ("t1_ns", "t2_ns")))
    try:
        return NodeHardware(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{_where(source, f'nodes.{name}')}: {exc}") from None


def _link_model(a: str, b: str, table: dict, formalism: str, source: str) -> LinkSpec:
    from qstack.link import schemes
    from qstack.physical.detectors import ThresholdDetector
    from qstack.physical.fibre import FibreChannel

    where = _where(source, f"links[{a}-{b}]")
    scheme = table.get("scheme", "double-click")
    if scheme not in SCHEMES:
        raise ConfigError(f"{where}.scheme: expected one of {', '.join(SCHEMES)}, got {scheme!r}")
    cls = getattr(schemes, SCHEMES[scheme])
    fields = {f.name: f for f in dataclasses.fields(cls)}
    length = float(_number(table.get("length_km", 10.0), f"{where}.length_km"))
    if length < 0:
        raise ConfigError(f"{where}.length_km: expected a length >= 0 km, got {length}")
    fibre_kw = {"length_km": length}
    if "loss_db_per_km" in table:
        fibre_kw["attenuation_db_per_km"] = float(_number(table["loss_db_per_km"],
                                                          f"{where}.loss_db_per_km"))
    kwargs: dict[str, Any] = {"length_km": length}
    try:
        kwargs["fibre"] = FibreChannel(**fibre_kw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}.loss_db_per_km: {exc}") from None
    det_kw = {}
    if "detector_efficiency" in table:
        det_kw["efficiency"] = float(_number(table["detector_efficiency"],
                                             f"{where}.detector_efficiency"))
    if "dark_count_prob" in table:
        det_kw["dark_count_prob_per_gate"] = float(_number(table["dark_count_prob"],
                                                           f"{where}.dark_count_prob"))
    if det_kw:
        if "detector" not in fields:
            raise ConfigError(f"{where}: scheme {scheme!r} has no detector parameters")
        try:
            kwargs["detector"] = ThresholdDetector(**det_kw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}.detector: {exc}") from None
    for key, value in table.items():
        if key in _LINK_OWN:
            continue
        if key not in fields or key in ("fibre", "detector", "source", "length_km"):
            allowed = sorted(_LINK_OWN | {k for k in fields
                                          if k not in ("fibre", "detector", "source")})
            raise ConfigError(f"{where}.{key}: unknown key for scheme {scheme!r}; expected one "
                              f"of {', '.join(allowed)}")
        kwargs[key] = value
    if scheme == "single-click" and formalism == "bd" and "twirl" not in table:
        # Its heralded state is not Bell-diagonal; the fast formalism needs the twirl.
        kwargs["twirl"] = True
    try:
        model = cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    delay = table.get("classical_delay_ns")
    if delay is not None:
        delay = int(_number(delay, f"{where}.classical_delay_ns", integer=True))
        if delay < 0:
            raise ConfigError(f"{where}.classical_delay_ns: expected >= 0, got {delay}")
    return LinkSpec(a, b, scheme, model, length, delay)


def network_from_dict(data: dict, source: str = "") -> NetworkSpec:
    """Build a :class:`NetworkSpec` from parsed TOML (or an equivalent dict)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source or 'network'}: expected a table at the top level")
    allowed_top = {"nodes", "links", "defaults", "formalism"}
    for key in data:
        if key not in allowed_top:
            raise ConfigError(f"{_where(source, key)}: unknown key; expected one of "
                              f"{', '.join(sorted(allowed_top))}")
    formalism = data.get("formalism", "bd")
    if formalism not in ("bd", "dm"):
        raise ConfigError(f"{_where(source, 'formalism')}: expected \"bd\" or \"dm\", got {formalism!r}")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict) or not set(defaults) <= {"node", "link"}:
        raise ConfigError(f"{_where(source, 'defaults')}: expected tables [defaults.node] "
                          "and/or [defaults.link]")
    node_defaults = defaults.get("node", {})
    link_defaults = defaults.get("link", {})
    for key, value in (("defaults.node", node_defaults), ("defaults.link", link_defaults)):
        if not isinstance(value, dict):
            raise ConfigError(f"{_where(source, key)}: expected a table")

    raw_nodes = data.get("nodes")
    if raw_nodes is None:
        raise ConfigError(f"{_where(source, 'nodes')}: missing; expected a list of names or a "
                          "table of node tables")
    if isinstance(raw_nodes, list):
        if not all(isinstance(n, str) and n for n in raw_nodes):
            raise ConfigError(f"{_where(source, 'nodes')}: expected a list of node names (strings)")
        node_tables = {n: {} for n in raw_nodes}
        if len(node_tables) != len(raw_nodes):
            raise ConfigError(f"{_where(source, 'nodes')}: a node name appears twice")
    elif isinstance(raw_nodes, dict):
        node_tables = {}
        for n, t in raw_nodes.items():
            if not isinstance(t, dict):
                raise ConfigError(f"{_where(source, f'nodes.{n}')}: expected a table, got {t!r}")
            node_tables[n] = t
    else:
        raise ConfigError(f"{_where(source, 'nodes')}: expected a list of names or a table, "
                          f"got {type(raw_nodes).__name__}")
    if not node_tables:
        raise ConfigError(f"{_where(source, 'nodes')}: expected at least one node")
    nodes = {n: NodeSpec(n, _node_hardware(n, {**node_defaults, **t}, source))
             for n, t in node_tables.items()}

    raw_links = data.get("links", [])
    if not isinstance(raw_links, list):
        raise ConfigError(f"{_where(source, 'links')}: expected a list ([[links]] tables or "
                          "[a, b] pairs)")
    links = []
    seen = set()
    for i, entry in enumerate(raw_links):
        where = _where(source, f"links[{i}]")
        if isinstance(entry, list):
            entry = {"nodes": entry}
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table or a pair [a, b], got {entry!r}")
        ends = entry.get("nodes")
        if (not isinstance(ends, list) or len(ends) != 2
                or not all(isinstance(e, str) for e in ends)):
            raise ConfigError(f"{where}.nodes: expected two node names, got {ends!r}")
        a, b = ends
        for e in (a, b):
            if e not in nodes:
                raise ConfigError(f"{where}.nodes: unknown node {e!r} (nodes: "
                                  f"{', '.join(nodes)})")
        if a == b:
            raise ConfigError(f"{where}.nodes: a link needs two different nodes, got {a!r} twice")
        if frozenset((a, b)) in seen:
            raise ConfigError(f"{where}.nodes: link {a}-{b} is given twice")
        seen.add(frozenset((a, b)))
        links.append(_link_model(a, b, {**link_defaults, **entry}, formalism, source))
    return NetworkSpec(nodes, tuple(links), formalism, source)
