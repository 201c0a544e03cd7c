"""The MCU run's self-contained HTML page: SRAM over the layer sequence for both schedules.

Deterministic (fixed div ids, no timestamps) and offline (plotly.js inlined).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import plotly.graph_objects as go
import plotly.offline

if TYPE_CHECKING:
    from simulator.mcu.run import McuRun

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:28px}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 10px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
"""


def _memory_figure(run: McuRun) -> go.Figure:
    names = [s.layer for s in run.layer_plan.steps]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=names, y=[s.live_bytes / 1024 for s in run.layer_plan.steps], mode="lines+markers",
                             name="layer-by-layer", line={"color": "#d62728"}))
    if run.patch_plan is not None:
        fig.add_trace(go.Scatter(x=names, y=[s.live_bytes / 1024 for s in run.patch_plan.steps],
                                 mode="lines+markers", name=run.patch_plan.label, line={"color": "#1f77b4"}))
    budget = run.summary["sram_budget_bytes"] / 1024
    fig.add_trace(go.Scatter(x=[names[0], names[-1]], y=[budget, budget], mode="lines",
                             name=f"{run.summary['mcu']} SRAM", line={"color": "#555", "dash": "dash"}))
    fig.update_layout(title="SRAM in use per layer", xaxis_title="layer (execution order)",
                      yaxis_title="KiB", height=480, template="plotly_white", margin={"l": 60, "r": 20})
    return fig


def _latency_figure(run: McuRun) -> go.Figure:
    rows = run.rows
    fig = go.Figure(go.Bar(x=[r["layer"] for r in rows], y=[r["ms"] for r in rows], name="ms",
                           marker={"color": ["#1f77b4" if r["patched"] else "#7f7f7f" for r in rows]}))
    fig.update_layout(title=f"Latency per layer ({run.plan.label}; blue = patched)", xaxis_title="layer",
                      yaxis_title="ms", height=420, template="plotly_white", margin={"l": 60, "r": 20})
    return fig


def _summary_table(summary: dict) -> str:
    rows = []
    for k, v in summary.items():
        if isinstance(v, float):
            v = f"{v:.6g}"
        elif isinstance(v, int):
            v = f"{v:,}"
        elif isinstance(v, list):
            v = ", ".join(map(str, v))
        rows.append(f"<tr><th>{html.escape(k)}</th><td class=\"num\">{html.escape(str(v))}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def render_mcu_report(run: McuRun) -> str:
    name = html.escape(run.summary["name"])
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>hwsim mcu: {name}</title>",
             f"<style>{_CSS}</style>", "<script>", plotly.offline.get_plotlyjs(), "</script>", "</head><body>",
             f"<h1>{name}</h1>", "<h2>Summary</h2>", _summary_table(run.summary)]
    for i, fig in enumerate((_memory_figure(run), _latency_figure(run))):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"mcu-fig-{i}",
                                 config={"displaylogo": False}))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
