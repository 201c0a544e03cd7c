"""Microcontroller runs: memory planner, patch-based execution, timing, scenarios, `hwsim mcu fit`.

First principles first (hand-computed peaks, the receptive-field formula), then properties, then
the paper reproductions with their bands, then bad input.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hw_models.mcu import Mcu, McuOp
from simulator.config.loader import resolve_component
from simulator.core import registry as reg
from simulator.core.errors import CapacityError, ConfigError
from simulator.mcu.cli import fit_report, mcu_app
from simulator.mcu.planner import (
    cut_points,
    plan_layer_by_layer,
    plan_patch,
    plan_patch_auto,
    resolve_stage,
    stage_intervals,
)
from simulator.mcu.run import run_mcu_scenario
from workloads.cnn.graph import GraphBuilder, receptive_field
from workloads.cnn.networks import build_network

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "hw_models" / "presets" / "mcu"
KIB = 1024


def mcu(preset: str):
    return resolve_component({"kind": "mcu", "preset": preset}, reg.HARDWARE, "mcu").config


def three_layer_net():
    b = GraphBuilder("three", 8, 8, 3)
    x = b.conv("input", "c1", 8, 3)  # 8x8x8
    x = b.dwconv(x, "dw", 3)  # 8x8x8, in place
    b.conv(x, "c2", 4)  # 8x8x4
    return b.build()


def chain(h: int, depth: int, c: int = 4):
    b = GraphBuilder("chain", h, h, c)
    x = "input"
    for i in range(depth):
        b.block = f"l{i}"
        x = b.conv(x, f"l{i}", c, 3)
    b.block = "head"
    b.gap(x, "pool")
    return b.build()


# ------------------------------------------------------------------------------ first principles
def test_a_three_layer_network_peaks_where_hand_arithmetic_says():
    plan = plan_layer_by_layer(three_layer_net())
    # c1: input 192 + out 512; dw in place: max(512, 512) + one 8x8 channel of scratch; c2: 512 + 256
    assert [s.live_bytes for s in plan.steps] == [704, 576, 768]
    assert (plan.peak_bytes, plan.peak_step.layer) == (768, "c2")
    no_inplace = plan_layer_by_layer(three_layer_net(), inplace=False)
    assert [s.live_bytes for s in no_inplace.steps] == [704, 1024, 768]


def test_a_residual_skip_stays_live_and_the_fused_add_writes_into_it():
    b = GraphBuilder("res", 8, 8, 4)
    h = b.conv("input", "expand", 16)
    h = b.dwconv(h, "dw", 3)
    h = b.conv(h, "project", 4)
    b.add(h, "input", "add")
    g = b.build()
    # expand: skip 256 + 1024; dw: skip + 1024 in place + 64 scratch; project accumulates into the skip
    assert [s.live_bytes for s in plan_layer_by_layer(g).steps] == [1280, 1344, 1280, 256]
    assert [s.live_bytes for s in plan_layer_by_layer(g, inplace=False).steps] == [1280, 2304, 1536, 768]


def test_the_receptive_field_of_a_chain_follows_the_textbook_formula():
    assert receptive_field([3, 3, 3], [2, 1, 2]) == (11, 4)  # 1 + 2*1 + 2*2 + 2*2, stride 2*1*2
    g = chain(64, 3)
    rows = stage_intervals(g, 3, 8, 0)  # 8 patches of 8 rows; interior patch 3 is never clipped
    lo, hi = rows["input"][3]
    k, s = receptive_field([3, 3, 3], [1, 1, 1])
    assert hi - lo == (8 - 1) * s + k


@settings(max_examples=30, deadline=None)
@given(p=st.integers(1, 4), depth=st.integers(1, 3), mult=st.integers(1, 3))
def test_patch_recompute_macs_match_the_halo_formula(p, depth, mult):
    # d stride-1 3x3 convs over H x H, p x p patches: a layer with j layers after it in the stage
    # computes its patch plus a halo of j on each interior side: (H + 2 j (p - 1))^2 pixels.
    h = p * max(depth, 1) * mult
    g = chain(h, depth)
    plan = plan_patch(g, p, depth)
    mpp = 9 * 4 * 4
    for i, step in enumerate(plan.steps[:depth]):
        j = depth - 1 - i
        assert step.macs == (h + 2 * j * (p - 1)) ** 2 * mpp
    expected = sum((h + 2 * j * (p - 1)) ** 2 for j in range(depth)) / (depth * h * h) - 1
    assert plan.recompute_overhead == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_the_timing_model_never_beats_the_simd_mac_roofline():
    for preset in ("STM32H743", "STM32F746", "STM32F412", "nRF5340"):
        cfg = mcu(preset)
        m = Mcu(cfg)
        for macs in (10_000, 1_000_000):
            cost = m.layer_cost(McuOp("conv", macs, 0, macs // 64, 4096, 1, 0))
            assert cost.cycles >= macs / cfg.core.int8_macs_per_cycle
            assert cost.energy_j == pytest.approx(cost.cycles * cfg.energy_per_cycle_j)
    op = McuOp("conv", 1_000_000, 0, 10_000, 4096, 1, 0)
    m7, m4 = Mcu(mcu("STM32F746")), Mcu(mcu("STM32F412"))
    assert m7.layer_cost(op).cycles < m4.layer_cost(op).cycles  # dual issue, single-cycle loads


# ------------------------------------------------------------------------------ properties
@settings(max_examples=25, deadline=None)
@given(p=st.integers(1, 3), k=st.integers(2, 3), depth=st.integers(1, 3), mult=st.integers(1, 2))
def test_finer_nested_patch_grids_never_raise_the_patched_stage_peak(p, k, depth, mult):
    # Each cell of the p*k grid lies inside a cell of the p grid, so its regions are subsets.
    h = p * k * mult * 2
    g = chain(h, depth)
    coarse, fine = plan_patch(g, p, depth), plan_patch(g, p * k, depth)
    assert fine.stage_peak_bytes() <= coarse.stage_peak_bytes()
    assert fine.macs >= coarse.macs  # ... and they recompute more


@settings(max_examples=15, deadline=None)
@given(width=st.sampled_from([0.35, 0.5, 0.75, 1.0]), res=st.sampled_from([96, 128, 144, 160]),
       p=st.integers(2, 4))
def test_patch_based_never_needs_more_sram_than_layer_by_layer_on_mobilenet_v2(width, res, p):
    g = build_network("mobilenet_v2", width, res)
    layer, patch = plan_layer_by_layer(g), plan_patch_auto(g, p)
    assert patch.peak_bytes <= layer.peak_bytes
    assert patch.macs >= patch.base_macs == layer.macs


# ------------------------------------------------------------------------------ reproductions
def test_mobilenet_v2_layer_by_layer_peak_is_mcunets_1372_kb():
    # MCUNet/MCUNetV2: int8 MobileNetV2 (w1.0, 224) peaks at block 1's 1x1 expansion:
    # 112x112x16 in + 112x112x96 out = 1,404,928 B = 1372 KiB (exact arithmetic on layer shapes).
    plan = plan_layer_by_layer(build_network("mobilenet_v2", 1.0, 224))
    assert plan.peak_bytes == 112 * 112 * (16 + 96) == 1372 * KIB
    assert plan.peak_step.layer == "b1.expand"


def test_mcunetv2_patch_based_cuts_mobilenet_v2_peak_sram_about_8x():
    # MCUNetV2 reports ~8x for MobileNetV2 (1372 kB -> ~172 kB). After the 4x4 patch stage
    # (through block 3, 28x28x32 out) the peak is block 4's depthwise: 28x28x32 skip +
    # 28x28x192 in place + one 28x28 channel of scratch = 176,400 B. The paper's figure leaves out
    # the 784-byte scratch channel (171.5 KiB -> exactly 8.0x); hwsim gives 7.96x.
    g = build_network("mobilenet_v2", 1.0, 224)
    layer, patch = plan_layer_by_layer(g), plan_patch_auto(g, 4)
    assert patch.patch_blocks[-1] == "b3"
    assert patch.peak_bytes == 28 * 28 * (32 + 192) + 28 * 28 == 176_400
    assert 7.9 <= layer.peak_bytes / patch.peak_bytes <= 8.0
    # recompute on overlapping borders: MCUNetV2 quotes ~10 % for MobileNetV2 (recalled, so a wide band)
    assert 0.05 <= patch.recompute_overhead <= 0.15


@pytest.mark.parametrize("name,width,res", [("mobilenet_v2", 1.0, 224), ("mobilenet_v2", 0.35, 144),
                                            ("mobilenet_v2", 0.5, 160), ("mcunet", 1.0, 176),
                                            ("resnet18", 1.0, 224)])
def test_patch_based_cuts_peak_sram_4_to_8x_for_existing_networks(name, width, res):
    # MCUNetV2's claim "4-8x for existing networks"; per-network figures other than MobileNetV2's are
    # not asserted exactly (MCUNet here is MCUNet-style, not the released checkpoint).
    g = build_network(name, width, res)
    ratio = plan_layer_by_layer(g).peak_bytes / plan_patch_auto(g, 4).peak_bytes
    assert 4.0 <= ratio <= 8.0


def test_value_driven_mixed_precision_cuts_bitops_but_8_bit_weights_bound_it_at_2x(tmp_path):
    # QuantMCU reports ~2.2x less computation. Our stated assignment (8-bit weights, 4-bit maps, 4 of
    # 16 patches at 8 bit) gives 1.57x; with 8-bit weights and >= 4-bit maps no assignment passes 2x.
    s = run_mcu_scenario(ROOT / "scenarios" / "papers" / "mixed_precision_patch.yaml", [], tmp_path, True)
    assert 1.4 <= s["bitops_reduction_vs_int8"] <= 2.0
    base = run_mcu_scenario(ROOT / "scenarios" / "papers" / "mixed_precision_patch.yaml",
                            ["network.precision=int8", "network.layer_bits={}", "schedule.patch_bits=null"],
                            tmp_path / "int8", True)
    assert base["bitops_reduction_vs_int8"] == 1.0
    assert s["macs"] == base["macs"]  # same schedule, same work; only the bits differ
    assert s["peak_sram_bytes"] <= base["peak_sram_bytes"]


# ------------------------------------------------------------------------------ scenarios and CLI
@pytest.mark.parametrize("path", sorted((ROOT / "scenarios" / "mcu").glob("*.yaml"))
                         + [ROOT / "scenarios" / "papers" / "mcunetv2_patch.yaml"], ids=lambda p: p.name)
def test_each_mcu_scenario_runs_and_writes_its_results(path, tmp_path):
    assert path.read_text().startswith("#")
    s = run_mcu_scenario(path, [], tmp_path, True)
    assert s["peak_sram_bytes"] <= s["sram_budget_bytes"] and s["latency_ms"] > 0 and s["energy_j"] > 0
    for f in ("summary.json", "layers.csv", "report.html", "scenario.resolved.yaml"):
        assert (tmp_path / f).is_file()
    assert json.loads((tmp_path / "summary.json").read_text())["peak_layer"] == s["peak_layer"]


def test_the_report_is_self_contained_and_byte_identical_across_runs(tmp_path):
    path = ROOT / "scenarios" / "mcu" / "mbv2_035_h743_patch.yaml"
    run_mcu_scenario(path, [], tmp_path / "a", True)
    run_mcu_scenario(path, [], tmp_path / "b", True)
    a = (tmp_path / "a" / "report.html").read_text()
    assert a == (tmp_path / "b" / "report.html").read_text()
    assert '<script src="plotly-' in a and any((tmp_path / "a").glob("plotly-*.min.js"))  # library beside it
    assert 'id="mcu-fig-0"' in a and "layer-by-layer" in a and "patch-based" in a


def test_mcu_fit_chooses_patch_based_when_only_it_fits():
    result = CliRunner().invoke(mcu_app, ["fit", "mcunet", "--mcu", "STM32F412", "--resolution", "224"])
    assert result.exit_code == 0, result.output
    assert "short by" in result.output and "chosen: patch-based" in result.output
    assert fit_report("ds_cnn", "nRF5340").chosen == "layer-by-layer"


def test_scenario_errors_name_the_dotted_path():
    base = {"type": "mcu", "name": "x", "mcu": {"kind": "mcu", "preset": "STM32F412"},
            "network": {"name": "ds_cnn"}, "schedule": {"kind": "layer"}}
    with pytest.raises(ConfigError, match=r"schedule\.patchs: unknown field"):
        run_mcu_scenario({**base, "schedule": {"kind": "patch", "patchs": 4}}, [], None, True)
    with pytest.raises(ConfigError, match=r"network\.name: unknown network 'mobilnet_v2'; did you mean"):
        run_mcu_scenario({**base, "network": {"name": "mobilnet_v2"}}, [], None, True)
    with pytest.raises(ConfigError, match=r"mcu\.preset: unknown mcu preset 'STM32F4'"):
        run_mcu_scenario({**base, "mcu": {"kind": "mcu", "preset": "STM32F4"}}, [], None, True)
    with pytest.raises(ConfigError, match=r"clock_hz"):
        run_mcu_scenario({**base, "mcu": {"kind": "mcu", "preset": "STM32F412", "core": {"clock_hz": 100}}},
                         [], None, True)


# ------------------------------------------------------------------------------ bad input
def test_a_network_that_does_not_fit_sram_names_the_layer_and_the_bytes_short():
    board = {"kind": "mcu", "preset": "STM32F412", "flash": {"size_bytes": "8MiB"}}
    scenario = {"type": "mcu", "name": "x", "mcu": board,
                "network": {"name": "mobilenet_v2", "width": 1.0, "resolution": 224}, "schedule": {"kind": "layer"}}
    short = 1372 * KIB - 256 * KIB
    with pytest.raises(CapacityError, match=rf"'b1\.expand' needs 1,404,928 bytes.*short by {short:,} bytes"):
        run_mcu_scenario(scenario, [], None, True)


def test_weights_that_do_not_fit_flash_name_the_overflowing_layer():
    pattern = r"resnet18.*flash.*overflow at layer 'l\d\.\d\.\w+', short by [\d,]+ bytes"
    with pytest.raises(CapacityError, match=pattern):
        run_mcu_scenario({"type": "mcu", "name": "x", "mcu": {"kind": "mcu", "preset": "STM32H743"},
                          "network": {"name": "resnet18", "resolution": 64}, "schedule": {"kind": "layer"}},
                         [], None, True)
    result = CliRunner().invoke(mcu_app, ["fit", "resnet18", "--mcu", "STM32H743", "--resolution", "64"])
    assert result.exit_code == 2 and "error: NETWORK:" in result.output and "Traceback" not in result.output


def test_a_patch_stage_that_cannot_end_there_is_a_config_error():
    g = build_network("mobilenet_v2", 0.35, 144)
    with pytest.raises(ConfigError, match="schedule.patch_stages"):
        resolve_stage(g, 4, "b99")
    assert resolve_stage(g, 4, "b3") in cut_points(g, 4)


def test_every_mcu_preset_number_cites_a_source():
    for path in PRESETS.glob("*.yaml"):
        for line in path.read_text().splitlines():
            body = line.split("#")[0]
            if re.search(r":\s*\S", body) and not body.strip().startswith(("name:",)):
                assert "# source:" in line, f"{path.name}: {line}"
