"""CLI: ``hwsim validate serving FILE.csv`` (registered on the ``validate`` command group)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from simulator.cli_guard import guarded
from simulator.core.errors import ConfigError


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


@guarded
def validate_serving(csv_file: Path = typer.Argument(..., help="benchmark rows (aiconfigurator silicon_e2e format)"),
                     gpu: str = typer.Option(None, "--gpu", help="GPU preset; default: from each row's system"),
                     backend: str = typer.Option("tile", "--backend", help="timing backend (tile, roofline)"),
                     out: Path = typer.Option(None, "--out", help="directory for rows.csv and report.html"),
                     jobs: int = typer.Option(2, "--jobs", "-j", min=1, help="simulations run in parallel"),
                     rounds: int = typer.Option(10, "--rounds", min=1,
                                                help="requests per client in the benchmark: the first round "
                                                     "runs with every client at once, the later rounds in "
                                                     "steady state (their mean weighs both)"),
                     only: str = typer.Option(None, "--only",
                                              help="keep rows whose model, framework or id contains this "
                                                   "text")) -> None:
    """Simulate every benchmark row and print median / p90 APE and bias of TTFT and TPOT."""
    from simulator.validation.serving import format_table, predict_all, read_rows, skipped_summary, write_rows

    if not csv_file.is_file():
        _fail(f"{csv_file}: no such file")
    t0 = time.perf_counter()
    try:
        rows = read_rows(csv_file)
        if only:
            rows = [r for r in rows if only.lower() in f"{r.model} {r.framework} {r.id}".lower()]
        if not rows:
            _fail(f"{csv_file}: no benchmark rows" + (f" match --only {only!r}" if only else ""))
        preds = predict_all(rows, gpu, backend, jobs, rounds)
    except ConfigError as exc:
        _fail(str(exc))
    typer.echo(format_table(preds, backend))
    for line in skipped_summary(preds):
        typer.echo(line)
    from simulator.validation.serving import PLAUSIBLE_BUSY, PLAUSIBLE_PEAK

    flagged = sum(p.skipped is None and p.implausible for p in preds)
    if flagged:
        typer.echo(f"implausible: {flagged} row(s) whose measured throughput needs the prompts' GEMMs at more "
                   f"than {PLAUSIBLE_PEAK:g} of the dense tensor peak, or the prompts' GEMMs and all-reduces at the "
                   f"kernel models' rates more than {PLAUSIBLE_BUSY:g} s of GPU time per second (prompt reuse?); "
                   "marked in rows.csv")
    done = sum(p.skipped is None for p in preds)
    typer.echo(f"{done} of {len(preds)} rows simulated in {time.perf_counter() - t0:.1f} s")
    if out is not None:
        from simulator.validation.serving_report import write_serving_report

        typer.echo(f"rows: {write_rows(preds, out / 'rows.csv')}")
        typer.echo(f"report: {write_serving_report(preds, backend, out / 'report.html')}")
