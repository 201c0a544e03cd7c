"""Run an MCU scenario: a CNN on a microcontroller under a layer-by-layer or patch-based schedule.

A scenario (``type: mcu``) names the MCU (``{kind: mcu, preset: ...}``), the network, its precision
and the schedule. The run checks flash and SRAM (a network that does not fit is a CapacityError
naming the layer and the bytes short), times every layer with the MCU's timing model and writes
``summary.json``, ``layers.csv``, ``scenario.resolved.yaml`` and ``report.html``.
"""

from __future__ import annotations

import csv
import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import typer
import yaml
from pydantic import Field, ValidationError, model_validator

from hw_models.energy import active_energy
from hw_models.mcu import Mcu, McuConfig, McuOp
from simulator.config.errors import config_error
from simulator.config.loader import Component, apply_overrides, read_mapping, resolve_component
from simulator.config.quantities import StrictConfig
from simulator.core import registry as reg
from simulator.core.errors import ConfigError, HwsimError
from simulator.mcu.planner import Plan, capacity_error, flash_check, plan_layer_by_layer, plan_patch_auto
from workloads.cnn.graph import Graph
from workloads.cnn.networks import build_network

BITS = (1, 2, 3, 4, 5, 6, 7, 8, 16, 32)


class BitsSpec(StrictConfig):
    w: int = Field(default=8, description="weight bits")
    a: int = Field(default=8, description="output activation bits")

    @model_validator(mode="after")
    def _check(self) -> BitsSpec:
        for v in (self.w, self.a):
            if v not in BITS:
                raise ValueError(f"bit widths must be one of {list(BITS)}, got {v}")
        return self


class NetworkSpec(StrictConfig):
    name: str
    width: float = Field(default=1.0, gt=0)
    resolution: int | None = Field(default=None, gt=0)
    precision: Literal["int8", "fp32", "mixed"] = "int8"
    layer_bits: dict[str, BitsSpec] = Field(default_factory=dict,
                                            description="mixed: layer name (or glob) -> bits; others int8")

    @model_validator(mode="after")
    def _check(self) -> NetworkSpec:
        if self.layer_bits and self.precision != "mixed":
            raise ValueError("layer_bits needs precision: mixed")
        return self


class ScheduleSpec(StrictConfig):
    kind: Literal["layer", "patch"]
    patches: int = Field(default=4, ge=1, le=16, description="patch grid is patches x patches")
    patch_stages: int | str = Field(default="auto", description="'auto', N first blocks, or the last block's name")
    patch_bits: list[int] | None = Field(default=None, description="activation bits per patch, row-major")
    input_resident: bool = Field(default=False, description="count the whole input image during the patch stage")
    inplace: bool = True

    @model_validator(mode="after")
    def _check(self) -> ScheduleSpec:
        if self.patch_bits is not None and any(b not in BITS for b in self.patch_bits):
            raise ValueError(f"patch_bits entries must be one of {list(BITS)}")
        if self.kind == "layer" and self.patch_bits is not None:
            raise ValueError("patch_bits needs kind: patch")
        return self


class McuScenario(StrictConfig):
    type: Literal["mcu"]
    name: str
    description: str = ""
    mcu: dict[str, Any]
    network: NetworkSpec
    schedule: ScheduleSpec
    report: bool = True


@dataclass(frozen=True)
class McuRun:
    spec: McuScenario
    mcu: Component
    graph: Graph
    plan: Plan
    layer_plan: Plan
    patch_plan: Plan | None
    rows: list[dict[str, Any]]
    summary: dict[str, Any]


def build_graph(net: NetworkSpec) -> Graph:
    graph = build_network(net.name, net.width, net.resolution)
    if net.precision == "fp32":
        return graph.with_precision(32, 32)
    if net.precision == "mixed":
        bits: dict[str, tuple[int, int]] = {}
        for pattern, b in net.layer_bits.items():
            hits = [layer.name for layer in graph.layers if fnmatch.fnmatchcase(layer.name, pattern)]
            if not hits:
                raise ConfigError(f"no layer of {graph.name} matches {pattern!r}",
                                  where=f"network.layer_bits.{pattern}")
            bits.update({h: (b.w, b.a) for h in hits})
        return graph.with_bits(bits)
    return graph


