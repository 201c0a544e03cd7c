"""SGLang's and TRT-LLM's decode attention on the H200 against their aic generation-attention tables.

SGLang's FlashAttention-3 decode streams K/V at its own fitted share of HBM bandwidth
(``attention_decode_hbm_efficiency``, `python -m simulator.validation.fit decode-hbm
../shared/validation/aic/h200_sxm sglang --quick`: every 8th even row fitted, the odd rows held out).
TRT-LLM's decode (XQA / MMHA, not FlashAttention-3) keeps the shared HBM share: the same fit made its
held-out rows worse (FIDELITY.md, H200 kernel tables).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config.framework import resolve_profile
from simulator.validation.aic import FRAMEWORK_TIMING
from simulator.validation.kernels import gpu_config, make_backend
from workloads.llm import Op

AIC_H200 = Path(__file__).resolve().parents[2] / "shared" / "validation" / "aic" / "h200_sxm"
BIG = 2 ** 28  # bytes of K/V per layer from which HBM bandwidth binds


@pytest.fixture(scope="module")
def odd_rows():
    """The odd (held-out) H200 generation-attention rows per framework."""
    pytest.importorskip("pyarrow")
    if not AIC_H200.is_dir():
        pytest.skip("aic H200 tables not present")
    from simulator.validation.aic import _attention_rows, framework_of

    rows = [r for r in _attention_rows(AIC_H200, Counter()) if r.op == "generation attention"]
    return {fw: [r for r in rows if framework_of(r) == fw][1::2] for fw in ("sglang", "trtllm")}


def _errors(fw: str, rows, **over):
    b = make_backend("tile", gpu_config("H200"), {**FRAMEWORK_TIMING[fw], **over})
    pred = np.array([b.op_s(r.item) for r in rows])
    meas = np.array([r.measured_s for r in rows])
    big = np.array([r.item.kv_tokens * r.item.kv_heads * r.item.head_dim * 2.0 * r.item.dtype_bytes >= BIG
                    for r in rows])
    return (pred - meas) / meas, big


def test_sglang_fa3_decode_on_the_held_out_generation_rows(odd_rows):
    """SGLang's odd rows: median APE <= 10.5 % and p90 <= 31 % (measured 9.72 / 29.90 %; 10.72 / 31.27 % before
    the fitted share), the rows streaming >= 256 MiB of K/V per layer within +-6 % median signed error
    (measured +3.0 %; +14.8 % before the fit, +15.3 % with the share alone removed, which this bound rejects)."""
    err, big = _errors("sglang", odd_rows["sglang"])
    assert len(err) > 8000 and big.sum() > 1000
    assert np.median(np.abs(err)) <= 0.105
    assert np.percentile(np.abs(err), 90) <= 0.31
    assert abs(np.median(err[big])) <= 0.06
    shared, _ = _errors("sglang", odd_rows["sglang"], attention_decode_hbm_efficiency={})
    assert np.median(shared[big]) > 0.10  # the datum the share was fitted for: too slow without it


def test_trtllm_decode_keeps_the_shared_hbm_share(odd_rows):
    """TRT-LLM's odd rows as they stand: median APE <= 17.5 % (measured 16.5 %), bias within +-5 % (-2.4 %),
    large-K/V rows within +-10 % (+7.7 %). Its XQA / MMHA decode is not FlashAttention-3: the fitted share
    (0.836, with FA3's pipelined CTAs) took the held-out bias to -9.4 %, so the profile does not name one."""
    assert "attention_decode_hbm_efficiency" not in FRAMEWORK_TIMING["trtllm"]
    assert "attention_decode_hbm_efficiency" not in resolve_profile("trtllm", "1.0.0").timing
    err, big = _errors("trtllm", odd_rows["trtllm"])
    assert len(err) > 10000 and big.sum() > 1000
    assert np.median(np.abs(err)) <= 0.175
    assert abs(np.median(err)) <= 0.05
    assert abs(np.median(err[big])) <= 0.10


@settings(max_examples=60, deadline=None)
@given(seqs=st.integers(1, 1024), ctx=st.integers(1, 131072), kvh=st.sampled_from([1, 2, 4, 8]),
       group=st.sampled_from([1, 4, 8]))
def test_sglang_fa3_decode_never_beats_the_datasheet_hbm_rate_and_reaches_its_share_at_large_kv(seqs, ctx, kvh,
                                                                                                 group):
    g = gpu_config("H200")
    timing = resolve_profile("sglang", "0.5.6.post2").timing
    b = make_backend("tile", g, timing)
    op = Op("attn_decode", "attn_decode", 1, seqs=seqs, q_tokens=seqs, kv_tokens=seqs * ctx, heads=kvh * group,
            kv_heads=kvh, head_dim=128)
    t = float(b.decode_attention_s(op, np.array([float(seqs * ctx)]))[0])
    kv_bytes = seqs * ctx * kvh * 128 * 2 * 2.0
    assert t >= kv_bytes / g.memory_bw_bytes_per_s
    share = timing["attention_decode_hbm_efficiency"]["fa3"]
    if kv_bytes >= 1 << 30 and ctx >= 4096:  # bandwidth-bound: within 10 % of the bytes at the fitted share
        assert t <= 1.10 * kv_bytes / (share * g.memory_bw_bytes_per_s)
