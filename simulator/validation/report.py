"""Predicted-vs-measured HTML report (offline: plotly.js written beside it; deterministic div ids)."""

from __future__ import annotations

import csv
import html
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from simulator.html_assets import plotly_script_tag, write_page
from simulator.validation.kernels import Result, format_summary, op_class

MAX_POINTS = 3000  # per class and backend in the plot (the printed figures use every row)


def _scatter(results: list[Result], cls: str) -> go.Figure:
    fig = go.Figure()
    lo, hi = np.inf, 0.0
    for res in results:
        idx = [i for i, r in enumerate(res.rows) if op_class(r) == cls]
        if not idx:
            continue
        idx = idx[:: max(1, len(idx) // MAX_POINTS)]  # deterministic subsample keeps the page light
        meas = res.measured[idx] * 1e6
        pred = res.predicted[idx] * 1e6
        lo, hi = min(lo, meas.min(), pred.min()), max(hi, meas.max(), pred.max())
        text = [f"{res.rows[i].source} {res.rows[i].op} tp={res.rows[i].tp} x={res.rows[i].x:g}" for i in idx]
        fig.add_trace(go.Scattergl(x=meas, y=pred, mode="markers", name=res.backend, text=text,
                                   marker=dict(size=3, opacity=0.5)))
    if hi > 0:
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line=dict(dash="dash")))
    fig.update_layout(title=f"{cls}: predicted vs measured", xaxis_title="measured (us)",
                      yaxis_title="predicted (us)", xaxis_type="log", yaxis_type="log", height=520)
    return fig


def write_report(results: list[Result], path: Path, title: str = "hwsim kernel validation") -> Path:
    classes = sorted({op_class(r) for res in results for r in res.rows})
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"{plotly_script_tag()}</head><body>",
             f"<h1>{html.escape(title)}</h1><pre>{html.escape(format_summary(results))}</pre>"]
    for i, cls in enumerate(classes):
        parts.append(_scatter(results, cls).to_html(full_html=False, include_plotlyjs=False,
                                                    div_id=f"validation-{i}"))
    parts.append("</body></html>")
    return write_page(Path(path), "\n".join(parts))


SHAPE_FIELDS = ("m", "n", "k", "seqs", "q_tokens", "kv_tokens", "heads", "kv_heads", "head_dim")


def write_rows_csv(results: list[Result], path: Path) -> Path:
    """One line per measured row: class, framework, version, shape columns (of the row's last op),
    measured us, and per backend the predicted us and the signed error % (> 0: predicted slower)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = results[0].rows if results else []
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["class", "framework", "version", *SHAPE_FIELDS, "measured_us",
                    *[c for res in results for c in (f"predicted_{res.backend}_us", f"error_{res.backend}_pct")]])
        for i, r in enumerate(rows):
            fw, _, ver = r.source.partition(" ")
            op = r.item[-1] if isinstance(r.item, list) else r.item
            shape = [getattr(op, a, 0) or "" for a in SHAPE_FIELDS]
            cells = []
            for res in results:
                p = float(res.predicted[i])
                cells += [f"{p * 1e6:.4g}", f"{100 * (p - r.measured_s) / r.measured_s:+.2f}"]
            w.writerow([op_class(r), fw, ver, *shape, f"{r.measured_s * 1e6:.4g}", *cells])
    return path
