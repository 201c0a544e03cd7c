"""Compare runs or the points of a sweep on one offline page: compare.html.

    hwsim compare results/a results/b        # run directories (summary.json, requests.csv)
    hwsim compare results/sweeps/example     # a sweep directory (results.sqlite)

Each run or sweep point is one *configuration* (an :class:`Entry`). The page
(simulator/compare_page.py) draws the Pareto fronts (cost against p90 TTFT and against output
throughput, or the sweep's first two objectives), SLO attainment against the arrival rate per
configuration (the capacity curve of each point when the sweep searched capacity), CDF overlays
of TTFT and TPOT, and a table of every configuration that sorts by any column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simulator.core.errors import HwsimError, UnitError
from simulator.core.units import parse_quantity
from simulator.results_store import FILE_NAME, ResultsStore
from simulator.sweep_point import CDF_LEVELS, flatten

RATE_PATHS = ("workload.arrival.rate", "workload.target_rate")
PAGE_NAME = "compare.html"


@dataclass
class Entry:
    """One configuration: a run, or a point of a sweep."""

    label: str
    group: str  # the configuration without its arrival rate (one SLO-vs-rate line per group)
    metrics: dict[str, Any]
    axes: dict[str, Any] = field(default_factory=dict)
    rate_rps: float | None = None
    passed: bool | None = None
    error: str | None = None
    ttft_q: list[float] = field(default_factory=list)  # quantiles at CDF_LEVELS
    tpot_q: list[float] = field(default_factory=list)
    capacity: list[dict[str, Any]] = field(default_factory=list)
    point_id: int | None = None


def _rate(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return parse_quantity(str(value), "rate")
    except (UnitError, ValueError):
        return None


def _short(path: str) -> str:
    parts = path.split(".")
    return ".".join(parts[-2:]) if parts[-1] in ("kind", "preset", "rate") and len(parts) > 1 else parts[-1]


def _value(v: Any) -> str:
    return json.dumps(v, separators=(",", ":")) if isinstance(v, (dict, list)) else str(v)


def sweep_entries(rows: list[dict[str, Any]]) -> list[Entry]:
    out = []
    for r in rows:
        axes = r["axes"]
        label = ", ".join(f"{_short(k)}={_value(v)}" for k, v in axes.items()) or f"point {r['point_id']}"
        rest = {k: v for k, v in axes.items() if k not in RATE_PATHS}
        group = ", ".join(f"{_short(k)}={_value(v)}" for k, v in rest.items()) or "all"
        rate = next((_rate(axes[k]) for k in RATE_PATHS if k in axes), None)
        m = r["metrics"]
        out.append(Entry(label=f"#{r['point_id']} {label}", group=group, metrics=m, axes=axes,
                         rate_rps=rate if rate is not None else m.get("littles_law.lambda"), passed=r["passed"],
                         error=r["error"], ttft_q=r["detail"].get("ttft_s", []), tpot_q=r["detail"].get("tpot_s", []),
                         capacity=r["detail"].get("capacity", []), point_id=r["point_id"]))
    return out


def run_entry(directory: Path) -> Entry:
    """A run directory written by ``hwsim run`` as one configuration."""
    summary_path = directory / "summary.json"
    if not summary_path.is_file():
        raise HwsimError(f"neither a run directory (no summary.json) nor a sweep directory (no {FILE_NAME})",
                         where=str(directory))
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise HwsimError(f"malformed summary.json: {exc.msg}", where=str(summary_path)) from None
    metrics = flatten(summary)
    rate, group = None, directory.name
    resolved = directory / "scenario.resolved.yaml"
    if resolved.is_file():
        import hashlib

        import yaml

        scenario = yaml.safe_load(resolved.read_text(encoding="utf-8")) or {}
        wl = scenario.get("workload") or {}
        rate = _rate((wl.get("arrival") or {}).get("rate")) if "arrival" in wl else _rate(wl.get("target_rate"))
        (wl.get("arrival") or {}).pop("rate", None)
        wl.pop("target_rate", None)
        # runs of one configuration at different rates share a line of the SLO-vs-rate plot
        key = hashlib.sha256(json.dumps(scenario, sort_keys=True, default=str).encode()).hexdigest()[:8]
        group = f"{scenario.get('name', 'scenario')} ({key})"
    ttft_q, tpot_q = _request_quantiles(directory / "requests.csv")
    return Entry(label=directory.name, group=group, metrics=metrics,
                 rate_rps=rate if rate is not None else metrics.get("littles_law.lambda"),
                 passed=bool(summary.get("slo_met")) if "slo_met" in summary else None,
                 ttft_q=ttft_q, tpot_q=tpot_q)


def _request_quantiles(path: Path) -> tuple[list[float], list[float]]:
    if not path.is_file():
        return [], []
    import csv

    cols: dict[str, list[float]] = {"ttft_s": [], "tpot_s": []}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("measured", "1") != "1":
                continue
            for k in cols:
                try:
                    cols[k].append(float(row.get(k) or "nan"))
                except ValueError:
                    pass

    def q(xs: list[float]) -> list[float]:
        x = np.asarray(xs, dtype=float)
        x = x[np.isfinite(x)]
        return [float(v) for v in np.quantile(x, CDF_LEVELS)] if x.size else []

    return q(cols["ttft_s"]), q(cols["tpot_s"])


def load_entries(paths: list[Path]) -> tuple[list[Entry], dict[str, Any]]:
    """Entries of run directories, or of one sweep directory, and the sweep's page meta ({} for runs)."""
    if not paths:
        raise HwsimError("give run directories or one sweep directory", where="compare")
    for p in paths:
        if not p.is_dir():
            raise HwsimError("not a directory", where=str(p))
    sweeps = [p for p in paths if (p / FILE_NAME).is_file()]
    if sweeps:
        if len(paths) > 1:
            raise HwsimError("compare one sweep directory at a time (or run directories)", where=str(sweeps[0]))
        with ResultsStore(sweeps[0]) as store:
            rows = store.rows()
            meta = json.loads(store.meta("page") or "{}")
        if not rows:
            raise HwsimError("the results store has no rows yet", where=str(sweeps[0] / FILE_NAME))
        return sweep_entries(rows), meta
    return [run_entry(p) for p in paths], {}


def write_sweep_page(directory: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    from simulator.compare_page import render_page
    from simulator.html_assets import write_page

    return write_page(Path(directory) / PAGE_NAME, render_page(sweep_entries(rows), meta))


def write_compare(paths: list[Path], out: Path | None = None) -> Path:
    """Write the comparison page of ``paths``; return its path (default: SWEEP_DIR/compare.html, or
    compare.html in the current directory for runs)."""
    from simulator.compare_page import render_page
    from simulator.html_assets import write_page

    entries, meta = load_entries(paths)
    if out is None:
        out = paths[0] / PAGE_NAME if meta else Path(PAGE_NAME)
    if not meta:
        meta = {"name": ", ".join(p.name for p in paths), "axes": [], "objectives": [], "constraints": []}
    return write_page(out, render_page(entries, meta))
