"""``hwsim capacity``: find the highest arrival rate that meets the SLOs; print the curve, write
capacity.json and capacity.html (a plotly page; plotly.js is written beside it, see
simulator/html_assets.py).

Registered by ``simulator/cli.py`` as ``app.command("capacity")(capacity)``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import typer

from simulator.core.errors import HwsimError, UnitError
from simulator.core.units import parse_quantity

DIV_ID = "hwsim-capacity"
_CSS = "body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222}" \
       "h1{font-size:1.5em}"



def _pct(x: float) -> str:
    """A share as a percentage; '-' when undefined (no TTFT / TPOT SLO given)."""
    return "-" if x != x else f"{x:.1%}"


def _nan_to_null(obj):
    """``obj`` with NaN floats as None (JSON null: strict JSON has no NaN)."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_null(v) for v in obj]
    return obj

def _positive(text: Optional[str], dimension: str, where: str) -> Optional[float]:
    """A positive quantity given on the command line (``2s``, ``5/s``), or None if not given."""
    if text is None:
        return None
    try:
        value = parse_quantity(text, dimension)
    except UnitError as exc:
        raise HwsimError(exc.message, where=where) from None
    if value <= 0:
        raise HwsimError(f"must be > 0, got {text!r}", where=where)
    return value


def _seconds(text: Optional[str], where: str) -> Optional[float]:
    return _positive(text, "time", where)


def _rate(text: Optional[str], where: str) -> Optional[float]:
    return _positive(text, "rate", where)


def _ms(x: Optional[float]) -> str:
    return "-" if x is None else f"{x * 1e3:.1f}"


def format_curve(report: dict[str, Any]) -> str:
    crit = report["criteria"]
    lines = [f"{'rate (req/s)':>12} {'attainment':>10} {'p90 TTFT ms':>12} {'p90 TPOT ms':>12} "
             f"{'p99 ITL ms':>11} {'goodput':>8}  pass"]
    for p in report["points"]:
        lines.append(f"{p['rate_rps']:12.3f} {_pct(p['attainment']):>10} {_ms(p['ttft_p90_s']):>12} "
                     f"{_ms(p['tpot_p90_s']):>12} {_ms(p['itl_p99_s']):>11} {p['goodput_rps']:8.2f}  "
                     f"{'yes' if p['passed'] else 'no'}")
    cap = report["capacity_rps"]
    note = " (the highest rate tried passed: capacity is at least this)" if report["capped"] else ""
    if not cap:
        note = " (even the lowest rate tried fails the SLOs)"
    lines.append(f"capacity: {cap:.3f} req/s at {crit['attainment']:.0%} attainment{note}; "
                 f"{report['runs']} runs in {report['wall_s']:.1f} s")
    return "\n".join(lines)


