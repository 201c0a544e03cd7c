"""Uniformly random routing from a seeded stream (the load-balancing baseline of power-of-d studies).

Models: each request goes to a replica drawn uniformly at random, ignoring load. The router gets
    no RNG from the framework, so it owns a numpy ``Generator`` seeded from its config's ``seed``:
    the same scenario gives the same routing on every run.
Ignores: the scenario seed (change ``seed`` here to draw another routing).
Sources: Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing" (2001), the
    random-assignment baseline.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from policies.api import ClusterView, RequestView, StrictConfig, register_router


class RandomRouterConfig(StrictConfig):
    seed: int = Field(default=0, ge=0, description="seed of the router's own random stream")


@register_router("random", config=RandomRouterConfig)
class RandomRouter:
    """Uniformly random routing from a seeded stream (the load-balancing baseline)."""
    def __init__(self, config: RandomRouterConfig) -> None:
        self.rng = np.random.default_rng(config.seed)

    def route(self, request: RequestView, view: ClusterView) -> int:
        return int(self.rng.integers(len(view.replicas)))
