"""The cutlass_sm90 fp8 GEMM's own HBM share (``scaled_mm_hbm_efficiency``) for weight-streaming
decode GEMMs, and the decode step's parts against their kernel tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.config.framework import parse_framework
from simulator.validation.aic import FRAMEWORK_TIMING, _merged
from simulator.validation.kernels import gpu_config, make_backend
from workloads.llm import Op

H200 = Path(__file__).resolve().parents[2] / "shared" / "validation" / "aic" / "h200_sxm"


def _gemm(m: int, n: int, k: int) -> Op:
    return Op("gemm", "gemm", 1, m=m, n=n, k=k, dtype="fp8", dtype_bytes=1.0, out_bytes=2.0)


def _backend(**over):
    base = {k: v for k, v in _merged(FRAMEWORK_TIMING["vllm"]).items() if k != "scaled_mm_hbm_efficiency"}
    return make_backend("tile", gpu_config("H200"), {**base, **over})


@pytest.mark.parametrize("share", [0.70, 0.8052, 0.95])
def test_a_weight_streaming_decode_gemm_reads_its_weights_at_the_share_of_hbm_it_is_given(share):
    """4 tokens x 57344 x 8192 fp8 (Llama-3.1-70B's gate-up at TP1): 470 MB of weights, 0.3 GFLOP, so
    the time is the weights over share x the HBM rating, plus no more than a few us of fixed cost."""
    g = gpu_config("H200")
    op = _gemm(4, 57344, 8192)
    t = _backend(scaled_mm_hbm_efficiency=share).op_s(op)
    stream = 57344 * 8192 / (share * g.memory_bw_bytes_per_s)
    assert stream <= t <= stream + 10e-6


def test_unset_the_scaled_mm_kernels_stream_at_the_fitted_hbm_efficiency():
    be = _backend()
    assert be._scaled_mm_params().hbm_bw == pytest.approx(gpu_config("H200").memory_bw_bytes_per_s
                                                         * be.config.hbm_efficiency)


def test_the_share_moves_only_the_memory_bound_gemms():
    """A compute-bound prefill GEMM (8192 tokens) keeps its time; a decode GEMM gets faster by the ratio
    of the shares (its memory term)."""
    lo, hi = _backend(), _backend(scaled_mm_hbm_efficiency=0.8052)
    big = _gemm(8192, 8192, 8192)
    assert hi.op_s(big) == pytest.approx(lo.op_s(big), rel=0.02)
    dec = _gemm(4, 57344, 8192)
    ratio = lo.op_s(dec) / hi.op_s(dec)
    assert 1.0 < ratio <= 0.8052 / lo.config.hbm_efficiency + 1e-9


def test_the_vllm_profile_and_the_kernel_check_share_the_fitted_hbm_share():
    prof = parse_framework("vllm-0.12.0").timing
    assert prof["scaled_mm_hbm_efficiency"] == FRAMEWORK_TIMING["vllm"]["scaled_mm_hbm_efficiency"]
    # below the H200's datasheet rate, above the A100-fitted share of streaming kernels it replaces
    assert _backend().config.hbm_efficiency < prof["scaled_mm_hbm_efficiency"] < 1.0


@pytest.mark.skipif(not H200.is_dir(), reason="aic H200 tables not present")
def test_the_quantize_table_reader_gives_the_dynamic_per_token_quantize_time():
    """vLLM's dynamic per-token quantize = the static kernel + the scale computation: at 4 x 8192 a few
    us (a flat kernel, launch-to-finish), and not shorter at a longer row."""
    from simulator.validation.decode_parts import quant_table

    q = quant_table(H200, "vllm")
    t = q(4, 8192)
    assert 2e-6 < t < 6e-6
    assert q(4, 51200) >= t
