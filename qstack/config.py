"""Network descriptions in TOML: nodes, links, defaults.

The smallest file that works::

    nodes = ["alice", "bob"]
    links = [["alice", "bob"]]

A fuller one (every key optional; units are in the key names)::

    formalism = "bd"                 # "bd" (fast, Bell-diagonal) or "dm": the same physics

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

Node keys (:class:`qstack.physical.device.NodeHardware`):

* ``memory`` or ``num_qubits``: memory slots, an integer >= 1;
* ``t1_s`` / ``t2_s`` (seconds) or ``t1_ns`` / ``t2_ns`` (nanoseconds):
  relaxation and dephasing times, a number > 0 or ``"inf"`` (no decay), at
  most the simulator's clock (:data:`MAX_TIME_NS`); T2 <= 2 T1;
* ``gate_1q_ns``, ``gate_2q_ns``, ``measure_ns``, ``init_ns``: integer
  durations in ns >= 0;
* ``gate_1q_depolar``, ``gate_2q_depolar``, ``measure_flip_prob``:
  probabilities in [0, 1];
* ``attempt_dephasing_prob``: Z-error probability per entangling attempt of
  the node for every other qubit stored there, in [0, 0.5] (default 0: off);
* ``communication_qubits``: entanglement generation processes the node runs
  at once on each of its links, an integer in 1..65535 (default 1).

and one key of the node's software (:class:`NodeSpec`): ``transport_window``,
the receive window of its transport connections, an integer in 1..65535
items (default 4; ``specs/transport.md`` §4).

Link keys: ``nodes`` (two names), ``scheme``, ``length_km`` (>= 0),
``loss_db_per_km`` (>= 0), ``detector_efficiency`` and ``dark_count_prob``
(probabilities; schemes with a midpoint detector), ``classical_delay_ns``
(integer ns >= 0; default: the fibre's light delay), ``max_parallel`` (an
integer >= 1: at most this many generation processes on the link, whatever
its ends' ``communication_qubits``), and the scheme's own
parameters (the scalar fields of the model classes in
:mod:`qstack.link.schemes`, e.g. ``emission_efficiency``, ``visibility``,
``attempt_ns``, ``twirl``, ``pair_fidelity``, ``bell_index``), whose types are
those fields' annotations. Noise terms, all off unless set (single- and
double-click links; ``specs/link.md``): ``detection_window_ns``,
``window_offset_ns``, ``photon_lifetime_ns``, ``dark_count_rate_hz``,
``conversion_efficiency``, ``conversion_noise_photons``, ``raman_filter_nm``,
``raman_counter_propagating``, ``wavelength_nm``, ``double_excitation_prob``
and ``frequency_offset_hz`` (single click), ``multi_photon_prob`` (double
click); the detector's ``detector_jitter_ps``, ``detector_dead_time_ns``,
``detector_afterpulse_prob`` (counted with a detection window); the fibre's
``classical_power_mw`` and ``raman_coefficient_per_km_nm`` (Raman noise,
both together, with a window).

QKD keys (every link; :class:`qstack.physical.qkdlink.QkdLinkModel`, what a
``PulseBlock`` of decoy-state BB84 draws from over the link's fibre):
``qkd_intensities`` (mean photon numbers per class, e.g. ``[0.6, 0.2,
0.0002]``), ``qkd_class_probs``, ``qkd_pulse_rate_hz``,
``qkd_detector_efficiency``, ``qkd_dark_count_prob`` (per gate),
``qkd_dead_time_ns``, ``qkd_misalignment``, ``qkd_p_z``; and an attack on the
fibre, ``eavesdropper`` = ``"none"``, ``"intercept-resend"`` (with
``eve_fraction``), ``"pns"`` or ``"beam-splitting"`` (with ``eve_tap``).

Formalism and ``twirl``: both formalisms hold every scheme's heralded pairs
exactly, the single-click one in ``bd`` too (Bell-diagonal coefficients plus
the local polarisation its |00>/|11> imbalance gives), so every Bell fidelity
a run reports is the same in ``bd`` and ``dm`` (within 1e-9). ``twirl = true``
on a single-click link (default false, never set for you) replaces its
heralded state by the state's Bell twirl: an approximation asked for by name,
which keeps the Bell fidelities at the herald and under Pauli noise but not
under T1 decay (it drops the polarisation that relaxation turns into
fidelity), nor the statistics of swaps.

Rules, all checked at load so that a run never fails on its file:

* types are strict: a boolean is not a number, a float is not an integer
  (``attempt_ns = 0.5`` and ``memory = 2.0`` are refused), a string is not a
  boolean (``twirl = "yes"`` is refused); NaN is refused everywhere, and so
  are infinities except for ``t1_*`` / ``t2_*``;
* a key and its alias in one table (``memory`` with ``num_qubits``,
  ``t2_s`` with ``t2_ns``) is an error; a node's key overrides
  ``[defaults.node]`` whichever alias either uses;
* times fit the simulator's clock, int64 nanoseconds (:data:`MAX_TIME_NS`,
  about 292 years): every duration, a link's light delay (from
  ``length_km``), and one link attempt with its herald;
* a link's figures (success probability, fidelity, heralded state, timing)
  are computed once at load: a parameter that makes them overflow or NaN is
  refused, named;
* node names: 1 to :func:`wire_limits` ``[0]`` (64) printable characters, no
  spaces, as the wire carries them and a shell or log prints them;
* a circuit path (``CircuitSetup.path``, ``specs/network.md``) carries at
  most :func:`wire_limits` ``[1]`` (1024) nodes: a network in which a simple
  path could be longer is refused. The bound is exact for trees and rings
  (a simple path visits every node of each cycle it crosses at most once; per
  biconnected block the bound is the block's size).

A bad file raises :class:`~qstack.core.errors.ConfigError` naming the file,
the line where it can be found, the key as the file wrote it, what was
expected and what was given, e.g.::

    net.toml:7: nodes.alice.t2_s: expected a number of seconds > 0 (at most
    9.223e+09, the simulator's clock) or "inf", got -1
"""
from __future__ import annotations

import bisect
import dataclasses
import functools
import json
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qstack.core.errors import ConfigError
from qstack.physical.device import NodeHardware

__all__ = ["NetworkSpec", "NodeSpec", "LinkSpec", "load_network", "network_from_dict", "SCHEMES",
           "MAX_TIME_NS", "wire_limits"]

