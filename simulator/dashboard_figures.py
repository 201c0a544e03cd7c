"""The plotly figures of report.html, each a pure function of a :class:`~simulator.results.RunResult`.

Large arrays are reduced before plotting (CDF quantiles, every k-th timeline row, utilisation per
time bucket, capped busy bars) so the report stays small. Times are shown in milliseconds (as the
CLI prints them) except simulated wall-clock axes, which are seconds; fractions are percentages.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.plotly_json import Figure, colorscale, make_subplots
from simulator.results import RunResult

CDF_RAW_LIMIT = 2_000  # above this many points a CDF is drawn from quantiles
CDF_QUANTILES = 1_000
TIMELINE_MAX_POINTS = 2_000  # per trace, and at most TIMELINE_TOTAL_POINTS over all replicas
TIMELINE_TOTAL_POINTS = 8_000
GANTT_MAX_BARS = 5_000  # per replica (busy_bars' default cap)
GANTT_DETAIL_SEGMENTS = 3_000  # the busy-segment panel holds the run's first this many segments, exactly
GANTT_DETAIL_BARS = 60  # ... and opens zoomed on about this many bars of the busiest replica
TIME_BUCKETS = 200  # utilisation over time
RATE_BUCKETS = 60  # throughput over time (fewer: counts per bucket stay readable)
MERGE_GAP_S = 1e-9
LOG_AXIS_MIN_RATIO = 20.0  # a CDF gets a log x axis only if its data spans more than this ratio

TITLE_CDF = "Latency CDFs"
TITLE_THROUGHPUT = "Throughput over time"
TITLE_TIMELINE = "Replica timelines"
TITLE_BUSY = "Replica utilisation over time"
TITLE_REPLICAS = "Busy fraction and MFU per replica"
TITLE_BATCHES = "Batch size and batch tokens per iteration"
TITLE_OPS = "Operator time per iteration"
TITLE_LENGTHS = "Prompt and output lengths"
TITLE_TIERS = "KV memory tiers"
GIB = 2.0**30

LINK_KEYS = (("pcie_d2h_bytes", "PCIe GPU->host"), ("pcie_h2d_bytes", "PCIe host->GPU"),
             ("ssd_write_bytes", "SSD write"), ("ssd_read_bytes", "SSD read"),
             ("bytes_to_host", "PCIe GPU->host"), ("bytes_to_device", "PCIe host->GPU"))
HIT_KEYS = (("hit_rate", "GPU prefix cache"), ("host_hit_rate", "host DRAM"), ("ssd_hit_rate", "SSD"))
STALL_KEYS = (("stall_s", "stalled on transfers"), ("prefetch_late_s", "waiting for late prefetch"))

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
PREFILL_COLOUR, DECODE_COLOUR = "#d62728", "#1f77b4"
SLO_COLOUR = "#d62728"


# ----------------------------------------------------------------------------- data helpers
def nrows(table: dict[str, np.ndarray]) -> int:
    return max((len(v) for v in table.values()), default=0)


def floats(table: dict[str, np.ndarray], key: str, n: int) -> np.ndarray:
    col = table.get(key)
    return np.full(n, np.nan) if col is None else np.asarray(col, dtype=float)


def every_kth(n: int, cap: int) -> np.ndarray:
    return np.arange(0, n, max(1, -(-n // cap)))


def timeline_cap(replicas: int) -> int:
    return max(200, min(TIMELINE_MAX_POINTS, TIMELINE_TOTAL_POINTS // max(replicas, 1)))


def ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF of the finite values; quantiles at CDF_QUANTILES probabilities if too many."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size > CDF_RAW_LIMIT:  # np.quantile's linear interpolation, from one sort (several times faster)
        p = np.linspace(0.0, 1.0, CDF_QUANTILES)
        v = np.sort(v)
        pos = p * (v.size - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, v.size - 1)
        return v[lo] + (v[hi] - v[lo]) * (pos - lo), p
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


def busy_per_bucket(start: np.ndarray, end: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Busy fraction of each bucket [edges[i], edges[i+1]) given busy segments (any order; overlaps
    count once per segment, then the fraction is capped at 1)."""
    if start.size == 0 or edges.size < 2:
        return np.zeros(max(edges.size - 1, 0))
    order = np.argsort(start, kind="stable")
    s, e = start[order], np.maximum(end[order], start[order])
    cum = np.concatenate(([0.0], np.cumsum(e - s)))

    def busy_before(t: np.ndarray) -> np.ndarray:  # busy time of segments before t, clipped at t
        k = np.searchsorted(s, t, side="right")
        over = np.where(k > 0, np.maximum(e[np.maximum(k - 1, 0)] - t, 0.0), 0.0)
        return cum[k] - over

    width = np.diff(edges)
    frac = np.diff(busy_before(edges)) / np.where(width > 0, width, 1.0)
    return np.clip(frac, 0.0, 1.0)


