"""``hwsim train SCENARIO``: simulate one training step; ``hwsim check`` of a training scenario."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
import yaml

from simulator.training.memory import gib


def _resolved_yaml(rt) -> str:
    return "# hwsim resolved training scenario: presets merged, every value explicit\n" + \
        yaml.safe_dump(rt.dump(), sort_keys=False)


def summary_lines(s: dict, out: Path | None = None) -> list[str]:
    m = s["memory_per_gpu"]
    lay = s["layout"]
    lines = [
        f"hwsim train: {s['name']}  ({s['model']}, {s['gpus']} x {s['device']}; dp {lay['dp']} tp {lay['tp']} "
        f"pp {lay['pp']} cp {lay['cp']} v {lay['virtual_stages']} zero {lay['zero']})",
        f"{'step time':<22}{s['step_s'] * 1e3:.1f} ms, {s['tokens_per_s']:,.0f} tokens/s, "
        f"{s['micro_batches']} micro-batches per replica",
        f"{'utilisation':<22}MFU {s['mfu']:.1%}, HFU {s['hfu']:.1%}, {s['tflops_per_gpu']:.0f} TFLOP/s per GPU",
        f"{'pipeline bubble':<22}{s['bubble_fraction']:.1%} of rank 0's forward-backward phase "
        f"((p-1)/v/(m+(p-1)/v) = {s['bubble_fraction_formula']:.1%})",
        f"{'memory per GPU':<22}{gib(m['total_bytes'])} of {gib(s['memory_capacity_bytes'])}: weights "
        f"{gib(m['weights_bytes'])}, grads {gib(m['grads_bytes'])}, optimizer {gib(m['optimizer_bytes'])}, "
        f"activations {gib(m['activations_bytes'])}, reserve {gib(m['reserve_bytes'])}",
        f"{'checkpoint':<22}{gib(s['checkpoint_bytes_per_gpu'])} per GPU: copy {s['checkpoint_copy_s']:.2f} s, "
        f"SSD {s['checkpoint_ssd_write_s']:.2f} s, stall {s['checkpoint_stall_s']:.2f} s",
    ]
    if out is not None:
        lines.append(f"results: {out}/ (open {out / 'report.html'}; trace {out / 'trace.json'})")
    return lines


def run_training_scenario(scenario: Path | dict, overrides: list[str] | None, out: Path | None, quiet: bool = False,
                          no_report: bool = False) -> dict:
    from simulator.training.config import load_training
    from simulator.training.outputs import write_training_results
    from simulator.training.step import run_training

    rt = load_training(scenario, overrides or [])
    if out is not None:
        from simulator.cli import check_writable

        check_writable(out)
    result = run_training(rt)
    if out is not None:
        o = rt.spec.outputs
        write_training_results(result, _resolved_yaml(rt), out, o.chrome_trace, o.report and not no_report)
    if not quiet:
        typer.echo("\n".join(summary_lines(result.summary, out)))
    return result.summary


def check_training(scenario: Path, overrides: list[str] | None, show: bool = False) -> None:
    """Validate a training scenario: layout, memory per GPU (the step is built, not simulated)."""
    from simulator.training.config import load_training
    from simulator.training.step import build, check_memory

    rt = load_training(scenario, overrides or [])
    plan, stages, _ = build(rt)
    check_memory(rt, stages)
    worst = max(st.memory.total for st in stages)
    lay = rt.spec.layout
    typer.echo(f"ok: {scenario} — training: {rt.model.name} on {rt.spec.training.gpus} x {rt.device.name}, dp "
               f"{lay.dp} tp {lay.tp} pp {lay.pp} cp {lay.cp}, {plan.m} micro-batches per replica; memory per GPU "
               f"{gib(worst)} of {gib(rt.device.memory_bytes)}")
    if show:
        typer.echo(_resolved_yaml(rt))


def train(scenario: Path = typer.Argument(..., help="training scenario (type: training)"),
          set_: Optional[list[str]] = typer.Option(None, "--set", "-s", help="override a field: a.b.c=value"),
          out: Optional[Path] = typer.Option(None, "--out", "-o", help="results directory (default results/NAME)"),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="print nothing on success"),
          no_report: bool = typer.Option(False, "--no-report", help="skip report.html")) -> None:
    """Simulate one training step: step time, MFU/HFU, memory per GPU, pipeline trace, checkpoint cost."""
    from simulator.config.loader import read_mapping
    from simulator.core.errors import ConfigError

    raw = read_mapping(scenario)
    if raw.get("type") != "training":
        raise ConfigError(f"hwsim train takes a training scenario (type: training), not type {raw.get('type')!r}; "
                          f"use hwsim run", where=f"{scenario}: type")
    name = str(raw.get("name") or "training")
    run_training_scenario(scenario, set_, out or Path("results") / name, quiet, no_report)
