"""The cutlass_sm90 fp8 GEMM's own HBM share (``scaled_mm_hbm_efficiency``) and loaded HBM latency
(``scaled_mm_hbm_latency_s``) for decode-size GEMMs, and the readers of the decode step's parts."""

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
    base = {k: v for k, v in _merged(FRAMEWORK_TIMING["vllm"]).items() if not k.startswith("scaled_mm_hbm")}
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


def test_unset_the_scaled_mm_kernels_stream_at_the_fitted_hbm_efficiency_and_the_gpus_latency():
    be = _backend()
    g = gpu_config("H200")
    p = be._scaled_mm_params()
    assert p.hbm_bw == pytest.approx(g.memory_bw_bytes_per_s * be.config.hbm_efficiency)
    assert p.hbm_latency_s == pytest.approx(g.hbm_latency_cycles / g.clock_hz)


def test_a_small_grid_is_capped_by_its_bytes_in_flight_over_the_loaded_latency():
    """4 x 1024 x 65536 fp8 runs swap-AB 64 x 16 x 256 tiles: 16 CTAs, one per SM, each streaming 64 rows of
    weights through 8 stages in flight (163,840 B). At 1.4 us that caps the kernel at 16 x 163,840 B / 1.4 us
    = 1.87 TB/s, under the HBM share: the 67 MB of weights take at least 35.8 us. A full grid (4 x 65536 x
    8192: 1024 CTAs) is not capped: its time moves by < 1 %."""
    slow = _backend(scaled_mm_hbm_efficiency=0.8, scaled_mm_hbm_latency_s=1.4e-6)
    fast = _backend(scaled_mm_hbm_efficiency=0.8)
    small = _gemm(4, 1024, 65536)
    cap = 16 * 8 * (64 + 16) * 256 / 1.4e-6
    assert slow.op_s(small) >= 1024 * 65536 / cap
    assert slow.op_s(small) > 1.5 * fast.op_s(small)
    full = _gemm(4, 65536, 8192)
    assert slow.op_s(full) == pytest.approx(fast.op_s(full), rel=0.01)


def test_the_share_moves_only_the_memory_bound_gemms():
    """A compute-bound prefill GEMM (8192 tokens) keeps its time; a decode GEMM gets faster by the ratio
    of the shares (its memory term)."""
    lo, hi = _backend(), _backend(scaled_mm_hbm_efficiency=0.8052)  # any share above the fitted 0.754
    big = _gemm(8192, 8192, 8192)
    assert hi.op_s(big) == pytest.approx(lo.op_s(big), rel=0.02)
    dec = _gemm(4, 57344, 8192)
    ratio = lo.op_s(dec) / hi.op_s(dec)
    assert 1.0 < ratio <= 0.8052 / lo.config.hbm_efficiency + 1e-9


def test_the_vllm_profile_and_the_kernel_check_share_the_fitted_hbm_share():
    prof = parse_framework("vllm-0.12.0").timing
    for key in ("scaled_mm_hbm_efficiency", "scaled_mm_hbm_latency_s"):
        assert prof[key] == FRAMEWORK_TIMING["vllm"][key]
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


@pytest.mark.parametrize("argv", [[], ["bogus", "."], ["fit-hbm", "/nonexistent/h200_sxm"],
                                  ["fit-hbm", ".", "trtllm", "--refit-qaunt"], ["fit-hbm", ".", "vllm", "trtllm"],
                                  ["parts", ".", "--static-quant"], ["parts", ".", "vllm", "extra"],
                                  ["fit-hbm", ".", "trtllm", "--max-m"], ["fit-hbm", ".", "trtllm", "--max-m", "0"],
                                  ["fit-hbm", ".", "--max-m", "lots"], ["parts", ".", "--max-m", "64"]])
def test_bad_arguments_print_one_line_and_exit_2(argv, capsys):
    from simulator.validation.decode_parts import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err


