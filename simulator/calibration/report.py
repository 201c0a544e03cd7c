"""Self-contained HTML report: predicted vs measured per kernel class, before and after fitting.

Reads the ``*.fit.json`` that ``hwsim calibrate fit`` writes beside its overlay. plotly.js is
written beside the page (simulator/html_assets.py), so it opens without a network; div ids are
derived from the kernel class, so the same fit gives the same file.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from simulator.core.errors import InputFileError
from simulator.html_assets import plotly_script_tag, write_page


def load_fit(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError("fit result not found (run `hwsim calibrate fit` first)", where=str(path)) from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(f"fit result is not valid JSON: {exc}", where=str(path)) from None
    for key in ("records", "before", "after", "fitted"):
        if key not in data:
            raise InputFileError(f"fit result has no {key!r} (not written by `hwsim calibrate fit`?)", where=str(path))
    return data


def class_figure(cls: str, recs: list[dict[str, Any]]) -> go.Figure:
    fig = go.Figure()
    meas = [r["measured_s"] * 1e3 for r in recs]  # shown in ms
    lo = min(meas + [r["after_s"] * 1e3 for r in recs])
    hi = max(meas + [r["after_s"] * 1e3 for r in recs])
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="predicted = measured",
                             line={"color": "grey", "dash": "dash"}))
    for key, name, color in (("before_s", "preset (before fit)", "#bbbbbb"), ("after_s", "fitted", "#1f77b4")):
        for held, symbol in ((False, "circle-open"), (True, "circle")):
            sel = [r for r in recs if r["held_out"] == held]
            if not sel:
                continue
            fig.add_trace(go.Scatter(
                x=[r["measured_s"] * 1e3 for r in sel], y=[r[key] * 1e3 for r in sel], mode="markers",
                name=f"{name}, {'held-out' if held else 'train'}", marker={"color": color, "symbol": symbol},
                text=[r["shape"] for r in sel],
                hovertemplate="%{text}<br>measured %{x:.3g} ms<br>predicted %{y:.3g} ms"))
    fig.update_xaxes(type="log", title="measured time (ms)")
    fig.update_yaxes(type="log", title="predicted time (ms)")
    fig.update_layout(title=f"{cls}: predicted vs measured", height=520, template="plotly_white")
    return fig


def render(fit: dict[str, Any]) -> str:
    by_class: dict[str, list[dict[str, Any]]] = {}
    for r in fit["records"]:
        by_class.setdefault(r["kernel_class"], []).append(r)
    rows = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{a['n']}</td><td>{fit['before'][c]['median_ape']:.1%}</td>"
        f"<td>{a['median_ape']:.1%}</td><td>{fit['before'][c]['p90_ape']:.1%}</td><td>{a['p90_ape']:.1%}</td></tr>"
        for c, a in fit["after"].items())
    params = "".join(f"<tr><td>{html.escape(k)}</td><td>{fit['initial'].get(k, float('nan')):.4g}</td>"
                     f"<td>{v:.4g}</td></tr>" for k, v in fit["fitted"].items())
    divs = []
    for cls in sorted(by_class):
        fig = class_figure(cls, by_class[cls])
        divs.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"calibration-{cls}",
                                config={"responsive": True}))
    meta = fit.get("meta", {})
    title = f"hwsim calibration: {html.escape(str(fit.get('hardware', '')))}"
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
{plotly_script_tag()}
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style></head>
<body><h1>{title}</h1>
<p>source: {html.escape(str(meta.get('source', '')))}; fitted {html.escape(str(meta.get('date', '')))};
train n={meta.get('n_train')}, held-out n={meta.get('n_held_out')} (seed {meta.get('seed')})</p>
<h2>Held-out absolute percentage error</h2>
<table><tr><th>class</th><th>n</th><th>median before</th><th>median after</th><th>p90 before</th>
<th>p90 after</th></tr>{rows}</table>
<h2>Parameters</h2><table><tr><th>parameter</th><th>preset</th><th>fitted</th></tr>{params}</table>
{''.join(divs)}
</body></html>
"""


def write_report(fit_json: str | Path, out: Path) -> Path:
    page = render(load_fit(fit_json))
    return write_page(out, page)
