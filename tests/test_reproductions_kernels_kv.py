"""Kernel-level KV results (docs/reproductions.md, KV cache section): vAttention and Hydragen studies."""

from __future__ import annotations

import pytest

from simulator.studies import hydragen as hy
from simulator.studies import vattention as va
from simulator.studies.run import load_study

VAT = "scenarios/papers/vattention_kernels.yaml"
HYD = "scenarios/papers/hydragen_shared_prefix.yaml"


@pytest.fixture(scope="module")
def vat():
    _, mod, cfg = load_study(VAT)
    return mod.run(cfg)


@pytest.fixture(scope="module")
def hyd():
    _, mod, cfg = load_study(HYD)
    return mod.run(cfg)


def parts(model="Llama-3-8B", gpu="A100-80GB"):
    return va.resolve(model, gpu)


def test_vattention_decode_beats_vllm_paged_decode_most_for_the_largest_gqa_group(vat):
    # paper: up to 1.97x decode throughput vs vLLM (row vattention_decode_kernel, input-bound: L2 rate);
    # the larger GQA group gains more, since the paged kernel requests its K/V group-times
    assert vat["decode_step_speedup Yi-6B b64 ctx16384"] > vat["decode_step_speedup Llama-3-8B b64 ctx16384"] > 1.1
    # the attention kernel alone gains more than the step (GEMMs unchanged)
    assert vat["max_decode_attn_speedup"] > vat["max_decode_step_speedup"]
    # the gain grows with context at a fixed batch (attention's share of the step grows)
    assert vat["decode_step_speedup Yi-6B b32 ctx16384"] > vat["decode_step_speedup Yi-6B b32 ctx4096"]


