"""Kernel-level published results through the ``gpu_kernels`` study (scenarios/papers/gpu_kernels_a100.yaml).

Each test states the paper's figure and the band hwsim must land in; the bands are wide where the
paper measures something the model leaves out (backward pass, dropout, host overheads).
"""

from pathlib import Path

import pytest

from simulator.studies.run import load_study

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "papers" / "gpu_kernels_a100.yaml"


@pytest.fixture(scope="module")
def fig():
    _, mod, cfg = load_study(SCENARIO)
    return mod.run(cfg)


def test_flash_attention_io_ratio_grows_with_sequence_length(fig):
    # Theta(N d + N^2) standard vs Theta(N^2 d^2 / M) FlashAttention: fewer bytes, more so as N grows
    r = [fig["fa_hbm_bytes_ratio"][n] for n in sorted(fig["fa_hbm_bytes_ratio"])]
    assert all(x > 1 for x in r)
    assert all(b >= a for a, b in zip(r, r[1:]))


def test_flash_attention_faster_than_standard_attention_at_1k(fig):
    # paper: ~3x (41.7 -> 7.3 ms GPT-2 fwd+bwd incl. dropout/masking); forward alone gains more
    # because the standard path's N x N HBM round trips dominate it
    assert 3.0 <= fig["gpt2_attention_speedup"] <= 12.0


def test_flash_attention_2_share_of_a100_peak(fig):
    # paper: 50-73 % of the A100 peak for the causal forward pass; the aic A100 tables (vLLM, SGLang,
    # TRT-LLM prefill attention ops) measure 28-37 % at 1k and 47-63 % at 16k tokens (hd 128; no hd 64
    # rows): the paper's band holds for long sequences, shorter ones pay the per-tile and per-op costs
    f = fig["fa2_fraction_of_peak"]
    assert 0.45 <= f["hd128_n8192"] <= f["hd128_n16384"] <= 0.75
    assert all(0.2 <= v <= 0.75 for v in f.values())
    for hd in (64, 128):  # longer sequences amortise the tile prologue: never worse
        seq = [f[k] for k in f if k.startswith(f"hd{hd}_")]
        assert all(b >= a - 1e-9 for a, b in zip(seq, seq[1:]))
    assert f["hd128_n16384"] > f["hd64_n16384"]  # larger head dim: more MMA per byte of softmax work


def test_lean_attention_beats_one_cta_per_head_decode_at_long_context(fig):
    # paper: 2.6x average over FA2 decode, up to 8.33x at 512K. hwsim reproduces the direction only
    # (about 1.9x): see docs/reproductions.md for what sets the size
    for row in fig["lean_vs_paged_decode"].values():
        assert 1.5 <= row["speedup"] <= 8.5


def test_flat_small_batch_gemm_padding_wastes_most_tensor_work(fig):
    # FlashDecoding++: flat GEMMs (M <= 64) padded to the tile waste > 50 % of the tensor work,
    # while the time is set by streaming the weights (nearly constant in M)
    rows = fig["flat_gemm"]
    assert all(r["padding_waste"] >= 0.5 for r in rows.values())
    times = [rows[m]["time_s"] for m in sorted(rows)]
    assert max(times) / min(times) < 1.1


def test_roofline_check_34b_prefill_50k_vs_4k(fig):
    # paper: ~14 s vs ~0.9 s on one A100 (peak roofline). hwsim runs at fitted efficiencies, so it is
    # slower in absolute terms; the growth (attention is quadratic) must be of the same order
    t4, t50 = fig["codellama34b_prefill_4k_s"], fig["codellama34b_prefill_50k_s"]
    assert 0.9 <= t4 <= 2.0 and 14 <= t50 <= 30
    assert 12 <= t50 / t4 <= 25


def test_roofline_check_1m_token_prefill_of_8b_model(fig):
    # paper: about 30 minutes on one A100
    assert 15 <= fig["llama31_8b_prefill_1m_min"] <= 45


def test_roofline_check_70b_on_4_h100(fig):
    # paper: 16K tok/s of Llama-3.1-70B on 4 H100s needs ~560 TFLOP/s per GPU; the GEMMs must reach
    # at least that and stay below the dense FP16 peak (989 TFLOP/s)
    assert 560e12 <= fig["llama31_70b_tp4_gemm_flops_per_gpu"] <= 989e12
    assert fig["llama31_70b_tp4_prefill_tok_s_per_replica"] >= 16_000
