"""NPU / SoC presets and the PE-array accelerator template."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from hw_models.timing.accelerator import AcceleratorBackend, AcceleratorTimingConfig
from hw_models.timing.npu import NpuBackend
from hw_models.timing.tile import TileBackend, TileConfig
from simulator.config.loader import load_scenario, resolve_component
from simulator.core import registry as reg
from simulator.core.errors import CapacityError
from simulator.runner import memory_plan, run_scenario
from workloads.llm import Op

ROOT = Path(__file__).resolve().parents[1]
U280 = ROOT / "scenarios/devices/u280_llama2_7b.yaml"
M2 = ROOT / "scenarios/papers/llamacpp_llama2_7b_m2ultra.yaml"


def device(kind, preset, **over):
    return resolve_component({"kind": kind, "preset": preset, **over}, reg.HARDWARE, "hardware.device").config


@pytest.mark.parametrize("preset", ["MI300X", "Gaudi2", "Gaudi3", "Apple-M2-Ultra", "Snapdragon-8-Gen3"])
def test_every_npu_preset_loads_and_a_gpu_backend_asked_for_it_builds_the_npu_roofline(preset):
    dev = device("npu", preset)
    be = TileBackend(TileConfig(), dev)
    assert isinstance(be, NpuBackend)
    op = Op("gemm", "mlp_up", m=1, n=8192, k=8192, dtype=next(iter(dev.tensor_flops_per_s)),
            dtype_bytes=2.0)
    assert be.op_s(op) >= op.bytes_moved() / dev.memory_bw_bytes_per_s  # never beats the memory roofline


def test_an_npu_without_a_dtype_refuses_it_by_name():
    with pytest.raises(CapacityError, match="Gaudi 2 has no fp16"):
        device("npu", "Gaudi2").tensor_peak("fp16")


def test_unified_memory_kept_by_the_host_is_not_the_engines():
    full = memory_plan(load_scenario(M2, ["hardware.device.host_reserved_bytes=0B"]))
    kept = memory_plan(load_scenario(M2))
    assert full.usable_bytes - kept.usable_bytes == pytest.approx(48e9)


def test_weight_stationary_cycles_follow_the_systolic_closed_form():
    dev = device("accelerator", "Alveo-U280")
    be = AcceleratorBackend(AcceleratorTimingConfig(), dev)
    r, c = dev.pe_rows, dev.pe_cols
    m, n, k = 300, 1000, 500
    tiles = math.ceil(k / r) * math.ceil(n / c)
    assert be.gemm_cycles(m, n, k, "int8") == pytest.approx((tiles * max(m, r) + r + c - 1) / 2)
    # a full array never computes faster than its peak
    assert be.gemm_cycles(m, n, k, "int8") / dev.clock_hz >= 2 * m * n * k / dev.tensor_peak("int8")


def test_output_stationary_wins_on_a_short_k_and_rereads_weights_that_do_not_fit():
    ws = AcceleratorBackend(AcceleratorTimingConfig(), device("accelerator", "Alveo-U280"))
    os_ = AcceleratorBackend(AcceleratorTimingConfig(),
                             device("accelerator", "Alveo-U280", dataflow="output_stationary"))
    assert os_.gemm_cycles(4096, 4096, 8, "int8") < ws.gemm_cycles(4096, 4096, 8, "int8") / 4
    big = (4096, 16384, 8192)  # 134 MB of int8 weights, more than the 40 MB SRAM
    assert ws.gemm_bytes(*big, 1, 1, 1) == pytest.approx(4096 * 8192 * math.ceil(16384 / 64) + 8192 * 16384
                                                       + 4096 * 16384)
    assert os_.gemm_bytes(*big, 1, 1, 1) > ws.gemm_bytes(*big, 1, 1, 1)


def test_an_fpga_design_serves_llama_and_is_bound_by_its_weight_feed_at_decode():
    s = run_scenario(load_scenario(U280)).summary
    assert s["requests_finished"] == 4
    dev = device("accelerator", "Alveo-U280")
    model = load_scenario(U280).model.config
    # a decode GEMV feeds C weights per cycle per array: the int8 linear layers alone take k n / C cycles
    linear = model.num_params() - 2 * model.vocab_size * model.hidden_size
    assert s["tpot_s"]["p50"] >= linear / (dev.pe_cols * 2) / dev.clock_hz


def test_an_accelerator_without_a_dtype_refuses_it_by_name(tmp_path):
    p = subprocess.run([sys.executable, "-m", "simulator.cli", "run", str(U280), "-o", str(tmp_path / "r"),
                        "--set", "hardware.device.macs_per_pe_per_cycle.fp16=0"],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2 and "no fp16" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_prefill_on_a_gpu_and_decode_on_an_npu_serve_one_workload_with_energy_over_both():
    sc = load_scenario(ROOT / "scenarios/devices/hetero_h100_prefill_mi300x_decode.yaml",
                       ["workload.num_requests=20"])
    assert [p.device.kind for p in sc.pools] == ["gpu", "npu"]
    s = run_scenario(sc).summary
    assert s["requests_finished"] == 20
    idle = 70.0 + 75.0  # H100 preset idle (10% of 700 W) + MI300X default (10% of 750 W)
    assert s["energy_idle_j"] == pytest.approx(idle * s["sim_time_s"], rel=1e-9)
    assert sum(s["energy_by_pool_j"].values()) == pytest.approx(s["energy_j"])
    assert set(s["energy_by_pool_j"]) == {"prefill", "decode"}


@pytest.mark.parametrize("path, cap", [("scenarios/papers/intel_cpu_llama2_7b_spr.yaml", "50W"),
                                       ("scenarios/papers/llamacpp_llama2_7b_m2ultra.yaml", "40W")])
def test_a_power_cap_on_a_cpu_or_soc_is_never_exceeded_and_slows_decode(path, cap):
    free = run_scenario(load_scenario(ROOT / path)).summary
    capped = run_scenario(load_scenario(ROOT / path, [f"hardware.device.power_cap_w={cap}"])).summary
    watts = float(cap[:-1])
    assert free["power_peak_w_per_device"] > watts >= capped["power_peak_w_per_device"] * (1 - 1e-9)
    assert capped["tpot_s"]["p50"] > free["tpot_s"]["p50"]


def test_a_draft_model_on_its_own_device_leaves_the_targets_kv_pool_whole_and_is_timed_there():
    from simulator.runner import Simulation

    spec = ROOT / "scenarios/devices/spec_draft_on_npu.yaml"
    apart = Simulation(load_scenario(spec, ["workload.num_requests=10"]))
    shared = Simulation(load_scenario(spec, ["workload.num_requests=10", "policies.speculation.device=null"]))
    rep_a, rep_s = apart.cluster.replicas[0], shared.cluster.replicas[0]
    assert rep_a.kvm.total_blocks > rep_s.kvm.total_blocks  # the draft's weights and KV live elsewhere
    assert rep_a.spec.draft_timer.backend.device.name == "AMD Instinct MI300X"
    assert apart.run().summary["requests_finished"] == 10


def test_a_draft_that_does_not_fit_its_device_is_one_line_and_exit_2(tmp_path):
    spec = ROOT / "scenarios/devices/spec_draft_on_npu.yaml"
    p = subprocess.run([sys.executable, "-m", "simulator.cli", "run", str(spec), "-o", str(tmp_path / "r"),
                        "--set", "policies.speculation.device.memory_bytes=1GiB"],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2 and "more than" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
