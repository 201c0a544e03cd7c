"""How big a serving run is, found without simulating it: requests, tokens, iterations, time, memory.

A workload with more than ``SAMPLE`` requests (or sessions) is not generated in full: a sample of
that many is generated with the same seed and its mean lengths scaled up, so ``hwsim check`` of a
billion-request scenario answers at once. Wall time and memory are orders of magnitude, from the
per-request cost measured in BENCHMARKS.md (synthetic conversation workload, one replica, the
steady-decode fast path on; pipelined replicas run that path off and are slower); memory of a run
with streaming metrics from the 100,000- and 1,000,000-request runs there.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import numpy as np

from simulator.config.loader import ResolvedScenario
from simulator.core.rng import RngStreams

SAMPLE = 20_000
COUNT_FIELDS = ("num_requests", "num_sessions")  # the workload field that sets how many requests
# BENCHMARKS.md, "Serving simulation": synthetic conv 100,000 requests: 18.3 s wall, 1,386 MB peak
# RSS; 1,000 requests: 0.75 s, 117 MB. The difference per request:
WALL_S_PER_REQUEST = (18.29 - 0.75) / 99_000
BYTES_PER_REQUEST = (1386 - 117) * 1e6 / 99_000
LONG_RUN_S = 30.0  # above this estimate a run prints its size and progress
# streaming metrics (simulator/metrics_stream.py; run.metrics auto above 50,000 requests): BENCHMARKS.md,
# "Large runs": synthetic conv over 16 replicas, tile, peak RSS 317.6 MB at 100,000 requests and
# 524.4 MB at 1,000,000 (the workload table, iteration end times and op-shape memo that still grow)
STREAM_BYTES_PER_REQUEST = (524.4 - 317.6) * 1e6 / 900_000
STREAM_BASE_BYTES = 317.6e6 - 100_000 * STREAM_BYTES_PER_REQUEST


@dataclass(frozen=True)
class RunSize:
    requests: int
    prompt_tokens: float
    output_tokens: float
    iterations_low: float  # every replica's batch always full (max_num_seqs rows)
    iterations_high: float  # one request per batch
    wall_s: float
    memory_bytes: float
    sampled: bool  # lengths are from a sample of the workload

    @property
    def long(self) -> bool:
        return self.wall_s > LONG_RUN_S

    def describe(self) -> str:
        approx = "about " if self.sampled else ""
        return (f"{self.requests:,} requests, {approx}{_count(self.prompt_tokens)} prompt and "
                f"{_count(self.output_tokens)} output tokens, {_magnitude(self.iterations_low)}-"
                f"{_magnitude(self.iterations_high)} iterations; roughly {format_duration(self.wall_s)} and "
                f"{format_bytes(self.memory_bytes)} to simulate")


def _count(x: float) -> str:
    if x < 1e6:
        return f"{x:,.0f}"
    e = int(math.floor(math.log10(x)))
    return f"{x / 10**e:.2g}e{e}"


def _magnitude(x: float) -> str:
    return "1" if x < 1 else f"1e{int(math.floor(math.log10(x)))}"


def format_duration(s: float) -> str:
    if s < 0.1:
        return "under 0.1 s"
    if s < 60:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.0f} min"
    if s < 86400 * 2:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:,.0f} days"


def format_bytes(b: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if b >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{b / 1e3:.3g} kB"


def _count_field(config) -> str | None:
    return next((f for f in COUNT_FIELDS if isinstance(getattr(config, f, None), int)), None)


def sampled(scenario: ResolvedScenario, n: int = SAMPLE) -> tuple[ResolvedScenario, float]:
    """``scenario`` with its workload cut to ``n`` requests (or sessions) when it asks for more, and
    the factor from the sample to the whole (1.0 when nothing was cut)."""
    comp = scenario.workload
    n = max(n, scenario.spec.run.warmup_requests + 1)
    field = _count_field(comp.config)
    total = getattr(comp.config, field) if field else 0
    if not field or total <= n:
        return scenario, 1.0
    small = dataclasses.replace(comp, config=comp.config.model_copy(update={field: n}))
    return dataclasses.replace(scenario, workload=small), total / n


def estimate(scenario: ResolvedScenario, table=None) -> RunSize:
    """The size of ``scenario``'s run; ``table`` is its generated workload if already at hand."""
    factor = 1.0
    if table is None:
        small, factor = sampled(scenario)
        source = small.workload.cls(small.workload.config, base_dir=small.base_dir)
        table = source.generate(RngStreams(scenario.spec.seed))
    n = int(round(len(table) * factor))
    prompt = float(np.sum(table.prompt_tokens, dtype=np.float64)) * factor
    output = float(np.sum(table.output_tokens, dtype=np.float64)) * factor
    rows = 0
    replicas = 0
    for pool in scenario.pools:
        replicas += pool.replicas if pool.role != "prefill" else 0
        rows += pool.replicas * int(getattr(pool.scheduler.config, "max_num_seqs", 256) or 256)
    rows = max(rows, 1)
    from simulator.metrics_stream import streaming

    memory = (STREAM_BASE_BYTES + n * STREAM_BYTES_PER_REQUEST if streaming(scenario.spec.run.metrics, n)
              else n * BYTES_PER_REQUEST)
    return RunSize(requests=n, prompt_tokens=prompt, output_tokens=output,
                   iterations_low=max(output / rows, 1.0), iterations_high=max(output / max(replicas, 1), 1.0),
                   wall_s=n * WALL_S_PER_REQUEST, memory_bytes=memory, sampled=factor != 1.0)


def physical_memory_bytes() -> float | None:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None
