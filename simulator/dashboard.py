"""report.html: an interactive plotly dashboard of a :class:`~simulator.results.RunResult`.

A header with the run's configuration, the summary figures (times in ms as the CLI prints them,
fractions as percentages), then the figures of :mod:`simulator.dashboard_figures`. The page loads
plotly.js from a copy written beside it (simulator/html_assets.py), so it opens offline and a run
folder copied alone keeps working, while the page itself stays well under 1 MB. The output is
deterministic: the same result always gives byte-identical HTML.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np

from simulator import __version__
from simulator import dashboard_figures as figs
from simulator.dashboard_ops import op_phases, ops_figure
from simulator.html_assets import plotly_script_tag, write_page
from simulator.plotly_json import to_html
from simulator.results import STATUS_NAMES, RunResult
from simulator.trace_export import event_kind_name

__all__ = ["CDF_QUANTILES", "FIGURE_TITLES", "GANTT_MAX_BARS", "TITLE_TIERS", "busy_bars", "ecdf",
           "render_report", "write_report"]

CDF_QUANTILES, GANTT_MAX_BARS, TITLE_TIERS = figs.CDF_QUANTILES, figs.GANTT_MAX_BARS, figs.TITLE_TIERS
busy_bars, ecdf = figs.busy_bars, figs.ecdf

FIGURE_TITLES = (figs.TITLE_CDF, figs.TITLE_THROUGHPUT, figs.TITLE_TIMELINE, figs.TITLE_BUSY, figs.TITLE_REPLICAS,
                 figs.TITLE_BATCHES, figs.TITLE_OPS, figs.TITLE_LENGTHS)

# (summary key, label, kind): kind "ms" (seconds shown in ms), "pct" (a fraction), "rate", "count", "usd"
SUMMARY_FIELDS = (
    ("requests_finished", "Requests finished", "count"),
    ("throughput_rps", "Throughput", "req/s"),
    ("output_tokens_per_s", "Output tokens", "tok/s"),
    ("total_tokens_per_s", "All tokens (prompt + output)", "tok/s"),
    ("ttft_s", "TTFT", "ms"),
    ("tpot_s", "TPOT", "ms"),
    ("itl_s", "Inter-token latency", "ms"),
    ("e2e_s", "End-to-end latency", "ms"),
    ("queue_s", "Scheduling delay", "ms"),
    ("goodput_rps", "Goodput", "req/s"),
    ("slo_attainment", "SLO attainment", "pct"),
    ("preemptions", "Preemptions", "count"),
    ("batch_size_mean", "Mean batch size", "requests"),
    ("queue_length_mean", "Mean queue length", "requests"),
    ("gpu_busy_fraction", "GPU busy", "pct"),
    ("mfu", "MFU", "pct"),
    ("kv_utilization_mean", "Mean KV utilisation", "pct"),
    ("kv_utilization_peak", "Peak KV utilisation", "pct"),
    ("cost_usd_per_mtok", "Cost", "USD / M output tokens"),
    ("energy_per_output_token_j", "Energy", "J / output token"),
    ("energy_per_request_j", "Energy per request", "J / request"),
    ("energy_request_j", "Step energy per request (token share)", "J"),
    ("power_mean_w", "Mean power", "W"),
)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.15em;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 10px;text-align:left}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.meta{color:#666}.fig{margin-bottom:12px}.cols{display:flex;gap:32px;flex-wrap:wrap;align-items:flex-start}
"""


# ----------------------------------------------------------------------------- formatting
def _number(f: float) -> str:
    if not math.isfinite(f):
        return "–"
    a = abs(f)
    if a >= 100:
        return f"{f:,.0f}"
    if a >= 10:
        return f"{f:.1f}"
    if a >= 0.01 or a == 0:
        return f"{f:.2f}"
    return f"{f:.3g}"


def fmt_value(v: Any, kind: str = "") -> str:
    """Text for a summary value: seconds as ms, fractions as percentages, percentile dicts as
    ``p50 · p90 · p99``, None and NaN as a dash."""
    if v is None:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, dict):
        keys = [k for k in ("p50", "p90", "p99") if k in v] or sorted(map(str, v))[:6]
        return " · ".join(f"{k} {fmt_value(v.get(k), kind)}" for k in keys) if keys else "–"
    if isinstance(v, (int, np.integer)) and kind not in ("ms", "pct"):
        return f"{int(v):,}"
    if isinstance(v, (int, float, np.integer, np.floating)):
        f = float(v)
        if not math.isfinite(f):
            return "–"
        if kind == "ms":
            return _number(f * 1e3)
        if kind == "pct":
            return f"{f:.1%}"
        return _number(f)
    return str(v)


