"""``qstack.simulate`` and ``qstack.load_network``: run applications on a described network.

::

    import qstack

    net = qstack.load_network("network.toml")
    result = qstack.simulate(net, {"alice": alice, "bob": bob}, seed=1)
    print(result.results["bob"], result.metrics["qubits_delivered"])

Every node gets the full stack, bottom first: the entanglement generation
protocol (``link.egp``) on its heralded links, the end-to-end circuit protocol
(``network.qnp``) routing on the network's topology, and the teleportation
transport (``transport.qtp``) that the applications' sockets talk to.
``network_layer="ideal"`` replaces the two lower layers by the ideal network
layer (:mod:`qstack.network.ideal`: end-to-end Werner pairs of a given
fidelity on request over virtual links, set up by
:class:`qstack.sim.apps.IdealNetwork`), for fast application development.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from qstack.config import NetworkSpec, load_network, network_from_dict

__all__ = ["simulate", "load_network", "build_network", "SimulationResult", "NetworkSpec"]


@dataclass
class SimulationResult:
    """What :func:`simulate` returns.

    ``results``: each application's return value, by name (the node's name, or
    ``"node:function"`` when a node runs several, ``"node:function#i"`` for a
    function listed more than once, ``i`` its position); ``errors``: the exception of
    each application that failed; ``metrics``: see :func:`metrics_of`;
    ``end_ns``: simulated time at the end; ``wall_s``: wall-clock seconds;
    ``failures``: the protocols' ``Fail`` records; ``log``: the applications'
    ``ctx.log`` records (time ns, node, level, text); ``net``: the
    :class:`~qstack.sim.network.SimNetwork`, for inspection.
    """

    results: dict[str, Any]
    errors: dict[str, BaseException]
    metrics: dict[str, Any]
    end_ns: int
    wall_s: float
    failures: list = field(default_factory=list)
    log: list = field(default_factory=list)
    net: Any = None

    @property
    def ok(self) -> bool:
        """True when every application returned normally."""
        return not self.errors

    def raise_errors(self) -> None:
        """Re-raise the first application error, if any."""
        for err in self.errors.values():
            raise err

    def table(self) -> str:
        """The metrics as an aligned two-column text table."""
        return format_metrics(self.metrics)

    def __getstate__(self) -> dict:
        """Pickled without ``net`` (the simulator: compiled objects, and
        nothing another process needs), so a result can leave a worker."""
        state = dict(self.__dict__)
        state["net"] = None
        return state


def _as_spec(network: Any) -> NetworkSpec:
    if isinstance(network, NetworkSpec):
        return network
    if isinstance(network, (str, Path)):
        return load_network(network)
    if isinstance(network, dict):
        return network_from_dict(network)
    raise TypeError(f"network: expected a NetworkSpec, a TOML path or a dict, "
                    f"got {type(network).__name__}")


def _routing_figures(model: Any, egp: Any, peer: str) -> tuple[float, float]:
    """(best fidelity, pairs/s) of a link, for the network layer's routing."""
    best = egp.best_fidelity(peer)
    lo, hi = model.param_range() if hasattr(model, "param_range") else (0.0, 0.0)
    if hi <= lo:
        params = [lo]
    else:
        lo = max(lo, hi * 1e-9)
        params = [lo * (hi / lo) ** (i / 31) for i in range(32)]
    # A routing weight only (the link layer picks its parameter per request):
    # the rate at the parameter that gives the most fidelity above 1/2 per second.
    rate, score = 0.0, 0.0
    for p in params:
        r = model.success_probability(p) / (model.cycle_ns(p) * 1e-9)
        s = r * max(0.0, egp.expected_fidelity(peer, p) - 0.5)
        if s > score:
            rate, score = r, s
    return min(1.0, max(0.0, best)), max(rate, 1e-9)


def link_parallelism(spec: Any, link: Any) -> int:
    """Generation processes the link runs at once (``specs/link.md`` §4): the
    smaller of its ends' ``communication_qubits`` and memory slots, and of the
    link's own ``max_parallel``."""
    ends = (spec.nodes[link.a].hardware, spec.nodes[link.b].hardware)
    m = min(min(hw.communication_qubits, hw.num_qubits) for hw in ends)
    cap = getattr(link, "max_parallel", None)
    return m if cap is None else min(m, cap)