@pytest.mark.skipif(not H200.is_dir(), reason="aic H200 tables not present")
@pytest.mark.parametrize("argv", [["fit-hbm", str(H200), "bogus"], ["parts", str(H200)], ["fit-hbm", "{empty}"]])
def test_a_folder_without_the_tables_it_needs_prints_one_line_and_exits_2(argv, tmp_path):
    """The command line as run: a framework with no quantize table, the system folder given where the aic
    root is expected (``parts``), a folder that is no aic system."""
    import subprocess
    import sys

    argv = [a.replace("{empty}", str(tmp_path)) for a in argv]
    r = subprocess.run([sys.executable, "-m", "simulator.validation.decode_parts", *argv], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert err.startswith("decode_parts: ") and "\n" not in err and "Traceback" not in err, err


# -- TensorRT-LLM: cuBLASLt's per-tensor fp8 GEMM (the auto family) -------------------------------------------

def _trt_backend(**over):
    base = {k: v for k, v in _merged(FRAMEWORK_TIMING["trtllm"]).items() if not k.startswith("scaled_mm_hbm")}
    return make_backend("tile", gpu_config("H200"), {**base, **over})


@pytest.mark.parametrize("share", [0.70, 0.80, 0.95])
def test_under_the_auto_family_a_weight_streaming_decode_gemm_reads_its_weights_at_its_share(share):
    """TRT-LLM's cublas_scaled_mm (fp8_gemm_kernel auto): 4 x 57344 x 8192 fp8 moves 470 MB of weights,
    so it takes the weights over share x the HBM rating plus a few us of fixed cost, whatever tile and
    split-K the heuristic picks."""
    g = gpu_config("H200")
    t = _trt_backend(scaled_mm_hbm_efficiency=share).op_s(_gemm(4, 57344, 8192))
    stream = 57344 * 8192 / (share * g.memory_bw_bytes_per_s)
    assert stream <= t <= stream + 10e-6


def test_under_the_auto_family_the_settings_unset_leave_every_gemm_as_it_was():
    """Unset, the per-tensor fp8 constants are gemm_params('fp8') (the plan before the settings existed);
    a bf16 GEMM never sees them."""
    from hw_models.gemm_tiles import plan_gemm

    be, moved = _trt_backend(), _trt_backend(scaled_mm_hbm_efficiency=0.7, scaled_mm_hbm_latency_s=3e-6)
    for m, n, k in ((4, 1280, 8192), (64, 7168, 8192), (8192, 8192, 8192)):
        op = _gemm(m, n, k)
        plan = plan_gemm(m, n, k, 1.0, be.gemm_params("fp8"), op.w_bytes, op.out_bytes, op.deq_ops, op.deq_overlap)
        assert be.op_s(op) == pytest.approx(plan.time_s, rel=1e-12)
        bf = Op("gemm", "gemm", 1, m=m, n=n, k=k, dtype="bf16", dtype_bytes=2.0, out_bytes=2.0)
        assert moved.op_s(bf) == be.op_s(bf)


def test_under_the_auto_family_a_longer_loaded_latency_slows_only_small_grids():
    """Little's law: a longer latency per CTA caps the bandwidth of a grid with few CTAs (4 x 256 x 1024: 256 KiB
    of weights, too little K for split-K to widen it), not of a full one streaming 470 MB; a grid widened by
    split-K (4 x 1024 x 8192) moves by under 2 %."""
    fast, slow = _trt_backend(scaled_mm_hbm_efficiency=0.8), _trt_backend(scaled_mm_hbm_efficiency=0.8,
                                                                           scaled_mm_hbm_latency_s=2.4e-6)
    assert slow.op_s(_gemm(4, 256, 1024)) > 1.1 * fast.op_s(_gemm(4, 256, 1024))
    for n, k in ((57344, 8192), (1024, 8192)):
        assert slow.op_s(_gemm(4, n, k)) == pytest.approx(fast.op_s(_gemm(4, n, k)), rel=0.02)


def test_the_trtllm_profile_and_the_kernel_check_share_the_fitted_decode_gemm_settings():
    prof = parse_framework("trtllm-1.0").timing
    for key in ("scaled_mm_hbm_efficiency", "scaled_mm_hbm_latency_s"):
        assert prof[key] == FRAMEWORK_TIMING["trtllm"][key]
    assert "fp8_gemm_kernel" not in FRAMEWORK_TIMING["trtllm"]  # cuBLASLt: the auto family
    # the loaded latency is longer than the unloaded one of the GPU, the share below the rating
    g = gpu_config("H200")
    assert prof["scaled_mm_hbm_latency_s"] > g.hbm_latency_cycles / g.clock_hz
    assert 0.5 < prof["scaled_mm_hbm_efficiency"] < 1.0


@pytest.mark.skipif(not H200.is_dir(), reason="aic H200 tables not present")
def test_the_trtllm_fp8_gemm_rows_hold_the_dynamic_quantize_not_the_static_one():
    """The smallest fp8 rows at M <= 16 (a GEMM of a few KB) exceed the smallest bf16 rows by more than the
    static per-tensor kernel plus half the scale computation: the row runs the dynamic quantize (amax, then
    the scaled cast), so the GEMM alone is the row less both."""
    import pandas as pd

    g = pd.read_parquet(H200 / "gemm/trtllm/1.3.0rc20/gemm_perf.parquet")
    small = g[g.m <= 16].groupby(["gemm_dtype", "m", "n", "k"]).latency.median()
    gap = (small["fp8"].min() - small["bfloat16"].min()) * 1e-3  # ms -> s
    q = {f: pd.read_parquet(H200 / f"quantize/trtllm/1.3.0rc20/{f}.parquet") for f in
         ("scale_matrix_perf", "computescale_perf")}
    static = q["scale_matrix_perf"].query("m <= 16").latency.median() * 1e-3
    scale = q["computescale_perf"].query("m <= 16").latency.median() * 1e-3
    assert gap > static + 0.5 * scale
    assert gap < 2 * (static + scale)


@pytest.mark.skipif(not H200.is_dir(), reason="aic H200 tables not present")
def test_trtllm_decode_step_by_parts_sums_its_parts_and_its_gemms_sit_near_their_tables():
    """The TRT-LLM 70B c4 rows at TP 1 / 2 / 4 / 8: the step's sums are the parts' count-weighted sums, an
    all-reduce exists from TP2 on, and each fp8 GEMM (the row less its dynamic quantize) is within 20 % of
    hwsim's, as the profile runs it."""
    import io

    from simulator.validation.decode_parts import parts

    res = parts(H200.parent, "trtllm", io.StringIO())
    steps = [r for r in res if r["part"] == "step"]
    assert sorted({s["tp"] for s in steps}) == [1, 2, 4, 8]
    for s in steps:
        mine = [r for r in res if r["line"] == s["line"] and r["part"] != "step"]
        assert s["hwsim_us"] == pytest.approx(sum(r["hwsim_us"] * r["count"] for r in mine))
        assert s["table_us"] == pytest.approx(sum(r["table_us"] * r["count"] for r in mine))
        assert any(r["kind"] == "allreduce" for r in mine) == (s["tp"] > 1)
        assert 0.5 < s["table_us"] / 1e3 / s["tpot_ms"] < 1.2
        for r in mine:
            if r["part"] in ("qkv_proj", "o_proj", "mlp_up", "mlp_down"):
                assert abs(r["hwsim_us"] / r["table_us"] - 1) < 0.20, r
