"""Closed-loop load: ``clients`` users, each sending its next request ``think`` after the last.

All clients start at once (as a max-concurrency benchmark does) unless ``ramp_up`` staggers their
first requests evenly over that time.

The source draws the lengths (streams ``prompt_tokens`` and ``output_tokens``) and the think time
before each request (stream ``think``: ``fixed`` = exactly ``think_time``, ``exponential`` = mean
``think_time``); arrivals are left to the simulation (``arrival_s`` is NaN).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from simulator.config.quantities import Seconds, StrictConfig
from simulator.core.registry import register_workload
from simulator.core.rng import RngStreams
from workloads.sources.base import RequestTable
from workloads.sources.lengths import LengthDist, sample_lengths


class ClosedLoopConfig(StrictConfig):
    clients: int = Field(gt=0, description="concurrent users")
    num_requests: int = Field(gt=0, description="requests in total, over all clients")
    think_time: Seconds = Field(default="0s", description="(mean) pause between a reply and the next request")
    think: Literal["fixed", "exponential"] = "exponential"
    ramp_up: Seconds = Field(default="0s", description="client c sends its first request at c x ramp_up / clients "
                                                       "(benchmark tools' ramp-up); 0: all at once, as a "
                                                       "max-concurrency benchmark starts")
    prompt_tokens: LengthDist
    output_tokens: LengthDist


@register_workload("closed_loop", config=ClosedLoopConfig)
class ClosedLoopSource:
    """Lengths and think times for a fixed number of clients."""

    def __init__(self, config: ClosedLoopConfig, base_dir: Path = Path(".")) -> None:
        self.config = config
        self.base_dir = Path(base_dir)

    def generate(self, rngs: RngStreams) -> RequestTable:
        cfg = self.config
        n = cfg.num_requests
        if cfg.think == "fixed" or cfg.think_time == 0:
            think = np.full(n, float(cfg.think_time))
        else:
            think = rngs.get("think").exponential(cfg.think_time, size=n)
        return RequestTable(
            arrival_s=np.full(n, np.nan),
            prompt_tokens=sample_lengths(cfg.prompt_tokens, rngs.get("prompt_tokens"), n, self.base_dir),
            output_tokens=sample_lengths(cfg.output_tokens, rngs.get("output_tokens"), n, self.base_dir),
            concurrency=cfg.clients,
            think_s=think,
            client_start_s=np.arange(cfg.clients, dtype=np.float64) * (float(cfg.ramp_up) / cfg.clients),
            meta={"source": "closed_loop", "rows": n, "clients": cfg.clients},
        )