def time_plan(mcu: Mcu, graph: Graph, plan: Plan) -> list[dict[str, Any]]:
    """Per-step timing rows of a plan."""
    rows = []
    by_name = {layer.name: layer for layer in graph.layers}
    for s in plan.steps:
        layer = by_name[s.layer]
        out = graph.out(layer)
        a_bits = round(s.bitops / (s.macs * layer.w_bits)) if s.macs else graph.tensors[layer.inputs[0]].bits
        op = McuOp(op=layer.op, macs=s.macs, other_ops=s.area * layer.ops_per_pixel(), out_elems=s.area * out.c,
                   weight_bytes=layer.weight_bytes, window=layer.kernel[0] * layer.kernel[1],
                   im2col_bytes=s.im2col_bytes, w_bits=layer.w_bits, a_bits=a_bits,
                   fp32=layer.w_bits == 32, calls=s.calls)
        cost = mcu.layer_cost(op)
        rows.append({"index": s.index, "layer": s.layer, "block": s.block, "op": s.op,
                     "out_shape": f"{out.h}x{out.w}x{out.c}", "w_bits": layer.w_bits, "a_bits": out.bits,
                     "base_macs": s.base_macs, "macs": s.macs, "bitops": s.bitops, "weight_bytes": layer.weight_bytes,
                     "sram_bytes": s.live_bytes, "patched": s.patched, "cycles": round(cost.cycles),
                     "ms": cost.cycles / mcu.config.core.clock_hz * 1e3, "energy_uj": cost.energy_j * 1e6})
    return rows


def simulate(spec: McuScenario, base_dir: Path = Path(".")) -> McuRun:
    comp = resolve_component(spec.mcu, reg.HARDWARE, "mcu", default_kind="mcu", base_dir=base_dir)
    if not isinstance(comp.config, McuConfig):
        raise ConfigError(f"expected kind 'mcu', got {comp.kind!r}", where="mcu.kind")
    cfg: McuConfig = comp.config
    mcu = Mcu(cfg)
    graph = build_graph(spec.network)
    flash_check(graph, cfg.flash_budget_bytes, cfg.name)
    sch = spec.schedule
    budget = cfg.sram_budget_bytes
    layer_plan = plan_layer_by_layer(graph, sch.inplace)
    patch_plan = None
    try:
        patch_plan = plan_patch_auto(graph, sch.patches, sch.patch_stages, sch.patch_bits, sch.input_resident,
                                     sch.inplace)
    except ConfigError:
        if sch.kind == "patch":
            raise
    plan = patch_plan if sch.kind == "patch" else layer_plan
    assert plan is not None
    if plan.peak_bytes > budget:
        raise capacity_error(plan, graph, budget, cfg.name)
    rows = time_plan(mcu, graph, plan)
    cycles = sum(r["cycles"] for r in rows)
    energy = sum(r["energy_uj"] for r in rows) * 1e-6
    peak = plan.peak_step
    base_bitops = plan.macs * 8 * 8  # the same schedule with int8 weights and activations
    summary: dict[str, Any] = {
        "name": spec.name, "mcu": cfg.name, "network": graph.name, "precision": spec.network.precision,
        "schedule": plan.schedule, "schedule_label": plan.label,
        "patches": plan.patches if plan.schedule == "patch" else None,
        "patch_blocks": list(plan.patch_blocks),
        "peak_sram_bytes": peak.live_bytes, "peak_layer": peak.layer, "sram_budget_bytes": budget,
        "sram_headroom_bytes": budget - peak.live_bytes,
        "flash_used_bytes": graph.weight_bytes, "flash_budget_bytes": cfg.flash_budget_bytes,
        "params": graph.params, "macs": plan.macs, "base_macs": plan.base_macs,
        "recompute_overhead": plan.recompute_overhead, "bitops": plan.bitops,
        "bitops_reduction_vs_int8": base_bitops / plan.bitops if plan.bitops else None,
        "latency_cycles": cycles, "latency_ms": cycles / cfg.core.clock_hz * 1e3,
        "energy_j": energy, "energy_per_mac_j": energy / plan.macs if plan.macs else None,
        # the serving runs' split (hw_models.energy): idle power all the time, the rest dynamic
        **{k: v for k, v in active_energy(cfg.energy.run_current_a * cfg.energy.supply_v,
                                          cfg.energy.idle_current_a * cfg.energy.supply_v,
                                          cycles / cfg.core.clock_hz).items() if k != "energy_j"},
        "macs_per_cycle": plan.macs / cycles if cycles else None,
        "layer_by_layer_peak_bytes": layer_plan.peak_bytes, "layer_by_layer_peak_layer": layer_plan.peak_step.layer,
        "patch_peak_bytes": patch_plan.peak_bytes if patch_plan else None,
        "patch_peak_layer": patch_plan.peak_step.layer if patch_plan else None,
        "patch_recompute_overhead": patch_plan.recompute_overhead if patch_plan else None,
        "peak_reduction": layer_plan.peak_bytes / patch_plan.peak_bytes if patch_plan else None,
    }
    return McuRun(spec, comp, graph, plan, layer_plan, patch_plan, rows, summary)