def test_paged_decode_with_no_table_load_no_gqa_repeat_and_fa2_tiles_equals_the_contiguous_kernel():
    m, _, hw, _ = parts()
    b, c = 8, 8192
    ct = va.contiguous_decode_s(hw, m, b, c)
    bn, per_sm = 128, int(hw.smem // ((64 + 2 * 128) * m.head_dim * m.dtype_bytes))
    n_blocks = c // bn
    unique = b * (2 * m.num_kv_heads * c + 2 * m.num_heads) * m.head_dim * m.dtype_bytes
    same = va._decode_kernel_s(hw, ctas=ct["ctas"], ctas_per_sm=per_sm,
                               tiles_per_lane=-(-n_blocks // ct["splits"]), dep_cycles=0.0, compute_cycles=0.0,
                               unique=unique, requested=unique, flops=4.0 * b * m.num_heads * m.head_dim * c,
                               flop_s=hw.flop_clk_sm * hw.sms * hw.clock * hw.mma_eff)
    extra = hw.launch_s + (hw.launch_s + hw.fixed_s + b * m.num_heads * ct["splits"] * (m.head_dim + 1) * 4.0
                           / hw.hbm_bw if ct["splits"] > 1 else 0.0)
    assert same + extra == pytest.approx(ct["s"], rel=1e-12)


def test_paged_decode_of_a_full_batch_without_gqa_is_bandwidth_bound_like_the_contiguous_kernel():
    m, _, hw, _ = parts("Llama-2-7B")  # MHA: no repeated K/V requests
    cfg = va.Config(table_latency_cycles=0.0, block_compute_cycles=0.0)
    pg, ct = va.paged_decode_s(hw, m, 64, 4096, cfg), va.contiguous_decode_s(hw, m, 64, 4096)
    unique = 64 * 2 * m.num_kv_heads * 4096 * m.head_dim * m.dtype_bytes
    assert pg["s"] / ct["s"] == pytest.approx(1.0, abs=0.05)
    assert ct["s"] >= unique / hw.hbm_bw  # never faster than reading K/V once


def test_block_table_latency_and_small_blocks_slow_the_paged_kernel_only_when_latency_bound():
    m, _, hw, _ = parts()
    slow = va.paged_decode_s(hw, m, 1, 4096, va.Config(vllm_v2=False))["s"]
    fast = va.paged_decode_s(hw, m, 1, 4096, va.Config(vllm_v2=False, table_latency_cycles=0.0))["s"]
    big = va.paged_decode_s(hw, m, 1, 4096, va.Config(vllm_v2=False, table_latency_cycles=0.0), block=256)["s"]
    assert slow > fast > big  # batch 1, no split: one chain per CTA, latency-bound


def test_vattention_prefill_is_not_reproduced_against_paged_flashattention_but_beats_flashinfer_by_the_input(vat):
    # paper: up to 3.92x vs paged FA2 (row vattention_prefill_vs_paged_fa, reported missed), 1.45x vs
    # FlashInfer. Paged FA2's split kernel (64-row Q tiles: 16 rows per warp) costs more per FLOP, so
    # contiguous KV wins, but by less than the shared-memory ceiling, which is itself below the paper's
    # figure: the operand traffic cannot explain 3.92x even if every shared-memory byte were exposed
    assert 1.0 < vat["max_prefill_vs_paged_fa"] < vat["prefill_smem_serial_ceiling"] < 3.92
    # the FlashInfer gain is the input efficiency: compute-bound prefill runs at 1 / 0.8 the time
    assert vat["max_prefill_vs_flashinfer"] == pytest.approx(1 / 0.8, rel=0.05)


def test_vattention_prefill_gain_does_not_grow_with_context_because_both_kernels_pay_per_tile(vat):
    for model in ("Llama-3-8B", "Yi-6B"):
        long, mid = vat[f"prefill_vs_paged_fa {model} ctx196608"], vat[f"prefill_vs_paged_fa {model} ctx65536"]
        assert long == pytest.approx(mid, rel=0.01)
        # per-pair cost ratio of the tile loops is the long-context limit
        limit = vat["prefill_tile_cycles_per_pair paged_fa"] / vat["prefill_tile_cycles_per_pair contiguous"]
        assert long == pytest.approx(limit, rel=0.02)


def test_the_split_kernels_tile_moves_more_shared_memory_bytes_per_flop():
    _, _, hw, _ = parts()
    d = 128
    c, p = va.mma_loop_cycles(hw, d, 2, 128, 64), va.mma_loop_cycles(hw, d, 2, 64, 128)
    # Q once, K and V by each of 4 warps: (Br + 8 Bc) d 2 B over 4 Br Bc d FLOPs
    assert c["smem"] * hw.smem_bpc / (4.0 * 128 * 64 * d) == pytest.approx((128 + 8 * 64) * 2 / (4 * 128 * 64))
    assert p["smem"] * hw.smem_bpc / (4.0 * 64 * 128 * d) == pytest.approx((64 + 8 * 128) * 2 / (4 * 64 * 128))
    # same tile area, same FLOPs: the 16-row warp tile pays more fragment loads per MMA
    assert p["mma"] > c["mma"] and p["exp"] == c["exp"]
    # without a fragment cost the MMA time is the tile's FLOPs at the attention MMA rate
    bare = va.mma_loop_cycles(va.dataclasses.replace(hw, frag_cost=0.0), d, 2, 64, 128)
    assert bare["mma"] == pytest.approx(4.0 * 64 * 128 * d / (hw.flop_clk_sm * hw.mma_eff), rel=1e-12)
    # a slower shared memory eventually binds the loop
    slow = va.mma_loop_cycles(va.dataclasses.replace(hw, smem_bpc=32.0), d, 2, 64, 128)
    assert slow["loop"] == slow["smem"] > slow["mma"]


def test_page_mapping_is_hidden_when_overlapped_and_small_when_not():
    m, *_ = parts()
    cfg = va.Config()
    assert va.mapping_s(m, 64, cfg, busy_s=0.02) == 0.0
    exposed = va.mapping_s(m, 64, va.Config(mapping={"overlap": False}), busy_s=0.02)
    # 2 KiB per token per layer buffer -> 1024 tokens per 2 MiB page: 64 x 64 / 1024 = 4 pages x 40 us
    assert exposed == pytest.approx(4 * 40e-6)


def test_hydragen_gains_grow_with_batch_and_prefix_up_to_the_papers_32x(hyd):
    # paper: up to 32x end to end (row hydragen_kernel); the gain must grow with batch and prefix
    for gpu in ("A100-80GB", "H100-SXM"):
        assert hyd[f"throughput_speedup {gpu} N1024 P16384"] > hyd[f"throughput_speedup {gpu} N1024 P4096"] \
            > hyd[f"throughput_speedup {gpu} N1024 P1024"] > 1
        assert hyd[f"throughput_speedup {gpu} N1024 P16384"] > hyd[f"throughput_speedup {gpu} N16 P16384"] \
            > hyd[f"throughput_speedup {gpu} N1 P16384"]


def test_hydragen_with_one_request_costs_about_the_same_as_standard_attention(hyd):
    # N = 1: nothing shared; Hydragen pays one extra kernel + the LSE combine (<= 5 % end to end)
    for gpu in ("A100-80GB", "H100-SXM"):
        for p in (1024, 4096, 16384):
            assert 0.95 <= hyd[f"throughput_speedup {gpu} N1 P{p}"] <= 1.0


def test_hydragen_reads_the_prefix_once_plus_each_suffix_and_standard_reads_the_prefix_per_request():
    m, _, hw, _ = va.resolve(dict(hy.CODELLAMA_13B), "A100-80GB")
    n, p, s = 256, 4096, 128
    per_token = 2.0 * m.num_kv_heads * m.head_dim * m.dtype_bytes
    assert hy.hydragen_s(hw, m, n, p, s)["kv_bytes"] == pytest.approx((p + n * s) * per_token, rel=1e-12)
    assert hy.standard_s(hw, m, n, p, s)["kv_bytes"] == pytest.approx(n * (p + s) * per_token, rel=1e-12)
