"""What every request source produces: a columnar table of requests.

Open-loop sources (trace files, synthetic arrival processes) fill ``arrival_s``; a closed-loop
source leaves arrivals to the simulation (each of ``concurrency`` clients sends its next request
``think_s`` after its previous one finished) and fills the lengths only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class RequestTable:
    arrival_s: np.ndarray  # float64, non-decreasing; NaN for closed-loop sources
    prompt_tokens: np.ndarray  # int64, >= 1
    output_tokens: np.ndarray  # int64, >= 1
    session_id: np.ndarray | None = None  # int64, optional (multi-turn sessions)
    prefix_id: np.ndarray | None = None  # int64, optional (shared prefixes)
    prefix_tokens: np.ndarray | None = None  # int64, optional (length of the shared prefix)
    concurrency: int | None = None  # closed loop: number of clients
    think_s: np.ndarray | None = None  # closed loop: think time before each request
    client_start_s: np.ndarray | None = None  # closed loop: when each client sends its first request
    meta: dict = field(default_factory=dict)  # e.g. {"source": path, "rows": n}

    def __len__(self) -> int:
        return int(self.prompt_tokens.shape[0])

    @property
    def closed_loop(self) -> bool:
        return self.concurrency is not None

    def validate(self, where: str = "workload") -> RequestTable:
        from simulator.core.errors import ConfigError

        n = len(self)
        for name in ("arrival_s", "output_tokens"):
            if getattr(self, name).shape[0] != n:
                raise ConfigError(f"{name} has {getattr(self, name).shape[0]} rows, expected {n}", where=where)
        if n == 0:
            raise ConfigError("the workload produced no requests", where=where)
        if (self.prompt_tokens < 1).any() or (self.output_tokens < 1).any():
            raise ConfigError("every request needs >= 1 prompt token and >= 1 output token", where=where)
        if not self.closed_loop:
            a = self.arrival_s
            if not np.isfinite(a).all() or (a < 0).any():
                raise ConfigError("arrival times must be finite and >= 0", where=where)
            if (np.diff(a) < 0).any():
                raise ConfigError("arrival times must be non-decreasing", where=where)
        return self
