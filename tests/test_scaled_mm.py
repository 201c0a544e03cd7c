"""CUTLASS sm90 fp8 scaled_mm kernel family (hw_models.scaled_mm) and the per-row cost of row kernels."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw_models.scaled_mm import plan_scaled_mm, sm90_fp8_config
from simulator.validation.kernels import gpu_config, make_backend
from workloads.llm import Op


@pytest.fixture(scope="module")
def h200():
    return gpu_config("H200")


def test_the_dispatch_picks_one_configuration_per_m_bucket():
    assert sm90_fp8_config(1)[0][:3] == sm90_fp8_config(64)[0][:3] == (64, 64, 128)
    assert sm90_fp8_config(65)[0][:3] == sm90_fp8_config(128)[0][:3] == (64, 128, 128)
    assert sm90_fp8_config(129)[0][:3] == sm90_fp8_config(1 << 20)[0][:3] == (128, 128, 128)


def test_a_small_grid_with_a_long_k_runs_the_whole_k_in_one_cta(h200):
    # no split-K: 16 x 64 x 65536 is one 64x64 tile, so one SM runs 512 K steps of 64x64x128 in series
    b = make_backend("tile", h200, {"fp8_gemm_kernel": "cutlass_sm90"})
    p = b.gemm_params("fp8")
    plan = plan_scaled_mm(16, 64, 65536, p)
    assert plan.split_k == 1 and plan.tile == (64, 64, 128)
    serial_s = 65536 // 128 * 64 * 64 * 128 * 2.0 / (p.flop_per_clk_sm * p.mma_eff) / p.clock_hz
    assert plan.time_s >= serial_s
    # the default (cuBLASLt-like) family splits K over the SMs and is several times faster there
    auto = make_backend("tile", h200).op_s(Op("gemm", "gemm", 1, m=16, n=64, k=65536, dtype="fp8", dtype_bytes=1.0,
                                               out_bytes=2.0))
    assert auto < plan.time_s / 3


def test_the_family_times_per_tensor_fp8_gemms_only(h200):
    auto = make_backend("tile", h200)
    cut = make_backend("tile", h200, {"fp8_gemm_kernel": "cutlass_sm90"})
    bf16 = Op("gemm", "gemm", 1, m=256, n=4096, k=4096)
    block = Op("gemm", "gemm", 1, m=256, n=4096, k=4096, dtype="fp8", dtype_bytes=1.0, w_bytes=1.0, out_bytes=2.0,
               scale_block_k=128)
    assert cut.op_s(bf16) == auto.op_s(bf16) and cut.op_s(block) == auto.op_s(block)
    fp8 = Op("gemm", "gemm", 1, m=256, n=4096, k=4096, dtype="fp8", dtype_bytes=1.0, out_bytes=2.0)
    assert cut.op_s(fp8) == pytest.approx(plan_scaled_mm(256, 4096, 4096, cut.gemm_params("fp8")).time_s)
    # without wgmma kernels (legacy mma.sync) there is no sm90 kernel to select: the default family runs
    legacy = {"use_wgmma": False}
    assert make_backend("tile", h200, {**legacy, "fp8_gemm_kernel": "cutlass_sm90"}).op_s(fp8) == \
        make_backend("tile", h200, legacy).op_s(fp8)


def test_an_unknown_fp8_kernel_family_is_refused(h200):
    from simulator.core.errors import ConfigError

    with pytest.raises((ConfigError, ValueError)):
        make_backend("tile", h200, {"fp8_gemm_kernel": "cublas_fp8"})


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 100_000), k=st.integers(64, 16384), cost_ns=st.floats(1.0, 2000.0))
def test_row_cost_adds_its_cost_per_row_per_sm(rows, k, cost_ns):
    g = gpu_config("H200")
    floor = {"quant": 0.0}
    plain = make_backend("tile", g, {"mem_kernel_floor_s": floor})
    costed = make_backend("tile", g, {"mem_kernel_floor_s": floor, "row_cost_s": {"quant": cost_ns * 1e-9}})
    nbytes = rows * k * 3.0
    extra = costed.mem_kernel_s(nbytes, "quant", rows) - plain.mem_kernel_s(nbytes, "quant", rows)
    assert extra == pytest.approx(math.ceil(rows / g.sm_count) * cost_ns * 1e-9, rel=1e-9, abs=1e-15)
    # other classes and kernels without rows are untouched
    assert costed.mem_kernel_s(nbytes, "norm", rows) == plain.mem_kernel_s(nbytes, "norm", rows)
    assert costed.mem_kernel_s(nbytes, "quant") == plain.mem_kernel_s(nbytes, "quant")
