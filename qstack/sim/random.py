"""Named random streams derived from one seed.

Every consumer of randomness in a simulation (a detector's dark counts, a
source's photon numbers, a node's choice of basis) asks for its own stream by
name. Each stream is a numpy ``Generator`` seeded from a child
``SeedSequence`` whose spawn key is derived from the *name* alone, so

* the numbers a consumer draws do not depend on the order in which streams
  are created, and
* adding a new consumer (a new name) does not change the numbers any other
  consumer draws.

Both properties would fail with ``SeedSequence.spawn(n)``, which numbers the
children in creation order.
"""
from __future__ import annotations

import hashlib
import operator

import numpy as np

__all__ = ["RandomStreams", "stream_spawn_key"]


def stream_spawn_key(name: str) -> tuple[int, ...]:
    """Return the ``SeedSequence`` spawn key for the stream called ``name``.

    Python's built-in ``hash()`` is salted per process, so it cannot be used:
    the key must be the same in every run. A 128-bit BLAKE2b digest of the
    UTF-8 name, read as four 32-bit words, makes collisions between distinct
    names practically impossible.
    """
    if not isinstance(name, str):
        raise TypeError(f"stream name must be a str, not {type(name).__name__}")
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=16).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))


class RandomStreams:
    """A family of independent, named random streams derived from one seed.

    ``streams.get(name)`` returns the same ``numpy.random.Generator`` object on
    every call with that name, so a consumer may either keep the generator or
    look it up each time.
    """

    __slots__ = ("seed", "_generators")

    def __init__(self, seed: int) -> None:
        seed = operator.index(seed)  # refuse floats: a seed must be exact
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        self.seed = seed
        self._generators: dict[str, np.random.Generator] = {}

    def seed_sequence(self, name: str) -> np.random.SeedSequence:
        """The ``SeedSequence`` behind the stream ``name`` (a fresh object)."""
        return np.random.SeedSequence(entropy=self.seed, spawn_key=stream_spawn_key(name))

    def get(self, name: str) -> np.random.Generator:
        """The generator for stream ``name``, created on first use."""
        generator = self._generators.get(name)
        if generator is None:
            # PCG64 is named explicitly so a change of numpy's default
            # bit generator cannot silently change every simulation result.
            generator = np.random.Generator(np.random.PCG64(self.seed_sequence(name)))
            self._generators[name] = generator
        return generator

    __getitem__ = get

    def names(self) -> list[str]:
        """Names of the streams created so far, in creation order."""
        return list(self._generators)

    def __contains__(self, name: object) -> bool:
        return name in self._generators

    def __len__(self) -> int:
        return len(self._generators)

    def __repr__(self) -> str:
        return f"RandomStreams(seed={self.seed}, streams={len(self._generators)})"
