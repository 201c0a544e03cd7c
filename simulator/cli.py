"""The ``hwsim`` command line.

Every user error (bad scenario, unknown kind, missing unit, bad trace, a model that does not fit)
prints one line naming what is wrong and where, and exits with code 2.
"""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path
from typing import Optional

import typer

from simulator.cli_guard import fail, guarded  # noqa: F401  (fail is part of the CLI API)
from simulator.core.errors import HwsimError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="hwsim: simulate LLM serving on modelled GPUs (scenario runs, presets, plug-ins).")

SetOpt = typer.Option(None, "--set", "-s", help="override a scenario field: a.b.c=value (repeatable)")


def _load(scenario: Path | dict, overrides: list[str] | None):
    from simulator.config.loader import load_scenario

    return load_scenario(scenario, overrides or [])


def _fmt_ms(stats: dict) -> str:
    if not stats or not stats.get("count"):
        return "-"
    return f"{stats['p50'] * 1e3:9.1f} {stats['p90'] * 1e3:9.1f} {stats['p99'] * 1e3:9.1f}"


def print_summary(result, out: Path | None) -> None:
    s = result.summary
    lines = [
        f"hwsim: {result.name}  ({s['requests_finished']}/{s['requests_total']} requests finished, "
        f"{s['requests_rejected']} rejected; simulated {result.sim_time_s:.1f} s in {result.wall_s:.2f} s)",
        f"{'latency (ms)':<22}{'p50':>9} {'p90':>9} {'p99':>9}",
        f"{'  TTFT':<22}{_fmt_ms(s['ttft_s'])}",
        f"{'  TPOT':<22}{_fmt_ms(s['tpot_s'])}",
        f"{'  inter-token':<22}{_fmt_ms(s['itl_s'])}",
        f"{'  end-to-end':<22}{_fmt_ms(s['e2e_s'])}",
        f"{'  queueing':<22}{_fmt_ms(s['queue_s'])}",
        f"{'throughput':<22}{s['throughput_rps']:.2f} req/s, {s['output_tokens_per_s']:.0f} output tok/s",
        f"{'goodput (SLO)':<22}{s['goodput_rps']:.2f} req/s, attainment {s['slo_attainment']:.1%}",
        f"{'batch / KV / queue':<22}mean batch {s['batch_size_mean']:.1f}, KV used {s['kv_utilization_mean']:.1%} "
        f"(peak {s['kv_utilization_peak']:.1%}), queue {s['queue_length_mean']:.1f}",
        f"{'GPU':<22}busy {s['gpu_busy_fraction']:.1%}, MFU {s['mfu']:.1%}, preemptions {s['preemptions']}",
    ]
    if "cost_usd_per_mtok" in s:
        lines.append(f"{'cost':<22}${s['cost_usd']:.2f} for the run, ${s['cost_usd_per_mtok']:.3f} per M output tokens")
    if out is not None:
        lines.append(f"results: {out}/ (open {out / 'report.html'})")
    typer.echo("\n".join(lines))


def _run(scenario, overrides, out: Path | None, quiet: bool, no_report: bool) -> None:
    from simulator.config.loader import read_mapping
    from simulator.outputs import write_results
    from simulator.runner import Simulation

    kind = read_mapping(scenario).get("type") if isinstance(scenario, Path) else None
    if kind == "mcu":
        from simulator.mcu.run import run_mcu_scenario

        run_mcu_scenario(scenario, overrides or [], out, quiet)
        return
    if kind == "study":
        from simulator.studies.run import run_study

        run_study(scenario, overrides or [], out, quiet)
        return
    resolved = _load(scenario, overrides)
    sim = Simulation(resolved)
    if out is None:
        out = Path("results") / resolved.spec.name
    try:  # a bad --out is the user's error, found before the run rather than after it
        if out.exists() and not out.is_dir():
            raise HwsimError("the results directory is an existing file", where=str(out))
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HwsimError(f"cannot create the results directory: {exc.strerror or exc}", where=str(out)) from None
    progress = None
    bar = None
    if not quiet and sys.stderr.isatty():
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.completed}/{task.total} requests"),
                       TimeElapsedColumn(), transient=True)
        task = bar.add_task("run", total=len(sim.table))
        bar.start()

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done)

    try:
        result = sim.run(progress)
    finally:
        if bar is not None:
            bar.stop()
    outs = resolved.spec.outputs
    write_results(result, resolved.to_yaml(), out, report=outs.report and not no_report,
                  chrome_trace=outs.chrome_trace, events=outs.events, requests=outs.requests)
    if not quiet:
        print_summary(result, out)


@app.command()
@guarded
def run(scenario: Path = typer.Argument(..., help="scenario YAML/TOML file"),
        set_: Optional[list[str]] = SetOpt,
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="results directory (default results/NAME)"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="print nothing on success"),
        no_report: bool = typer.Option(False, "--no-report", help="skip report.html")) -> None:
    """Run a scenario: print a summary and write a results directory with report.html."""
    _run(scenario, set_, out, quiet, no_report)