def node_stacks(network: Any, seed: int = 1, network_layer: str = "qnp",
                cutoff_ns: int | None = None, purify: bool = False,
                ideal: Any = None, qkd: bool = False) -> tuple[Callable[[str], list], Any]:
    """What every driver builds a node from: ``(stack, topology)``, where
    ``stack(name)`` returns node ``name``'s protocols, bottom first (fresh
    ones on every call: at the start and whenever the node restarts after a
    crash), and ``topology`` is the routing topology the network layer starts
    from (None for the ideal layer).

    The simulator (:func:`build_network`) and the emulation's node daemons
    (:mod:`qstack.emu.daemon`) both call this, so a node runs the same
    protocols, configured the same way, under either driver. ``network_layer``
    "qnp" (link layer, optional purification, end-to-end circuits) or "ideal"
    (``ideal``: the simulator's :class:`~qstack.sim.apps.IdealNetwork`).
    ``qkd``: also run decoy-state BB84 with the neighbours (``app.qkd``,
    :class:`qstack.app.qkd.bb84.QkdProtocol`, beside the socket stack).
    """
    spec = _as_spec(network)
    if network_layer not in ("qnp", "ideal"):
        raise ValueError(f"network_layer: expected 'qnp' or 'ideal', got {network_layer!r}")
    if network_layer == "ideal" and ideal is None:
        raise ValueError("network_layer='ideal' needs the driver's ideal network (ideal=...)")
    # What every node is configured with (computed once, shared read-only:
    # each node's protocols keep their own state and their own view).
    peers = {name: {peer: link.model for peer, link in spec.neighbours(name).items()}
             for name in spec.nodes}
    delays = {name: {peer: net_delay(link) for peer, link in spec.neighbours(name).items()}
              for name in spec.nodes}
    parallel = {name: {peer: link_parallelism(spec, link)
                       for peer, link in spec.neighbours(name).items()}
                for name in spec.nodes}
    topo = raw = None
    if network_layer == "qnp":
        from qstack.link.egp import EGP
        from qstack.network.routing import Topology

        topo = Topology()
        probes = {name: EGP(name, peers[name], hardware=node.hardware)
                  for name, node in spec.nodes.items()}
        for name, node in spec.nodes.items():
            topo.add_node(name, node.hardware.num_qubits)
        for link in spec.links:
            fid, rate = _routing_figures(link.model, probes[link.a], link.b)
            topo.add_link(link.a, link.b, fidelity=fid, rate_hz=rate, length_km=link.length_km)
        raw = {name: {peer: probes[name].best_fidelity(peer) for peer in peers[name]}
               for name in spec.nodes} if purify else None

    def stack(name: str) -> list:
        from qstack.transport.protocol import ACK_DELAY_NS, STANDING_IDLE_NS, TeleportTransport

        hardware = spec.nodes[name].hardware
        if network_layer == "qnp":
            from qstack.link.egp import EGP
            from qstack.network.circuit import QnpProtocol

            protos: list = [EGP(name, peers[name], hardware=hardware, cutoff_ns=cutoff_ns,
                                seed=seed, delays=delays[name], parallel=parallel[name])]
            link_service = "link.egp"
            if purify:
                from qstack.network.purify import PurifyProtocol

                protos.append(PurifyProtocol(name, raw[name], seed=seed))
                link_service = PurifyProtocol.name
            protos.append(QnpProtocol(name, topo, purify=purify, link_service=link_service,
                                       num_qubits=hardware.num_qubits, seed=seed))
            below = "network.qnp"
        else:
            protos = [ideal.protocol(name)]
            below = "network.ideal"
        protos.append(TeleportTransport(name, network=below,
                                        window=spec.nodes[name].transport_window,
                                        # (the QNP serves standing requests)
                                        standing_idle_ns=STANDING_IDLE_NS if below == "network.qnp"
                                        else None, ack_delay_ns=ACK_DELAY_NS))
        if qkd:
            from qstack.app.qkd.bb84 import QkdProtocol

            protos.append(QkdProtocol(name, seed=seed))
        return protos

    return stack, topo


