"""Reproductions of the scheduling-and-batching papers (docs/reproductions.md, "Scheduling and
batching"): each test asserts the direction of the published result and that hwsim's size of it
falls in a stated band. The bands are wider than the spread we measured across request counts
(500-1000 requests per probe) and seeds, and are justified next to each assertion; where hwsim
and the paper disagree the docs say why.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from simulator.capacity import capacity_search
from simulator.config.loader import load_scenario
from simulator.results import FINISHED
from simulator.runner import run_scenario

PAPERS = Path(__file__).resolve().parent.parent / "scenarios" / "papers"
SARATHI = PAPERS / "sarathi_mistral7b_a100.yaml"
FASTGEN = PAPERS / "fastgen_llama2_70b_a100.yaml"
ITERATION = PAPERS / "iteration_vs_request_level.yaml"


@cache
def sarathi_capacity(kind: str, p99_tbt_s: float, chunk: int = 512) -> float:
    """Capacity (requests/s) under the Sarathi-Serve rule: P99 TBT <= SLO, median scheduling
    delay <= 2 s; 500 requests per probe, 8 probes between 0.1 and 8 requests/s."""
    sets = [f"policies.scheduler={{kind: {kind}}}"]
    if kind == "sarathi":
        sets.append(f"policies.scheduler.chunk_size={chunk}")
    out = capacity_search(SARATHI, p99_itl_s=p99_tbt_s, p50_queue_s=2.0, lo=0.1, hi=8.0, iterations=8,
                          num_requests=500, overrides=sets)
    assert not out["capped"] and out["capacity_rps"] > 0
    return out["capacity_rps"]


def test_sarathi_serve_raises_capacity_under_a_strict_tbt_slo_over_vllm_and_orca():
    # Paper: up to 2.6x (Mistral-7B, 1x A100, strict SLO P99 TBT 100 ms). hwsim: 2.3x over vLLM
    # and 2.5x over Orca at 500 requests/probe (2.5x / 2.7x at 1000). Band [1.5, 4]: the gain
    # comes from removing generation stalls (vLLM's prefill-only iterations of 1-6k-token prompts
    # take 90-300 ms on the modelled A100), which any faithful model must show, but its size
    # depends on the length distribution we approximated.
    sarathi = sarathi_capacity("sarathi", 0.1)
    for baseline in ("vllm", "orca"):
        ratio = sarathi / sarathi_capacity(baseline, 0.1)
        assert 1.5 <= ratio <= 4.0, (baseline, ratio)


def test_sarathi_serves_gain_shrinks_under_a_relaxed_tbt_slo():
    # Paper: the gain is smaller under the relaxed SLO (Sarathi's budget grows to 2048, vLLM's
    # stalls are tolerated). hwsim: 1.2x; band [1.0, 1.8] and below the strict-SLO gain.
    relaxed = sarathi_capacity("sarathi", 0.5, 2048) / sarathi_capacity("vllm", 0.5)
    strict = sarathi_capacity("sarathi", 0.1) / sarathi_capacity("vllm", 0.1)
    assert 1.0 <= relaxed <= 1.8 and relaxed < strict, (relaxed, strict)


@cache
def fastgen_run(kind: str):
    return run_scenario(load_scenario(FASTGEN, [f"policies.scheduler={{kind: {kind}}}", "workload.clients=16"]))


def effective_throughput(result, gen_tokens_per_s: float = 4.0) -> float:
    """FastGen's metric: requests/s meeting the SLA, prompt latency <= prompt tokens / 512 s and
    generation at >= ``gen_tokens_per_s`` tokens/s (TPOT <= 1/that)."""
    q = result.requests
    ok = q["measured"] & (q["status"] == FINISHED) & (q["ttft_s"] <= q["prompt_tokens"] / 512.0)
    ok &= ~(q["tpot_s"] > 1.0 / gen_tokens_per_s)
    return float(ok.sum()) / result.summary["measured_window_s"]


def test_fastgen_cuts_token_level_tail_latency_against_vllm():
    # Paper: up to 3.7x lower token-level tail latency (P95 per-token) than vLLM. hwsim at 16
    # clients: 3.9x (vLLM's prefill-only iterations of ~2600-token prompts stall every running
    # decode; SplitFuse caps an iteration at 768 tokens). Band [2, 8].
    fg, vl = fastgen_run("fastgen"), fastgen_run("vllm")
    ratio = np.percentile(vl.itl_s, 95) / np.percentile(fg.itl_s, 95)
    assert 2.0 <= ratio <= 8.0, ratio


def test_fastgen_throughput_gain_over_vllm_is_real_but_smaller_than_published():
    # Paper: up to 2.3x effective throughput and 2x lower mean latency. hwsim: 1.1x throughput,
    # effective throughput and mean latency at 16 clients, where both meet the SLA; the paper's
    # larger gap comes from vLLM 0.2's host overheads and generation-SLA misses that hwsim's
    # vLLM does not show (docs/reproductions.md). Band [1.0, 1.5]: direction right, size small.
    fg, vl = fastgen_run("fastgen"), fastgen_run("vllm")
    assert 1.0 <= effective_throughput(fg) / effective_throughput(vl) <= 1.5
    assert 1.0 <= vl.summary["e2e_s"]["mean"] / fg.summary["e2e_s"]["mean"] <= 1.5


@cache
def saturated_throughput(kind: str) -> float:
    return run_scenario(load_scenario(ITERATION, [f"policies.scheduler={{kind: {kind}}}"])).summary["throughput_rps"]


def test_iteration_level_batching_multiplies_throughput_over_request_level_batching():
    # Papers: Orca 36.9x (GPT-3 175B vs FasterTransformer, at equal latency), Flover >11x. hwsim
    # (saturated Llama-2-7B on an A100, static batch 32 with max_len KV reservation): orca 4.6x,
    # vllm 5.7x. Band [3, 12]: the gain is bounded by padding (a batch lasts as long as its longest
    # output; lognormal sigma 0.9 gives mean/max ~ 1/4 in a batch) times the batch the reservation
    # allows; the papers' larger figures are measured at equal latency, not at saturation.
    static = saturated_throughput("static")
    orca, vllm = saturated_throughput("orca"), saturated_throughput("vllm")
    assert 3.0 <= orca / static <= 12.0 and 3.0 <= vllm / static <= 12.0, (orca / static, vllm / static)
    assert vllm >= orca  # paged KV admits more than Orca's max_len reservations