def time_edges(result: RunResult, buckets: int = TIME_BUCKETS) -> np.ndarray:
    end = float(result.sim_time_s)
    b = result.batches
    if "end_s" in b and len(b["end_s"]):
        end = max(end, float(np.nanmax(np.asarray(b["end_s"], dtype=float))))
    return np.linspace(0.0, end if end > 0 else 1.0, buckets + 1)


def replica_label(result: RunResult, r: int) -> str:
    """``replica 3 (decode)`` or ``replica 0 (pool big, prefill)``: the pool is named unless it is
    the only one and is called main, and the role unless it is ``both``."""
    facts = next((x for x in result.replicas if int(x.get("index", -1)) == r), None)
    if facts is None and 0 <= r < len(result.replicas):
        facts = result.replicas[r]
    if not facts:
        return f"replica {r}"
    pool, role = facts.get("pool"), facts.get("role")
    bits = []
    if pool and (pool != "main" or len({x.get("pool") for x in result.replicas}) > 1):
        bits.append(str(pool) if pool == role else f"pool {pool}")
    if role and role != "both" and role != pool:
        bits.append(str(role))
    return f"replica {r}" + (f" ({', '.join(bits)})" if bits else "")


def batch_columns(result: RunResult) -> dict[str, np.ndarray]:
    b = result.batches
    n = nrows(b)
    cols = {k: floats(b, k, n) for k in ("replica", "start_s", "end_s", "running", "waiting", "iterations",
                                         "kv_blocks_used", "kv_blocks_total", "prefill_tokens", "decode_rows",
                                         "flops")}
    cols["replica"] = np.nan_to_num(cols["replica"], nan=-1).astype(np.int64)
    return cols


def replica_rows(cols: dict[str, np.ndarray]) -> list[tuple[int, np.ndarray]]:
    out = []
    for r in np.unique(cols["replica"]).tolist():
        sel = np.flatnonzero(cols["replica"] == r)
        out.append((int(r), sel[np.argsort(cols["start_s"][sel], kind="stable")]))
    return out


# ----------------------------------------------------------------------------- figure helpers
_AXIS = {"gridcolor": "#EBF0F8", "linecolor": "#EBF0F8", "ticks": "", "zerolinecolor": "#EBF0F8"}
TEMPLATE = {"layout": {"font": {"color": "#2a3f5f"}, "hovermode": "closest", "paper_bgcolor": "white",
                       "plot_bgcolor": "white", "xaxis": _AXIS, "yaxis": _AXIS}}


def template() -> dict[str, Any]:
    """A light template (white background, pale grid): plotly's named templates are large and
    would be repeated in every figure of the page."""
    return TEMPLATE


def layout(fig: Figure, height: int) -> Figure:
    fig.update_layout(height=height, template=template(), margin={"l": 70, "r": 20, "t": 40, "b": 50},
                      legend={"orientation": "h", "y": -0.15})
    return fig


