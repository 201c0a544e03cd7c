"""Serving validation page: predicted vs measured TTFT and TPOT, and the error per group."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from simulator.html_assets import plotly_script_tag, write_page
from simulator.validation.serving import Prediction, errors, format_table, group_key, skipped_summary, stats


def _scatter(preds: list[Prediction], metric: str) -> go.Figure:
    fig = go.Figure()
    groups: dict[str, list[Prediction]] = {}
    for p in preds:
        if p.skipped is None:
            groups.setdefault(f"{p.row.framework} {p.row.model.split('/')[-1]}", []).append(p)
    lo, hi = np.inf, 0.0
    for name in sorted(groups):
        pred, meas = errors(groups[name], metric)
        lo, hi = min(lo, pred.min(), meas.min()), max(hi, pred.max(), meas.max())
        text = [f"{p.row.id}<br>isl {p.row.isl} osl {p.row.osl} c{p.row.concurrency} tp{p.row.tp}"
                for p in groups[name]]
        fig.add_trace(go.Scatter(x=meas, y=pred, mode="markers", name=name, text=text, marker=dict(size=6)))
    if hi > 0:
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line=dict(dash="dash")))
    fig.update_layout(title=f"{metric.upper()}: predicted vs measured (ms)", xaxis_title="measured (ms)",
                      yaxis_title="predicted (ms)", xaxis_type="log", yaxis_type="log", height=520)
    return fig


def _bars(preds: list[Prediction]) -> go.Figure:
    groups: dict[str, list[Prediction]] = {}
    for p in preds:
        if p.skipped is None:
            groups.setdefault(group_key(p), []).append(p)
    names = sorted(groups)
    fig = go.Figure()
    for metric in ("ttft", "tpot"):
        med = [stats(*errors(groups[n], metric))[0] for n in names]
        fig.add_trace(go.Bar(x=names, y=med, name=f"{metric.upper()} median APE (%)"))
    fig.update_layout(title="median absolute percentage error by model, framework and TP", barmode="group",
                      yaxis_title="%", height=480)
    return fig


def write_serving_report(preds: list[Prediction], backend: str, path: Path) -> Path:
    title = "hwsim serving validation"
    parts = [f"<html><head><meta charset='utf-8'><title>{title}</title>",
             f"{plotly_script_tag()}</head><body>",
             f"<h1>{title}</h1><pre>{html.escape(format_table(preds, backend))}</pre>",
             "<pre>" + html.escape("\n".join(skipped_summary(preds))) + "</pre>"]
    if any(p.skipped is None for p in preds):
        for i, fig in enumerate((_scatter(preds, "ttft"), _scatter(preds, "tpot"), _bars(preds))):
            parts.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"serving-{i}"))
    parts.append("</body></html>")
    return write_page(Path(path), "\n".join(parts))
