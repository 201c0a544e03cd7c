"""Serving capacity: the highest arrival rate at which a scenario still meets its latency SLOs.

    from simulator.capacity import capacity_search
    out = capacity_search("scenarios/quickstart.yaml", slo_ttft_s=2.0, slo_tpot_s=0.1, lo=1, hi=20)
    out["capacity_rps"], out["points"]

Each probe is one full run of the scenario with the arrival rate overridden
(``workload.arrival.rate`` for a synthetic workload, ``workload.target_rate`` for a trace) and the
SLOs overridden (``slo.ttft``, ``slo.tpot``, ``slo.attainment``). A rate *passes* when

- the share of measured requests that finish within both SLOs (TTFT <= ``slo_ttft_s`` and TPOT <=
  ``slo_tpot_s``; a rejected or unfinished request counts as a miss) is at least ``attainment`` —
  the run summary's ``slo_attainment`` (``simulator.metrics.slo_attainment``), so a probe and a
  ``hwsim run`` at the same rate agree; measured means outside the scenario's ``run.warmup*`` and
  ``run.cooldown_requests``;
- and, when given, the tail criteria of the Sarathi-Serve paper hold: P99 of all inter-token gaps
  <= ``p99_itl_s`` (its "P99 TBT") and the median queueing delay <= ``p50_queue_s`` (its
  "median scheduling delay").

The search assumes passing is monotone in the rate (true of a stable queue; a finite run near
saturation can be noisy, which is why each probe uses the same seed). With ``rates`` it runs that
grid; otherwise it brackets the capacity (from ``lo``/``hi``, or by doubling/halving from the
scenario's own rate) and bisects, ``iterations`` runs in all. The capacity reported is the highest
passing rate that is not above a failing one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simulator.config.loader import ResolvedScenario, load_scenario, read_mapping
from simulator.core.errors import HwsimError
from simulator.runner import run_scenario

RATE_KEYS = {"synthetic": "workload.arrival.rate", "trace": "workload.target_rate"}


def _base(scenario: str | Path | ResolvedScenario | dict) -> tuple[dict[str, Any] | Path, ResolvedScenario]:
    """(what load_scenario is called with, the scenario resolved without overrides)."""
    if isinstance(scenario, ResolvedScenario):
        raw = scenario.dump()
        if scenario.workload.kind == "trace":  # keep a relative trace path valid outside its directory
            from workloads.sources.trace import resolve_trace_path

            raw["workload"]["path"] = str(resolve_trace_path(raw["workload"]["path"], scenario.base_dir))
        return raw, scenario
    if isinstance(scenario, dict):
        return scenario, load_scenario(scenario)
    path = Path(scenario)
    read_mapping(path)  # a missing or malformed file is reported before any run
    return path, load_scenario(path)


def _scenario_rate(resolved: ResolvedScenario) -> float | None:
    cfg = resolved.workload.config
    if resolved.workload.kind == "synthetic":
        return float(cfg.arrival.rate)
    return float(cfg.target_rate) if getattr(cfg, "target_rate", None) else None


def probe(source: dict[str, Any] | Path, rate: float, overrides: Sequence[str], slo_ttft_s: float | None,
          slo_tpot_s: float | None, attainment: float, rate_key: str) -> dict[str, Any]:
    """Run the scenario once at ``rate`` requests/s and measure what the pass rule needs."""
    sets = [*overrides, f"{rate_key}={rate!r}/s", f"slo.attainment={attainment!r}",
            f"slo.ttft={'null' if slo_ttft_s is None else repr(slo_ttft_s) + 's'}",
            f"slo.tpot={'null' if slo_tpot_s is None else repr(slo_tpot_s) + 's'}"]
    t0 = time.perf_counter()
    result = run_scenario(load_scenario(source, sets))
    req, s = result.requests, result.summary
    n = int(req["measured"].sum())

    def nan_none(x: float) -> float | None:
        return None if x is None or not math.isfinite(x) else float(x)

    return {
        "rate_rps": rate,
        "attainment": float(s["slo_attainment"]),  # NaN when no TTFT/TPOT SLO is given
        "ttft_p90_s": nan_none(s["ttft_s"]["p90"]),
        "tpot_p90_s": nan_none(s["tpot_s"]["p90"]),
        "itl_p99_s": nan_none(s["itl_s"]["p99"]),
        "queue_p50_s": nan_none(s["queue_s"]["p50"]),
        "throughput_rps": float(s["throughput_rps"]),
        "goodput_rps": float(s["goodput_rps"]),
        "preemptions": int(s["preemptions"]),
        "requests_measured": n,
        "wall_s": time.perf_counter() - t0,
    }


def passes(point: dict[str, Any], attainment: float, slo_given: bool, p99_itl_s: float | None,
           p50_queue_s: float | None) -> bool:
    if slo_given and not point["attainment"] >= attainment:  # NaN (nothing measured) fails
        return False
    if p99_itl_s is not None and not (point["itl_p99_s"] is not None and point["itl_p99_s"] <= p99_itl_s):
        return False
    if p50_queue_s is not None and not (point["queue_p50_s"] is not None and point["queue_p50_s"] <= p50_queue_s):
        return False
    return True


def capacity_search(scenario: str | Path | ResolvedScenario | dict, slo_ttft_s: float | None = None,
                    slo_tpot_s: float | None = None, attainment: float = 0.9,
                    rates: Sequence[float] | None = None, lo: float | None = None, hi: float | None = None,
                    iterations: int = 8, num_requests: int | None = None, overrides: Sequence[str] = (),
                    p99_itl_s: float | None = None, p50_queue_s: float | None = None,
                    progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Find the highest arrival rate (requests/s) that meets the SLOs; see the module docstring.

    Returns a JSON-ready dict: ``capacity_rps``, ``points`` (one per run, by rate: attainment,
    p90 TTFT/TPOT, p99 inter-token gap, median queueing, throughput, goodput), ``bracket``
    ([highest passing, lowest failing] rate), ``capped`` (True when the highest rate tried
    passed: the capacity is at least that), the criteria, and the wall time.
    """
    if slo_ttft_s is None and slo_tpot_s is None and p99_itl_s is None and p50_queue_s is None:
        raise HwsimError("give at least one SLO (TTFT, TPOT, P99 inter-token or median queueing)", where="capacity")
    for name, v in (("slo_ttft", slo_ttft_s), ("slo_tpot", slo_tpot_s), ("p99_itl", p99_itl_s),
                    ("p50_queue", p50_queue_s), ("lo", lo), ("hi", hi)):
        if v is not None and not v > 0:
            raise HwsimError(f"must be > 0, got {v!r}", where=f"capacity.{name}")
    if not 0 < attainment <= 1:
        raise HwsimError(f"must be in (0, 1], got {attainment!r}", where="capacity.attainment")
    if iterations < 1:
        raise HwsimError(f"must be >= 1, got {iterations!r}", where="capacity.iterations")
    if lo is not None and hi is not None and lo >= hi:
        raise HwsimError(f"lo ({lo:g}/s) must be below hi ({hi:g}/s)", where="capacity")
    source, resolved = _base(scenario)
    base_overrides = list(overrides)
    if base_overrides:
        resolved = load_scenario(source, base_overrides)
    kind = resolved.workload.kind
    if kind not in RATE_KEYS:
        raise HwsimError(f"needs an open-loop workload (synthetic or trace) whose rate can be set, not {kind!r}",
                         where="workload.kind")
    if num_requests is not None:
        key = "workload.num_requests" if kind == "synthetic" else "workload.max_requests"
        base_overrides.append(f"{key}={int(num_requests)}")
    rate_key = RATE_KEYS[kind]
    slo_given = slo_ttft_s is not None or slo_tpot_s is not None
    t0 = time.perf_counter()
    points: dict[float, dict[str, Any]] = {}

    def run(rate: float) -> bool:
        rate = float(f"{rate:.6g}")
        if rate not in points:
            p = probe(source, rate, base_overrides, slo_ttft_s, slo_tpot_s, attainment, rate_key)
            p["passed"] = passes(p, attainment, slo_given, p99_itl_s, p50_queue_s)
            points[rate] = p
            if progress is not None:
                progress(p)
        return points[rate]["passed"]

    if rates is not None:
        grid = sorted({float(r) for r in rates})
        if not grid or grid[0] <= 0:
            raise HwsimError("rates must be a non-empty list of positive rates", where="capacity.rates")
        for r in grid:
            run(r)
    else:
        budget = iterations
        good, bad = _bracket(run, lo, hi, _scenario_rate(resolved), budget)
        budget -= len(points)
        while budget > 0 and good is not None and bad is not None and bad - good > 1e-3 * bad:
            mid = 0.5 * (good + bad)
            if run(mid):
                good = mid
            else:
                bad = mid
            budget -= 1
    return _report(points, resolved, slo_ttft_s, slo_tpot_s, attainment, p99_itl_s, p50_queue_s,
                   time.perf_counter() - t0)


