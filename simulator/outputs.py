"""Write a run's results directory.

    summary.json             key figures (deterministic: no wall-clock numbers)
    requests.csv             one row per request
    batches.csv              one row per batch segment (the event log of the GPU side)
    events.csv               typed request events (arrived, routed, scheduled, first token, ...)
    scenario.resolved.yaml   the scenario with presets merged: re-running it gives the same run
    trace.json               Chrome/Perfetto trace (open in ui.perfetto.dev or chrome://tracing); by default
                             only for runs of at most 5,000 requests (outputs.chrome_trace: true | false | auto)
    report.html              interactive dashboard (loads plotly-<version>.min.js, written beside it)
    plotly-<version>.min.js  the plotly.js library, one copy per folder (see simulator/html_assets.py)
    run_info.json            wall-clock time and versions (differs between runs)
"""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np

from simulator import __version__
from simulator.core.events import EventKind
from simulator.results import STATUS_NAMES, RunResult


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def summary_json(result: RunResult) -> str:
    summary = {k: v for k, v in result.summary.items() if k != "wall_s"}
    return json.dumps(_clean({"name": result.name, **summary}), indent=2, allow_nan=False) + "\n"


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "" if math.isnan(x) else repr(x)
    return "" if x is None else str(x)  # a missing value is an empty cell, as NaN


SMALL_INT_LOOKUP = 65_536  # an integer column within [0, this) is formatted once per distinct value


def _column_strings(values: np.ndarray) -> list[str]:
    """A column as CSV cells, formatted in bulk: integers as is, floats as their shortest
    round-trip repr, NaN as an empty cell (numpy's str() of a float64 is that repr)."""
    a = np.asarray(values)
    if a.dtype.kind in "iub":  # Python's str of the integers: the same digits as numpy's, twice as fast
        if a.dtype != np.uint64:  # uint64 past int64's range would wrap in the cast
            a = a.astype(np.int64)
        if a.size and 0 <= a.min() and a.max() < min(a.size, SMALL_INT_LOOKUP):  # counts, ids, codes
            return np.array(list(map(str, range(int(a.max()) + 1))), dtype=object)[a].tolist()
        return list(map(str, a.tolist()))
    if a.dtype.kind == "f":  # Python's float repr is numpy's str of a float64 (tests/test_hot_path_exact.py)
        a = a.astype(np.float64)
        out = list(map(repr, a.tolist()))
        for i in np.flatnonzero(np.isnan(a)).tolist():
            out[i] = ""
        return out
    return [_fmt(v) for v in a.tolist()]


def write_rows(fh, columns: dict[str, np.ndarray], names: list[str], formatters: dict[str, Any] | None = None) -> None:
    """Append the rows of ``columns`` (in the order of ``names``) to an open CSV file; a formatter
    turns a whole column into its cells."""
    formatters = formatters or {}
    cols = []
    for n in names:
        f = formatters.get(n)
        cols.append(f(np.asarray(columns[n])) if f else _column_strings(columns[n]))
    if cols and len(cols[0]):
        fh.write("\n".join(map(",".join, zip(*cols))))
        fh.write("\n")


def write_table(path: Path, columns: dict[str, np.ndarray], names: list[str] | None = None,
                formatters: dict[str, Any] | None = None) -> None:
    names = names or list(columns)
    with path.open("w", newline="", encoding="utf-8") as fh:
        fh.write(",".join(names) + "\n")
        write_rows(fh, columns, names, formatters)


REQUEST_COLUMNS = ["rid", "replica", "status", "measured", "arrival_s", "first_scheduled_s", "first_token_s",
                   "finish_s", "prompt_tokens", "output_tokens", "generated_tokens", "preemptions",
                   "queue_s", "ttft_s", "tpot_s", "e2e_s"]
BATCH_COLUMNS = ["replica", "start_ps", "end_ps", "iterations", "prefill_tokens", "decode_rows", "running",
                 "waiting", "kv_blocks_used", "kv_blocks_total", "kv_tokens", "flops"]
EVENT_COLUMNS = ["t_ps", "kind", "replica", "request", "value"]


def _names(table: dict[int, str]):
    """A column formatter: integer codes to their names, in bulk (an unknown code as the number)."""
    def fmt(col: np.ndarray) -> list[str]:
        col = col.astype(np.int64)
        lut = np.array([table.get(i, str(i)) for i in range(int(col.max(initial=0)) + 1)] or [""], dtype=object)
        out = lut[np.clip(col, 0, None)]
        if (col < 0).any():
            out[col < 0] = col[col < 0].astype(str)
        return out.tolist()
    return fmt


REQUEST_FORMATTERS = {"status": _names(STATUS_NAMES), "measured": _names({0: "0", 1: "1"})}
EVENT_FORMATTERS = {"kind": _names({int(k): k.name.lower() for k in EventKind})}


TRACE_AUTO_MAX = 5000  # ``outputs.chrome_trace: auto`` writes trace.json for runs of at most this many requests


def trace_wanted(chrome_trace: bool | str, result: RunResult) -> bool:
    """Whether trace.json is written: ``auto`` for runs of at most TRACE_AUTO_MAX requests (a larger
    run's trace is a sample of its batches that a trace viewer opens slowly; its build and write
    were about a fifth of a 10,000-request run's output time)."""
    if chrome_trace == "auto":
        return int(result.summary.get("requests_total") or 0) <= TRACE_AUTO_MAX
    return bool(chrome_trace)


def write_results(result: RunResult, resolved_yaml: str, out: Path, report: bool = True,
                  chrome_trace: bool | str = "auto", events: bool = True,
                  requests: bool = True) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    p = out / "summary.json"
    p.write_text(summary_json(result), encoding="utf-8")
    paths["summary"] = p
    p = out / "scenario.resolved.yaml"
    p.write_text(resolved_yaml, encoding="utf-8")
    paths["scenario"] = p
    spooled = result.spool.files if result.spool is not None else {}
    if requests:
        p = out / "requests.csv"
        if "requests" in spooled:  # a streaming run wrote it in chunks as requests finished
            result.spool.move("requests", p)
        else:
            write_table(p, result.requests, REQUEST_COLUMNS, REQUEST_FORMATTERS)
        paths["requests"] = p
    if events:
        for key, cols, fmt in (("events", EVENT_COLUMNS, EVENT_FORMATTERS), ("batches", BATCH_COLUMNS, None)):
            p = out / f"{key}.csv"
            if key in spooled:
                result.spool.move(key, p)
            else:
                write_table(p, getattr(result, key), cols, fmt)
            paths[key] = p
    if trace_wanted(chrome_trace, result):
        from simulator.trace_export import write_chrome_trace

        p = out / "trace.json"
        write_chrome_trace(result, p)
        paths["trace"] = p
    if report:
        from simulator.dashboard import write_report

        p = out / "report.html"
        write_report(result, p)
        paths["report"] = p
    info = {"wall_s": result.wall_s, "hwsim": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform()}
    (out / "run_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return paths