def no_data(fig: Figure, text: str) -> None:
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)


def _cdf_axis(x: np.ndarray) -> dict[str, Any]:
    """Log axis only when the data spans more than LOG_AXIS_MIN_RATIO (a narrow log range gets no
    tick labels where the data is); a linear axis starts at 0 unless that squeezes the data."""
    if x.size == 0:
        return {"type": "linear"}
    lo, hi = float(x[0]), float(x[-1])
    if lo > 0 and hi / lo > LOG_AXIS_MIN_RATIO:
        return {"type": "log"}
    return {"type": "linear", "rangemode": "tozero" if lo <= 0.5 * hi else "normal"}


# ----------------------------------------------------------------------------- figures
def cdf_figure(result: RunResult, slo: dict[str, float]) -> Figure:
    """TTFT, TPOT, inter-token, end-to-end and scheduling-delay CDFs in ms, with SLO lines."""
    req = result.requests
    n = nrows(req)
    measured = np.asarray(req["measured"], dtype=bool) if "measured" in req else np.ones(n, dtype=bool)
    series = [("TTFT", floats(req, "ttft_s", n)[measured], slo.get("ttft_s")),
              ("TPOT", floats(req, "tpot_s", n)[measured], slo.get("tpot_s")),
              ("Inter-token latency", np.asarray(result.itl_s, dtype=float), None),
              ("End-to-end latency", floats(req, "e2e_s", n)[measured], None),
              ("Scheduling delay (arrival to first scheduled)", floats(req, "queue_s", n)[measured], None)]
    fig = make_subplots(rows=3, cols=2, subplot_titles=[s[0] for s in series],
                        horizontal_spacing=0.09, vertical_spacing=0.11)
    empty = True
    for i, (label, values, limit) in enumerate(series):
        x, y = ecdf(values)
        x = x * 1e3
        empty &= x.size == 0
        row, col = divmod(i, 2)
        fig.add_trace("scatter", x=f32(x), y=f32(y), mode="lines", line_shape="hv", name=label, showlegend=False,
                                 line={"color": PALETTE[i]},
                                 hovertemplate="%{x:.4~g} ms<br>%{y:.1%} of requests<extra>" + label + "</extra>",
                      row=row + 1, col=col + 1)
        axis = _cdf_axis(x)
        if limit:
            ms = float(limit) * 1e3
            fig.add_vline(x=ms, line={"color": SLO_COLOUR, "dash": "dash", "width": 1.5}, row=row + 1, col=col + 1)
            # an annotation on a log axis is placed in log10 units
            fig.add_annotation(x=np.log10(ms) if axis["type"] == "log" else ms, y=0.5, xanchor="right",
                               text=f"SLO {ms:.4g} ms ", showarrow=False, font={"color": SLO_COLOUR},
                               row=row + 1, col=col + 1)
            if axis["type"] == "linear" and x.size:
                axis["range"] = [0, max(float(x[-1]), ms) * 1.05]
            elif x.size:
                axis["range"] = [np.log10(min(float(x[0]), ms)) - 0.05, np.log10(max(float(x[-1]), ms)) + 0.05]
        fig.update_xaxes(title_text="ms", row=row + 1, col=col + 1, **axis)
        fig.update_yaxes(title_text="requests", range=[0, 1.02], tickformat=".0%", row=row + 1, col=col + 1)
    fig.update_yaxes(title_text="gaps", row=2, col=1)
    if empty:
        no_data(fig, "no measured latencies")
    return layout(fig, 1000)


