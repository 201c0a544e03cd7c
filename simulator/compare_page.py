"""The comparison page of simulator/compare.py: three plotly figures and a sortable table.

The page loads plotly.js from beside it (simulator/html_assets.py) and has no other dependency;
the table sorts by the clicked column (numbers as numbers, a second click reverses).
"""

from __future__ import annotations

import html
import math
from typing import Any

from simulator.compare import Entry
from simulator.sweep_point import CDF_LEVELS

CDF_MAX = 12  # configurations overlaid on the CDFs (the Pareto-optimal first)
TABLE_METRICS = (("slo_attainment", "SLO attainment"), ("ttft_s.p90", "p90 TTFT s"), ("tpot_s.p90", "p90 TPOT s"),
                 ("throughput_rps", "req/s"), ("output_tokens_per_s", "output tok/s"), ("gpus", "GPUs"),
                 ("cost_usd_per_mtok", "$/M output tok"), ("capacity_rps", "capacity req/s"))
_CSS = ("body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222}"
        "h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}table{border-collapse:collapse;font-size:13px}"
        "th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}th{cursor:pointer;background:#f4f4f4;"
        "position:sticky;top:0}td.l,th.l{text-align:left}tr.fail td{color:#999}.note{color:#555;max-width:60em}")
_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = th.dataset.dir !== 'asc';
      table.querySelectorAll('th').forEach(function (h) { delete h.dataset.dir; });
      th.dataset.dir = asc ? 'asc' : 'desc';
      var body = table.tBodies[0];
      var rows = Array.from(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c;
        if (!isNaN(nx) && !isNaN(ny)) { c = nx - ny; }
        else if (isNaN(nx) !== isNaN(ny)) { return isNaN(nx) ? 1 : -1; }
        else { c = x < y ? -1 : x > y ? 1 : 0; }
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def pareto(points: list[tuple[float, float, int]], x_min: bool = True, y_min: bool = True) -> list[int]:
    """Indices (the third element) of the points no other point beats on both coordinates."""
    sx, sy = (1 if x_min else -1), (1 if y_min else -1)
    best = math.inf
    front = []
    for _x, y, i in sorted(points, key=lambda p: (sx * p[0], sy * p[1])):
        if sy * y < best:
            best = sy * y
            front.append(i)
    return front


def _axes_pairs(entries: list[Entry], meta: dict[str, Any]) -> list[tuple[str, str, bool, bool]]:
    """(x metric, y metric, x minimised, y minimised) of each Pareto plot."""
    has = lambda m: any(_num(e.metrics.get(m)) is not None for e in entries)
    cost = next((m for m in ("cost_usd_per_mtok", "gpus") if has(m)), "gpus")
    objs = meta.get("objectives") or []
    pairs = []
    if len(objs) >= 2:
        pairs.append((objs[0]["metric"], objs[1]["metric"], objs[0]["goal"] == "min", objs[1]["goal"] == "min"))
    for pair in ((cost, "ttft_s.p90", True, True), (cost, "output_tokens_per_s", True, False)):
        if not any(p[:2] == pair[:2] for p in pairs):
            pairs.append(pair)
    return pairs[:2]


def pareto_figure(entries: list[Entry], meta: dict[str, Any]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pairs = _axes_pairs(entries, meta)
    fig = make_subplots(rows=1, cols=len(pairs), subplot_titles=[f"{y} vs {x}" for x, y, _, _ in pairs])
    optimal: set[int] = set()
    for col, (xm, ym, x_min, y_min) in enumerate(pairs, start=1):
        pts = [(_num(e.metrics.get(xm)), _num(e.metrics.get(ym)), i) for i, e in enumerate(entries)]
        pts = [p for p in pts if p[0] is not None and p[1] is not None]
        front = pareto([p for p in pts if entries[p[2]].passed is not False], x_min, y_min)
        optimal.update(front)
        groups = (("meets constraints", [p for p in pts if entries[p[2]].passed is not False and p[2] not in front],
                   {"color": "#1f77b4", "symbol": "circle"}),
                  ("fails a constraint", [p for p in pts if entries[p[2]].passed is False],
                   {"color": "#bbbbbb", "symbol": "x"}))
        for name, sel, style in groups:
            fig.add_trace(go.Scatter(x=[p[0] for p in sel], y=[p[1] for p in sel], mode="markers", name=name,
                                     marker=style, text=[entries[p[2]].label for p in sel], legendgroup=name,
                                     showlegend=col == 1, hovertemplate="%{text}<br>%{x:.4g}, %{y:.4g}<extra></extra>"),
                          row=1, col=col)
        fp = sorted((p for p in pts if p[2] in front), key=lambda p: p[0])
        fig.add_trace(go.Scatter(x=[p[0] for p in fp], y=[p[1] for p in fp], mode="lines+markers",
                                 name="Pareto front", legendgroup="front", showlegend=col == 1,
                                 marker={"color": "#d62728", "size": 10}, line={"color": "#d62728"},
                                 text=[entries[p[2]].label for p in fp],
                                 hovertemplate="%{text}<br>%{x:.4g}, %{y:.4g}<extra>Pareto</extra>"), row=1, col=col)
        fig.update_xaxes(title_text=f"{xm} ({'lower' if x_min else 'higher'} is better)", row=1, col=col)
        fig.update_yaxes(title_text=f"{ym} ({'lower' if y_min else 'higher'} is better)", row=1, col=col)
    fig.update_layout(template="plotly_white", height=460)
    return fig, optimal


def slo_figure(entries: list[Entry]):
    import plotly.graph_objects as go

    fig = go.Figure()
    if any(e.capacity for e in entries):  # capacity search: each point's own curve
        for e in entries:
            pts = [p for p in e.capacity if p.get("attainment") is not None]
            fig.add_trace(go.Scatter(x=[p["rate_rps"] for p in pts], y=[p["attainment"] for p in pts],
                                     mode="lines+markers", name=e.label))
    else:
        groups: dict[str, list[Entry]] = {}
        for e in entries:
            if e.rate_rps is not None and _num(e.metrics.get("slo_attainment")) is not None:
                groups.setdefault(e.group, []).append(e)
        for g, es in groups.items():
            es = sorted(es, key=lambda e: e.rate_rps)
            fig.add_trace(go.Scatter(x=[e.rate_rps for e in es], y=[e.metrics["slo_attainment"] for e in es],
                                     mode="lines+markers", name=g, text=[e.label for e in es],
                                     hovertemplate="%{text}<br>%{x:.3g} req/s: %{y:.1%}<extra></extra>"))
    fig.update_xaxes(title_text="arrival rate (requests/s)")
    fig.update_yaxes(title_text="requests meeting the SLOs", range=[0, 1.05], tickformat=".0%")
    fig.update_layout(template="plotly_white", height=440, title="SLO attainment vs arrival rate")
    return fig


def cdf_figure(entries: list[Entry], optimal: set[int]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    order = sorted(range(len(entries)), key=lambda i: (i not in optimal, i))
    shown = [i for i in order if entries[i].ttft_q or entries[i].tpot_q][:CDF_MAX]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("TTFT", "TPOT"))
    levels = [float(x) for x in CDF_LEVELS]
    for k, i in enumerate(shown):
        e = entries[i]
        for col, q in ((1, e.ttft_q), (2, e.tpot_q)):
            if q:
                fig.add_trace(go.Scatter(x=[v * 1e3 for v in q], y=levels, mode="lines", name=e.label,
                                         legendgroup=str(i), showlegend=col == 1, line={"color": _color(k)},
                                         hovertemplate="%{x:.1f} ms: %{y:.0%}<extra>" + html.escape(e.label) +
                                         "</extra>"), row=1, col=col)
    fig.update_xaxes(title_text="ms", type="log")
    fig.update_yaxes(title_text="share of measured requests", tickformat=".0%", range=[0, 1.02])
    fig.update_layout(template="plotly_white", height=460)
    return fig, len(shown)


def _color(k: int) -> str:
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf", "#393b79", "#637939")
    return palette[k % len(palette)]


def _cell(v: Any, left: bool = False) -> str:
    num = _num(v)
    if num is not None:
        text = f"{num:.4g}"
        sort = repr(num)
    else:
        text = "" if v is None else str(v)
        sort = text
    cls = ' class="l"' if left else ""
    return f'<td{cls} data-v="{html.escape(sort, quote=True)}">{html.escape(text)}</td>'


def table_html(entries: list[Entry], meta: dict[str, Any], optimal: set[int]) -> str:
    axes = list(meta.get("axes") or [])
    metrics = [(m, t) for m, t in TABLE_METRICS if any(m in e.metrics for e in entries)]
    objs = [o["metric"] for o in meta.get("objectives") or [] if o["metric"] not in dict(metrics)]
    head = ["configuration", *axes, "meets constraints", "Pareto", *[t for _, t in metrics], *objs, "error"]
    lines = ['<table class="sortable" id="compare-table"><thead><tr>' +
             "".join(f'<th class="{"l" if i == 0 or h in axes or h == "error" else ""}">{html.escape(h)}</th>'
                     for i, h in enumerate(head)) + "</tr></thead><tbody>"]
    for i, e in enumerate(entries):
        name = e.label if e.point_id is None or not axes else f"#{e.point_id}"
        cells = [_cell(name, True), *[_cell(e.axes.get(a), True) for a in axes],
                 _cell("" if e.passed is None else "yes" if e.passed else "no"), _cell("yes" if i in optimal else ""),
                 *[_cell(e.metrics.get(m)) for m, _ in metrics], *[_cell(e.metrics.get(m)) for m in objs],
                 _cell(e.error, True)]
        cls = ' class="fail"' if e.passed is False else ""
        lines.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def render_page(entries: list[Entry], meta: dict[str, Any]) -> str:
    from simulator.html_assets import plotly_script_tag

    name = meta.get("name") or "comparison"
    pfig, optimal = pareto_figure(entries, meta)
    cfig, shown = cdf_figure(entries, optimal)
    conf = {"displaylogo": False}
    failed = sum(e.passed is False for e in entries)
    errors = sum(e.error is not None for e in entries)
    cons = "; ".join(meta.get("constraints") or []) or "none"
    title = f"hwsim compare: {name}"
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
             plotly_script_tag(), f"<style>{_CSS}</style>", "</head><body>", f"<h1>{html.escape(title)}</h1>",
             f'<p class="note">{len(entries)} configurations; constraints: {html.escape(cons)}; {failed} fail a '
             f"constraint ({errors} could not run). Pareto-optimal: {len(optimal)} (among those meeting the "
             f"constraints).</p>",
             "<h2>Pareto fronts</h2>",
             pfig.to_html(full_html=False, include_plotlyjs=False, div_id="compare-pareto", config=conf),
             "<h2>SLO attainment vs arrival rate</h2>",
             slo_figure(entries).to_html(full_html=False, include_plotlyjs=False, div_id="compare-slo", config=conf),
             f'<h2>Latency CDFs</h2><p class="note">{shown} of {len(entries)} configurations (Pareto-optimal '
             f"first); each curve from {len(CDF_LEVELS)} quantiles of the measured requests.</p>",
             cfig.to_html(full_html=False, include_plotlyjs=False, div_id="compare-cdf", config=conf),
             '<h2>All configurations</h2><p class="note">Click a column to sort by it; click again to reverse.</p>',
             table_html(entries, meta, optimal), f"<script>{_SORT_JS}</script>", "</body></html>", ""]
    return "\n".join(parts)
