"""Run one sweep point: a plain, picklable function that a process pool or a Ray worker calls.

A task is a dict (``point_id``, ``source``: a scenario path or mapping, ``overrides``, ``capacity``:
the capacity criteria or None); the answer is a dict of plain data: the run summary flattened to
dotted metric names (``ttft_s.p90``, ``cost_usd_per_mtok``...), quantiles of the measured TTFT
and TPOT (for the comparison CDFs), the capacity curve when asked, or the one-line error of a
point that cannot run (a model that does not fit, a KV cache with no room).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from simulator.core.errors import HwsimError

CDF_LEVELS = np.linspace(0.0, 1.0, 41)  # quantiles kept per point for the CDF overlays
CAPACITY_METRICS = ("capacity_rps", "capacity_capped", "capacity_runs")
NOT_METRICS = ("wall_s",)  # machine-dependent: kept beside the metrics, never compared


def flatten(summary: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested summary under dotted names (lists and strings left out)."""
    out: dict[str, float] = {}
    for k, v in summary.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "."))
        elif isinstance(v, bool):
            out[name] = int(v)
        elif isinstance(v, (int, float, np.integer, np.floating)) and name not in NOT_METRICS:
            out[name] = v.item() if isinstance(v, np.generic) else v
    return out


def _quantiles(req: dict[str, np.ndarray], column: str) -> list[float]:
    x = np.asarray(req[column], dtype=float)[np.asarray(req["measured"], dtype=bool)]
    x = x[np.isfinite(x)]
    return [float(v) for v in np.quantile(x, CDF_LEVELS)] if x.size else []


def _load(task: dict[str, Any]):
    from simulator.config.loader import load_scenario

    source = task["source"]
    return load_scenario(source if isinstance(source, dict) else Path(source), list(task["overrides"]))


def run_point(task: dict[str, Any]) -> dict[str, Any]:
    """Run one point (see the module docstring); never raises for a point that cannot run."""
    from simulator.runner import run_scenario

    t0 = time.perf_counter()
    out: dict[str, Any] = {"point_id": task["point_id"], "metrics": {}, "detail": {}, "error": None}
    try:
        result = run_scenario(_load(task))
        out["metrics"] = flatten(result.summary)
        out["detail"] = {"ttft_s": _quantiles(result.requests, "ttft_s"),
                         "tpot_s": _quantiles(result.requests, "tpot_s")}
        if task.get("capacity"):
            out["metrics"].update(_capacity(task))
            out["detail"]["capacity"] = out["metrics"].pop("_curve")
    except HwsimError as err:
        out["error"] = str(err)
    except Exception as err:  # an internal error: recorded on the point, the sweep goes on
        out["error"] = f"internal error: {type(err).__name__}: {err}"
    out["wall_s"] = time.perf_counter() - t0
    return out


def _capacity(task: dict[str, Any]) -> dict[str, Any]:
    from simulator.capacity import capacity_search

    c = task["capacity"]
    source = task["source"]
    rep = capacity_search(source if isinstance(source, dict) else Path(source), slo_ttft_s=c.get("slo_ttft"),
                          slo_tpot_s=c.get("slo_tpot"), attainment=c.get("attainment", 0.9), rates=c.get("rates"),
                          lo=c.get("lo"), hi=c.get("hi"), iterations=c.get("iterations", 6),
                          overrides=list(task["overrides"]), p99_itl_s=c.get("p99_itl"),
                          p50_queue_s=c.get("p50_queue"))
    curve = [{"rate_rps": p["rate_rps"], "attainment": None if math.isnan(p["attainment"]) else p["attainment"],
              "passed": bool(p["passed"])} for p in rep["points"]]
    return {"capacity_rps": float(rep["capacity_rps"]), "capacity_capped": int(rep["capped"]),
            "capacity_runs": int(rep["runs"]), "_curve": curve}


def probe_metric_names(task: dict[str, Any]) -> list[str]:
    """The metric names a point's summary has, from a run of the point cut to a few requests."""
    from simulator.run_size import sampled
    from simulator.runner import run_scenario

    resolved = _load(task)
    small, _ = sampled(resolved, n=max(16, resolved.spec.run.warmup_requests + resolved.spec.run.cooldown_requests + 1))
    names = list(flatten(run_scenario(small).summary))
    if task.get("capacity"):
        names += list(CAPACITY_METRICS)
    return names
