"""CPUs as serving devices: the cpu timing backend, T-MAC lookup kernels, a calibrated CPU serving."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hw_models.timing.cpu import CpuBackend, CpuTimingConfig
from hw_models.timing.tile import TileBackend, TileConfig
from simulator.calibration.cli import calibrate_app
from simulator.config.loader import load_scenario, resolve_component
from simulator.core import registry as reg
from simulator.runner import run_scenario
from workloads.llm import Op

ROOT = Path(__file__).resolve().parents[1]
SCEN = ROOT / "scenarios/devices/cpu_calibrated_qwen3_0.6b.yaml"
QUICK = ROOT / "tests/data/calibration/cpu-quick"


def cpu(preset="Xeon-8480", **over):
    return resolve_component({"kind": "cpu", "preset": preset, **over}, reg.HARDWARE, "hardware.device").config


def gemv(bits: float, n=4096, k=4096) -> Op:
    w = bits / 8 + 2 / 128  # one fp16 scale per 128 weights
    return Op("gemm", "mlp_up", m=1, n=n, k=k, dtype="int8", dtype_bytes=1.0, w_bytes=w if bits < 8 else 0.0)


def test_a_decode_gemv_is_never_faster_than_its_weights_over_the_dram_bandwidth():
    dev = cpu(simd_dtypes=["fp32", "int8"])
    be = CpuBackend(CpuTimingConfig(), dev)
    for bits in (2, 3, 4, 8):
        op = gemv(bits)
        assert be.op_s(op) >= op.bytes_moved() / dev.dram_bw_bytes_per_s


def test_lookup_table_gemv_time_grows_linearly_with_the_weight_bits_when_compute_bound():
    dev = cpu("Xeon-8480", simd_dtypes=["fp32", "int8"], lut_kernels=True)
    be = CpuBackend(CpuTimingConfig(threads=1, kernels="lut"), dev)  # one core: lookups bind, not DRAM
    t = {b: be._gemm_compute_s(gemv(b)) for b in (1, 2, 3, 4)}
    assert t[2] / t[1] == pytest.approx(2.0, rel=0.05) and t[4] / t[2] == pytest.approx(2.0, rel=0.05)
    deq = CpuBackend(CpuTimingConfig(threads=1, kernels="dequant"), dev)
    assert be.op_s(gemv(2)) < deq.op_s(gemv(2))  # T-MAC's point: no unpack-and-multiply


def test_a_gpu_backend_asked_to_time_a_cpu_builds_the_cpu_backend():
    be = TileBackend(TileConfig(), cpu())
    assert isinstance(be, CpuBackend) and be.threads == cpu().cores


def test_a_cpu_without_a_dtype_refuses_it_by_name():
    op = dataclasses.replace(gemv(8), dtype="bf16", dtype_bytes=2.0)
    with pytest.raises(Exception, match="Raspberry Pi 5.*no bf16"):  # Armv8.2: fp16, no bf16
        CpuBackend(CpuTimingConfig(), cpu("Raspberry-Pi-5")).op_s(op)


def test_a_cpu_lacking_the_model_dtype_is_one_line_and_exit_2(tmp_path):
    p = subprocess.run([sys.executable, "-m", "simulator.cli", "run", str(SCEN), "-o", str(tmp_path / "r"),
                        "--set", "hardware.device.simd_dtypes=[fp32]"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2 and "no bf16" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_a_cpu_fitted_from_a_capture_of_this_machine_serves_a_scenario(tmp_path):
    out = tmp_path / "fitted.yaml"
    res = CliRunner().invoke(calibrate_app, ["fit", str(QUICK), "--hardware", "generic-x86-2core", "-o", str(out)])
    assert res.exit_code == 0, res.output
    fitted = run_scenario(load_scenario(SCEN, [f"hardware.device.preset=[generic-x86-2core, {out}]"]))
    plain = run_scenario(load_scenario(SCEN, ["hardware.device.preset=generic-x86-2core"]))
    s = fitted.summary
    assert s["requests_finished"] == 8
    dev = load_scenario(SCEN).device.config
    weights = load_scenario(SCEN).model.config.weight_bytes()
    assert s["tpot_s"]["p50"] >= weights / (dev.dram_bw_per_core_bytes_per_s * 2)  # two cores' DRAM streams
    assert s["tpot_s"]["p50"] != plain.summary["tpot_s"]["p50"]  # the fitted efficiencies are used


def test_int3_to_int6_weights_cost_bytes_in_proportion_and_decode_slower_with_each_bit():
    from simulator.runner import build_quantization

    intel = ROOT / "scenarios/papers/intel_cpu_llama2_7b_spr.yaml"
    sizes, tpot = {}, {}
    for bits in (3, 4, 5, 6):
        sc = load_scenario(intel, [f"policies.quantization.weights.dtype=int{bits}"])
        sizes[bits] = build_quantization(sc).weight_bytes(sc.model.config)
        tpot[bits] = run_scenario(sc).summary["tpot_s"]["p50"]
    steps = [sizes[b + 1] - sizes[b] for b in (3, 4, 5)]
    assert max(steps) == pytest.approx(min(steps), rel=1e-9)  # one bit per quantized weight each
    assert tpot[3] < tpot[4] < tpot[5] < tpot[6]


def test_auto_kernels_take_lookups_at_decode_and_the_faster_multiply_for_a_long_prefill():
    dev = cpu("Xeon-8480", lut_kernels=True)  # AMX int8 beside the lookup kernels
    be = {k: CpuBackend(CpuTimingConfig(kernels=k), dev) for k in ("auto", "lut", "dequant")}
    decode, prefill = gemv(2), dataclasses.replace(gemv(2), m=2048)
    assert be["auto"]._gemm_compute_s(decode) == be["lut"]._gemm_compute_s(decode)
    assert be["lut"]._gemm_compute_s(prefill) > be["dequant"]._gemm_compute_s(prefill)
    assert be["auto"]._gemm_compute_s(prefill) == be["dequant"]._gemm_compute_s(prefill)
