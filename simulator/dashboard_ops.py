"""The operator-time panel of report.html: what ``hwsim ops`` prints for a typical prefill and a
typical decode iteration of the run, as one stacked bar per phase."""

from __future__ import annotations

import numpy as np

from simulator.core.errors import HwsimError
from simulator.dashboard_figures import floats, layout, no_data, nrows
from simulator.plotly_json import Figure
from simulator.results import RunResult

# plotly's qualitative "Dark24" (plotly==7.1.0 _plotly_utils/colors/qualitative.py: Dark24)
OPS_PALETTE = ("#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100", "#750D86", "#EB663B",
               "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE", "#862A16", "#A777F1",
               "#620042", "#1616A7", "#DA60CA", "#6C4516", "#0D2A63", "#AF0038")


def op_phases(result: RunResult, cols: dict[str, np.ndarray]) -> list[tuple[str, list[dict]]]:
    """``hwsim ops`` rows for a typical prefill iteration (one median-length prompt) and a typical
    decode iteration (the run's mean decode rows at the mean context), on the first pool's device;
    empty if the scenario cannot be rebuilt from the result."""
    if not result.scenario or not result.scenario.get("model"):
        return []
    from simulator.config.loader import load_scenario
    from simulator.op_breakdown import breakdown

    req = result.requests
    n = nrows(req)
    prompt = floats(req, "prompt_tokens", n)
    prompt = prompt[np.isfinite(prompt)]
    generated = floats(req, "generated_tokens", n)
    generated = generated[np.isfinite(generated)]
    iters = np.nan_to_num(cols["iterations"], nan=1.0)
    rows_ = np.nan_to_num(cols["decode_rows"])
    decoding = rows_ > 0
    try:
        sc = load_scenario(result.scenario)
        phases = []
        if prompt.size:
            p = int(np.median(prompt))
            phases.append((f"prefill: 1 prompt of {p:,} tokens", breakdown(sc, tokens=p, decode_rows=0)))
        if decoding.any():
            d = max(1, int(round(float(np.average(rows_[decoding], weights=iters[decoding])))))
            ctx = int(np.mean(prompt) + np.mean(generated) / 2) if prompt.size and generated.size else 1024
            phases.append((f"decode: {d} rows x {ctx:,} context", breakdown(sc, decode_rows=d, context=max(ctx, 1))))
        return phases
    except (HwsimError, ValueError, KeyError, TypeError, OSError):
        return []


def ops_figure(phases: list[tuple[str, list[dict]]]) -> Figure:
    """One stacked bar per phase: each op's time in one iteration (``hwsim ops``), in ms."""
    fig = Figure()
    names: list[str] = []
    for _, rows in phases:
        for r in rows:
            if r["name"] not in names:
                names.append(r["name"])
    xs = [label for label, _ in phases]
    for i, name in enumerate(names):
        ys = [sum(r["time_s"] for r in rows if r["name"] == name) * 1e3 for _, rows in phases]
        fig.add_trace("bar", x=xs, y=ys, name=name, marker={"color": OPS_PALETTE[i % len(OPS_PALETTE)]},
                             hovertemplate="%{x}<br>" + name + ": %{y:.4~g} ms<extra></extra>")
    totals = [sum(r["time_s"] for r in rows) * 1e3 for _, rows in phases]
    fig.add_trace("scatter", x=xs, y=totals, mode="text", text=[f"{t:.3g} ms" for t in totals],
                             textposition="top center", showlegend=False, hoverinfo="skip")
    fig.update_layout(barmode="stack", legend={"orientation": "v", "x": 1.02, "y": 1})
    fig.update_yaxes(title_text="ms per iteration", rangemode="tozero")
    if not phases:
        no_data(fig, "no operator breakdown")
    layout(fig, 460)
    fig.update_layout(legend={"orientation": "v", "x": 1.02, "y": 1})
    return fig