def build_network(network: Any, seed: int = 1, formalism: str | None = None,
                  network_layer: str = "qnp", ideal_fidelity: float = 1.0,
                  ideal_interval_ns: int = 1_000_000, cutoff_ns: int | None = None,
                  purify: bool = False, qkd: bool = False) -> Any:
    """A :class:`~qstack.sim.network.SimNetwork` with the full stack on every node.

    ``network_layer``: "qnp" (link layer + end-to-end circuits) or "ideal".
    ``cutoff_ns``: the link layer's memory cut-off (None: none).
    ``purify``: stack ``network.purify`` (DEJMPS recurrence) between the link
    layer and the circuits, which then ask for purified links wherever a
    request's fidelity needs more than a link gives raw.
    ``qkd``: every node also runs ``app.qkd`` (decoy BB84 with its neighbours,
    :mod:`qstack.app.qkd.api`).
    """
    from qstack.sim.network import SimNetwork

    spec = _as_spec(network)
    formalism = formalism or spec.formalism
    net = SimNetwork(seed=seed, formalism=formalism, jitter_ns=spec.jitter_ns)
    if network_layer not in ("qnp", "ideal"):
        raise ValueError(f"network_layer: expected 'qnp' or 'ideal', got {network_layer!r}")
    ideal = None
    if network_layer == "ideal":
        from qstack.sim.apps import IdealNetwork

        ideal = IdealNetwork(net, fidelity=ideal_fidelity, interval_ns=ideal_interval_ns,
                             random_interval=True)
        net.ideal = ideal
    stack, topo = node_stacks(spec, seed=seed, network_layer=network_layer, cutoff_ns=cutoff_ns,
                              purify=purify, ideal=ideal, qkd=qkd)
    for name, node in spec.nodes.items():
        net.add_node(name, node.hardware, stack=lambda name=name: stack(name))
    for link in spec.links:
        net.add_link(link.a, link.b, model=link.model, classical_delay_ns=link.classical_delay_ns,
                     qkd=link.qkd)
    if topo is not None:
        net.topology = topo
    net.schedule_faults(spec.faults)
    net.spec = spec
    return net


def net_delay(link: Any) -> int:
    """One-way classical delay of a configured link, ns (as the simulator uses it)."""
    if link.classical_delay_ns is not None:
        return int(link.classical_delay_ns)
    return int(getattr(link.model, "classical_delay_ns", 0) or 0)


def metrics_of(net: Any, end_ns: int, wall_s: float, app_errors: int = 0) -> dict[str, Any]:
    """The run's figures, from the transport protocols and the links.

    ``qubits_delivered`` (teleported qubits that arrived), ``epr_pairs``
    (EPR pairs delivered to receivers), ``pairs_per_s`` (end-to-end pairs
    consumed by the transport per simulated second), ``link_pairs``
    (heralded link-level pairs), ``fidelity_mean`` (the network's estimate
    for the pairs used, memory decay not included), ``latency_mean_ms`` /
    ``latency_max_ms`` (request to delivery of a qubit or pair),
    ``errors`` (protocol Fail records plus failed applications),
    ``sim_time_s``, ``wall_s``.
    """
    from qstack.transport.messages import PROTOCOL

    totals: dict[str, int] = {}
    deliveries: list[tuple[str, int, float]] = []
    for node in net.nodes.values():
        proto = node.protocols.get(PROTOCOL)
        if proto is None:
            continue
        for k, v in proto.stats.items():
            totals[k] = totals.get(k, 0) + v
        deliveries.extend(proto.deliveries)
    sim_s = end_ns * 1e-9
    used = totals.get("qubits_received", 0) + totals.get("epr_received", 0)
    lat = [d[1] for d in deliveries]
    fid = [d[2] for d in deliveries]
    return {
        "qubits_delivered": totals.get("qubits_received", 0),
        "qubits_sent": totals.get("qubits_sent", 0),
        "epr_pairs": totals.get("epr_received", 0),
        "bytes_delivered": totals.get("bytes_received", 0),
        "pairs_per_s": used / sim_s if sim_s > 0 else 0.0,
        "link_pairs": sum(link.pairs_heralded for link in net.links.values()),
        "fidelity_mean": sum(fid) / len(fid) if fid else math.nan,
        "latency_mean_ms": sum(lat) / len(lat) * 1e-6 if lat else math.nan,
        "latency_max_ms": max(lat) * 1e-6 if lat else math.nan,
        "send_failures": totals.get("send_failures", 0),
        "pairs_released": totals.get("pairs_released", 0),
        "errors": len(net.errors) + app_errors,
        "sim_time_s": sim_s,
        "wall_s": wall_s,
    }


