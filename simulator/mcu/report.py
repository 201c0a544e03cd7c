"""The MCU run's HTML page: a summary table and SRAM over the layer sequence for both schedules.

Deterministic (fixed div ids, no timestamps) and offline (plotly.js written beside the page by
:func:`write_mcu_report`, see simulator/html_assets.py).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go

from simulator.html_assets import plotly_script_tag, write_page

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


KIB = 1024.0


def _kib(v: float) -> str:
    return f"{v / KIB:,.1f} KiB"


def _count(v: float) -> str:
    return f"{v / 1e6:,.2f} M" if v >= 1e6 else f"{v:,.0f}"


def _pct(v: float) -> str:
    return f"{v:.1%}"


def _times(v: float) -> str:
    return f"{v:.2f}x"


# (summary key, label, formatter); keys not listed here are shown after these with a generic label
SUMMARY_ROWS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("mcu", "Microcontroller", str), ("network", "Network", str), ("precision", "Precision", str),
    ("schedule_label", "Schedule", str), ("peak_sram_bytes", "Peak SRAM", _kib), ("peak_layer", "Peak at layer", str),
    ("sram_budget_bytes", "SRAM budget", _kib), ("sram_headroom_bytes", "SRAM headroom", _kib),
    ("flash_used_bytes", "Flash used", _kib), ("flash_budget_bytes", "Flash budget", _kib),
    ("params", "Parameters", _count), ("macs", "MACs (with recompute)", _count),
    ("base_macs", "MACs (network)", _count),
    ("recompute_overhead", "Recompute overhead", _pct), ("bitops", "Bit operations", _count),
    ("bitops_reduction_vs_int8", "Bit operations vs int8", _times),
    ("latency_ms", "Latency", lambda v: f"{v:,.2f} ms"), ("latency_cycles", "Cycles", lambda v: f"{v:,}"),
    ("macs_per_cycle", "Throughput", lambda v: f"{v:.2f} MAC/cycle"),
    ("energy_j", "Energy per inference", lambda v: f"{v * 1e3:,.3f} mJ"),
    ("energy_per_mac_j", "Energy per MAC", lambda v: f"{v * 1e12:,.1f} pJ"),
    ("layer_by_layer_peak_bytes", "Peak SRAM, layer-by-layer", _kib),
    ("layer_by_layer_peak_layer", "Peak at layer, layer-by-layer", str),
    ("patch_peak_bytes", "Peak SRAM, patch-based", _kib), ("patch_peak_layer", "Peak at layer, patch-based", str),
    ("peak_reduction", "Peak SRAM reduction", lambda v: f"{v:.2f}x less"),
)
HIDDEN = frozenset({"name", "schedule", "patches", "patch_blocks", "patch_recompute_overhead"})


def _generic(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    return str(v)


def summary_rows(summary: dict) -> list[tuple[str, str]]:
    """(label, formatted value) for each summary entry worth showing, in reading order."""
    rows = []
    for key, label, fmt in SUMMARY_ROWS:
        v = summary.get(key)
        if v is None or v == "":
            continue
        rows.append((label, fmt(v)))
    known = {k for k, _, _ in SUMMARY_ROWS} | HIDDEN
    for key, v in summary.items():
        if key not in known and v is not None:
            rows.append((key.replace("_", " ").capitalize(), _generic(v)))
    return rows


def _summary_table(summary: dict) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td class=\"num\">{html.escape(v)}</td></tr>"
                    for k, v in summary_rows(summary))
    return "<table>" + cells + "</table>"


def render_mcu_report(run: McuRun) -> str:
    name = html.escape(run.summary["name"])
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>hwsim mcu: {name}</title>",
             f"<style>{_CSS}</style>", plotly_script_tag(), "</head><body>",
             f"<h1>{name}</h1>", "<h2>Summary</h2>", _summary_table(run.summary)]
    for i, fig in enumerate((_memory_figure(run), _latency_figure(run))):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"mcu-fig-{i}",
                                 config={"displaylogo": False}))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_mcu_report(run: McuRun, path: Path) -> Path:
    """Write the page to ``path`` with plotly.js beside it."""
    return write_page(path, render_mcu_report(run))