#: Scheme names accepted in ``scheme = ...`` and the model class each builds.
SCHEMES = {
    "single-click": "SingleClickModel",
    "double-click": "DoubleClickModel",
    "midpoint-source": "MidpointSourceModel",
    "sender-receiver": "SenderReceiverModel",
}

#: The simulator's clock ends here: time is int64 nanoseconds
#: (``qstack/sim/_kernel.pyx``), about 292 years.
MAX_TIME_NS = (1 << 63) - 1
_CLOCK = f"the simulator's clock limit of {MAX_TIME_NS} ns (int64, about 292 years)"


def _ns(value: float) -> str:
    """A time in ns for a message: exact while readable, else 4 digits."""
    return f"{value}" if value < 1e15 else f"{value:.4g}"


@functools.cache
def wire_limits() -> tuple[int, int]:
    """(longest node name in characters, most nodes in a circuit path), as the
    wire messages declare them (``specs/network.md``, ``specs/link.md``)."""
    from qstack.link.messages import QueueAdd
    from qstack.network.messages import CircuitSetup, KeyRelay

    def max_len(cls: type, name: str) -> int:
        return next(f.metadata["max_len"] for f in dataclasses.fields(cls) if f.name == name)

    return (min(max_len(QueueAdd, "origin"), max_len(CircuitSetup, "head")),
            min(max_len(CircuitSetup, "path"), max_len(KeyRelay, "path")))


@dataclass(frozen=True)
class NodeSpec:
    """A node: its name and hardware; ``transport_window``: the receive
    window of its transport connections (items, ``specs/transport.md`` §4)."""

    name: str
    hardware: NodeHardware = field(default_factory=NodeHardware)
    transport_window: int = 4


@dataclass(frozen=True)
class LinkSpec:
    """A quantum link between ``a`` and ``b`` and the model of its physics.
    ``length_km`` in km; ``classical_delay_ns`` the one-way message delay in
    ns (None: the model's fibre delay)."""

    a: str
    b: str
    scheme: str
    model: Any
    length_km: float
    classical_delay_ns: int | None = None
    #: the link's decoy-BB84 pulse physics (:class:`qstack.physical.qkdlink.QkdLinkModel`)
    qkd: Any = None
    #: at most this many generation processes at once on the link (None: as its ends allow)
    max_parallel: int | None = None


@dataclass(frozen=True)
class KmsSpec:
    """``[kms]``: ``qstack net up`` starts a key management service
    (``specs/kms.md``): an ETSI GS QKD 014 REST server per node on
    ``port + i`` (the i-th node; ``port = 0``: free ports), fed with BBM92 keys
    from the node pairs of ``links``. ``saes``: SAE id -> its node.
    ``pairs``: EPR pairs per BBM92 run; ``refill_bits``: a KME pair runs
    BBM92 again while either holds fewer bits than this for the other;
    ``key_size`` (bits) the default key size; ``test_fraction``, ``eps_sec``,
    ``eps_cor`` and ``batch`` as in
    :class:`qstack.app.qkd.entangled.EntangledConfig`. ``protocol``:
    where the keys come from, "bbm92" (over the entanglement service) or
    "decoy-bb84" (the link's pulses, ``app.qkd``: each ``links`` pair must
    be a link of the network), with ``pulses`` per block and ``finite``
    (finite-key bounds, else asymptotic; ``eps_sec``/``eps_cor`` apply)."""

    port: int = 0
    saes: tuple[tuple[str, str], ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    pairs: int = 4000
    refill_bits: int = 4096
    key_size: int = 256
    test_fraction: float = 0.5
    eps_sec: float = 1e-6
    eps_cor: float = 1e-15
    batch: int = 65535
    protocol: str = "bbm92"
    pulses: int = 10_000_000
    finite: bool = True


@dataclass(frozen=True)
class NetworkSpec:
    """A whole network, as :func:`load_network` returns it and
    :func:`qstack.simulate` takes it. ``formalism``: "bd" or "dm"."""

    nodes: dict[str, NodeSpec]
    links: tuple[LinkSpec, ...]
    formalism: str = "bd"
    source: str = ""
    #: scheduled faults (``[faults]``: :class:`qstack.core.faults.Fault`)
    faults: tuple = ()
    #: extra classical delay per message, up to this many ns (order kept per pair)
    jitter_ns: int = 0
    #: the key management service of the emulation (``[kms]``: :class:`KmsSpec`), or None
    kms: "KmsSpec | None" = None

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
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text: byte 0x{data[exc.start]:02x} at "
                          f"byte offset {exc.start} ({exc.reason})") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return network_from_dict(table, source=str(path), text=text)


# ============================================================== messages

def _show(value: Any) -> str:
    """``value`` as a TOML file would write it (true, "yes", [1, 2])."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "a table"
    text = repr(value)
    if isinstance(value, int) and len(text) > 24:
        return f"{text[:6]}... (an integer of {len(text.lstrip('-'))} digits)"
    return text


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def _dotted(path: tuple) -> str:
    """A key path as the file writes it: nodes.alice.t2_s, links[0].length_km."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if isinstance(part, str) and _BARE_KEY.match(part) else _show(part)
        out += f".{text}" if out else text
    return out


class _Context:
    """Where errors point: the source name and, from the text, key lines."""

    def __init__(self, source: str, text: str | None) -> None:
        self.source = source
        self.text = text
        self._lines: dict[tuple, int] | None = None

    def line(self, path: tuple) -> int | None:
        if self.text is None:
            return None
        if self._lines is None:      # located only once an error needs it
            self._lines = _locate(self.text)
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return None

    def error(self, path: tuple, message: str) -> ConfigError:
        where = _dotted(path)
        line = self.line(path) if path else None
        head = f"{self.source}:{line}" if self.source and line else self.source
        parts = [p for p in (head, where) if p]
        return ConfigError(": ".join(parts + [message]))

    def bad(self, path: tuple, expected: str, value: Any) -> ConfigError:
        return self.error(path, f"expected {expected}, got {_show(value)}")


# ============================================================== value kinds

class _Kind:
    """What one key takes: ``check`` returns the value to use or raises
    ``ValueError`` (the caller adds key and value); ``expected`` says it."""

    expected = ""

    def check(self, value: Any) -> Any:
        raise NotImplementedError


