"""Multi-head latent attention (DeepSeek-V3/R1): sizes against the published numbers, lowering,
attention cost against first principles, and the aic MLA kernel tables.

Published numbers: DeepSeek-V3 Technical Report (2024), abstract: 671B total parameters, 37B
activated per token; its config.json: 61 layers, kv_lora_rank 512, qk_rope_head_dim 64.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator.core.registry as reg
from simulator.config.loader import resolve_component
from workloads.llm import ATTN_DECODE, ATTN_PREFILL, BatchShape, decode_attention, dense_ops, lower
from workloads.mla import MlaAttnOp

AIC = Path(__file__).resolve().parents[2] / "shared" / "validation" / "aic"
needs_aic = pytest.mark.skipif(not (AIC / "h200_sxm" / "mla").is_dir(), reason="../shared/validation/aic not present")


def model(preset: str = "DeepSeek-V3", **over):
    return resolve_component({"kind": "transformer", "preset": preset, **over}, reg.MODELS, "model").config


def backend(kind: str, gpu: str = "H200", **over):
    g = resolve_component({"kind": "gpu", "preset": gpu}, reg.HARDWARE, "gpu").config
    comp = resolve_component({"kind": kind, **over}, reg.TIMING, "timing")
    return comp.cls(comp.config, g, None)


@pytest.mark.parametrize("preset", ["DeepSeek-V3", "DeepSeek-R1"])
def test_deepseek_v3_has_671b_parameters_and_37b_active_as_its_report_states(preset):
    m = model(preset)
    assert m.num_params() == pytest.approx(671e9, rel=0.02)
    assert m.active_params() == pytest.approx(37e9, rel=0.08)


def test_the_mla_fields_are_read_from_the_published_config():
    m = model()
    assert (m.q_lora_rank, m.kv_lora_rank, m.qk_nope_head_dim, m.qk_rope_head_dim, m.v_head_dim) == \
        (1536, 512, 128, 64, 128)
    assert (m.num_experts, m.experts_per_token, m.num_shared_experts, m.first_dense_layers) == (256, 8, 1, 3)
    assert m.is_mla and not model("Llama-3.1-8B").is_mla


def test_mla_kv_bytes_per_token_are_the_latent_and_rotary_key_per_layer():
    m = model()
    assert m.kv_bytes_per_token() == 61 * (512 + 64) * 2  # bf16: 70,272 bytes
    # an MHA model of the same heads would cache 2 x 128 heads x 128 per layer: 57x more
    assert 2 * 61 * 128 * 128 * 2 / m.kv_bytes_per_token() == pytest.approx(56.9, rel=0.01)


@pytest.mark.parametrize("tp", [1, 2, 8, 16])
def test_every_tensor_parallel_gpu_stores_the_whole_latent(tp):
    from simulator.config.scenario import EngineSection
    from simulator.runner import pool_memory_plan

    m = model()
    if tp >= 8:  # fp8-block weights fit 8 or 16 H200s: the memory plan's KV per token per GPU
        dev = resolve_component({"kind": "gpu", "preset": "H200"}, reg.HARDWARE, "gpu").config
        comp = resolve_component({"kind": "scheme", "preset": "W8A8-fp8-block"}, reg.QUANTIZATION, "q")
        plan = pool_memory_plan(m, dev, tp, EngineSection(), None, quant=comp.cls(comp.config))
        assert plan.kv_bytes_per_token == m.kv_bytes_per_token()  # not divided by TP
        assert plan.kv_blocks > 0
    assert m.kv_elems_per_token(tp) == 61 * 576
    llama = model("Llama-3.1-8B")
    assert llama.kv_elems_per_token(tp) == 2 * 32 * max(1, 8 // tp) * 128  # GQA heads still split


def test_the_mla_parameter_count_follows_its_projections():
    m = model()
    h, nh = 7168, 128
    expect = h * 1536 + 1536 * nh * 192 + h * 576 + 512 * nh * (128 + 128) + nh * 128 * h
    assert m.attn_params_per_layer() == expect
    plain_q = model(q_lora_rank=None)  # DeepSeek-V2-Lite style: one q projection
    assert plain_q.attn_params_per_layer() == expect - (h * 1536 + 1536 * nh * 192) + h * nh * 192


def test_a_prefill_iteration_up_projects_every_key_and_runs_mha_with_192_and_128_wide_heads():
    m = model()
    ops = lower(BatchShape(prefill=((1000, 3000),), emitting=1), m, 8)
    kv_b = next(op for op in ops if op.name == "kv_b_proj")
    assert (kv_b.m, kv_b.n, kv_b.k) == (4000, 16 * 256, 512)  # context + chunk, 128 / 8 heads x (nope + v)
    attn = next(op for op in ops if op.kind == ATTN_PREFILL)
    assert (attn.heads, attn.kv_heads, attn.head_dim, attn.v_head_dim, attn.latent) == (16, 16, 192, 128, False)
    names = [op.name for op in ops]
    assert "qkv_proj" not in names and {"qkv_a_proj", "q_b_proj", "w_uk_bmm", "w_uv_bmm", "o_proj"} <= set(names)
    o = next(op for op in ops if op.name == "o_proj")
    assert o.k == 16 * 128


def test_a_decode_step_attends_to_the_latent_as_mqa_with_576_and_512_wide_heads():
    op = decode_attention(model(), 8, rows=32, kv_tokens=32 * 4096)
    assert isinstance(op, MlaAttnOp) and op.kind == ATTN_DECODE
    assert (op.heads, op.kv_heads, op.head_dim, op.v_head_dim, op.latent) == (16, 1, 576, 512, True)
    assert op.flops() == 2.0 * 16 * (576 + 512) * 32 * 4096 * 61


@pytest.mark.parametrize("tp", [1, 8])
def test_decode_attention_reads_the_latent_once_whatever_the_head_count(tp):
    """Bytes per extra key = 576 elements x 2 B per layer, not heads x head_dim."""
    m = model()
    a, b = (decode_attention(m, tp, 16, kv).bytes_moved() for kv in (16 * 1000, 16 * 2000))
    assert (b - a) / (16 * 1000) == pytest.approx(61 * 576 * 2.0)
    # and the timing follows: the roofline's growth per key is those bytes over the HBM bandwidth,
    # or, at 128 heads on one GPU, the 2 x 128 x (576 + 512) FLOPs per key over the bf16 peak
    rf = backend("roofline", launch_overhead=False)
    t = rf.decode_attention_s(decode_attention(m, tp, 64, 0), np.array([64 * 8192, 64 * 16384]))
    per_key = (t[1] - t[0]) / (64 * 8192)
    g = rf.device
    mem, flops = 61 * 576 * 2.0 / g.memory_bw_bytes_per_s, 61 * 2.0 * (128 // tp) * 1088 / g.tensor_peak("bf16")
    assert per_key == pytest.approx(max(mem, flops), rel=1e-6)
    assert (flops > mem) == (tp == 1)


def test_the_absorbed_projections_stay_in_the_per_token_ops_of_a_decode_segment():
    ops = dense_ops(64, 64, model(), 8)
    uk = next(op for op in ops if op.name == "w_uk_bmm")
    assert uk.groups == (64,) * 16 and (uk.n, uk.k) == (512, 128)
    uv = next(op for op in ops if op.name == "w_uv_bmm")
    assert (uv.n, uv.k) == (128, 512)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 512), ctx=st.integers(1, 131072), tp=st.sampled_from([1, 2, 4, 8, 16]),
       prefill=st.integers(1, 8192))
def test_the_tile_backend_is_never_faster_than_the_roofline_for_mla_attention(rows, ctx, tp, prefill):
    m = model()
    tile, roof = backend("tile", cuda_graphs=True), backend("roofline", launch_overhead=False)
    dec = decode_attention(m, tp, rows, rows * ctx)
    assert tile.op_s(dec) >= roof.op_s(dec)
    pre = next(op for op in lower(BatchShape(prefill=((prefill, 0),), emitting=1), m, tp) if op.kind == ATTN_PREFILL)
    assert tile.op_s(pre) >= roof.op_s(pre)


def test_latent_decode_pads_the_query_heads_to_the_64_row_tile_on_hopper():
    """FlashMLA computes 64 query-head rows per tile: 16 heads cost what 64 do when compute-bound."""
    m = model()
    tile = backend("tile", cuda_graphs=True)
    big = np.array([256 * 65536])
    t16 = tile.decode_attention_s(decode_attention(m, 8, 256, 0), big)[0]  # 16 heads per GPU
    t64 = tile.decode_attention_s(decode_attention(m, 2, 256, 0), big)[0]  # 64 heads per GPU
    t128 = tile.decode_attention_s(decode_attention(m, 1, 256, 0), big)[0]
    assert t16 == pytest.approx(t64, rel=0.05)
    assert t128 > 1.5 * t64  # compute-bound at 128 heads: two head tiles


@needs_aic
def test_the_h200_mla_kernel_tables_are_predicted_within_the_stated_bounds():
    """FIDELITY.md "MLA attention and block-scaled fp8 (H200)": context MLA median 12.9 % (1760 rows),
    generation MLA 15.0 % (2896 rows); bounds leave ~3 points of slack."""
    pytest.importorskip("pyarrow")
    from simulator.validation.aic import mla_rows, predict_aic
    from simulator.validation.kernels import gpu_config

    skipped: Counter = Counter()
    rows = mla_rows(AIC / "h200_sxm", skipped)
    assert any("fp8 KV cache" in k for k in skipped) and any("wide-EP" in k for k in skipped)
    pred = np.asarray(predict_aic(rows, "tile", gpu_config("H200")).predicted)
    meas = np.array([r.measured_s for r in rows])
    for cls, n_rows, bound in (("context mla", 1760, 0.16), ("generation mla", 2896, 0.18)):
        idx = [i for i, r in enumerate(rows) if r.op == cls]
        assert len(idx) == n_rows
        ape = np.abs(pred[idx] / meas[idx] - 1.0)
        assert np.median(ape) <= bound, (cls, np.median(ape))


def test_an_fp8_latent_cache_halves_the_decode_reads_but_prefill_reads_up_projected_kv_in_bf16():
    comp = resolve_component({"kind": "scheme", "kv": {"dtype": "fp8_e4m3"}}, reg.QUANTIZATION, "quantization")
    q = comp.cls(comp.config)
    m = model()
    plain, fp8 = decode_attention(m, 8, 8, 8 * 4096), decode_attention(m, 8, 8, 8 * 4096, q)
    q_o = 61 * 2.0 * 8 * 16 * (576 + 512)  # the queries and outputs stay in bf16
    assert fp8.kv_bytes == pytest.approx(1.0 + 2.0 / 128)  # e4m3 and a 16-bit scale per 128 elements
    assert fp8.bytes_moved() - q_o == pytest.approx((plain.bytes_moved() - q_o) / 2 * fp8.kv_bytes)
    pre = next(op for op in lower(BatchShape(prefill=((512, 512),), emitting=1), m, 8, q) if op.kind == ATTN_PREFILL)
    assert pre.kv_bytes == 0.0  # K/V come out of the up-projection at the model dtype
    kv_write = next(op for op in lower(BatchShape(decode_rows=8, decode_kv=8 * 4096, emitting=8), m, 8, q)
                    if op.name == "kv_quant")
    assert kv_write.bytes == int(8 * 576 * (2 + fp8.kv_bytes))  # the new tokens' latent: bf16 in, fp8 out
