"""``hwsim sweep`` and ``hwsim compare``; registered by simulator/cli.py."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer


def _fmt(v) -> str:
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:.4g}"
    return "-" if v is None else str(v)


def best_lines(rows: list[dict], objectives: list) -> list[str]:
    """One line per objective: the best point among those that meet every constraint."""
    ok = [r for r in rows if r["passed"]]
    lines = [f"{len(ok)} of {len(rows)} points meet every constraint"
             + (f"; {sum(r['error'] is not None for r in rows)} could not run" if any(r["error"] for r in rows)
                else "")]
    for o in objectives:
        vals = [(r["metrics"].get(o.metric), r) for r in ok]
        vals = [(v, r) for v, r in vals if isinstance(v, (int, float)) and v == v]
        if not vals:
            continue
        v, r = (min if o.goal == "min" else max)(vals, key=lambda t: t[0])
        at = ", ".join(f"{k}={_fmt(x)}" for k, x in r["axes"].items())
        lines.append(f"best {o.goal} {o.metric}: {_fmt(v)} at point {r['point_id']} ({at})")
    return lines


def sweep(sweep_file: Path = typer.Argument(..., help="sweep YAML file (base scenario, axes, objectives)"),
          out: Optional[Path] = typer.Option(None, "--out", "-o", help="sweep directory (default results/sweeps/NAME)"),
          workers: Optional[int] = typer.Option(None, "--workers", "-j", help="processes (default: all cores)"),
          backend: str = typer.Option("local", "--backend", help="local (process pool) or ray"),
          ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                                    help="Ray cluster to join (default: a local Ray)"),
          resume: bool = typer.Option(False, "--resume", help="run only the points missing from the store"),
          overwrite: bool = typer.Option(False, "--overwrite", help="drop the rows already in the store"),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar, no summary")) -> None:
    """Run a design-space sweep: every point of a grid / random draw / list, into a resumable results store
    (results.sqlite, results.csv, results.parquet) and a comparison page (compare.html)."""
    from simulator.cli import check_writable
    from simulator.core.errors import HwsimError
    from simulator.sweep import BACKENDS, run_sweep
    from simulator.sweep_spec import build_sweep

    if backend not in BACKENDS:
        raise HwsimError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}", where="--backend")
    sw = build_sweep(sweep_file)
    out = check_writable(out if out is not None else Path("results") / "sweeps" / sw.spec.name)
    if not quiet:
        typer.echo(f"hwsim sweep: {sw.spec.name}: {len(sw.points)} points over {', '.join(sw.axis_names)} "
                   f"({backend} backend)")
    rows = run_sweep(sw, out, workers=workers, backend=backend, resume=resume, overwrite=overwrite,
                     ray_address=ray_address, progress=not quiet)
    if not quiet:
        typer.echo("\n".join(best_lines(rows, sw.spec.objectives)))
        typer.echo(f"results: {out}/results.sqlite (open {out / 'compare.html'})")


def check_sweep(path: Path, overrides: list[str] | None = None) -> None:
    """``hwsim check`` of a sweep file: every point resolved, every axis path and metric checked."""
    from simulator.core.errors import HwsimError
    from simulator.sweep import check_metrics
    from simulator.sweep_spec import build_sweep

    if overrides:
        raise HwsimError("--set does not apply to a sweep file: give fixed overrides in its `set:` block",
                         where="--set")
    sw = build_sweep(path)
    check_metrics(sw)
    size = f"{len(sw.points)} points over {', '.join(sw.axis_names)}"
    goals = "; ".join([f"{o.goal} {o.metric}" for o in sw.spec.objectives] + [c.label() for c in sw.spec.constraints])
    cap = "; capacity search per point" if sw.spec.capacity is not None else ""
    typer.echo(f"ok: {path} — sweep {sw.spec.name}: {size}" + (f"; {goals}" if goals else "") + cap)


def compare(paths: list[Path] = typer.Argument(..., help="run directories, or one sweep directory"),
            out: Optional[Path] = typer.Option(None, "--out", "-o",
                                               help="page to write (default SWEEP_DIR/compare.html or ./compare.html)"),
            ) -> None:
    """Compare runs or a sweep's points on one offline page: Pareto fronts, SLO attainment vs rate, latency CDFs,
    a sortable table."""
    from simulator.compare import write_compare

    page = write_compare(list(paths), out)
    typer.echo(f"wrote {page}")
