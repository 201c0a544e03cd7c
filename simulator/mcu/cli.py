"""``hwsim mcu fit NETWORK --mcu PRESET``: does a network fit a microcontroller, and with which schedule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import typer

from simulator.cli_guard import guarded
from simulator.core.errors import CapacityError, ConfigError

mcu_app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="Microcontroller CNN inference: memory fit and schedules.")


@mcu_app.callback()
def mcu_main() -> None:
    """Microcontroller CNN inference: memory fit and schedules."""


@dataclass(frozen=True)
class FitResult:
    lines: list[str]
    chosen: str | None  # label of the chosen schedule; None when nothing fits
    error: CapacityError | None


def fit_report(network: str, mcu: str, width: float = 1.0, resolution: Optional[int] = None,
               patches: int = 4) -> FitResult:
    """Lines answering "does it fit, and with which schedule", the chosen schedule and the error if none fits.

    Chooses layer-by-layer when it fits (no recompute); otherwise the patch-based plan with the
    least recompute among those that fit. Bad input (unknown network or preset) raises ConfigError."""
    from hw_models.mcu import McuConfig
    from simulator.config.loader import resolve_component
    from simulator.core import registry as reg
    from simulator.mcu.planner import flash_check, plan_layer_by_layer, plan_patch_auto
    from workloads.cnn.networks import build_network

    cfg = resolve_component({"kind": "mcu", "preset": mcu}, reg.HARDWARE, "--mcu").config
    assert isinstance(cfg, McuConfig)
    graph = build_network(network, width, resolution, where="NETWORK")
    kib = 1024.0
    budget = cfg.sram_budget_bytes
    lines = [f"{graph.name} (int8, {graph.total_macs / 1e6:.1f} M MACs) on {cfg.name} "
             f"({budget / kib:.0f} KiB SRAM, {cfg.flash_budget_bytes / kib:.0f} KiB flash)",
             f"  flash           {graph.weight_bytes / kib:8.1f} KiB  "
             + ("fits" if graph.weight_bytes <= cfg.flash_budget_bytes else "DOES NOT FIT")]
    flash_error = None
    try:
        flash_check(graph, cfg.flash_budget_bytes, cfg.name, where="NETWORK")
    except CapacityError as err:
        flash_error = err
    layer = plan_layer_by_layer(graph)
    try:
        patch = plan_patch_auto(graph, patches, budget_bytes=budget)
    except ConfigError:
        patch = None
    for plan in (layer, patch):
        if plan is None:
            lines.append(f"  patch-based     no block boundary allows {patches}x{patches} patches")
            continue
        s = plan.peak_step
        verdict = "fits" if s.live_bytes <= budget else f"short by {s.live_bytes - budget:,} bytes"
        extra = f", +{plan.recompute_overhead:.1%} MACs" if plan.schedule == "patch" else ""
        lines.append(f"  {'layer-by-layer' if plan.schedule == 'layer' else 'patch-based':<15} "
                     f"{s.live_bytes / kib:8.1f} KiB peak at {s.layer}{extra}  {verdict}")
    chosen = next((p for p in (layer, patch) if p is not None and p.peak_bytes <= budget), None)
    if chosen is None:
        best = min((p for p in (layer, patch) if p is not None), key=lambda p: p.peak_bytes)
        s = best.peak_step
        err = CapacityError(f"{graph.name} does not fit {cfg.name}'s {budget:,}-byte SRAM with any schedule: "
                            f"best is {best.label}, layer {s.layer!r} needs {s.live_bytes:,} bytes "
                            f"— short by {s.live_bytes - budget:,} bytes", where="NETWORK")
        return FitResult(lines + ["  chosen: none"], None, flash_error or err)
    if flash_error is not None:
        return FitResult(lines + ["  chosen: none (weights do not fit flash)"], None, flash_error)
    lines.append(f"  chosen: {chosen.label}")
    return FitResult(lines, chosen.label, None)


@mcu_app.command()
@guarded
def fit(network: str = typer.Argument(..., help="mobilenet_v2, mcunet, resnet18 or ds_cnn"),
        mcu: str = typer.Option(..., "--mcu", help="MCU preset, e.g. STM32H743"),
        width: float = typer.Option(1.0, "--width", help="width multiplier"),
        resolution: Optional[int] = typer.Option(None, "--resolution", help="input resolution (square)"),
        patches: int = typer.Option(4, "--patches", help="patch grid for patch-based execution")) -> None:
    """Say whether NETWORK fits the MCU layer by layer and patch by patch, and which schedule to use."""
    result = fit_report(network, mcu, width, resolution, patches)
    typer.echo("\n".join(result.lines))
    if result.error is not None:
        typer.echo(f"error: {result.error}", err=True)
        raise typer.Exit(2)
