"""hwsim from Python (a notebook, a script): run scenarios and sweeps, get pandas DataFrames.

    import hwsim
    res = hwsim.run("scenarios/quickstart.yaml", set={"workload.num_requests": 500})
    res.summary["ttft_s"]["p90"], res.requests.head()      # a dict, a DataFrame
    df = hwsim.sweep("scenarios/sweeps/example.yaml", out="results/sweeps/example")
    cap = hwsim.capacity("scenarios/quickstart.yaml", slo_ttft_s=2.0, slo_tpot_s=0.1, lo=1, hi=20)

Scenarios are a file path, a mapping, or a scenario from :func:`load_scenario`; ``set`` takes
overrides as ``{dotted.path: value}`` (or ``--set`` strings). Errors are ``HwsimError`` with the
same one-line message the command line prints. Without pandas, tables come back as dicts of
numpy arrays (a run's requests) or lists of dicts (a sweep's rows). See docs/api.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator import __version__
from simulator.config.loader import ResolvedScenario
from simulator.core.errors import HwsimError

__all__ = ["HwsimError", "Result", "__version__", "capacity", "compare", "load_scenario", "run", "sweep",
           "sweep_results"]

Overrides = Mapping[str, Any] | Iterable[str] | None


def _sets(overrides: Overrides) -> list[str]:
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    if isinstance(overrides, str):
        return [overrides]
    return list(overrides)


def load_scenario(scenario: str | Path | dict[str, Any] | ResolvedScenario, set: Overrides = None
                  ) -> ResolvedScenario:
    """Validate a scenario (file, mapping) with overrides; a resolved scenario is returned as is
    unless overrides are given."""
    from simulator.config.loader import load_scenario as _load

    if isinstance(scenario, ResolvedScenario):
        if not set:
            return scenario
        scenario = scenario.dump()
    return _load(scenario if isinstance(scenario, dict) else Path(scenario), _sets(set))


def _frame(columns: dict[str, Any]):
    try:
        import pandas as pd
    except ImportError:
        return columns
    return pd.DataFrame(columns)


@dataclass
class Result:
    """One run: ``summary`` (the dict of summary.json), ``requests`` (one row per request, a
    DataFrame), ``metrics`` (the summary flattened to dotted names), ``raw`` (the RunResult)."""

    raw: Any
    scenario: ResolvedScenario

    @property
    def name(self) -> str:
        return self.raw.name

    @property
    def summary(self) -> dict[str, Any]:
        return self.raw.summary

    @property
    def metrics(self) -> dict[str, float]:
        from simulator.sweep_point import flatten

        return flatten(self.raw.summary)

    @property
    def requests(self):
        from simulator.results import STATUS_NAMES

        cols = dict(self.raw.requests)
        frame = _frame(cols)
        if frame is not cols:
            frame["status"] = frame["status"].map(STATUS_NAMES)
        return frame

    def write(self, out: str | Path, report: bool = True) -> Path:
        """Write the results directory ``hwsim run`` writes (summary.json, requests.csv, report.html...)."""
        from simulator.outputs import write_results

        out = Path(out)
        outs = self.scenario.spec.outputs
        write_results(self.raw, self.scenario.to_yaml(), out, report=report and outs.report,
                      chrome_trace=outs.chrome_trace, events=outs.events, requests=outs.requests)
        return out

    def __repr__(self) -> str:
        s = self.summary
        return (f"<hwsim.Result {self.name}: {s['requests_finished']}/{s['requests_total']} finished, "
                f"p90 TTFT {s['ttft_s']['p90'] * 1e3:.1f} ms, {s['throughput_rps']:.2f} req/s>")


def run(scenario: str | Path | dict[str, Any] | ResolvedScenario, set: Overrides = None) -> Result:
    """Run a serving scenario; return its :class:`Result`."""
    from simulator.runner import run_scenario

    resolved = load_scenario(scenario, set)
    return Result(run_scenario(resolved), resolved)


def sweep(spec: str | Path | dict[str, Any], out: str | Path | None = None, workers: int | None = None,
          backend: str = "local", resume: bool = False, ray_address: str | None = None, progress: bool = False,
          html: bool = True):
    """Run a sweep (a sweep file or mapping, see docs/api.md) into the results store in ``out``
    (default results/sweeps/NAME; rows already there are replaced unless ``resume``); return one
    row per point as a DataFrame (columns: point_id, scenario_hash, the axes, passed, error,
    ``constraint: ...``, ``objective: ...``, every metric, wall_s)."""
    from simulator.sweep import run_sweep
    from simulator.sweep_spec import build_sweep

    sw = build_sweep(spec)
    out = Path(out) if out is not None else Path("results") / "sweeps" / sw.spec.name
    rows = run_sweep(sw, out, workers=workers, backend=backend, resume=resume, overwrite=not resume,
                     ray_address=ray_address, progress=progress, html=html)
    return _rows_frame(rows)


def _rows_frame(rows: list[dict[str, Any]]):
    from simulator.results_store import flat_rows

    columns, flat = flat_rows(rows)
    try:
        import pandas as pd
    except ImportError:
        return flat
    return pd.DataFrame(flat, columns=columns)


def sweep_results(directory: str | Path):
    """The rows of a sweep's results store (a finished or an interrupted sweep) as a DataFrame."""
    from simulator.results_store import read_rows

    return _rows_frame(read_rows(Path(directory)))


def capacity(scenario: str | Path | dict[str, Any] | ResolvedScenario, set: Overrides = None,
             **criteria: Any) -> dict[str, Any]:
    """The highest arrival rate that meets the SLOs: simulator.capacity.capacity_search with
    ``slo_ttft_s``, ``slo_tpot_s``, ``attainment``, ``rates`` or ``lo``/``hi``, ``iterations``,
    ``num_requests``, ``p99_itl_s``, ``p50_queue_s``. Returns its report (``capacity_rps``, ``points``...)."""
    from simulator.capacity import capacity_search

    return capacity_search(load_scenario(scenario, set), **criteria)


def compare(paths: Iterable[str | Path], out: str | Path | None = None) -> Path:
    """Write the comparison page of run directories or one sweep directory; return its path."""
    from simulator.compare import write_compare

    return write_compare([Path(p) for p in paths], Path(out) if out is not None else None)