def load_mcu_scenario(source: Path | dict, overrides: list[str] | None = None) -> tuple[McuScenario, Path, dict]:
    if isinstance(source, dict):
        raw, base_dir = source, Path(".")
    else:
        path = Path(source)
        raw, base_dir = read_mapping(path), path.resolve().parent
    raw = apply_overrides(raw, list(overrides or []))
    try:
        spec = McuScenario.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, "", McuScenario) from None
    return spec, base_dir, raw


def write_outputs(run: McuRun, out: Path) -> None:
    from simulator.mcu.report import write_mcu_report

    try:
        if out.exists() and not out.is_dir():
            raise HwsimError("the results directory is an existing file", where=str(out))
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HwsimError(f"cannot create the results directory: {exc.strerror or exc}", where=str(out)) from None
    (out / "summary.json").write_text(json.dumps(run.summary, indent=2) + "\n", encoding="utf-8")
    with open(out / "layers.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(run.rows[0]) + ["sram_layer_bytes", "sram_patch_bytes"])
        writer.writeheader()
        patch = run.patch_plan.steps if run.patch_plan else [None] * len(run.rows)
        for row, lay, pat in zip(run.rows, run.layer_plan.steps, patch):
            writer.writerow({**row, "ms": f"{row['ms']:.6g}", "energy_uj": f"{row['energy_uj']:.6g}",
                             "sram_layer_bytes": lay.live_bytes, "sram_patch_bytes": pat.live_bytes if pat else ""})
    resolved = run.spec.model_dump(mode="json")
    resolved["mcu"] = run.mcu.dump()
    (out / "scenario.resolved.yaml").write_text("# hwsim resolved MCU scenario: presets merged\n"
                                                + yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
    if run.spec.report:
        write_mcu_report(run, out / "report.html")


def format_summary(s: dict[str, Any]) -> str:
    kib = 1024.0
    lines = [f"hwsim mcu: {s['name']} — {s['network']} ({s['precision']}) on {s['mcu']}, {s['schedule_label']}",
             f"  peak SRAM   {s['peak_sram_bytes'] / kib:9.1f} KiB at {s['peak_layer']} "
             f"(budget {s['sram_budget_bytes'] / kib:.0f} KiB)",
             f"  flash       {s['flash_used_bytes'] / kib:9.1f} KiB of {s['flash_budget_bytes'] / kib:.0f} KiB",
             f"  latency     {s['latency_ms']:9.2f} ms ({s['latency_cycles']:,} cycles, "
             f"{s['macs_per_cycle']:.2f} MAC/cycle)",
             f"  MACs        {s['macs'] / 1e6:9.2f} M (recompute +{s['recompute_overhead']:.1%})",
             f"  energy      {s['energy_j'] * 1e3:9.3f} mJ"]
    if s["patch_peak_bytes"] is not None:
        lines.append(f"  schedules   layer-by-layer {s['layer_by_layer_peak_bytes'] / kib:.1f} KiB, patch-based "
                     f"{s['patch_peak_bytes'] / kib:.1f} KiB ({s['peak_reduction']:.2f}x less)")
    return "\n".join(lines)


def run_mcu_scenario(source: Path | dict, overrides: list[str] | None = None, out: Path | None = None,
                     quiet: bool = False) -> dict:
    """Load, validate and run an MCU scenario; write results to ``out`` (default results/NAME)."""
    spec, base_dir, _ = load_mcu_scenario(source, overrides)
    run = simulate(spec, base_dir)
    out = Path("results") / spec.name if out is None else Path(out)
    write_outputs(run, out)
    if not quiet:
        typer.echo(format_summary(run.summary) + f"\n  results: {out}/ (open {out / 'report.html'})")
    return run.summary
