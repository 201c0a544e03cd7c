"""Named random streams spawned from the scenario seed.

``RngStreams(seed).get("arrivals")`` always returns a generator seeded from (seed, "arrivals"),
independent of which other streams were asked for and in which order, so adding a stream never
changes the numbers another stream draws.
"""

from __future__ import annotations

import zlib

import numpy as np


class RngStreams:
    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._streams: dict[str, np.random.Generator] = {}

    def get(self, name: str) -> np.random.Generator:
        gen = self._streams.get(name)
        if gen is None:
            key = zlib.crc32(name.encode("utf-8"))
            gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, key])))
            self._streams[name] = gen
        return gen

    __call__ = get
