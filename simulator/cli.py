"""The ``hwsim`` command line.

Every user error (bad scenario, unknown kind, missing unit, bad trace, a model that does not fit)
prints one line naming what is wrong and where, and exits with code 2.
"""

from __future__ import annotations

import difflib
import gc
import json
import sys
from pathlib import Path
from typing import Optional

import typer

from simulator.cli_guard import fail, guarded  # noqa: F401  (fail is part of the CLI API)
from simulator.core.errors import CapacityError, ConfigError, HwsimError

# young-generation collections every this many allocations in the hwsim process (Python's default is
# 700): a run's lazy imports, pydantic's model classes and the run allocate millions of long-lived
# objects, and each middle or full collection walks all of them. Set by main(), the command's own
# process; a program importing this module keeps its collector settings (tests/test_cli_gc.py).
GC_YOUNG_THRESHOLD = 10_000
_ONE_COMMAND = False  # True in the hwsim process (main): one command runs, then the process exits

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="hwsim: simulate ML hardware and the software that schedules work on it (LLM serving on "
                       "GPUs, CNNs on microcontrollers, kernels).")


def _no_type_beside_flags() -> None:
    """Help shows a value type beside options that take a value, none beside on/off flags."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)  # typer >= 0.16 shows types; older ones do not
    if shown is None or getattr(shown, "_hwsim", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._hwsim = True
    TyperOption.display_type_rich = display_type_rich


_no_type_beside_flags()


def _version(value: bool) -> None:
    if value:
        from simulator import __version__

        typer.echo(f"hwsim {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """hwsim: simulate ML hardware and the software that schedules work on it (LLM serving on GPUs, CNNs on
    microcontrollers, kernels)."""

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
        f"{'goodput (SLO)':<22}" + (f"{s['goodput_rps']:.2f} req/s, attainment {s['slo_attainment']:.1%}"
                                    if s["slo_attainment"] == s["slo_attainment"] else "- (no SLO set)"),
        f"{'batch / KV / queue':<22}mean batch {s['batch_size_mean']:.1f}, KV used {s['kv_utilization_mean']:.1%} "
        f"(peak {s['kv_utilization_peak']:.1%}), queue {s['queue_length_mean']:.1f}",
        f"{'GPU':<22}busy {s['gpu_busy_fraction']:.1%}, MFU {s['mfu']:.1%}, preemptions {s['preemptions']}",
    ]
    if "cost_usd_per_mtok" in s:
        lines.append(f"{'cost':<22}${s['cost_usd']:.2f} for the run, ${s['cost_usd_per_mtok']:.3f} per M output tokens")
    if s.get("energy_j"):
        lines.append(f"{'energy':<22}{s['energy_per_output_token_j']:.3g} J per output token, "
                     f"{s['energy_per_request_j']:.3g} J per request, mean power {s['power_mean_w']:.0f} W")
        if "energy_request_j" in s:
            e = s["energy_request_j"]
            lines.append(f"{'energy per request':<22}step joules by token share: mean {e['mean']:.3g} J, "
                         f"p50 {e['p50']:.3g}, p90 {e['p90']:.3g}, p99 {e['p99']:.3g}")
    if out is not None:
        lines.append(f"results: {out}/ (open {out / 'report.html'})")
    typer.echo("\n".join(lines))


SCENARIO_TYPES = ("mcu", "study", "training", "sweep", "diffusion")  # besides a serving scenario, which has no type


def scenario_type(scenario: Path | dict) -> str:
    """``serving``, ``mcu`` or ``study``: the ``type`` of a scenario file (none: serving)."""
    from simulator.config.loader import read_mapping

    if not isinstance(scenario, Path):
        return "serving"
    raw = read_mapping(scenario)
    if not raw:
        raise ConfigError("the scenario file is empty: give a serving scenario (hardware, model, workload) or "
                          "set `type` to one of: mcu, study", where=f"{scenario}: type")
    kind = raw.get("type")
    if kind is None:
        return "serving"
    if kind not in SCENARIO_TYPES:
        close = difflib.get_close_matches(str(kind), SCENARIO_TYPES, n=1)
        hint = f"; did you mean {close[0]!r}" if close else ""
        raise ConfigError(f"unknown scenario type {kind!r}{hint}; known: {', '.join(SCENARIO_TYPES)} (leave `type` "
                          f"out for a serving scenario)", where=f"{scenario}: type")
    return kind


def check_writable(out: Path) -> Path:
    """Create ``out`` and prove a file can be written there, before any simulating."""
    import tempfile

    try:
        if out.exists() and not out.is_dir():
            raise HwsimError("the results directory is an existing file", where=str(out))
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out, prefix=".hwsim-write-test-"):
            pass
    except OSError as exc:
        raise HwsimError(f"the results directory is not writable: {exc.strerror or exc}", where=str(out)) from None
    return out


def quiet_gc() -> None:
    """Before a run in the hwsim process: everything allocated so far (modules, the scenario,
    the workload) is moved out of the cyclic collector's view (``gc.freeze``). With the young
    threshold above, the collector's passes went from 0.19-0.23 s of the 10k trace case's CPU (gc
    callbacks: 3 full and 40 middle collections) to about 0.05 s; cycles made during the run are
    still collected. Nothing is frozen when a command runs inside another program (the typer test
    runner, a notebook): a frozen object is never collected, so every cycle that was garbage at
    the freeze would stay for the rest of that program."""
    if _ONE_COMMAND:
        gc.freeze()


def _run(scenario, overrides, out: Path | None, quiet: bool, no_report: bool, allow_rejected: bool = False,
         progress_opt: bool | None = None) -> None:
    from simulator.outputs import write_results
    from simulator.run_describe import RunProgress, rejection_reason
    from simulator.run_size import estimate, format_bytes, physical_memory_bytes, sampled
    from simulator.runner import Simulation, check_warmup

    kind = scenario_type(scenario)
    if kind == "sweep":
        raise HwsimError("a sweep file: run it with `hwsim sweep FILE`", where=f"{scenario}: type")
    if kind == "training":
        from simulator.config.loader import read_mapping
        from simulator.training_cli import run_training_scenario

        name = str(read_mapping(scenario).get("name") or "training")
        run_training_scenario(scenario, overrides, check_writable(out or Path("results") / name), quiet, no_report)
        return
    if kind == "mcu":
        from simulator.mcu.run import load_mcu_scenario, run_mcu_scenario

        spec, _, _ = load_mcu_scenario(scenario, overrides or [])
        run_mcu_scenario(scenario, overrides or [], check_writable(out or Path("results") / spec.name), quiet)
        return
    if kind == "diffusion":  # image requests on denoising replicas (simulator.serving.diffusion_run)
        from simulator.serving.diffusion_run import load_diffusion, run_diffusion_scenario

        spec, _ = load_diffusion(scenario, overrides or [])
        run_diffusion_scenario(scenario, overrides or [], check_writable(out or Path("results") / spec.name), quiet)
        return
    if kind == "study":
        from simulator.studies.run import load_study, run_study, study_name

        name, _, _ = load_study(scenario, overrides or [])
        run_study(scenario, overrides or [], check_writable(out or Path("results") / study_name(scenario, name)),
                  quiet)
        return
    resolved = _load(scenario, overrides)
    out = check_writable(out if out is not None else Path("results") / resolved.spec.name)
    huge = sampled(resolved)[1] != 1.0  # more requests than a sample: sized before generating them
    size = estimate(resolved) if huge else None
    mem = physical_memory_bytes()
    if size is not None and mem and size.memory_bytes > mem:
        raise CapacityError(f"{size.requests:,} requests need about {format_bytes(size.memory_bytes)} of memory to "
                            f"simulate, more than this machine's {format_bytes(mem)}; ask for fewer requests",
                            where="workload")
    sim = Simulation(resolved)
    quiet_gc()
    size = size or estimate(resolved, sim.table)  # the workload is generated once
    if size.long and not quiet:
        typer.echo(f"hwsim: a long run: {size.describe()}", err=True)
    check_warmup(resolved, len(sim.table))
    show = progress_opt if progress_opt is not None else (size.long or sys.stderr.isatty())
    progress = RunProgress(len(sim.table), sys.stderr.isatty()) if show and not quiet else None
    try:
        result = sim.run(progress)
    finally:
        if progress is not None:
            progress.stop()
    s = result.summary
    if s["requests_total"] and s["requests_rejected"] == s["requests_total"] and not allow_rejected:
        raise HwsimError(f"all {s['requests_total']:,} requests were rejected: {rejection_reason(sim)} "
                         f"(--allow-rejected writes the results anyway)", where=str(scenario)
                         if isinstance(scenario, Path) else "workload")
    outs = resolved.spec.outputs
    write_results(result, resolved.to_yaml(), out, report=outs.report and not no_report,
                  chrome_trace=outs.chrome_trace, events=outs.events, requests=outs.requests)
    if not quiet:
        print_summary(result, out)


AllowRejectedOpt = typer.Option(False, "--allow-rejected",
                                help="write the results even when every request is rejected (exit 0)")
ProgressOpt = typer.Option(None, "--progress/--no-progress",
                           help="show progress on stderr (default: on a terminal, or when the run is long)")


@app.command()
@guarded
def run(scenario: Path = typer.Argument(..., help="scenario YAML/TOML file"),
        set_: Optional[list[str]] = SetOpt,
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="results directory (default results/NAME)"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="print nothing on success"),
        no_report: bool = typer.Option(False, "--no-report", help="skip report.html"),
        allow_rejected: bool = AllowRejectedOpt,
        progress: Optional[bool] = ProgressOpt) -> None:
    """Run a scenario (serving, type: mcu, study or diffusion): print a summary, write a results directory."""
    _run(scenario, set_, out, quiet, no_report, allow_rejected, progress)


@app.command()
@guarded
def demo(out: Optional[Path] = typer.Option(None, "--out", "-o", help="results directory (default "
                                                                       "results/quickstart)"),
         set_: Optional[list[str]] = SetOpt,
         quiet: bool = typer.Option(False, "--quiet", "-q", help="print nothing on success")) -> None:
    """Run the embedded default scenario: Llama-3-8B on 1x H100-SXM with vLLM-style batching."""
    import yaml

    from simulator.defaults import QUICKSTART_YAML

    _run(yaml.safe_load(QUICKSTART_YAML), set_, out or Path("results") / "quickstart", quiet, False)


@app.command()
@guarded
def check(scenario: Path = typer.Argument(..., help="scenario file (serving, type: mcu, study, training, diffusion)"),
          set_: Optional[list[str]] = SetOpt,
          show: bool = typer.Option(False, "--show", help="print the resolved scenario")) -> None:
    """Validate a scenario without running it; print its deployment, memory plan and run size."""
    kind = scenario_type(scenario)
    if kind == "sweep":
        from simulator.sweep_cli import check_sweep

        check_sweep(scenario, set_)
        return
    if kind == "training":
        from simulator.training_cli import check_training

        check_training(scenario, set_, show)
        return
    if kind == "mcu":
        from simulator.mcu.run import load_mcu_scenario, simulate

        spec, base_dir, _ = load_mcu_scenario(scenario, set_ or [])
        s = simulate(spec, base_dir).summary  # the memory plan: flash and SRAM checked per layer
        typer.echo(f"ok: {scenario} — mcu: {s['network']} ({s['precision']}) on {s['mcu']}, {s['schedule_label']}; "
                   f"peak SRAM {s['peak_sram_bytes'] / 1024:.1f} of {s['sram_budget_bytes'] / 1024:.0f} KiB, "
                   f"flash {s['flash_used_bytes'] / 1024:.1f} of {s['flash_budget_bytes'] / 1024:.0f} KiB")
        if show:
            typer.echo(yaml_dump(spec.model_dump(mode="json")))
        return
    if kind == "diffusion":
        from simulator.serving.diffusion_run import check_diffusion

        typer.echo("\n".join(check_diffusion(scenario, set_, show)))
        return
    if kind == "study":
        from simulator.studies.run import load_study

        name, mod, cfg = load_study(scenario, set_ or [])
        doc = (mod.__doc__ or "").strip().splitlines()
        typer.echo(f"ok: {scenario} — study {name}: {doc[0] if doc else ''}".rstrip(": "))
        if show:
            typer.echo(yaml_dump({"type": "study", "study": name, **cfg.model_dump(mode="json")}))
        return
    from simulator.run_describe import describe_serving
    from simulator.run_size import estimate, sampled
    from simulator.runner import Simulation, check_warmup

    resolved = _load(scenario, set_)
    small, factor = sampled(resolved)  # a huge workload is checked on a sample, sized from the whole
    sim = Simulation(small)  # builds everything: the KV plan, the workload, the replicas
    size = estimate(resolved, sim.table if factor == 1.0 else None)
    check_warmup(resolved, size.requests)
    probe_steps(sim)
    lines = describe_serving(scenario, resolved, sim, size)
    over = int((sim.table.prompt_tokens > sim.max_model_len).sum())  # every scheduler rejects these
    if over and over == len(sim.table):
        raise CapacityError(f"every prompt exceeds max_model_len {sim.max_model_len}, so a run would reject all "
                            f"{size.requests:,} requests; raise engine.max_model_len or shorten the prompts",
                            where="engine.max_model_len")
    if over:
        lines.append(f"  warning: {over / len(sim.table):.1%} of the prompts exceed max_model_len "
                     f"{sim.max_model_len} and will be rejected")
    typer.echo("\n".join(lines))
    if show:
        typer.echo(resolved.to_yaml())


def probe_steps(sim) -> None:
    """Time one small step on every pool's devices (and a draft model's): a device lacking the
    model's dtype refuses it here, by name, as a run would at its first step."""
    from workloads.llm import BatchShape

    shape = BatchShape(prefill=((2, 0),), decode_rows=1, decode_kv=2, emitting=2)
    for rt in sim.pools:
        rt.timer.step(shape)
    for rep in sim.cluster.replicas:
        draft = getattr(rep.spec, "draft_timer", None)
        if draft is not None:
            try:
                draft.step(shape)
            except HwsimError as e:  # the draft's device is the speculation block's
                if e.where == "hardware.device":
                    e.where = "policies.speculation.device"
                raise


