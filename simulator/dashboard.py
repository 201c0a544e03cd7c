"""A single self-contained HTML report of a :class:`~simulator.results.RunResult`.

The file embeds plotly.js inline (no network access needed to open it) and is deterministic: the
same result always gives byte-identical HTML. Large arrays are reduced before plotting (CDF
quantiles, every k-th timeline row, merged busy bars) so the report stays small.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.offline
from plotly.subplots import make_subplots

from simulator.results import STATUS_NAMES, RunResult
from simulator.trace_export import event_kind_name

CDF_RAW_LIMIT = 20_000  # above this many points a CDF is drawn from quantiles
CDF_QUANTILES = 2_000
TIMELINE_MAX_POINTS = 5_000  # per trace
GANTT_MAX_BARS = 5_000  # per replica
MERGE_GAP_S = 1e-9

TITLE_CDF = "Latency CDFs"
TITLE_TIMELINE = "Replica timelines"
TITLE_BUSY = "Replica busy timeline"
TITLE_LENGTHS = "Prompt and output lengths"
TITLE_TIERS = "KV memory tiers"
FIGURE_TITLES = (TITLE_CDF, TITLE_TIMELINE, TITLE_BUSY, TITLE_LENGTHS)
GIB = 2.0**30
# summary["kv_cache"] keys shown in the tiers section: (key, label)
LINK_KEYS = (("pcie_d2h_bytes", "PCIe GPU->host"), ("pcie_h2d_bytes", "PCIe host->GPU"),
             ("ssd_write_bytes", "SSD write"), ("ssd_read_bytes", "SSD read"),
             ("bytes_to_host", "PCIe GPU->host"), ("bytes_to_device", "PCIe host->GPU"))
HIT_KEYS = (("hit_rate", "GPU prefix cache"), ("host_hit_rate", "host DRAM"), ("ssd_hit_rate", "SSD"))
STALL_KEYS = (("stall_s", "stalled on transfers"), ("prefetch_late_s", "waiting for late prefetch"))

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
PREFILL_COLOUR, DECODE_COLOUR = "#d62728", "#1f77b4"

# (summary key, label, unit)
SUMMARY_FIELDS = (
    ("requests_finished", "Requests finished", ""),
    ("throughput_rps", "Throughput", "req/s"),
    ("output_tokens_per_s", "Output tokens", "tok/s"),
    ("ttft_s", "TTFT", "s"),
    ("tpot_s", "TPOT", "s"),
    ("itl_s", "Inter-token latency", "s"),
    ("e2e_s", "End-to-end latency", "s"),
    ("queue_s", "Queueing delay", "s"),
    ("goodput_rps", "Goodput", "req/s"),
    ("slo_attainment", "SLO attainment", ""),
    ("preemptions", "Preemptions", ""),
    ("gpu_busy_fraction", "GPU busy fraction", ""),
    ("mfu", "MFU", ""),
    ("kv_utilization_mean", "Mean KV utilisation", ""),
    ("cost_usd_per_mtok", "Cost", "USD / M tokens"),
)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.15em;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 10px;text-align:left}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.meta{color:#666}.fig{margin-bottom:12px}
"""


# ----------------------------------------------------------------------------- formatting
def _fmt(v: Any) -> str:
    """Robust text for a summary value (numbers, None, NaN, percentile dicts, anything else)."""
    if v is None:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f"{f:.4g}" if math.isfinite(f) else "–"
    if isinstance(v, dict):
        keys = [k for k in ("p50", "p90", "p99") if k in v] or sorted(map(str, v))[:6]
        return " · ".join(f"{k} {_fmt(v.get(k))}" for k in keys)
    return str(v)


def _row(label: str, value: str, unit: str = "") -> str:
    unit_txt = f" <span class=meta>{html.escape(unit)}</span>" if unit else ""
    return f"<tr><th>{html.escape(label)}</th><td class=num>{html.escape(value)}{unit_txt}</td></tr>"


def _summary_table(summary: dict[str, Any]) -> str:
    rows = [_row(label, _fmt(summary[key]), unit) for key, label, unit in SUMMARY_FIELDS if key in summary]
    if not rows:
        return "<p class=meta>No summary figures.</p>"
    return "<table>" + "".join(rows) + "</table>"