def throughput_figure(result: RunResult, cols: dict[str, np.ndarray]) -> Figure:
    """Tokens/s (prefill and generated) and requests/s (arrived, finished) per time bucket."""
    edges = time_edges(result, RATE_BUCKETS)
    centres = (edges[:-1] + edges[1:]) / 2
    width = float(edges[1] - edges[0])
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=("Tokens per second", "Requests per second"))
    mid = (cols["start_s"] + cols["end_s"]) / 2  # a segment's tokens counted at its midpoint
    ok = np.isfinite(mid)
    generated = np.nan_to_num(cols["decode_rows"]) * np.nan_to_num(cols["iterations"], nan=1.0)
    for label, weights, colour in (("prefill tokens/s", np.nan_to_num(cols["prefill_tokens"]), PREFILL_COLOUR),
                                   ("decode tokens/s", generated, DECODE_COLOUR)):
        counts, _ = np.histogram(mid[ok], bins=edges, weights=weights[ok])
        fig.add_trace("scatter", x=centres, y=counts / width, mode="lines", line_shape="hvh", name=label,
                                 line={"color": colour},
                                 hovertemplate="%{x:.2f} s: %{y:,.0f} tok/s<extra>" + label + "</extra>",
                      row=1, col=1)
    req = result.requests
    n = nrows(req)
    for j, (label, key) in enumerate((("arrived/s", "arrival_s"), ("finished/s", "finish_s"))):
        t = floats(req, key, n)
        counts, _ = np.histogram(t[np.isfinite(t)], bins=edges)
        fig.add_trace("scatter", x=centres, y=counts / width, mode="lines", line_shape="hvh", name=label,
                                 line={"color": PALETTE[2 + 2 * j]},
                                 hovertemplate="%{x:.2f} s: %{y:.2f} req/s<extra>" + label + "</extra>",
                      row=2, col=1)
    fig.update_yaxes(title_text="tokens/s", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="requests/s", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text=f"simulated time (s); {width:.3g} s buckets", row=2, col=1)
    return layout(fig, 560)


def timeline_figure(result: RunResult, cols: dict[str, np.ndarray]) -> Figure:
    panels = ("Batch size (running requests)", "KV-cache utilisation", "Queue length (waiting requests)")
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, subplot_titles=panels, vertical_spacing=0.07)
    total = cols["kv_blocks_total"]
    with np.errstate(divide="ignore", invalid="ignore"):
        kv_util = np.where(total > 0, cols["kv_blocks_used"] / total, np.nan)
    rows = replica_rows(cols)
    for j, (r, sel) in enumerate(rows):
        sub = sel[every_kth(sel.size, timeline_cap(len(rows)))]
        x = cols["start_s"][sub]
        colour = PALETTE[j % len(PALETTE)]
        name = replica_label(result, r)
        for k, y in enumerate((cols["running"][sub], kv_util[sub], cols["waiting"][sub])):
            fig.add_trace("scatter", x=f32(x), y=f32(y), mode="lines", line_shape="hv", name=name, legendgroup=name,
                                     showlegend=k == 0, line={"color": colour}, row=k + 1, col=1)
    waiting_max = float(np.nanmax(cols["waiting"])) if np.isfinite(cols["waiting"]).any() else 0.0
    fig.update_yaxes(title_text="requests", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="KV blocks used", tickformat=".0%", rangemode="tozero", row=2, col=1)
    fig.update_yaxes(title_text="requests", row=3, col=1,  # an always-empty queue: 0..1, whole ticks
                     **({"range": [0, 1], "dtick": 1} if waiting_max <= 0 else {"rangemode": "tozero"}))
    fig.update_xaxes(title_text="simulated time (s)", row=3, col=1)
    if not rows:
        no_data(fig, "no batches")
    return layout(fig, 800)


def f32(a: np.ndarray) -> np.ndarray:
    """Plot data as float32: plotly embeds it as binary, half the bytes of float64."""
    return np.asarray(a, dtype=np.float32)