def capacity_html(report: dict[str, Any]) -> str:
    """A deterministic, self-contained page: attainment and p90 latencies against the rate."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from simulator.html_assets import plotly_script_tag

    pts = report["points"]
    rates = [p["rate_rps"] for p in pts]
    crit = report["criteria"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("SLO attainment", "p90 latency"))
    fig.add_trace(go.Scatter(x=rates, y=[p["attainment"] for p in pts], mode="lines+markers",
                             name="attainment", hovertemplate="%{x:.3f} req/s: %{y:.1%}<extra></extra>"),
                  row=1, col=1)
    fig.add_hline(y=crit["attainment"], line_dash="dash", row=1, col=1)
    if report["capacity_rps"]:
        fig.add_vline(x=report["capacity_rps"], line_dash="dot", row=1, col=1)
    for key, name in (("ttft_p90_s", "p90 TTFT"), ("tpot_p90_s", "p90 TPOT"), ("itl_p99_s", "p99 inter-token")):
        fig.add_trace(go.Scatter(x=rates, y=[None if p[key] is None else p[key] * 1e3 for p in pts],
                                 mode="lines+markers", name=name,
                                 hovertemplate="%{x:.3f} req/s: %{y:.1f} ms<extra>" + name + "</extra>"), row=1, col=2)
    for key, name in (("slo_ttft_s", "TTFT SLO"), ("slo_tpot_s", "TPOT SLO"), ("p99_itl_s", "inter-token limit")):
        if crit.get(key):
            fig.add_hline(y=crit[key] * 1e3, line_dash="dash", row=1, col=2)
            # on a log axis an annotation's y is in log10 units
            fig.add_annotation(y=math.log10(crit[key] * 1e3), x=1, xref="x domain", text=name, showarrow=False,
                               xanchor="right", yanchor="bottom", row=1, col=2)
    fig.update_xaxes(title_text="arrival rate (requests/s)")
    fig.update_yaxes(title_text="requests meeting the SLOs", range=[0, 1.05], tickformat=".0%", row=1, col=1)
    fig.update_yaxes(title_text="ms", type="log", row=1, col=2)
    fig.update_layout(template="plotly_white", height=460)
    title = (f"hwsim capacity: {report['scenario']} ({report['scheduler']}) — "
             f"{report['capacity_rps']:.3f} requests/s")
    div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=DIV_ID, config={"displaylogo": False})
    return "\n".join(["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                      f"<title>{title}</title>", plotly_script_tag(), f"<style>{_CSS}</style>",
                      "</head><body>", f"<h1>{title}</h1>", div, "</body></html>", ""])


def capacity(scenario: Path = typer.Argument(..., help="scenario YAML/TOML file (open-loop workload)"),
             slo_ttft: Optional[str] = typer.Option(None, "--slo-ttft", help="TTFT SLO, e.g. 2s"),
             slo_tpot: Optional[str] = typer.Option(None, "--slo-tpot", help="TPOT SLO, e.g. 100ms"),
             attainment: float = typer.Option(0.9, "--attainment", help="share of requests that must meet the SLOs"),
             lo: Optional[str] = typer.Option(None, "--lo", help="lowest rate to try, e.g. 1/s"),
             hi: Optional[str] = typer.Option(None, "--hi", help="highest rate to try, e.g. 20/s"),
             steps: int = typer.Option(8, "--steps", help="runs in all (bracket + bisection)"),
             out: Optional[Path] = typer.Option(None, "--out", "-o", help="results directory (default "
                                                "results/NAME-capacity)"),
             set_: Optional[list[str]] = typer.Option(None, "--set", "-s",
                                                      help="override a scenario field (repeatable)"),
             num_requests: Optional[int] = typer.Option(None, "--num-requests", help="requests per run"),
             p99_itl: Optional[str] = typer.Option(None, "--p99-itl", help="also require P99 inter-token <= this"),
             ) -> None:
    """Find the highest arrival rate at which the scenario meets its SLOs (bisection over runs)."""
    from simulator.capacity import capacity_search
    from simulator.html_assets import write_page

    if slo_ttft is None and slo_tpot is None and p99_itl is None:
        raise HwsimError("give --slo-ttft and/or --slo-tpot (or --p99-itl)", where="capacity")
    if num_requests is not None and num_requests < 1:
        raise HwsimError(f"must be >= 1, got {num_requests}", where="--num-requests")
    from simulator.cli import check_writable

    check_writable(out if out is not None else Path("results"))  # before the first run, not after all of them
    report = capacity_search(scenario, _seconds(slo_ttft, "--slo-ttft"), _seconds(slo_tpot, "--slo-tpot"),
                             attainment, lo=_rate(lo, "--lo"), hi=_rate(hi, "--hi"), iterations=steps,
                             num_requests=num_requests, overrides=set_ or [],
                             p99_itl_s=_seconds(p99_itl, "--p99-itl"),
                             progress=lambda p: typer.echo(f"  rate {p['rate_rps']:.3f}/s: attainment "
                                                           f"{_pct(p['attainment'])} ({p['wall_s']:.1f} s)", err=True))
    if out is None:
        out = Path("results") / f"{report['scenario']}-capacity"
    try:
        if out.exists() and not out.is_dir():
            raise HwsimError("the results directory is an existing file", where=str(out))
        out.mkdir(parents=True, exist_ok=True)
        (out / "capacity.json").write_text(json.dumps(_nan_to_null(report), indent=2) + "\n")
        write_page(out / "capacity.html", capacity_html(report))
    except OSError as exc:
        raise HwsimError(f"cannot write the results: {exc.strerror or exc}", where=str(out)) from None
    typer.echo(format_curve(report))
    typer.echo(f"results: {out}/capacity.json, {out}/capacity.html")