def _row(label: str, value: str, unit: str = "") -> str:
    unit_txt = f" <span class=meta>{html.escape(unit)}</span>" if unit else ""
    return f"<tr><th>{html.escape(label)}</th><td class=num>{html.escape(value)}{unit_txt}</td></tr>"


def _summary_table(summary: dict[str, Any]) -> str:
    rows = []
    for key, label, kind in SUMMARY_FIELDS:
        if key in summary:
            unit = "" if kind in ("pct", "count") else kind
            rows.append(_row(label, fmt_value(summary[key], kind), unit))
    if not rows:
        return "<p class=meta>No summary figures.</p>"
    return "<table>" + "".join(rows) + "</table>"


def _facts_table(result: RunResult) -> str:
    req = result.requests
    n = figs.nrows(req)
    rows = [_row("Requests", f"{n:,}"), _row("Replicas", f"{len(result.replicas):,}"),
            _row("Batch segments", f"{figs.nrows(result.batches):,}"),
            _row("Simulated time", _number(float(result.sim_time_s)), "s"),
            _row("Wall time", _number(float(result.wall_s)), "s")]
    k = (result.summary.get("metrics") or {}).get("sample_every_kth_request")
    if k and k > 1:  # streaming metrics: the tables and figures hold a sample, the summary every request
        rows.insert(1, _row("Shown in tables and figures", f"1 request in {k:,} of "
                                                           f"{result.summary.get('requests_arrived', n):,}"))
    if n and "status" in req:
        codes, counts = np.unique(np.asarray(req["status"]).astype(np.int64), return_counts=True)
        for c, k in zip(codes.tolist(), counts.tolist()):
            rows.append(_row(f"Requests {STATUS_NAMES.get(c, str(c))}", f"{k:,}"))
    ev = result.events
    if figs.nrows(ev) and "kind" in ev:
        codes, counts = np.unique(np.asarray(ev["kind"]).astype(np.int64), return_counts=True)
        for c, k in zip(codes.tolist(), counts.tolist()):
            rows.append(_row(f"Events {event_kind_name(c)}", f"{k:,}"))
    return "<table>" + "".join(rows) + "</table>"


# ----------------------------------------------------------------------------- configuration header
def _kind(block: Any, *names: str) -> str | None:
    """A component's name: its first present key among ``names`` (then ``kind``), or None."""
    if not isinstance(block, dict):
        return None
    for key in (*names, "kind"):
        if block.get(key):
            return str(block[key])
    return None


def _params(block: Any, limit: int = 4) -> str:
    """`` (a 1, b 2)``: the first few set scalar settings of a component besides its kind."""
    if not isinstance(block, dict):
        return ""
    items = [f"{k.replace('_', ' ')} {v}" for k, v in block.items()
             if k not in ("kind", "name") and v not in (None, "", False) and not isinstance(v, (dict, list))]
    return f" ({', '.join(items[:limit])})" if items else ""


def _workload_text(w: dict[str, Any]) -> str:
    kind = w.get("kind", "?")
    bits = [str(kind)]
    if w.get("num_requests"):
        bits.append(f"{int(w['num_requests']):,} requests")
    arrival = w.get("arrival") if isinstance(w.get("arrival"), dict) else {}
    if arrival.get("rate"):
        bits.append(f"{arrival.get('process', 'arrivals')} at {arrival['rate']}")
    for key, label in (("target_rate", "rate"), ("rate", "rate"), ("clients", "clients"), ("path", "trace"),
                       ("think_time", "think time")):
        if w.get(key) is not None and not isinstance(w.get(key), dict):
            bits.append(f"{label} {w[key]}")
    return ", ".join(bits)