def busy_figure(result: RunResult, cols: dict[str, np.ndarray]) -> Figure:
    """Top: busy fraction of each replica per time bucket (the whole run at a glance). Bottom: the
    busy segments themselves (prefill-containing vs decode-only) over the first
    GANTT_DETAIL_SEGMENTS segments of the run, opened zoomed on the first few dozen."""
    rows = replica_rows(cols)
    starts = np.sort(cols["start_s"][np.isfinite(cols["start_s"])])
    window = float(starts[GANTT_DETAIL_SEGMENTS]) if starts.size > GANTT_DETAIL_SEGMENTS else np.inf
    labels = [replica_label(result, r) for r, _ in rows]
    edges = time_edges(result)
    centres = (edges[:-1] + edges[1:]) / 2
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.18, row_heights=[0.45, 0.55],
                        subplot_titles=(f"Busy fraction per {float(edges[1] - edges[0]):.3g} s of simulated time",
                                        "Busy segments" + (f" of the first {window:.3g} s (zoom out or pan)"
                                                           if np.isfinite(window) else " (zoom out or pan)")))
    z = [busy_per_bucket(cols["start_s"][sel], cols["end_s"][sel], edges) for _, sel in rows]
    if rows:
        fig.add_trace("heatmap", x=centres, y=labels, z=f32(np.array(z)), zmin=0.0, zmax=1.0,
                      colorscale=colorscale("Blues"),
                      colorbar={"title": {"text": "busy"}, "tickformat": ".0%", "len": 0.45, "y": 0.8},
                      hovertemplate="%{y}<br>%{x:.2f} s: %{z:.1%} busy<extra></extra>", row=1, col=1)
    parts: dict[bool, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {True: [], False: []}
    detail_end, most = 0.0, 0
    for j, (_, sel) in enumerate(rows):
        sel = sel[cols["start_s"][sel] < window]
        s, e, pf = busy_bars(cols["start_s"][sel], cols["end_s"][sel], np.nan_to_num(cols["prefill_tokens"][sel]) > 0)
        if s.size > most:  # open on the first bars of the replica with the most of them
            most, detail_end = s.size, float(e[min(GANTT_DETAIL_BARS, s.size) - 1])
        for flag in (True, False):
            m = pf == flag
            parts[flag].append((s[m], e[m], np.full(int(m.sum()), j)))
    for flag, name, colour in ((True, "prefill-containing", PREFILL_COLOUR), (False, "decode-only", DECODE_COLOUR)):
        s = np.concatenate([p[0] for p in parts[flag]]) if parts[flag] else np.empty(0)
        if s.size == 0:
            continue
        e = np.concatenate([p[1] for p in parts[flag]])
        y = np.concatenate([p[2] for p in parts[flag]]).astype(np.int16)
        fig.add_trace("bar", x=f32((e - s) * 1e3), base=(s * 1e3).tolist(), y=y, orientation="h", name=name, width=0.8,
                             marker={"color": colour, "line": {"width": 0}},
                             hovertemplate="start %{base:.6~g} ms<br>busy %{x:.4~g} ms<extra>" + name + "</extra>",
                      row=2, col=1)
    fig.update_yaxes(tickvals=list(range(len(labels))), ticktext=labels, autorange="reversed", row=2, col=1)
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_yaxes(automargin=True)
    fig.update_xaxes(title_text="simulated time (ms)", row=2, col=1,
                     **({"range": [0.0, detail_end * 1e3]} if detail_end > 0 else {}))
    fig.update_layout(barmode="overlay", bargap=0.2)
    if not rows:
        no_data(fig, "no batches")
    return layout(fig, max(460, 260 + 70 * len(rows)))


def replicas_figure(result: RunResult, cols: dict[str, np.ndarray]) -> Figure:
    """Busy fraction and MFU of each replica over the run (MFU: FLOPs / (peak FLOP/s x run time))."""
    sim = float(result.sim_time_s)
    rows = replica_rows(cols)
    labels, busy, mfu, mfu_busy = [], [], [], []
    for r, sel in rows:
        facts = next((x for x in result.replicas if int(x.get("index", -1)) == r), {})
        b = float(np.nansum(cols["end_s"][sel] - cols["start_s"][sel]))
        flops = float(np.nansum(cols["flops"][sel]))
        peak = float(facts.get("peak_flops") or 0.0)
        labels.append(replica_label(result, r))
        busy.append(b / sim if sim > 0 else 0.0)
        mfu.append(flops / (peak * sim) if peak > 0 and sim > 0 else None)
        mfu_busy.append(flops / (peak * b) if peak > 0 and b > 0 else None)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Busy fraction", "Model FLOPs utilisation"),
                        horizontal_spacing=0.12)
    fig.add_trace("bar", x=labels, y=busy, name="busy", marker={"color": PALETTE[0]}, showlegend=False,
                         text=[f"{v:.1%}" for v in busy], textposition="auto",
                         hovertemplate="%{x}: %{y:.1%} busy<extra></extra>", row=1, col=1)
    fig.add_trace("bar", x=labels, y=mfu, name="MFU over the run", marker={"color": PALETTE[1]},
                         text=[f"{v:.1%}" if v is not None else "" for v in mfu], textposition="auto",
                         hovertemplate="%{x}: %{y:.1%}<extra>MFU over the run</extra>", row=1, col=2)
    fig.add_trace("bar", x=labels, y=mfu_busy, name="MFU while busy", marker={"color": PALETTE[2]},
                         text=[f"{v:.1%}" if v is not None else "" for v in mfu_busy], textposition="auto",
                         hovertemplate="%{x}: %{y:.1%}<extra>MFU while busy</extra>", row=1, col=2)
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", row=1, col=1, range=[0, 1.05])
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", row=1, col=2)
    fig.update_layout(barmode="group")
    if not rows:
        no_data(fig, "no batches")
    return layout(fig, 420)