@app.command()
@guarded
def demo(out: Optional[Path] = typer.Option(None, "--out", "-o", help="results directory"),
         set_: Optional[list[str]] = SetOpt,
         quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Run the embedded default scenario: Llama-3-8B on 1x H100-SXM with vLLM-style batching."""
    import yaml

    from simulator.defaults import QUICKSTART_YAML

    _run(yaml.safe_load(QUICKSTART_YAML), set_, out or Path("results") / "quickstart", quiet, False)


@app.command()
@guarded
def check(scenario: Path = typer.Argument(..., help="scenario file"), set_: Optional[list[str]] = SetOpt,
          show: bool = typer.Option(False, "--show", help="print the resolved scenario")) -> None:
    """Validate a scenario without running it; print its memory plan."""
    from simulator.runner import Simulation

    resolved = _load(scenario, set_)
    sim = Simulation(resolved)  # builds everything: the KV plan, the workload, the replicas
    m = sim.mem
    gib = 2.0**30
    typer.echo(f"ok: {scenario} — {resolved.model.config.name} on {resolved.spec.cluster.replicas} x "
               f"{resolved.spec.cluster.tensor_parallel} x {resolved.device.config.name}; weights "
               f"{m.weight_bytes / gib:.1f} GiB/GPU, KV {m.kv_bytes / gib:.1f} GiB/GPU = "
               f"{m.kv_blocks * m.block_size} tokens per replica; {len(sim.table)} requests")
    if show:
        typer.echo(resolved.to_yaml())


@app.command()
@guarded
def plugins() -> None:
    """List every plug-in kind of every registry, with where it comes from."""
    from simulator.core.registry import ALL_REGISTRIES

    for reg in ALL_REGISTRIES:
        typer.echo(f"{reg.name} ({reg.group}):")
        for e in reg.entries():
            doc = (e.cls.__doc__ or "").strip().splitlines()
            typer.echo(f"  {e.kind:<20} {e.origin:<10} {doc[0] if doc else ''}")


@app.command()
@guarded
def presets(kind: Optional[str] = typer.Argument(None, help="only this kind, e.g. gpu")) -> None:
    """List the shipped presets of each kind."""
    from simulator.core.registry import ALL_REGISTRIES

    with_presets = [e.kind for reg in ALL_REGISTRIES for e in reg.entries() if e.preset_names()]
    if kind is not None and kind not in with_presets:
        close = difflib.get_close_matches(kind, with_presets, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise HwsimError(f"no presets for kind {kind!r}{hint} kinds with presets: {', '.join(with_presets)}",
                         where="presets")
    for reg in ALL_REGISTRIES:
        for e in reg.entries():
            names = e.preset_names()
            if names and (kind is None or kind == e.kind):
                typer.echo(f"{e.kind}: {', '.join(names)}")


@app.command()
@guarded
def schema(kind: Optional[str] = typer.Argument(None, help="a plug-in kind; default the scenario file")) -> None:
    """Print a JSON Schema: of the scenario file, or of one plug-in kind's config."""
    from simulator.config.scenario import ScenarioFile
    from simulator.core.registry import ALL_REGISTRIES

    if kind is None:
        out = ScenarioFile.model_json_schema()
        out["$defs"] = out.get("$defs", {})
        for reg in ALL_REGISTRIES:
            for e in reg.entries():
                if e.config is not None:
                    out["$defs"][f"{reg.name.replace(' ', '_')}.{e.kind}"] = e.config.model_json_schema()
    else:
        for reg in ALL_REGISTRIES:
            if kind in reg.kinds():
                e = reg.get(kind)
                out = e.config.model_json_schema() if e.config is not None else {}
                break
        else:
            known = sorted({k for reg in ALL_REGISTRIES for k in reg.kinds()})
            close = difflib.get_close_matches(kind, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise HwsimError(f"unknown kind {kind!r}{hint} known: {', '.join(known)}", where="schema")
    typer.echo(json.dumps(out, indent=2, default=str))


@app.command("fit-workload")
@guarded
def fit_workload(trace: Path = typer.Argument(..., help="trace CSV (Splitwise/Vidur or Azure columns)"),
                 max_requests: Optional[int] = typer.Option(None, help="use the first N rows")) -> None:
    """Fit a synthetic workload block (rate, burstiness, lognormal lengths) to a trace; print YAML."""
    import yaml

    from simulator.core.rng import RngStreams
    from workloads.sources.synthetic import fit_from_trace
    from workloads.sources.trace import TraceConfig, TraceSource

    cfg = TraceConfig(path=str(trace), max_requests=max_requests)
    table = TraceSource(cfg, base_dir=Path.cwd()).generate(RngStreams(0))
    try:
        block = fit_from_trace(table)
    except ValueError as exc:
        raise HwsimError(str(exc), where=str(trace)) from None
    typer.echo(yaml.safe_dump({"workload": block}, sort_keys=False).rstrip())


def _add_subcommands() -> None:
    from simulator.calibration.cli import calibrate_app
    from simulator.capacity_cli import capacity
    from simulator.mcu.cli import mcu_app
    from simulator.op_breakdown import ops
    from simulator.reproduce_cli import reproduce
    from simulator.validation.cli import kernel_app, validate_app
    from simulator.validation.serving_cli import validate_serving

    app.add_typer(mcu_app, name="mcu", help="microcontroller studies: does a CNN fit, with which schedule")
    app.command("capacity")(guarded(capacity))
    app.command("ops")(guarded(ops))
    app.command("reproduce")(guarded(reproduce))
    app.add_typer(calibrate_app, name="calibrate", help="capture real kernel timings, fit the models, report errors")
    validate_app.command("serving")(validate_serving)
    app.add_typer(validate_app, name="validate", help="predict measured kernel tables and serving benchmarks, "
                                                      "report the error")
    app.add_typer(kernel_app, name="kernel", help="time one kernel on a GPU model (tile, detailed, roofline)")


_add_subcommands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