def yaml_dump(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False).rstrip()


@app.command()
@guarded
def plugins() -> None:
    """List every plug-in kind of every registry, with where it comes from."""
    from simulator.core.registry import ALL_REGISTRIES

    for reg in ALL_REGISTRIES:
        typer.echo(f"{reg.name} ({reg.group}):")
        for e in reg.entries():
            typer.echo(f"  {e.kind:<20} {e.origin:<10} {plugin_description(e.cls)}".rstrip())


def plugin_description(cls) -> str:
    """One line describing a plug-in: its ``description`` attribute, else the first sentence of
    its class docstring, else of its module's docstring."""
    text = getattr(cls, "description", None)
    if not isinstance(text, str) or not text.strip():
        text = cls.__doc__ or sys.modules.get(cls.__module__).__doc__ or ""
    para = " ".join(text.strip().split("\n\n")[0].split())
    end = para.find(". ")
    return para[:end + 1] if end >= 0 else para


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
    """Print a JSON Schema: of the scenario file (every type), or of one plug-in kind's config."""
    from simulator.core.registry import ALL_REGISTRIES
    from simulator.scenario_schema import kind_schema, scenario_schema

    if kind is None:
        out = scenario_schema()
    else:
        for reg in ALL_REGISTRIES:
            if kind in reg.kinds():
                out = kind_schema(reg.get(kind).config)
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
    from simulator.sweep_cli import compare, sweep
    from simulator.training_cli import train
    from simulator.validation.cli import kernel_app, validate_app
    from simulator.validation.serving_cli import validate_serving

    app.add_typer(mcu_app, name="mcu", help="Microcontroller CNN inference: does a network fit, with which schedule.")
    app.command("capacity")(guarded(capacity))
    app.command("ops")(guarded(ops))
    app.command("train")(guarded(train))
    app.command("reproduce")(guarded(reproduce))
    app.command("sweep")(guarded(sweep))
    app.command("compare")(guarded(compare))
    app.add_typer(calibrate_app, name="calibrate",
                  help="Capture real kernel timings, fit the models, report the errors.")
    validate_app.command("serving")(validate_serving)
    from simulator.validation.variants_cli import validate_variants

    validate_app.command("variants")(guarded(validate_variants))
    app.add_typer(validate_app, name="validate", help="Predict measured kernel tables and serving benchmarks; "
                                                      "report the error.")
    app.add_typer(kernel_app, name="kernel", help="Time one kernel on a GPU model (tile, detailed, roofline).")


_add_subcommands()


def main() -> None:
    """The hwsim command: this process runs one command and exits (see quiet_gc)."""
    global _ONE_COMMAND
    _ONE_COMMAND = True
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    app()


if __name__ == "__main__":
    main()
