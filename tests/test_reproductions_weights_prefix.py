"""Reproductions of weight-streaming and prefix-sharing papers (TPI-LLM, prefix sharing; LLM in a flash
runs on the serving engine: tests/test_weight_offload.py): directions and first-principles identities.
The papers' figures (3.1 GB, > 80 %, up to 32x) are rows of simulator/reproduce.py with paper-derived bands, run by
tests/test_reproduce.py and rendered into docs/reproductions.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.studies import tpi_llm as tpi
from simulator.studies.run import run_study

PAPERS = Path(__file__).resolve().parents[1] / "scenarios" / "papers"
TPI = PAPERS / "tpi_llm_llama2_70b.yaml"


# -- TPI-LLM -----------------------------------------------------------------------------------

def test_tpi_llm_cuts_llama2_70b_peak_memory_to_about_3_gb_and_latency_by_over_80_percent(tmp_path):
    # Paper: peak memory down 90 % to 3.1 GB. The 3.1 GB and the > 80 % latency cuts are rows
    # tpi_llm_*; here: the memory cut against TP without a window (the paper's 90 % is against its
    # own baseline: band x/ 1.25 around 0.9), and the all-reduce choice follows the alpha-beta
    # crossover: decode's 16 KB message is below it (star), the prompt's 2 MB above it (ring).
    r = run_study(TPI, [], tmp_path, quiet=True)
    assert 0.9 / 1.25 <= r["memory_reduction"] <= 1.0
    hidden = 8192
    assert hidden * 2 < r["star_ring_crossover_bytes"] < 128 * hidden * 2
    assert r["decode_allreduce"] == "star" and r["prefill_allreduce"] == "ring"


def test_tpi_llm_peak_memory_is_window_times_shard_plus_embeddings_kv_and_runtime_exactly():
    cfg = tpi.Config(window_layers=3, devices=5, context_tokens=1000)
    r = tpi.run(cfg)
    # Llama-2-70B: hidden 8192, 64 heads x 128, 8 KV heads, MLP 28672 (gated), 80 layers, vocab 32000, fp16
    layer = 8192 * (8192 + 2 * 1024) + 8192 * 8192 + 3 * 8192 * 28672 + 2 * 8192
    shard = layer * 2 / 5
    emb = 2 * 32000 * 8192 * 2
    kv = 1000 * 2 * 80 * 1024 * 2 / 5
    assert r["peak_memory_bytes"] == pytest.approx(3 * shard + emb + kv + 2**30, rel=1e-12)
    assert r["peak_memory_no_window_bytes"] == pytest.approx(80 * shard + emb + kv + 2**30, rel=1e-12)


@pytest.mark.parametrize("p", [4, 8])
def test_star_allreduce_beats_ring_below_the_alpha_beta_crossover_and_loses_above_it(p):
    alpha, bw = 0.5e-3, 125e6
    s_star = tpi.star_ring_crossover_bytes(p, alpha, bw)
    assert s_star == pytest.approx((p - 2) * p * alpha * bw / (p - 1) ** 2)
    at = (tpi.star_allreduce_s(s_star, p, alpha, bw), tpi.ring_allreduce_s(s_star, p, alpha, bw))
    assert at[0] == pytest.approx(at[1], rel=1e-12)
    assert tpi.star_allreduce_s(0.9 * s_star, p, alpha, bw) < tpi.ring_allreduce_s(0.9 * s_star, p, alpha, bw)
    assert tpi.star_allreduce_s(1.1 * s_star, p, alpha, bw) > tpi.ring_allreduce_s(1.1 * s_star, p, alpha, bw)


def test_on_slow_wifi_the_prompt_all_reduces_eat_most_of_tpi_llms_ttft_gain():
    wifi = tpi.run(tpi.Config(link_bw="37.5MB/s", link_latency="3ms"))
    lan = tpi.run(tpi.Config())
    assert wifi["ttft_reduction"] < lan["ttft_reduction"]
    assert wifi["token_latency_reduction"] == pytest.approx(lan["token_latency_reduction"])  # disk-bound decode


def test_a_window_of_one_layer_cannot_overlap_loading_with_compute():
    one = tpi.run(tpi.Config(window_layers=1))
    two = tpi.run(tpi.Config(window_layers=2))
    assert one["peak_memory_bytes"] < two["peak_memory_bytes"]
    assert one["token_s"] > two["token_s"]


# -- serving: prefix sharing and vAttention ------------------------------------------------------

def serve(path: Path, overrides: list[str] | None = None):
    from simulator.config.loader import load_scenario
    from simulator.runner import Simulation

    return Simulation(load_scenario(path, overrides or [])).run().summary


def test_prefix_caching_doubles_throughput_when_many_requests_share_a_long_prefix():
    # Hydragen reports up to 32x (row prefix_sharing_serving, reported missed: the serving path has
    # no shared-prefix kernel). What the serving path does model: 400 requests x (3000 shared + 20-100
    # own tokens) over 4 prefixes hit the cache for all but the first request of each prefix
    # (hit rate >= 1 - 4/400 of the prefix blocks, less the partial last block), shared blocks count
    # once in admission so the batch grows, and the skipped prefill raises throughput.
    pre = serve(PAPERS / "prefix_sharing.yaml")
    base = serve(PAPERS / "prefix_sharing.yaml", ["policies.kv_cache={kind: paged}"])
    assert pre["kv_cache"]["hit_rate"] > 0.85
    assert pre["throughput_rps"] > base["throughput_rps"]
    assert pre["batch_size_mean"] > 4 * base["batch_size_mean"]
    assert pre["ttft_s"]["p50"] < base["ttft_s"]["p50"]


def test_vattention_in_the_serving_path_matches_paged_kv_within_five_percent():
    # The paper's decode (1.97x) and prefill (up to 3.92x) gains are attention-kernel effects that
    # hwsim's serving path does not model; what it models (2 MiB pages = 256-token allocation
    # granularity, mapping hidden behind compute) leaves throughput within 5 % of paged KV.
    va = serve(PAPERS / "vattention_vs_paged.yaml")
    base = serve(PAPERS / "vattention_vs_paged.yaml", ["policies.kv_cache={kind: paged}"])
    assert va["throughput_rps"] == pytest.approx(base["throughput_rps"], rel=0.05)
    assert va["batch_size_mean"] <= base["batch_size_mean"]  # coarser pages fragment more
