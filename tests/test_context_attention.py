"""FA3-class context (prefill) attention: a persistent kernel with the softmax partly overlapped with the MMAs.

First principles (never faster than its FLOPs at the tensor-core peak, nor than its longest tile; monotone in
the sequence length and in the hidden share of the softmax), Hypothesis properties over shapes, then the
held-out H200 context-attention rows of each framework at batch 1 and >= 8192 tokens (signed bias within a
stated tolerance)."""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw_models import attention_kernels as attn
from simulator.validation.aic import FRAMEWORK_TIMING, _attention_rows, _merged, framework_of
from simulator.validation.kernels import gpu_config, make_backend
from workloads.llm import Op

AIC = Path(__file__).resolve().parents[2] / "shared" / "validation" / "aic" / "h200_sxm"


@functools.cache
def params(fw: str) -> attn.AttnParams:
    b = make_backend("tile", gpu_config("H200"), _merged(FRAMEWORK_TIMING[fw]))
    return b._attn_params("bf16")


def ctx_op(b: int, s: int, heads: int, kv_heads: int, hd: int) -> Op:
    return Op("attn_prefill", "attn_prefill", 1, seqs=b, q_tokens=b * s, kv_tokens=b * s,
              pairs=b * s * (s + 1) // 2, heads=heads, kv_heads=kv_heads, head_dim=hd)


shapes = st.tuples(st.sampled_from([1, 2, 4, 16]), st.integers(16, 16384), st.sampled_from([(8, 1), (8, 8), (64, 8),
                                                                                              (32, 8), (1, 1)]),
                   st.sampled_from([64, 128, 256]), st.sampled_from(["vllm", "sglang", "trtllm"]))


def test_profiles_run_fa3_prefill_persistent_with_a_partial_overlap():
    for fw in ("vllm", "sglang", "trtllm"):
        p = params(fw)
        assert p.persistent and p.overlap_softmax
        assert 0.0 < p.softmax_overlap < 1.0
        assert 0.3 < p.mma_eff <= 1.0


@settings(max_examples=60, deadline=None)
@given(shapes)
def test_never_faster_than_the_flops_at_peak_nor_the_longest_tile(shape):
    b, s, (h, kvh), hd, fw = shape
    p = params(fw)
    op = ctx_op(b, s, h, kvh, hd)
    t = attn.prefill_s(op, p)
    peak = p.flop_per_clk_sm * p.sms * p.clock_hz
    assert t >= 4.0 * hd * op.pairs * h / peak
    # the last Q tile of a sequence reads every key: at least Br x s pairs at the full per-pair cost of one SM
    br, _ = attn.fa2_tiles(hd)
    per_pair = 2.0 * 2 * hd / (p.flop_per_clk_sm * p.mma_eff) + 1.0 / p.sfu_per_clk_sm \
        - p.softmax_overlap * min(2.0 * 2 * hd / (p.flop_per_clk_sm * p.mma_eff), 1.0 / p.sfu_per_clk_sm)
    assert t >= min(br, s) * s * per_pair / p.clock_hz * 0.999


@settings(max_examples=60, deadline=None)
@given(shapes, st.integers(1, 4096))
def test_monotone_in_sequence_length(shape, more):
    b, s, (h, kvh), hd, fw = shape
    p = params(fw)
    assert attn.prefill_s(ctx_op(b, s + more, h, kvh, hd), p) >= attn.prefill_s(ctx_op(b, s, h, kvh, hd), p)


@settings(max_examples=40, deadline=None)
@given(shapes, st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_more_overlap_is_never_slower_and_bounds_are_max_and_sum(shape, a, c):
    b, s, (h, kvh), hd, fw = shape
    p = params(fw)
    op = ctx_op(b, s, h, kvh, hd)
    lo, hi = sorted((a, c))
    assert attn.prefill_s(op, replace(p, softmax_overlap=hi)) <= attn.prefill_s(op, replace(p, softmax_overlap=lo))
    # overlap 0 is the serial sum: the same as a kernel that does not overlap at all
    assert attn.prefill_s(op, replace(p, softmax_overlap=0.0)) == pytest.approx(
        attn.prefill_s(op, replace(p, overlap_softmax=False)), rel=1e-12)


def test_persistent_shares_the_causal_work_evenly():
    """One long sequence, 8 heads (Llama-3.1-70B at TP8, 8192 tokens): 512 tiles over 132 SMs. A persistent
    kernel's compute is the total work over the SMs (plus each tile's own cycles), not ceil(512 / 132) = 4
    waves of the mean tile; with one head and one Q tile's worth of SMs the longest tile binds."""
    p = replace(params("vllm"), prefill_fixed_s=0.0, kernel_fixed_s=0.0, hbm_latency_s=0.0)
    op = ctx_op(1, 8192, 8, 1, 128)
    t_p = attn.prefill_s(op, p) - attn.prep_s(op, p, op.q_tokens)
    t_w = attn.prefill_s(op, replace(p, persistent=False)) - attn.prep_s(op, p, op.q_tokens)
    assert t_p < t_w
    assert t_w / t_p == pytest.approx(4 * 132 / 512, rel=0.02)
    one = ctx_op(1, 8192, 1, 1, 128)  # 64 tiles on 132 SMs: the longest (the last Q tile, 8192 keys) binds
    t1 = attn.prefill_s(one, p) - attn.prep_s(one, p, one.q_tokens)
    mma, exp = 2.0 * 256 / (p.flop_per_clk_sm * p.mma_eff), 1.0 / p.sfu_per_clk_sm
    longest = (128 * 8192 * (mma + exp - p.softmax_overlap * min(mma, exp)) + p.cta_cycles) / p.clock_hz
    assert t1 == pytest.approx(longest, rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([1, 2, 4]), st.integers(16, 2048), st.integers(0, 32768), st.sampled_from([(1, 1), (8, 1),
                                                                                                 (64, 8)]),
       st.sampled_from(["vllm", "sglang", "trtllm"]))
def test_a_chunk_over_earlier_context_is_never_faster_than_its_last_tile_over_every_key(b, q, ctx, hk, fw):
    """Chunked prefill: the chunk's last Q tile reads every earlier key of its sequence and the chunk's own, so
    a persistent kernel takes at least Br x (context + chunk) pairs on one SM, and more context is never
    faster."""
    h, kvh = hk
    p = params(fw)

    def chunk(c: int) -> Op:
        return Op("attn_prefill", "attn_prefill", 1, seqs=b, q_tokens=b * q, kv_tokens=b * (c + q),
                  pairs=b * (q * c + q * (q + 1) // 2), heads=h, kv_heads=kvh, head_dim=128)

    mma, exp = 2.0 * 256 / (p.flop_per_clk_sm * p.mma_eff), 1.0 / p.sfu_per_clk_sm
    per_pair = mma + exp - p.softmax_overlap * min(mma, exp)
    t = attn.prefill_s(chunk(ctx), p)
    assert t >= 128 * (ctx + q) * per_pair / p.clock_hz
    assert attn.prefill_s(chunk(ctx + 1024), p) >= t


@functools.cache
def _rows() -> list:
    if not AIC.is_dir():
        pytest.skip("aic H200 tables not present")
    try:
        return [r for r in _attention_rows(AIC, Counter()) if r.op == "context attention"]
    except Exception as e:  # pyarrow missing
        pytest.skip(str(e))


@pytest.mark.parametrize("fw, tol", [("vllm", 0.10), ("sglang", 0.05), ("trtllm", 0.05)])
def test_held_out_batch1_long_rows_bias(fw, tol):
    """Odd (held-out) rows of the framework's table at batch 1 and >= 8192 tokens: signed median error within
    ``tol`` (vLLM +6.0 %, SGLang +0.5 %, TRT-LLM -2.0 % when fitted; before, vLLM +12.4 %, SGLang +7.6 %)."""
    mine = [r for r in _rows() if framework_of(r) == fw]
    odd = [r for r in mine[1::2] if r.item.seqs == 1 and r.item.q_tokens >= 8192]
    assert len(odd) > 100
    b = make_backend("tile", gpu_config("H200"), _merged(FRAMEWORK_TIMING[fw]))
    e = np.array([(b.op_s(r.item) - r.measured_s) / r.measured_s for r in odd])
    assert abs(float(np.median(e))) <= tol


@pytest.mark.parametrize("argv", [[], ["context-attention"], ["context-attention", "/nonexistent/h200_sxm"],
                                  ["context-attention", "{tmp}"], ["context-attention", "{tmp}", "--quik"],
                                  ["decode-hbm", "{tmp}", "bogus"], ["decode-hbm", "{tmp}"], ["bogus", "{tmp}"]])
def test_fit_bad_input_prints_one_line_and_exits_2(argv, tmp_path):
    """The command line as run: a missing argument or folder, a folder that is no aic system, a misspelt option,
    an unknown framework or command."""
    import subprocess
    import sys

    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    r = subprocess.run([sys.executable, "-m", "simulator.validation.fit", *argv], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert err.startswith("fit: ") and "\n" not in err and "Traceback" not in err, err