def config_rows(result: RunResult) -> list[tuple[str, str]]:
    """(label, text) of the run's configuration, read from the resolved scenario; rows whose
    source is absent are left out (a hand-made result may have no scenario)."""
    sc = result.scenario or {}
    hw = sc.get("hardware") or {}
    cluster = sc.get("cluster") or {}
    policies = sc.get("policies") or {}
    rows: list[tuple[str, str]] = []
    model = sc.get("model") or {}
    if model:
        rows.append(("Model", f"{model.get('name', '?')} ({model.get('dtype', '?')})"))
    gpus: dict[str, int] = {}
    for r in result.replicas:
        gpus[str(r.get("device", "?"))] = gpus.get(str(r.get("device", "?")), 0) + int(r.get("devices", 1))
    if gpus:
        rows.append(("GPUs", ", ".join(f"{name} x {count}" for name, count in gpus.items())))
    pools = cluster.get("pools") or []
    default_sched = _kind(policies.get("scheduler"))
    if pools:
        for p in pools:
            sched = _kind(p.get("scheduler")) or default_sched
            rows.append((f"Pool {p.get('name', '?')}",
                         f"role {p.get('role', 'both')}, {p.get('replicas', 1)} replicas, "
                         f"TP {p.get('tensor_parallel', 1)} / PP {p.get('pipeline_parallel', 1)}"
                         + (f", {_kind(p.get('device'), 'name')}" if p.get("device") else "")
                         + (f", scheduler {sched}" if sched else "")))
    elif cluster:
        rows.append(("Replicas", f"{cluster.get('replicas', 1)}, TP {cluster.get('tensor_parallel', 1)} / "
                                 f"PP {cluster.get('pipeline_parallel', 1)}"))
    if cluster.get("router"):
        routers = _kind(cluster["router"])
        if pools and any(p.get("role") == "decode" for p in pools) and cluster.get("decode_router"):
            routers += f" (decode: {_kind(cluster['decode_router'])})"
        rows.append(("Router", routers))
    if default_sched:
        s = policies["scheduler"]
        extra = [f"{k} {s[k]}" for k in ("max_num_seqs", "max_num_batched_tokens", "chunk_tokens") if s.get(k)]
        rows.append(("Scheduler", default_sched + (f" ({', '.join(extra)})" if extra else "")))
    if sc:
        kv = policies.get("kv_cache")
        rows.append(("KV cache", (_kind(kv, "name") or "paged") + _params(kv)))
        q = policies.get("quantization")
        rows.append(("Quantization", _kind(q, "name", "preset") or f"none ({model.get('dtype', 'model dtype')})"))
    if _kind(hw.get("timing")):
        rows.append(("Timing backend", _kind(hw.get("timing"))))
    if isinstance(sc.get("workload"), dict):
        rows.append(("Workload", _workload_text(sc["workload"])))
    slo = sc.get("slo") or {}
    if any(slo.get(k) for k in ("ttft", "tpot")):
        rows.append(("SLO", ", ".join(f"{k.upper()} {slo[k]}" for k in ("ttft", "tpot") if slo.get(k))
                     + (f", attainment {float(slo['attainment']):.0%}" if slo.get("attainment") else "")))
    if "seed" in sc:
        rows.append(("Seed", str(sc["seed"])))
    rows.append(("hwsim", __version__))
    return rows


def _config_table(result: RunResult) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(label)}</th><td>{html.escape(text)}</td></tr>"
                               for label, text in config_rows(result)) + "</table>"


def _slo_limits(summary: dict[str, Any]) -> dict[str, float]:
    slo = summary.get("slo") or {}
    return {k: float(slo[k]) for k in ("ttft_s", "tpot_s") if isinstance(slo.get(k), (int, float)) and slo[k] > 0}


# ----------------------------------------------------------------------------- report
def render_report(result: RunResult) -> str:
    """The report as one HTML string (a KV memory-tier section only when the run has KV-policy
    counters, so plain paged runs are unchanged)."""
    cols = figs.batch_columns(result)
    phases = op_phases(result, cols)
    figures = [(figs.TITLE_CDF, figs.cdf_figure(result, _slo_limits(result.summary))),
               (figs.TITLE_THROUGHPUT, figs.throughput_figure(result, cols)),
               (figs.TITLE_TIMELINE, figs.timeline_figure(result, cols)),
               (figs.TITLE_BUSY, figs.busy_figure(result, cols)),
               (figs.TITLE_REPLICAS, figs.replicas_figure(result, cols)),
               (figs.TITLE_BATCHES, figs.batches_figure(cols)),
               (figs.TITLE_OPS, ops_figure(phases)),
               (figs.TITLE_LENGTHS, figs.lengths_figure(result))]
    kv = result.summary.get("kv_cache")
    if kv:
        figures.append((figs.TITLE_TIERS, figs.tiers_figure(result, cols, kv)))
    name = html.escape(str(result.name))
    description = (result.scenario or {}).get("description")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>hwsim report: {name}</title>", f"<style>{_CSS}</style>", plotly_script_tag(),
             "</head><body>", f"<h1>{name}</h1>"]
    if description:
        parts.append(f"<p class=meta>{html.escape(str(description))}</p>")
    parts += ['<div class="cols"><div>', "<h2>Configuration</h2>", _config_table(result), "</div><div>",
              "<h2>Summary</h2>", _summary_table(result.summary), "</div><div>",
              "<h2>Run</h2>", _facts_table(result), "</div></div>"]
    for i, (title, fig) in enumerate(figures):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if title == figs.TITLE_OPS and phases:
            parts.append("<p class=meta>Kernel times of one iteration as <code>hwsim ops</code> prints them "
                         "(first pool's device and timing backend).</p>")
        parts.append('<div class="fig">' + to_html(fig, f"fig-{i}", {"displaylogo": False}) + "</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(result: RunResult, path: Path) -> None:
    """Write the report of ``result`` to ``path``, with plotly.js beside it (offline)."""
    write_page(Path(path), render_report(result))