class _Int(_Kind):
    def __init__(self, lo: int, hi: int, expected: str) -> None:
        self.lo, self.hi, self.expected = lo, hi, expected

    def check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            raise ValueError
        return value


def _number(value: Any) -> float:
    """``value`` as a float if it is a number (not a bool, not an integer
    too big for a float), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError
    try:
        return float(value)
    except OverflowError:
        raise ValueError from None


class _Real(_Kind):
    """A finite number (an int is accepted) in [lo, hi]."""

    def __init__(self, lo: float, hi: float, expected: str) -> None:
        self.lo, self.hi, self.expected = lo, hi, expected

    def check(self, value: Any) -> float:
        number = _number(value)
        if not math.isfinite(number) or not self.lo <= number <= self.hi:
            raise ValueError
        return number


class _Lifetime(_Kind):
    """T1 or T2: a number > 0 of ``unit`` (``scale`` ns each) or "inf"; finite
    values fit the clock (a longer one is "inf" to any run)."""

    def __init__(self, unit: str, scale: float) -> None:
        self.scale = scale
        limit = MAX_TIME_NS / scale
        self.expected = (f'a number of {unit} > 0 (at most {limit:.4g}, the simulator\'s '
                         'clock) or "inf"')

    def check(self, value: Any) -> float:
        if isinstance(value, str) and value.strip().lower() in ("inf", "infinity"):
            return math.inf
        number = _number(value)
        if number == math.inf:
            return math.inf
        ns = number * self.scale
        if not 0 < ns <= MAX_TIME_NS:                  # NaN fails too
            raise ValueError
        return ns


class _Choice(_Kind):
    """One of a few names."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.expected = "one of " + ", ".join(json.dumps(n) for n in names)

    def check(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.names:
            raise ValueError
        return value


class _Reals(_Kind):
    """A list of 1 to 8 finite numbers in [lo, hi] (one per intensity class)."""

    def __init__(self, lo: float, hi: float, expected: str) -> None:
        self.item = _Real(lo, hi, "")
        self.expected = expected

    def check(self, value: Any) -> tuple[float, ...]:
        if not isinstance(value, list) or not 1 <= len(value) <= 8:
            raise ValueError
        return tuple(self.item.check(v) for v in value)


class _Bool(_Kind):
    expected = "true or false"

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError
        return value


_COUNT = _Int(1, MAX_TIME_NS, "an integer >= 1 (64-bit)")
_DURATION = _Int(0, MAX_TIME_NS, "an integer number of ns >= 0 (at most 2**63 - 1, the "
                 "simulator's clock)")
_PROB = _Real(0.0, 1.0, "a probability in [0, 1]")
_NONNEG = _Real(0.0, math.inf, "a finite number >= 0")


def _annotation_kind(name: str, hint: Any) -> _Kind | None:
    """The kind of a model field from its annotation (None: not settable)."""
    if hint is bool:
        return _Bool()
    if hint is int:
        if name.endswith("_ns"):
            return _DURATION
        return _Int(-MAX_TIME_NS - 1, MAX_TIME_NS, "an integer (64-bit)")
    if hint is float:
        return _Real(-math.inf, math.inf, "a finite number")
    return None


# ============================================================== nodes

# user key -> (NodeHardware field, kind)
_NODE_KEYS: dict[str, tuple[str, _Kind]] = {
    "memory": ("num_qubits", _COUNT),
    "num_qubits": ("num_qubits", _COUNT),
    "t1_s": ("t1_ns", _Lifetime("seconds", 1e9)),
    "t1_ns": ("t1_ns", _Lifetime("ns", 1.0)),
    "t2_s": ("t2_ns", _Lifetime("seconds", 1e9)),
    "t2_ns": ("t2_ns", _Lifetime("ns", 1.0)),
    "gate_1q_ns": ("gate_1q_ns", _DURATION),
    "gate_2q_ns": ("gate_2q_ns", _DURATION),
    "measure_ns": ("measure_ns", _DURATION),
    "init_ns": ("init_ns", _DURATION),
    "gate_1q_depolar": ("gate_1q_depolar", _PROB),
    "gate_2q_depolar": ("gate_2q_depolar", _PROB),
    "measure_flip_prob": ("measure_flip_prob", _PROB),
    # issue 18: stored qubits dephase with each entangling attempt of the node
    "attempt_dephasing_prob": ("attempt_dephasing_prob",
                               _Real(0.0, 0.5, "a probability in [0, 0.5] per attempt")),
    # issue 22: parallel generation processes per link (multiplexing)
    "communication_qubits": ("communication_qubits",
                             _Int(1, 65535, "an integer in 1..65535 (generation processes "
                                  "per link)")),
    # the receive window of the node's transport connections (items): how
    # many items a sender may have ahead of what the application took
    "transport_window": ("transport_window",
                         _Int(1, 65535, "an integer in 1..65535 (items)")),
}
#: node keys that set the node's software (NodeSpec fields), not its hardware
_NODE_SOFTWARE = ("transport_window",)

_HW_DEFAULT = NodeHardware()

# A value as loaded: the model field's value, the key path, the value written.
_Given = tuple[Any, tuple, Any]


def _node_table(ctx: _Context, table: dict, path: tuple) -> dict[str, _Given]:
    """Check one node table; {NodeHardware field: given}."""
    out: dict[str, _Given] = {}
    written: dict[str, str] = {}
    for key, value in table.items():
        if key not in _NODE_KEYS:
            raise ctx.error(path + (key,), "unknown node key; expected one of "
                            + ", ".join(sorted(_NODE_KEYS)))
        target, kind = _NODE_KEYS[key]
        if target in written:
            raise ctx.error(path + (key,), f"{written[target]} and {key} are the same setting "
                            f"(in {_dotted(path)}); give one of them")
        written[target] = key
        try:
            out[target] = (kind.check(value), path + (key,), value)
        except ValueError:
            raise ctx.bad(path + (key,), kind.expected, value) from None
    return out


def _node_hardware(ctx: _Context, name: str, defaults: dict[str, _Given],
                   own: dict[str, _Given]) -> NodeHardware:
    given = {k: v for k, v in {**defaults, **own}.items() if k not in _NODE_SOFTWARE}
    hw = {k: v[0] for k, v in given.items()}
    t1 = hw.get("t1_ns", _HW_DEFAULT.t1_ns)
    t2 = hw.get("t2_ns", _HW_DEFAULT.t2_ns)
    if t2 > 2 * t1:
        # Blame the key the node itself gives (else the default's): T1 if
        # it gives both or only T1, as T1 is what bounds T2.
        def said(target: str) -> str:
            if target in given:
                return f"{_dotted(given[target][1])} = {_show(given[target][2])}"
            return f"the default {target} = {getattr(_HW_DEFAULT, target):g}"
        why = "T2 <= 2 x T1 in any physical memory"
        if "t1_ns" in own or "t2_ns" not in own and "t1_ns" in given:
            _, path, value = given["t1_ns"]
            raise ctx.error(path, f"expected a T1 of at least T2/2 = {t2 / 2e9:g} s "
                            f"({said('t2_ns')}; {why}), got {_show(value)} (node {_show(name)})")
        _, path, value = given["t2_ns"]
        raise ctx.error(path, f"expected a T2 of at most 2 x T1 = {2 * t1 / 1e9:g} s "
                        f"({said('t1_ns')}; {why}), got {_show(value)} (node {_show(name)})")
    bsm = sum(hw.get(k, getattr(_HW_DEFAULT, k)) for k in ("gate_1q_ns", "gate_2q_ns",
                                                            "measure_ns"))
    if bsm > MAX_TIME_NS:
        raise ctx.error(("nodes", name), f"a Bell measurement (gate_1q_ns + gate_2q_ns + "
                        f"measure_ns) takes {_ns(bsm)} ns, past {_CLOCK}")
    try:
        return NodeHardware(**hw)
    except ValueError as exc:          # a rule of NodeHardware's not mirrored above
        raise ctx.error(("nodes", name), str(exc)) from None


def _check_name(ctx: _Context, name: Any, path: tuple) -> None:
    limit = wire_limits()[0]
    if (not isinstance(name, str) or not 1 <= len(name) <= limit or not name.isprintable()
            or " " in name):
        raise ctx.bad(path, f"a node name of 1 to {limit} printable characters without spaces "
                      "(the wire carries at most that many; a name prints as one word)", name)


# ============================================================== links

# Link keys of a link's decoy-BB84 pulse physics (qstack.physical.qkdlink.QkdLinkModel):
# key -> (kind, where it goes: (sub-object, field)). Every link has a QKD model, with
# the defaults of WeakCoherentSource and ThresholdDetector unless the file says.
_QKD_KEYS: dict[str, tuple[_Kind, tuple[str, str]]] = {
    "qkd_intensities": (_Reals(0.0, 100.0, "a list of 1 to 8 mean photon numbers in "
                                           "[0, 100] (one per intensity class)"),
                        ("source", "mean_photon_numbers")),
    "qkd_class_probs": (_Reals(0.0, 1.0, "a list of 1 to 8 probabilities summing to 1"),
                        ("source", "class_probs")),
    "qkd_pulse_rate_hz": (_Real(1e-3, 1e12, "a pulse rate in Hz in [0.001, 1e12]"),
                          ("source", "pulse_rate_hz")),
    "qkd_detector_efficiency": (_Real(0.0, 1.0, "a probability in [0, 1]"),
                                ("detector", "efficiency")),
    "qkd_dark_count_prob": (_Real(0.0, 1.0, "a probability in [0, 1]"),
                            ("detector", "dark_count_prob_per_gate")),
    "qkd_dead_time_ns": (_Real(0.0, 1e12, "a dead time in ns in [0, 1e12]"),
                         ("detector", "dead_time_ns")),
    "qkd_misalignment": (_Real(0.0, 1.0, "a probability in [0, 1]"),
                         (None, "misalignment_error")),
    "qkd_p_z": (_Real(0.0, 1.0, "a probability in [0, 1]"), (None, "p_z")),
    "eavesdropper": (_Choice(("none", "intercept-resend", "pns", "beam-splitting")),
                     ("eve", "kind")),
    "eve_fraction": (_Real(0.0, 1.0, "a probability in [0, 1]"), ("eve", "fraction")),
    "eve_tap": (_Real(0.0, 1.0, "a probability in [0, 1]"), ("eve", "tap")),
}


def _qkd_model(ctx: "_Context", given: dict, link_path: tuple) -> Any:
    """The link's :class:`~qstack.physical.qkdlink.QkdLinkModel` from its qkd_* and eve_* keys."""
    from qstack.physical.qkdlink import Eavesdropper, QkdLinkModel

    parts: dict[str | None, dict] = {"source": {}, "detector": {}, "eve": {}, None: {}}
    for key, (kind, (sub, target)) in _QKD_KEYS.items():
        if key in given:
            parts[sub][target] = given[key][0]
    src = parts["source"]
    if "mean_photon_numbers" in src and "class_probs" not in src:
        k = len(src["mean_photon_numbers"])
        if k != 3:
            raise ctx.error(given["qkd_intensities"][1], f"{k} intensities need qkd_class_probs "
                            "too (the default probabilities are for 3 classes)")
    base = QkdLinkModel()
    try:
        return QkdLinkModel(dataclasses.replace(base.source, **src),
                            dataclasses.replace(base.detector, **parts["detector"]),
                            eve=Eavesdropper(**parts["eve"]), **parts[None])
    except ValueError as exc:
        m = _MODEL_ERROR.match(str(exc))
        if m:
            for key, (_, (_, target)) in _QKD_KEYS.items():
                if key in given and (target == m.group(1) or m.group(1).startswith(target)):
                    raise ctx.bad(given[key][1], m.group(2), given[key][2]) from None
        raise ctx.error(link_path, str(exc)) from None


# Link keys of the loader's own (the rest are the scheme model's fields).
_LINK_OWN: dict[str, _Kind] = {
    "length_km": _Real(0.0, math.inf, "a length in km >= 0"),
    "loss_db_per_km": _Real(0.0, math.inf, "an attenuation in dB/km >= 0"),
    "detector_efficiency": _PROB,
    "dark_count_prob": _PROB,
    "classical_delay_ns": _DURATION,
    # issue 22: a cap on the link's parallel generation processes
    "max_parallel": _Int(1, 65535, "an integer in 1..65535 (generation processes)"),
    # issue 18: detector timing and Raman noise from classical light in the fibre
    "detector_jitter_ps": _Real(0.0, math.inf, "a jitter FWHM in ps >= 0"),
    "detector_dead_time_ns": _Real(0.0, math.inf, "a dead time in ns >= 0"),
    "detector_afterpulse_prob": _PROB,
    "classical_power_mw": _Real(0.0, math.inf, "a classical launch power in mW >= 0"),
    "raman_coefficient_per_km_nm": _Real(0.0, math.inf, "a Raman coefficient per km per nm "
                                         ">= 0"),
    # issue 20: the link's prepare-and-measure QKD physics (PulseBlock) and an eavesdropper
    **{key: kind for key, (kind, _) in _QKD_KEYS.items()},
}
# where the loader's keys go: (sub-object, its field)
_OWN_TARGET = {"length_km": (None, "length_km"),
               "loss_db_per_km": ("fibre", "attenuation_db_per_km"),
               "detector_efficiency": ("detector", "efficiency"),
               "dark_count_prob": ("detector", "dark_count_prob_per_gate"),
               "detector_jitter_ps": ("detector", "jitter_ps"),
               "detector_dead_time_ns": ("detector", "dead_time_ns"),
               "detector_afterpulse_prob": ("detector", "afterpulse_prob"),
               "classical_power_mw": ("fibre", "classical_power_mw"),
               "raman_coefficient_per_km_nm": ("fibre", "raman_coefficient_per_km_nm")}
# keys only the schemes with midpoint detectors count (the others would ignore them)
_DETECTOR_SCHEMES = {"single-click", "double-click"}
_NOISE_KEYS = {"classical_power_mw", "raman_coefficient_per_km_nm"}


@functools.cache
def _scheme_params(scheme: str) -> tuple[type, dict[str, _Kind]]:
    """The model class of ``scheme`` and its file-settable fields with their kinds."""
    from qstack.link import schemes

    cls = getattr(schemes, SCHEMES[scheme])
    hints = typing.get_type_hints(cls)
    params = {}
    for f in dataclasses.fields(cls):
        kind = _annotation_kind(f.name, hints.get(f.name))
        if f.init and f.name not in _LINK_OWN and kind is not None:
            params[f.name] = kind
    return cls, params


def _build_model(cls: type, given: dict[str, _Given]) -> Any:
    """The model from checked values (raises what the model raises)."""
    from qstack.physical.detectors import ThresholdDetector
    from qstack.physical.fibre import FibreChannel

    length = given["length_km"][0] if "length_km" in given else 10.0
    kwargs: dict[str, Any] = {"length_km": length}
    fibre = {"length_km": length}
    detector = {}
    for key, (value, _, _) in given.items():
        if key in _OWN_TARGET:
            sub, target = _OWN_TARGET[key]
            if sub == "fibre":
                fibre[target] = value
            elif sub == "detector":
                detector[target] = value
        elif key not in _LINK_OWN:
            kwargs[key] = value
    kwargs["fibre"] = FibreChannel(**fibre)
    if detector:
        kwargs["detector"] = ThresholdDetector(**detector)
    # no twirl unless the file names it: every scheme's heralded state is held
    # exactly in both formalisms (the single-click one in bd too)
    return cls(**kwargs)


def _exercise(model: Any) -> str | None:
    """Compute what a run will ask of ``model``; what goes wrong, or None."""
    try:
        return _EXERCISED[model]
    except KeyError:
        pass
    except TypeError:                    # a model with an unhashable field: no cache
        return _exercise_once(model)
    if len(_EXERCISED) >= 4096:          # bounded: many distinct links are rare
        _EXERCISED.clear()
    problem = _EXERCISED[model] = _exercise_once(model)
    return problem


# {model: problem or None}; the models are frozen dataclasses, equal when
# their parameters are, so a chain of identical links is computed once
_EXERCISED: dict[Any, str | None] = {}


def _exercise_once(model: Any) -> str | None:
    # what the simulator and the link layer ask of a model (qstack/sim/network.py,
    # qstack/link/egp.py), at the ends of its parameter range
    try:
        delay = model.classical_delay_ns
        if delay > MAX_TIME_NS:
            return f"a light delay of {_ns(delay)} ns over its fibre, past {_CLOCK}"
        lo, hi = model.param_range()
        herald = max(model.herald_delay_ns(0), model.herald_delay_ns(1))
        for param in (lo, hi):
            p = model.success_probability(param)
            if not 0.0 <= p <= 1.0:
                return f"a success probability of {p!r}"
            f = model.fidelity(param)
            if not math.isfinite(f):
                return f"a fidelity of {f!r}"
            # one Bell index: the others differ by a fixed local unitary
            rho = model.heralded_state(param, 0)
            if not all(math.isfinite(abs(x)) for x in rho.flat):
                return "a heralded state that is not finite"
            cycle = model.cycle_ns(param)
            if cycle + herald > MAX_TIME_NS:
                return (f"an attempt cycle of {_ns(cycle)} ns and a herald delay of "
                        f"{_ns(herald)} ns, together past {_CLOCK}")
    except (ArithmeticError, ValueError) as exc:
        return f"figures that cannot be computed ({type(exc).__name__}: {exc})"
    return None


_MODEL_ERROR = re.compile(r"(?:[A-Za-z_]\w*\.)?(\w+): expected (.*), got (.*)\Z", re.S)


def _link(ctx: _Context, index: int, a: str, b: str, given: dict[str, _Given],
          scheme: str) -> LinkSpec:
    """Check a link's values against its scheme and build it."""
    cls, params = _scheme_params(scheme)
    fields = {f.name for f in dataclasses.fields(cls)}
    for key, (value, path, _) in list(given.items()):
        if key in _LINK_OWN:
            sub = _OWN_TARGET.get(key, (None,))[0]
            if sub is not None and sub not in fields:
                raise ctx.error(path, f"scheme {_show(scheme)} (links[{index}], {a}-{b}) has no "
                                f"{sub}: this key does not apply to it")
            if key in _NOISE_KEYS and scheme not in _DETECTOR_SCHEMES:
                raise ctx.error(path, f"scheme {_show(scheme)} (links[{index}], {a}-{b}) has no "
                                "midpoint detectors to count Raman noise at: this key applies "
                                "to " + " and ".join(sorted(_DETECTOR_SCHEMES)))
            continue
        if key not in params:
            allowed = sorted(set(_LINK_OWN) | set(params) | {"nodes", "scheme"})
            raise ctx.error(path, f"not a key of scheme {_show(scheme)} (links[{index}], "
                            f"{a}-{b}); expected one of {', '.join(allowed)}")
        kind = params[key]
        try:
            given[key] = (kind.check(value), path, value)
        except ValueError:
            raise ctx.bad(path, kind.expected, value) from None
    link_path = ("links", index)
    try:
        model = _build_model(cls, given)
    except ValueError as exc:
        # The model's own range checks ("Owner.field: expected X, got V"):
        # say them with the key the file used.
        m = _MODEL_ERROR.match(str(exc))
        users = {field_: key for key, (sub, field_) in _OWN_TARGET.items()}
        key = m and users.get(m.group(1), m.group(1))
        if key in given:
            raise ctx.bad(given[key][1], m.group(2), given[key][2]) from None
        raise ctx.error(link_path, str(exc)) from None
    problem = _exercise(model)
    if problem is not None:
        raise _blame(ctx, cls, given, link_path, problem)
    delay = given["classical_delay_ns"][0] if "classical_delay_ns" in given else None
    return LinkSpec(a, b, scheme, model, model.length_km, delay,
                    _qkd_model(ctx, given, link_path),
                    given["max_parallel"][0] if "max_parallel" in given else None)


def _blame(ctx: _Context, cls: type, given: dict[str, _Given], link_path: tuple,
           problem: str) -> ConfigError:
    """The error for a model whose figures fail: name the one key without
    which they would not (each in turn back at its default), else them all."""
    for key in given:
        rest = {k: v for k, v in given.items() if k != key}
        try:
            ok = _exercise(_build_model(cls, rest)) is None
        except ValueError:
            ok = False
        if ok:
            return ctx.error(given[key][1], f"{_show(given[key][2])} gives the link {problem}")
    keys = ", ".join(f"{_dotted(p)} = {_show(v)}" for _, p, v in given.values())
    return ctx.error(link_path, f"{keys or 'its defaults'} give the link {problem}")


def _check_link_defaults(ctx: _Context, table: dict) -> None:
    """[defaults.link]: each key known to some scheme, of its type (checked
    here too, so that a file with no links still hears of a bad key)."""
    kinds = dict(_LINK_OWN)
    for scheme in SCHEMES:
        kinds.update(_scheme_params(scheme)[1])
    for key, value in table.items():
        path = ("defaults", "link", key)
        if key == "nodes":
            raise ctx.error(path, "a default link has no ends; give nodes in each link")
        if key == "scheme":
            if not isinstance(value, str) or value not in SCHEMES:
                raise ctx.bad(path, "one of " + ", ".join(SCHEMES), value)
            continue
        if key not in kinds:
            raise ctx.error(path, "not a link key of any scheme; expected one of "
                            + ", ".join(sorted(set(kinds) | {"scheme"})))
        try:
            kinds[key].check(value)
        except ValueError:
            raise ctx.bad(path, kinds[key].expected, value) from None


# ============================================================== paths

def _longest_path_bound(nodes: list[str], links: list[LinkSpec]) -> tuple[int, str, str]:
    """An upper bound on the nodes of a simple path, and two ends of one such
    path: per connected component, the heaviest path of its block-cut tree
    (a block weighs its size, a cut vertex -1 as two blocks share it). Exact
    for trees and rings; only components larger than the path limit are
    looked at (a smaller one cannot exceed it)."""
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(nodes)
    g.add_edges_from((link.a, link.b) for link in links)
    limit = wire_limits()[1]
    best = (1, nodes[0], nodes[0])
    for comp in nx.connected_components(g):
        if len(comp) <= limit:
            continue
        sub = g.subgraph(comp)
        cuts = set(nx.articulation_points(sub))
        tree = nx.Graph()
        for i, block in enumerate(nx.biconnected_components(sub)):
            inner = next((v for v in block if v not in cuts), next(iter(block)))
            tree.add_node(("b", i), weight=len(block), end=inner)
            tree.add_edges_from((("b", i), ("c", v)) for v in block & cuts)
        for v in cuts:
            tree.nodes[("c", v)].update(weight=-1, end=v)
        # heaviest path in a tree with node weights: down[v] = the heaviest
        # path from v down into its subtree (weight, end node)
        root = next(iter(tree.nodes))
        down: dict = {}
        for v in reversed(list(nx.dfs_preorder_nodes(tree, root))):
            w, end = tree.nodes[v]["weight"], tree.nodes[v]["end"]
            kids = sorted((down[c] for c in tree.neighbors(v) if c in down),
                          key=lambda t: t[0], reverse=True)
            top = [k for k in kids[:2] if k[0] > 0]
            down[v] = (w + top[0][0], top[0][1]) if top else (w, end)
            total = w + sum(k[0] for k in top)
            ends = [k[1] for k in top] + [end, end]
            if total > best[0]:
                best = (total, ends[0], ends[1])
    return best


# ============================================================== the file

def network_from_dict(data: dict, source: str = "", text: str | None = None) -> NetworkSpec:
    """Build a :class:`NetworkSpec` from parsed TOML (or an equivalent dict).

    ``source`` names the file in errors; ``text``, the file's text, lets
    them give line numbers."""
    ctx = _Context(source, text)
    if not isinstance(data, dict):
        raise ctx.error((), f"expected a table at the top level, got {_show(data)}")
    allowed_top = {"nodes", "links", "defaults", "formalism", "faults", "kms"}
    for key in data:
        if key not in allowed_top:
            raise ctx.error((key,), "unknown key; expected one of " + ", ".join(sorted(allowed_top)))
    formalism = data.get("formalism", "bd")
    if formalism not in ("bd", "dm"):
        raise ctx.bad(("formalism",), '"bd" or "dm"', formalism)

    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ctx.bad(("defaults",), "tables [defaults.node] and/or [defaults.link]", defaults)
    for key, value in defaults.items():
        if key not in ("node", "link"):
            raise ctx.error(("defaults", key), "unknown key; expected [defaults.node] and/or "
                            "[defaults.link]")
        if not isinstance(value, dict):
            raise ctx.bad(("defaults", key), "a table", value)
    node_defaults = _node_table(ctx, defaults.get("node", {}), ("defaults", "node"))
    link_defaults = defaults.get("link", {})
    _check_link_defaults(ctx, link_defaults)

    raw_nodes = data.get("nodes")
    if raw_nodes is None:
        raise ctx.error(("nodes",), "missing; expected a list of names or a table of node tables")
    if isinstance(raw_nodes, list):
        node_tables = {}
        for i, name in enumerate(raw_nodes):
            _check_name(ctx, name, ("nodes", i))
            if name in node_tables:
                raise ctx.error(("nodes", i), f"node {_show(name)} appears twice")
            node_tables[name] = ({}, ("nodes", i))
    elif isinstance(raw_nodes, dict):
        node_tables = {}
        for name, table in raw_nodes.items():
            _check_name(ctx, name, ("nodes", name))
            if not isinstance(table, dict):
                raise ctx.bad(("nodes", name), "a table", table)
            node_tables[name] = (table, ("nodes", name))
    else:
        raise ctx.bad(("nodes",), "a list of names or a table of node tables", raw_nodes)
    if not node_tables:
        raise ctx.error(("nodes",), "expected at least one node")
    nodes = {}
    for name, (table, path) in node_tables.items():
        own = _node_table(ctx, table, path)
        software = {k: v[0] for k, v in {**node_defaults, **own}.items() if k in _NODE_SOFTWARE}
        nodes[name] = NodeSpec(name, _node_hardware(ctx, name, node_defaults, own), **software)

    raw_links = data.get("links", [])
    if not isinstance(raw_links, list):
        raise ctx.bad(("links",), "a list ([[links]] tables or [a, b] pairs)", raw_links)
    links = []
    seen: set = set()
    for i, entry in enumerate(raw_links):
        path = ("links", i)
        ends_path = path
        if isinstance(entry, dict):
            ends_path = path + ("nodes",)
            ends = entry.get("nodes")
        elif isinstance(entry, list):
            ends, entry = entry, {}
        else:
            raise ctx.bad(path, "a table or a pair [a, b]", entry)
        if not isinstance(ends, list) or len(ends) != 2:
            raise ctx.bad(ends_path, "two node names", ends)
        for j, e in enumerate(ends):
            if not isinstance(e, str) or e not in nodes:
                raise ctx.error(ends_path + (j,), f"unknown node {_show(e)} (nodes: "
                                f"{', '.join(nodes)})")
        a, b = ends
        if a == b:
            raise ctx.error(ends_path, f"a link needs two different nodes, got {_show(a)} twice")
        if frozenset((a, b)) in seen:
            raise ctx.error(ends_path, f"link {a}-{b} is given twice")
        seen.add(frozenset((a, b)))
        given: dict[str, _Given] = {}
        for key, value in [*link_defaults.items(), *entry.items()]:
            if key == "nodes":
                continue
            from_defaults = key not in entry
            kpath = ("defaults", "link", key) if from_defaults else path + (key,)
            given[key] = (value, kpath, value)
        scheme_given = given.pop("scheme", None)
        scheme = "double-click" if scheme_given is None else scheme_given[0]
        scheme_path = path if scheme_given is None else scheme_given[1]
        if not isinstance(scheme, str) or scheme not in SCHEMES:
            raise ctx.bad(scheme_path, "one of " + ", ".join(SCHEMES), scheme)
        for key, (value, kpath, _) in list(given.items()):
            if key in _LINK_OWN:
                kind = _LINK_OWN[key]
                try:
                    given[key] = (kind.check(value), kpath, value)
                except ValueError:
                    raise ctx.bad(kpath, kind.expected, value) from None
        links.append(_link(ctx, i, a, b, given, scheme))

    limit = wire_limits()[1]
    if len(nodes) > limit:
        longest, x, y = _longest_path_bound(list(nodes), links)
        if longest > limit:
            where = (f"between {x} and {y}" if x != y else
                     f"through the {longest} nodes that cycles join around {x}")
            raise ctx.error(("links",), f"a circuit path in this network could have up to "
                            f"{longest} nodes ({where}), more than the {limit} a circuit path "
                            "carries on the wire (CircuitSetup.path, specs/network.md); split "
                            "the network or shorten its chains")
    faults, jitter_ns = _faults(ctx, data.get("faults", {}), nodes, links)
    kms = _kms(ctx, data["kms"], nodes, links) if "kms" in data else None
    return NetworkSpec(nodes, tuple(links), formalism, source, faults, jitter_ns, kms)


def _kms(ctx: _Context, table: Any, nodes: dict, links: Any = ()) -> KmsSpec:
    """The ``[kms]`` table (:class:`KmsSpec`)."""
    if not isinstance(table, dict):
        raise ctx.bad(("kms",), "a table [kms]", table)
    known = {"port": (0, 65535), "pairs": (1, 10 ** 7), "refill_bits": (8, 10 ** 9),
             "key_size": (8, 65536), "batch": (1, 65535), "pulses": (1, 10 ** 12)}
    allowed = sorted([*known, "saes", "links", "test_fraction", "eps_sec", "eps_cor",
                      "protocol", "finite"])
    out: dict[str, Any] = {}
    for key, value in table.items():
        path = ("kms", key)
        if key in known:
            lo, hi = known[key]
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ctx.bad(path, f"an integer in {lo}..{hi}", value)
            if key == "key_size" and value % 8:
                raise ctx.bad(path, "a multiple of 8 bits", value)
            out[key] = value
        elif key in ("test_fraction", "eps_sec", "eps_cor"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0.0 < float(value) < 1.0:
                raise ctx.bad(path, "a number in (0, 1)", value)
            out[key] = float(value)
        elif key == "protocol":
            if value not in ("bbm92", "decoy-bb84"):
                raise ctx.bad(path, "\"bbm92\" or \"decoy-bb84\"", value)
            out[key] = value
        elif key == "finite":
            if not isinstance(value, bool):
                raise ctx.bad(path, "true or false", value)
            out[key] = value
        elif key == "saes":
            if not isinstance(value, dict) or not value:
                raise ctx.bad(path, "a table of SAE id = node name", value)
            for sae, node in value.items():
                if node not in nodes:
                    raise ctx.bad(path + (sae,), "a node of the network", node)
                if not sae or len(sae) > 64 or not sae.isprintable() or " " in sae or "/" in sae:
                    raise ctx.error(path + (sae,), "an SAE id is 1 to 64 printable characters "
                                                   "without spaces or '/'")
            out["saes"] = tuple(sorted(value.items()))
        elif key == "links":
            if not isinstance(value, list) or not value:
                raise ctx.bad(path, "a list of node pairs [[\"a\", \"b\"], ...]", value)
            pairs = []
            for i, item in enumerate(value):
                if (not isinstance(item, list) or len(item) != 2 or item[0] == item[1]
                        or any(n not in nodes for n in item)):
                    raise ctx.bad(path + (i,), "two different nodes of the network", item)
                pairs.append((item[0], item[1]))
            out["links"] = tuple(pairs)
        else:
            raise ctx.error(path, "unknown key; expected one of " + ", ".join(allowed))
    for need in ("saes", "links"):
        if need not in out:
            raise ctx.error(("kms",), f"[kms] needs {need}")
    if out.get("protocol") == "decoy-bb84":
        quantum = {frozenset((link.a, link.b)) for link in links}
        for i, (a, b) in enumerate(out["links"]):
            if frozenset((a, b)) not in quantum:
                raise ctx.error(("kms", "links", i), f"decoy-bb84 runs between neighbours: "
                                f"{a} and {b} share no link")
    return KmsSpec(**out)


def _faults(ctx: _Context, table: Any, nodes: dict, links: list) -> tuple[tuple, int]:
    """The ``[faults]`` table: ``jitter_ns`` and ``[[faults.events]]``
    (:mod:`qstack.core.faults`)."""
    from qstack.core.faults import faults_from_tables

    if not isinstance(table, dict):
        raise ctx.bad(("faults",), "a table ([faults] with jitter_ns and [[faults.events]])",
                      table)
    for key in table:
        if key not in ("jitter_ns", "events"):
            raise ctx.error(("faults", key), "unknown key; expected jitter_ns, events")
    jitter = table.get("jitter_ns", 0)
    try:
        jitter = _DURATION.check(jitter)
    except ValueError:
        raise ctx.bad(("faults", "jitter_ns"), _DURATION.expected, jitter) from None
    events = table.get("events", [])
    if not isinstance(events, list):
        raise ctx.bad(("faults", "events"), "a list of tables ([[faults.events]])", events)
    try:
        faults = faults_from_tables(events, f"{ctx.source + ': ' if ctx.source else ''}"
                                            "faults.events", nodes,
                                    [frozenset((lk.a, lk.b)) for lk in links])
    except ValueError as exc:
        raise ctx.error(("faults", "events"), str(exc)) from None
    return faults, jitter


# ============================================================== key lines

_BARE_RUN = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_RUN = re.compile(r"[^,\]}\s#]+")


class _Locator:
    """Lines of keys and array items in TOML text that ``tomllib`` accepted.

    ``tomllib`` reports no positions for values; this walks the text once,
    recording the line where each key path starts: ("nodes", "alice",
    "t2_s"), ("links", 0, "length_km") for the first [[links]] table or the
    first item of an inline array."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        self.lines: dict[tuple, int] = {}
        self.arrays: dict[tuple, int] = {}

    def line(self) -> int:
        return bisect.bisect_left(self.newlines, self.i) + 1

    def record(self, path: tuple) -> None:
        self.lines.setdefault(path, self.line())

    def skip(self, newlines: bool = True) -> None:
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.i += 1
            elif c == "#":
                while self.i < len(s) and s[self.i] != "\n":
                    self.i += 1
            else:
                break

    def key(self) -> tuple:
        parts = []
        while True:
            self.skip(newlines=False)
            start = self.i
            if self.s[self.i] in "\"'":
                self.string()
                raw = self.s[start:self.i]
                parts.append(next(iter(tomllib.loads(f"{raw} = 0"))))
            else:
                m = _BARE_RUN.match(self.s, self.i)
                self.i = m.end()
                parts.append(m.group())
            self.skip(newlines=False)
            if self.s[self.i] != ".":
                return tuple(parts)
            self.i += 1

    def string(self) -> None:
        s, q = self.s, self.s[self.i]
        if s.startswith(q * 3, self.i):
            end = s.index(q * 3, self.i + 3) if q == "'" else self._basic_end(self.i + 3, q * 3)
            self.i = end + 3
            while self.i < len(s) and s[self.i] == q:    # up to two quotes end the content
                self.i += 1
        elif q == "'":
            self.i = s.index("'", self.i + 1) + 1
        else:
            self.i = self._basic_end(self.i + 1, '"') + 1

    def _basic_end(self, i: int, close: str) -> int:
        s = self.s
        while not s.startswith(close, i):
            i += 2 if s[i] == "\\" else 1
        return i

    def value(self, path: tuple) -> None:
        s = self.s
        c = s[self.i]
        if c == "[":
            self.i += 1
            n = 0
            while True:
                self.skip()
                if s[self.i] == "]":
                    self.i += 1
                    return
                self.record(path + (n,))
                self.value(path + (n,))
                n += 1
                self.skip()
                if s[self.i] == ",":
                    self.i += 1
        elif c == "{":
            self.i += 1
            while True:
                self.skip()
                if s[self.i] == "}":
                    self.i += 1
                    return
                self.pair(path)
                self.skip()
                if s[self.i] == ",":
                    self.i += 1
        elif c in "\"'":
            self.string()
        else:
            m = _SCALAR_RUN.match(s, self.i)
            self.i = m.end()

    def pair(self, table: tuple) -> None:
        key = self.key()                              # a key never spans lines
        for n in range(1, len(key) + 1):
            self.record(table + key[:n])
        path = table + key
        self.skip(newlines=False)
        self.i += 1                                   # "="
        self.skip(newlines=False)
        self.value(path)

    def run(self) -> dict[tuple, int]:
        table: tuple = ()
        s = self.s
        while True:
            self.skip()
            if self.i >= len(s):
                return self.lines
            if s.startswith("[[", self.i):
                self.i += 2
                key = self.key()
                self.i += 2
                index = self.arrays.get(key, -1) + 1
                self.arrays[key] = index
                table = key + (index,)
                self.record(table)
            elif s[self.i] == "[":
                self.i += 1
                table = self.key()
                self.i += 1
                self.record(table)
            else:
                self.pair(table)


def _locate(text: str) -> dict[tuple, int]:
    """{key path: line} for ``text`` (empty if the walk fails: a line number
    is a help, never a reason to lose the error it belongs to)."""
    try:
        return _Locator(text).run()
    except (IndexError, ValueError, AttributeError, tomllib.TOMLDecodeError):
        return {}
