"""Experiments at scale: parameter sweeps and stage certification.

A tool above the stack, like :mod:`qstack.qkdtool`: it builds networks from
files and drives :func:`qstack.simulate`; nothing below imports it.

* :mod:`.experiment` reads an experiment file (TOML): the network, the metric,
  the parameters to sweep, the seeds, the outputs; errors name the field and
  the line.
* :mod:`.tasks` runs one (point, seed) task and returns a plain picklable
  record (a dict): what crosses a process boundary, never a simulator.
* :mod:`.store` keeps finished tasks, append-only and crash-safe.
* :mod:`.executors` runs tasks on a local process pool or on dask.distributed.
* :mod:`.table` turns records into a table (mean, standard error, confidence
  interval) and plots.
* :mod:`.sweep` ties them together (``qstack sweep``).
* :mod:`.certify` places a network at a stage of the quantum internet after
  Wehner, Elkouss and Hanson, Science 362, eaam9288 (2018) (``qstack certify``).
"""