def _bracket(run: Callable[[float], bool], lo: float | None, hi: float | None, start: float | None,
             budget: int) -> tuple[float | None, float | None]:
    """(a passing rate or None, a failing rate or None), using at most ``budget`` runs."""
    if lo is not None and hi is not None:
        if not run(lo):
            return None, lo
        if budget < 2 or run(hi):
            return (hi, None) if budget >= 2 else (lo, None)
        return lo, hi
    r = lo or hi or start
    if r is None:
        raise HwsimError("the trace has no target_rate to start from; give lo and hi", where="capacity")
    good = bad = None
    used = 0
    while used < budget and (good is None or bad is None):
        used += 1
        if run(r):
            good = r
            r = r * 2 if hi is None else min(r * 2, hi)
            if good == r:
                break
        else:
            bad = r
            r = r / 2 if lo is None else max(r / 2, lo)
            if bad == r:
                break
    return good, bad


def _report(points: dict[float, dict[str, Any]], resolved: ResolvedScenario, slo_ttft_s: float | None,
            slo_tpot_s: float | None, attainment: float, p99_itl_s: float | None, p50_queue_s: float | None,
            wall_s: float) -> dict[str, Any]:
    curve = [points[r] for r in sorted(points)]
    capacity, lowest_fail = 0.0, None
    for p in curve:  # highest pass below the first failure (monotone reading of the curve)
        if not p["passed"]:
            lowest_fail = p["rate_rps"]
            break
        capacity = p["rate_rps"]
    rates = np.array([p["rate_rps"] for p in curve])
    return {
        "scenario": resolved.spec.name,
        "scheduler": resolved.scheduler.kind,
        "criteria": {"slo_ttft_s": slo_ttft_s, "slo_tpot_s": slo_tpot_s, "attainment": attainment,
                     "p99_itl_s": p99_itl_s, "p50_queue_s": p50_queue_s},
        "capacity_rps": capacity,
        "bracket": [capacity, lowest_fail],
        "capped": bool(curve) and lowest_fail is None,
        "monotone": bool(lowest_fail is None or not any(p["passed"] for p in curve if p["rate_rps"] > lowest_fail)),
        "points": curve,
        "runs": len(curve),
        "rate_range": [float(rates.min()), float(rates.max())] if rates.size else [],
        "wall_s": wall_s,
    }
