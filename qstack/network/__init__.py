"""The network layer: end-to-end entanglement across repeaters.

* :mod:`.service` -- NetRequest / NetOk / NetErr / NetExpire (what upper layers use);
* :mod:`.circuit` -- ``network.qnp``: circuits, swapping (ASAP / nested), cut-offs;
* :mod:`.purify` -- ``network.purify``: BBPSSW / DEJMPS on link pairs;
* :mod:`.routing` -- topology, path metric, per-link fidelity targets;
* :mod:`.trusted` -- ``network.trusted``: trusted-node XOR key relay;
* :mod:`.theory` -- closed forms (Werner swap, purification, PLOB, rate models);
* :mod:`.messages` -- wire messages (``specs/network.md``).
"""