def _facts_table(result: RunResult) -> str:
    req = result.requests
    n = _nrows(req)
    rows = [_row("Requests", f"{n:,}"), _row("Replicas", f"{len(result.replicas):,}"),
            _row("Batch segments", f"{_nrows(result.batches):,}"),
            _row("Simulated time", _fmt(float(result.sim_time_s)), "s"),
            _row("Wall time", _fmt(float(result.wall_s)), "s")]
    if n and "status" in req:
        codes, counts = np.unique(np.asarray(req["status"]).astype(np.int64), return_counts=True)
        for c, k in zip(codes.tolist(), counts.tolist()):
            rows.append(_row(f"Status {STATUS_NAMES.get(c, str(c))}", f"{k:,}"))
    ev = result.events
    if _nrows(ev) and "kind" in ev:
        codes, counts = np.unique(np.asarray(ev["kind"]).astype(np.int64), return_counts=True)
        for c, k in zip(codes.tolist(), counts.tolist()):
            rows.append(_row(f"Events {event_kind_name(c)}", f"{k:,}"))
    return "<table>" + "".join(rows) + "</table>"


# ----------------------------------------------------------------------------- data helpers
def _nrows(table: dict[str, np.ndarray]) -> int:
    return max((len(v) for v in table.values()), default=0)


def _floats(table: dict[str, np.ndarray], key: str, n: int) -> np.ndarray:
    col = table.get(key)
    return np.full(n, np.nan) if col is None else np.asarray(col, dtype=float)


def _every_kth(n: int, cap: int) -> np.ndarray:
    return np.arange(0, n, max(1, -(-n // cap)))


def ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF of the finite values; quantiles at CDF_QUANTILES probabilities if too many."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size > CDF_RAW_LIMIT:
        p = np.linspace(0.0, 1.0, CDF_QUANTILES)
        return np.quantile(v, p), p
    return np.sort(v), np.arange(1, v.size + 1) / max(v.size, 1)


def busy_bars(start: np.ndarray, end: np.ndarray, prefill: np.ndarray,
              cap: int = GANTT_MAX_BARS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge busy segments (sorted by start) into at most ``cap`` bars: (start, end, has_prefill).

    Touching segments (gap < MERGE_GAP_S) of the same kind are merged first; if more than ``cap``
    remain, the neighbours separated by the smallest gaps are merged (ties spread evenly), and a
    merged bar counts as prefill-containing if any of its parts does.
    """
    if start.size == 0:
        return start, end, prefill.astype(bool)
    kind = prefill.astype(bool)
    gaps = start[1:] - end[:-1]
    breaks = ~((gaps < MERGE_GAP_S) & (kind[1:] == kind[:-1]))
    if breaks.sum() + 1 > cap:
        m = gaps.size
        spread = (np.arange(m) * 0.6180339887498949) % 1.0
        order = np.lexsort((spread, gaps))  # smallest gaps first
        breaks = np.zeros(m, dtype=bool)
        breaks[order[m - (cap - 1):]] = True
    heads = np.concatenate(([0], np.flatnonzero(breaks) + 1))
    return start[heads], np.maximum.reduceat(end, heads), np.logical_or.reduceat(kind, heads)


# ----------------------------------------------------------------------------- figures
_TEMPLATE = None


def _template() -> go.layout.Template:
    """A light template (white background, pale grid), built once: plotly's named templates are
    large and deep-copied into every figure, which dominated the report's build time."""
    global _TEMPLATE
    if _TEMPLATE is None:
        axis = {"gridcolor": "#EBF0F8", "linecolor": "#EBF0F8", "zerolinecolor": "#EBF0F8", "ticks": ""}
        _TEMPLATE = go.layout.Template(layout={"paper_bgcolor": "white", "plot_bgcolor": "white",
                                               "font": {"color": "#2a3f5f"}, "xaxis": axis, "yaxis": axis,
                                               "hovermode": "closest"})
    return _TEMPLATE


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(title={"text": title}, height=height, template=_template(),
                      margin={"l": 60, "r": 20, "t": 70, "b": 50}, legend={"orientation": "h", "y": -0.12})
    return fig


def _no_data(fig: go.Figure, text: str) -> None:
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)


def _cdf_figure(result: RunResult) -> go.Figure:
    req = result.requests
    n = _nrows(req)
    measured = np.asarray(req["measured"], dtype=bool) if "measured" in req else np.ones(n, dtype=bool)
    series = [("TTFT", _floats(req, "ttft_s", n)[measured]), ("TPOT", _floats(req, "tpot_s", n)[measured]),
              ("Inter-token latency", np.asarray(result.itl_s, dtype=float)),
              ("End-to-end latency", _floats(req, "e2e_s", n)[measured])]
    fig = make_subplots(rows=2, cols=2, subplot_titles=[s[0] for s in series],
                        horizontal_spacing=0.08, vertical_spacing=0.15)
    for i, (label, values) in enumerate(series):
        x, y = ecdf(values)
        row, col = divmod(i, 2)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line_shape="hv", name=label, showlegend=False,
                                 line={"color": PALETTE[i]},
                                 hovertemplate="%{x:.4g} s<br>P = %{y:.4f}<extra>" + label + "</extra>"),
                      row=row + 1, col=col + 1)
        log = x.size > 0 and float(x[0]) > 0
        fig.update_xaxes(title_text="seconds", type="log" if log else "linear", row=row + 1, col=col + 1)
        fig.update_yaxes(title_text="fraction", range=[0, 1.02], row=row + 1, col=col + 1)
    if all(ecdf(v)[0].size == 0 for _, v in series):
        _no_data(fig, "no measured latencies")
    return _layout(fig, TITLE_CDF, 700)


def _batch_columns(result: RunResult) -> dict[str, np.ndarray]:
    b = result.batches
    n = _nrows(b)
    cols = {k: _floats(b, k, n) for k in ("replica", "start_s", "end_s", "running", "waiting",
                                          "kv_blocks_used", "kv_blocks_total", "prefill_tokens")}
    cols["replica"] = np.nan_to_num(cols["replica"], nan=-1).astype(np.int64)
    return cols


def _replica_rows(cols: dict[str, np.ndarray]) -> list[tuple[int, np.ndarray]]:
    out = []
    for r in np.unique(cols["replica"]).tolist():
        sel = np.flatnonzero(cols["replica"] == r)
        out.append((int(r), sel[np.argsort(cols["start_s"][sel], kind="stable")]))
    return out


def _timeline_figure(cols: dict[str, np.ndarray]) -> go.Figure:
    panels = ("Batch size (running requests)", "KV-cache utilisation", "Queue length (waiting requests)")
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, subplot_titles=panels, vertical_spacing=0.07)
    total = cols["kv_blocks_total"]
    with np.errstate(divide="ignore", invalid="ignore"):
        kv_util = np.where(total > 0, cols["kv_blocks_used"] / total, np.nan)
    rows = _replica_rows(cols)
    for j, (r, sel) in enumerate(rows):
        sub = sel[_every_kth(sel.size, TIMELINE_MAX_POINTS)]
        x = cols["start_s"][sub]
        colour = PALETTE[j % len(PALETTE)]
        for k, y in enumerate((cols["running"][sub], kv_util[sub], cols["waiting"][sub])):
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line_shape="hv", name=f"replica {r}",
                                     legendgroup=f"replica {r}", showlegend=k == 0, line={"color": colour}),
                          row=k + 1, col=1)
    fig.update_yaxes(title_text="requests", row=1, col=1)
    fig.update_yaxes(title_text="fraction", row=2, col=1)
    fig.update_yaxes(title_text="requests", row=3, col=1)
    fig.update_xaxes(title_text="simulated time (s)", row=3, col=1)
    if not rows:
        _no_data(fig, "no batches")
    return _layout(fig, TITLE_TIMELINE, 800)