def histogram(values: np.ndarray, bins: int = 60, weights: np.ndarray | None = None,
              log: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centres, widths, counts); ``log``: log-spaced bins (for values >= 1 spanning decades)."""
    ok = np.isfinite(values)
    v = values[ok]
    if v.size == 0:
        return np.empty(0), np.empty(0), np.empty(0)
    lo, hi = float(v.min()), float(v.max())
    if log:
        edges = np.geomspace(max(lo, 1.0) * 0.999, max(hi, 1.0) * 1.001 + 1.0, bins + 1)
        counts, edges = np.histogram(np.maximum(v, 1.0), bins=edges, weights=None if weights is None else weights[ok])
        return np.sqrt(edges[:-1] * edges[1:]), np.diff(edges), counts
    nb = int(max(1, min(bins, hi - lo + 1)))  # token counts: no narrower than one token
    counts, edges = np.histogram(v, bins=nb, range=(lo - 0.5, hi + 0.5) if nb == hi - lo + 1 else
                                 (lo, hi if hi > lo else lo + 1), weights=None if weights is None else weights[ok])
    return (edges[:-1] + edges[1:]) / 2, np.diff(edges), counts


def batches_figure(cols: dict[str, np.ndarray]) -> Figure:
    """Distribution over iterations of the batch size (running requests) and the batch tokens
    (prefill tokens + decode rows) of one iteration."""
    iters = np.nan_to_num(cols["iterations"], nan=1.0)
    tokens = np.nan_to_num(cols["prefill_tokens"]) / np.maximum(iters, 1.0) + np.nan_to_num(cols["decode_rows"])
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Batch size", "Batch tokens"), horizontal_spacing=0.1)
    for i, (values, unit) in enumerate(((cols["running"], "requests"), (tokens, "tokens"))):
        finite = values[np.isfinite(values)]
        log = finite.size > 0 and float(finite.max()) > 50 * max(float(finite.min()), 1.0)
        centres, widths, counts = histogram(values, weights=iters, log=log)
        total = float(counts.sum()) or 1.0
        fig.add_trace("bar", x=centres, y=counts / total, width=widths, showlegend=False,
                             marker={"color": PALETTE[i + 4], "line": {"width": 0}},
                             hovertemplate="%{x:.0f} " + unit + ": %{y:.1%} of iterations<extra></extra>",
                      row=1, col=i + 1)
        fig.update_xaxes(title_text=f"{unit} per iteration" + (" (log scale)" if log else ""),
                         type="log" if log else "linear", row=1, col=i + 1)
        fig.update_yaxes(title_text="iterations", tickformat=".0%", row=1, col=i + 1)
    if cols["running"].size == 0:
        no_data(fig, "no batches")
    fig.update_layout(bargap=0)
    return layout(fig, 420)


def lengths_figure(result: RunResult) -> Figure:
    req = result.requests
    n = nrows(req)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Prompt length", "Output length (requested)"))
    for i, key in enumerate(("prompt_tokens", "output_tokens")):
        centres, widths, counts = histogram(floats(req, key, n))
        fig.add_trace("bar", x=centres, y=counts, width=widths, name=key, showlegend=False,
                             marker={"color": PALETTE[i], "line": {"width": 0}},
                             hovertemplate="%{x:.0f} tokens: %{y}<extra></extra>", row=1, col=i + 1)
        fig.update_xaxes(title_text="tokens", row=1, col=i + 1)
        fig.update_yaxes(title_text="requests", row=1, col=i + 1)
    if n == 0:
        no_data(fig, "no requests")
    fig.update_layout(bargap=0)
    return layout(fig, 420)


def tiers_figure(result: RunResult, cols: dict[str, np.ndarray], kv: dict[str, Any]) -> Figure:
    """Occupancy per tier over time (GPU KV per replica, host DRAM, SSD), bytes per link, hit rate
    per tier and time stalled on transfers, from summary["kv_cache"] and the batch table."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=("Occupancy per tier", "Bytes per link",
                                                        "Hit rate per tier", "Transfer stalls"),
                        horizontal_spacing=0.1, vertical_spacing=0.18)
    per_block = {int(r["index"]): float(r.get("kv_bytes_per_block", 0.0)) for r in result.replicas if "index" in r}
    rows = replica_rows(cols)
    for j, (r, sel) in enumerate(rows):
        sub = sel[every_kth(sel.size, timeline_cap(len(rows)))]
        fig.add_trace("scatter", x=cols["end_s"][sub], y=cols["kv_blocks_used"][sub] * per_block.get(r, 0.0) / GIB,
                                 mode="lines", line_shape="hv", name=f"GPU KV {replica_label(result, r)}",
                                 line={"color": PALETTE[j % len(PALETTE)]}, row=1, col=1)
    occ = kv.get("occupancy") or {}
    for name, key, colour in (("host DRAM", "host_bytes", "#8c564b"), ("SSD", "ssd_bytes", "#7f7f7f")):
        if occ.get(key):
            fig.add_trace("scatter", x=occ["t_s"], y=np.asarray(occ[key], dtype=float) / GIB, mode="lines",
                                     line_shape="hv", name=name, line={"color": colour, "dash": "dot"},
                          row=1, col=1)
    for (keys, row, col, scale, unit, fmt) in ((LINK_KEYS, 1, 2, GIB, "GiB", None),
                                               (HIT_KEYS, 2, 1, 1.0, "hit rate", ".0%"),
                                               (STALL_KEYS, 2, 2, 1e-3, "ms", None)):
        labels, values = [], []
        for key, label in keys:
            if key in kv and label not in labels:
                labels.append(label)
                values.append(float(kv[key]) / scale)
        fig.add_trace("bar", x=labels, y=values, showlegend=False, marker={"color": PALETTE[row + col]},
                      row=row, col=col)
        fig.update_yaxes(title_text=unit, row=row, col=col, **({"tickformat": fmt} if fmt else {}))
    fig.update_yaxes(title_text="GiB", row=1, col=1)
    fig.update_xaxes(title_text="simulated time (s)", row=1, col=1)
    return layout(fig, 760)
