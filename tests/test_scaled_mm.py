"""CUTLASS sm90 fp8 scaled_mm kernel family (hw_models.scaled_mm) and the per-row cost of row kernels."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw_models.scaled_mm import plan_scaled_mm, sm90_fp8_config, sm90_fp8_config_name
from simulator.validation.kernels import gpu_config, make_backend
from workloads.llm import Op


@pytest.fixture(scope="module")
def h200():
    return gpu_config("H200")


def test_the_dispatch_follows_vllms_sm90_buckets():
    """vllm==0.12.0 csrc/quantization/w8a8/cutlass/c3x/scaled_mm_sm90_fp8_dispatch.cuh, bucket by bucket."""
    def tile(m, n, k):
        t, cluster, swap = sm90_fp8_config(m, n, k)
        return t[:3], cluster, swap

    assert tile(1, 1280, 4096) == tile(16, 1024, 4096) == ((64, 16, 256), (1, 2), True)
    assert tile(1, 1281, 4096) == tile(16, 28672, 4096) == ((64, 16, 256), (1, 1), True)
    assert tile(17, 1280, 4096) == tile(64, 512, 4096) == ((64, 16, 256), (1, 4), True)
    assert tile(17, 1281, 4096) == tile(64, 28672, 14336) == ((64, 64, 256), (1, 1), True)
    assert tile(65, 4096, 4096) == tile(128, 4096, 65536) == ((64, 128, 128), (2, 1), False)
    assert tile(8192, 4096, 6144) == tile(1 << 20, 128, 8192) == ((256, 128, 128), (2, 1), False)
    # M >= 8192 with K < 6144, and 128 < M < 8192 at any K: the default
    assert tile(8192, 4096, 6143) == tile(129, 4096, 65536) == tile(8191, 8192, 8192) == \
        ((128, 128, 128), (2, 1), False)
    assert sm90_fp8_config_name(16, 1280, 1) == "M16_N1280" and sm90_fp8_config_name(129, 1, 1) == "default"


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 20000), n=st.integers(16, 65536), k=st.integers(128, 32768))
def test_every_configuration_fits_the_h200_and_runs_within_its_bounds(m, n, k):
    """Each bucket's tile fits an H200 SM (shared memory, registers), and its plan is no faster than
    its FLOPs at the fp8 tensor peak nor its bytes (A, B, C once) at the datasheet HBM rate."""
    g = gpu_config("H200")
    p = make_backend("tile", g, {"fp8_gemm_kernel": "cutlass_sm90"}).gemm_params("fp8")
    plan = plan_scaled_mm(m, n, k, p)
    assert plan.split_k == 1
    assert plan.time_s >= 2.0 * m * n * k / g.tensor_peak("fp8")
    assert plan.time_s >= (m * k + k * n + 2.0 * m * n) / g.memory_bw_bytes_per_s
    tile, _, swap = sm90_fp8_config(m, n, k)
    assert plan.tile == tile[:3]
    rows, cols = (n, m) if swap else (m, n)  # a swap-AB plan is of the transposed problem
    assert plan.ctas >= -(-rows // tile[0]) * -(-cols // tile[1])


def test_a_small_grid_with_a_long_k_runs_the_whole_k_in_one_cta(h200):
    # no split-K: 16 x 64 x 65536 is one swap-AB 64x16 tile (the 64 weight columns by the 16 tokens), so one
    # SM runs 256 K steps of 64x16x256 in series
    b = make_backend("tile", h200, {"fp8_gemm_kernel": "cutlass_sm90"})
    p = b.gemm_params("fp8")
    plan = plan_scaled_mm(16, 64, 65536, p)
    assert plan.split_k == 1 and plan.tile == (64, 16, 256)
    serial_s = 65536 // 256 * 64 * 16 * 256 * 2.0 / (p.flop_per_clk_sm * p.mma_eff) / p.clock_hz
    assert plan.time_s >= serial_s
    # the default (cuBLASLt-like) family splits K over the SMs and is more than twice as fast there
    auto = make_backend("tile", h200).op_s(Op("gemm", "gemm", 1, m=16, n=64, k=65536, dtype="fp8", dtype_bytes=1.0,
                                               out_bytes=2.0))
    assert auto < plan.time_s / 2


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