def _busy_figure(cols: dict[str, np.ndarray]) -> go.Figure:
    fig = go.Figure()
    rows = _replica_rows(cols)
    parts: dict[bool, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {True: [], False: []}
    for r, sel in rows:
        s, e, pf = busy_bars(cols["start_s"][sel], cols["end_s"][sel],
                             np.nan_to_num(cols["prefill_tokens"][sel]) > 0)
        for flag in (True, False):
            m = pf == flag
            parts[flag].append((s[m], e[m], np.full(int(m.sum()), r, dtype=np.int64)))
    for flag, label, colour in ((True, "prefill-containing", PREFILL_COLOUR),
                                (False, "decode-only", DECODE_COLOUR)):
        if not parts[flag]:
            continue
        s = np.concatenate([p[0] for p in parts[flag]])
        e = np.concatenate([p[1] for p in parts[flag]])
        y = np.concatenate([p[2] for p in parts[flag]])
        fig.add_trace(go.Bar(x=e - s, base=s, y=y, orientation="h", name=label, width=0.8,
                             marker={"color": colour, "line": {"width": 0}},
                             hovertemplate="start %{base:.6g} s<br>busy %{x:.4g} s<extra>" + label + "</extra>"))
    ids = [r for r, _ in rows]
    fig.update_yaxes(tickvals=ids, ticktext=[f"replica {r}" for r in ids], autorange="reversed")
    fig.update_xaxes(title_text="simulated time (s)")
    fig.update_layout(barmode="overlay", bargap=0.2)
    if not rows:
        _no_data(fig, "no batches")
    return _layout(fig, TITLE_BUSY, max(300, 120 + 40 * len(ids)))


def _histogram(values: np.ndarray, bins: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return np.empty(0), np.empty(0), np.empty(0)
    lo, hi = float(v.min()), float(v.max())
    nb = int(max(1, min(bins, hi - lo + 1)))  # token counts: no narrower than one token
    counts, edges = np.histogram(v, bins=nb, range=(lo, hi if hi > lo else lo + 1))
    return (edges[:-1] + edges[1:]) / 2, np.diff(edges), counts


def _lengths_figure(result: RunResult) -> go.Figure:
    req = result.requests
    n = _nrows(req)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Prompt length", "Output length (requested)"))
    for i, key in enumerate(("prompt_tokens", "output_tokens")):
        centres, widths, counts = _histogram(_floats(req, key, n))
        fig.add_trace(go.Bar(x=centres, y=counts, width=widths, name=key, showlegend=False,
                             marker={"color": PALETTE[i], "line": {"width": 0}},
                             hovertemplate="%{x:.0f} tokens: %{y}<extra></extra>"), row=1, col=i + 1)
        fig.update_xaxes(title_text="tokens", row=1, col=i + 1)
        fig.update_yaxes(title_text="requests", row=1, col=i + 1)
    if n == 0:
        _no_data(fig, "no requests")
    fig.update_layout(bargap=0)
    return _layout(fig, TITLE_LENGTHS, 420)


def _tiers_figure(result: RunResult, cols: dict[str, np.ndarray], kv: dict[str, Any]) -> go.Figure:
    """Occupancy per tier over time (GPU KV per replica, host DRAM, SSD), bytes per link, hit rate
    per tier and time stalled on transfers, from summary["kv_cache"] and the batch table."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=("Occupancy per tier", "Bytes per link",
                                                        "Hit rate per tier", "Transfer stalls"),
                        horizontal_spacing=0.1, vertical_spacing=0.18)
    per_block = {int(r["index"]): float(r.get("kv_bytes_per_block", 0.0)) for r in result.replicas}
    for j, (r, sel) in enumerate(_replica_rows(cols)):
        sub = sel[_every_kth(sel.size, TIMELINE_MAX_POINTS)]
        fig.add_trace(go.Scatter(x=cols["end_s"][sub], y=cols["kv_blocks_used"][sub] * per_block.get(r, 0.0) / GIB,
                                 mode="lines", line_shape="hv", name=f"GPU KV replica {r}",
                                 line={"color": PALETTE[j % len(PALETTE)]}), row=1, col=1)
    occ = kv.get("occupancy") or {}
    for name, key, colour in (("host DRAM", "host_bytes", "#8c564b"), ("SSD", "ssd_bytes", "#7f7f7f")):
        if occ.get(key):
            fig.add_trace(go.Scatter(x=occ["t_s"], y=np.asarray(occ[key], dtype=float) / GIB, mode="lines",
                                     line_shape="hv", name=name, line={"color": colour, "dash": "dot"}),
                          row=1, col=1)
    for (keys, row, col, scale, unit) in ((LINK_KEYS, 1, 2, GIB, "GiB"), (HIT_KEYS, 2, 1, 1.0, "fraction"),
                                          (STALL_KEYS, 2, 2, 1.0, "seconds")):
        labels, values = [], []
        for key, label in keys:
            if key in kv and label not in labels:
                labels.append(label)
                values.append(float(kv[key]) / scale)
        fig.add_trace(go.Bar(x=labels, y=values, showlegend=False, marker={"color": PALETTE[row + col]}),
                      row=row, col=col)
        fig.update_yaxes(title_text=unit, row=row, col=col)
    fig.update_yaxes(title_text="GiB", row=1, col=1)
    fig.update_xaxes(title_text="simulated time (s)", row=1, col=1)
    return _layout(fig, TITLE_TIERS, 760)


# ----------------------------------------------------------------------------- report
def render_report(result: RunResult) -> str:
    """The report as one HTML string (a KV memory-tier section only when the run has KV-policy
    counters, so plain paged runs are unchanged)."""
    cols = _batch_columns(result)
    figures = [_cdf_figure(result), _timeline_figure(cols), _busy_figure(cols), _lengths_figure(result)]
    titles = list(FIGURE_TITLES)
    kv = result.summary.get("kv_cache")
    if kv:
        figures.append(_tiers_figure(result, cols, kv))
        titles.append(TITLE_TIERS)
    name = html.escape(str(result.name))
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>hwsim report: {name}</title>", f"<style>{_CSS}</style>",
             "<script>", plotly.offline.get_plotlyjs(), "</script>", "</head><body>",
             f"<h1>{name}</h1>", "<h2>Summary</h2>", _summary_table(result.summary),
             "<h2>Run</h2>", _facts_table(result)]
    for i, (title, fig) in enumerate(zip(titles, figures)):
        height = f"{int(fig.layout.height)}px"
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append('<div class="fig">' + fig.to_html(full_html=False, include_plotlyjs=False,
                                                        div_id=f"fig-{i}", default_height=height,
                                                        config={"displaylogo": False}) + "</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(result: RunResult, path: Path) -> None:
    """Write a self-contained, offline-viewable HTML report of ``result`` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(render_report(result))