def format_metrics(metrics: dict[str, Any]) -> str:
    """Metrics as ``name  value`` lines, floats to 4 significant digits."""
    width = max(len(k) for k in metrics)
    lines = []
    for k, v in metrics.items():
        text = f"{v:.4g}" if isinstance(v, float) else str(v)
        lines.append(f"{k:<{width}}  {text}")
    return "\n".join(lines)


#: The default limit of a run (simulated seconds): every run ends.
DEFAULT_UNTIL_S = 3600.0
#: After the applications end, the network runs on at most this long (simulated
#: seconds) so its protocols finish their work (long enough for the transport's
#: 10 s bind timeout: every memory slot is free at the end).
DEFAULT_SETTLE_S = 30.0


def simulate(network: Any, apps: dict[str, Any], seed: int = 1, formalism: str | None = None,
             until_s: float | None = DEFAULT_UNTIL_S, network_layer: str = "qnp",
             stall_s: float | None = 300.0, faults: Any = None, jitter_ns: int | None = None,
             settle_s: float | None = DEFAULT_SETTLE_S, **options: Any) -> SimulationResult:
    """Run the applications ``apps`` (``{node: async fn(ctx)}``, or a list of
    functions per node) on ``network`` (a :class:`NetworkSpec`, a TOML path
    or a dict) in simulated time.

    ``seed`` fixes every random number (same seed, same run); ``formalism``
    "bd" or "dm" overrides the file's.

    Every run ends: ``until_s`` (default :data:`DEFAULT_UNTIL_S`, one
    simulated hour; None: no limit, for a run the caller knows ends) stops it
    after that many simulated seconds, and ``stall_s`` when no application
    has progressed for that long while all wait on the network (a memory kept
    full, say); the applications still running are then in ``errors`` as a
    ``TimeoutError`` naming each and what it waits on.

    ``faults``: faults to schedule (:class:`qstack.core.faults.Fault`, or
    tables as in the network file's ``[faults]``, ``specs/faults.md``), added
    to the file's; ``jitter_ns``: each message takes up to that much longer
    (order kept per pair of nodes; default: the file's).

    ``settle_s``: once the applications have ended, the network runs on for
    at most that long (simulated) so its protocols finish (closing circuits,
    freeing pairs): at the end every memory slot is free unless an
    application returned qubits. Metrics are those of the applications' end.
    ``options`` go to :func:`build_network` (``network_layer``,
    ``ideal_fidelity``, ``cutoff_ns``, ...).

    Bad values do not lose the run: a bad argument to a socket call is
    refused at the call (a ``QStackError`` the application sees); a bad
    network description raises ``ConfigError`` here, before anything runs;
    and a protocol that raises while handling an event (a bug) only loses
    that event, recorded in ``failures`` as ``INTERNAL_ERROR``
    (:func:`qstack.sim.apps.run_apps`). Several functions for one node run
    under the names ``"node:function"`` (``"node:function#i"`` for one given
    more than once).
    """
    from qstack.core.faults import faults_from_tables
    from qstack.sim.apps import run_apps

    spec = _as_spec(network)
    extra = faults_from_tables(faults or (), "faults", spec.nodes,
                               [frozenset((lk.a, lk.b)) for lk in spec.links])
    if extra or jitter_ns is not None:
        import dataclasses

        spec = dataclasses.replace(spec, faults=spec.faults + extra,
                                   jitter_ns=spec.jitter_ns if jitter_ns is None else int(jitter_ns))
    net = build_network(spec, seed=seed, formalism=formalism, network_layer=network_layer,
                        **options)
    until_ns = None if until_s is None else int(until_s * 1e9)
    t0 = time.perf_counter()
    stall_ns = None if stall_s is None else int(stall_s * 1e9)
    run = run_apps(net, apps, until_ns=until_ns, stall_ns=stall_ns)
    wall = time.perf_counter() - t0        # the applications' run (settling apart)
    if settle_s:
        net.run(until_ns=run.end_ns + int(settle_s * 1e9))
    log = sorted(rec for ctx in run.contexts.values() for rec in ctx.log.records)
    # The log is per context; contexts of one node share nothing but the node.
    metrics = metrics_of(net, run.end_ns, wall, len(run.errors))
    return SimulationResult(run.results, run.errors, metrics, run.end_ns, wall,
                            list(net.errors), log, net)
