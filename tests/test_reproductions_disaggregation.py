"""Reproductions of prefill/decode disaggregation papers: the direction must match, the size must
fall in a stated band (the figures and assumptions are in docs/reproductions.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.capacity import capacity_search

PAPERS = Path(__file__).resolve().parents[1] / "scenarios" / "papers"
DISTSERVE = PAPERS / "distserve_opt13b_a100.yaml"
SPLITWISE = PAPERS / "splitwise_llama2_70b.yaml"

# DistServe's summarisation-style workload: long prompts, short outputs, where prefill stalls of a
# colocated engine hurt decode the most
LONG_PROMPTS = ["workload.prompt_tokens={dist: lognormal, median: 1500, sigma: 0.5, min: 64, max: 1900}",
                "workload.output_tokens={dist: lognormal, median: 100, sigma: 0.6, min: 4, max: 140}",
                "workload.num_requests=800"]
COLOCATED_3 = ["cluster.pools=[{name: main, replicas: 3}]"]
P1_D2 = ["cluster.pools=[{name: p, role: prefill, replicas: 1}, {name: d, role: decode, replicas: 2}]"]


def capacity(path: Path, overrides: list[str], ttft: float, tpot: float, hi: float = 30.0) -> float:
    out = capacity_search(path, slo_ttft_s=ttft, slo_tpot_s=tpot, attainment=0.9, lo=0.5, hi=hi, iterations=8,
                          overrides=overrides)
    return out["capacity_rps"]


def test_distserve_disaggregation_serves_more_requests_within_a_tight_tpot_slo():
    # Paper: up to 4.48x more requests within SLO than colocated vLLM (OPT-13B..175B, A100s).
    # hwsim, 3 A100-80GB, OPT-13B, TTFT 2 s / TPOT 20 ms: 1 prefill + 2 decode GPUs vs 3 colocated
    # vLLM replicas. Band [1.5, 6]: the gain comes only from removing prefill stalls from decode
    # batches (hwsim models no other difference), so it must be clearly above 1; the paper's
    # 4.48x also includes its parallelism search, which this comparison does not do.
    dis = capacity(DISTSERVE, LONG_PROMPTS + P1_D2, ttft=2.0, tpot=0.020)
    col = capacity(DISTSERVE, LONG_PROMPTS + COLOCATED_3, ttft=2.0, tpot=0.020)
    assert 1.5 <= dis / col <= 6.0, (dis, col)


def test_distserve_gain_shrinks_when_the_tpot_slo_is_loose():
    # With a loose TPOT SLO (60 ms) decode stalls no longer decide the SLO, the colocated engine
    # uses all three GPUs for prefill too, and disaggregation loses its edge: ratio <= 1.2.
    dis = capacity(DISTSERVE, LONG_PROMPTS + P1_D2, ttft=2.0, tpot=0.060)
    col = capacity(DISTSERVE, LONG_PROMPTS + COLOCATED_3, ttft=2.0, tpot=0.060)
    assert dis / col <= 1.2, (dis, col)


def test_splitwise_h100_prefill_and_a100_decode_serve_more_per_dollar_than_h100_alone():
    # Paper: Splitwise-HA gives 1.4x throughput at 20% lower cost (2.35x at equal cost and power)
    # than H100-only serving. hwsim, Llama-2-70B TP=4: 2 H100 prefill replicas + 1 A100 decode
    # replica vs 3 colocated H100 replicas, throughput within SLO per dollar. Band [1.05, 2]: the
    # preset prices (A100 1.79, H100 2.99 USD/h) are in the same ratio as HBM bandwidth, so decode
    # per dollar is about equal on both GPUs here and the gain is only the pool split; the paper
    # assumed DGX prices and power caps that favour A100 decode more.
    price_h, price_a = 2.99, 1.79
    ha = capacity(SPLITWISE, ["cluster.pools=[{name: p, role: prefill, replicas: 2, tensor_parallel: 4}, "
                              "{name: d, role: decode, replicas: 1, tensor_parallel: 4, "
                              "device: {kind: gpu, preset: A100-80GB}}]", "workload.num_requests=800"],
                  ttft=1.0, tpot=0.05, hi=40)
    hh = capacity(SPLITWISE, ["cluster.pools=[{name: main, replicas: 3, tensor_parallel: 4}]",
                              "workload.num_requests=800"], ttft=1.0, tpot=0.05, hi=40)
    per_dollar = (ha / (8 * price_h + 4 * price_a)) / (hh / (12 * price_h))
    assert 1.05 <= per_dollar <= 2.0, (ha, hh, per_dollar)
    assert ha >= 0.9 * hh  # about the same throughput ...
    assert 8 * price_h + 4 * price_a < 0.9 * 12 * price_h  # ... at more than 10% lower cost


FALCON = ["model.preset=Falcon-180B", "cluster.tensor_parallel=4", "cluster.pipeline_parallel=2",
          "engine.max_model_len=2048", "workload.prompt_tokens.max=1500", "workload.output_tokens.max=500",
          "workload.num_requests=300", "run.warmup_requests=20"]


def falcon_capacity(scheduler: str, p99_itl_s: float) -> float:
    out = capacity_search(PAPERS / "sarathi_mistral7b_a100.yaml", attainment=0.9, lo=0.02, hi=10, iterations=9,
                          overrides=FALCON + [f"policies.scheduler={{kind: {scheduler}}}"], p99_itl_s=p99_itl_s,
                          p50_queue_s=2.0)
    return out["capacity_rps"]


def test_sarathi_serves_falcon_180b_on_8_a100_with_tp4_pp2_far_above_vllm_under_a_strict_tbt_slo():
    # Paper (Sarathi-Serve): up to 6.9x more capacity than vLLM for Falcon-180B on 8 A100s
    # (TP4 x PP2). SLOs as in the paper's rule: strict P99 time-between-tokens = 5x a decode step
    # (hwsim: ~50 ms -> 0.25 s), relaxed = 25x (1.25 s), median queueing <= 2 s.
    # hwsim: strict 4.31 vs 0.18 req/s (24x), relaxed 4.31 vs 1.74 (2.5x). Asserted: the gain is
    # >= 2x under the strict SLO and larger than under the relaxed one. hwsim's strict figure is far
    # above the paper's because every vLLM prefill of a long prompt (~0.4 s on 4 A100s per stage
    # pair) is a stall above 0.25 s, so P99 fails once ~1% of gaps hold a prefill; the measured
    # system also had CPU overheads and pipeline imbalance that hwsim does not model.
    strict = falcon_capacity("sarathi", 0.25) / falcon_capacity("vllm", 0.25)
    relaxed = falcon_capacity("sarathi", 1.25) / falcon_capacity("vllm", 1.25)
    assert strict >= 2.0
    assert strict > relaxed >= 1.0


@pytest.mark.parametrize("pp", [2])
def test_pipeline_parallel_falcon_180b_on_8_a100_serves_within_slo(pp):
    # Sarathi-Serve's Falcon-180B setting runs TP x PP over 8 A100s; check that such a deployment
    # is expressible and serves a modest load within a relaxed SLO (the capacity reproduction itself
    # is in test_reproductions_scheduling when run with sarathi).
    from simulator.config.loader import load_scenario
    from simulator.runner import run_scenario

    sc = load_scenario(PAPERS / "sarathi_mistral7b_a100.yaml",
                       ["model.preset=Falcon-180B", "cluster.tensor_parallel=4", f"cluster.pipeline_parallel={pp}",
                        "cluster.replicas=1", "workload.num_requests=60", "workload.arrival.rate=0.5/s",
                        "engine.max_model_len=2048", "workload.prompt_tokens.max=1500",
                        "workload.output_tokens.max=400"])
    r = run_scenario(sc)
    assert r.summary["requests_finished"] == 60
    assert r.summary["gpus"] == 8
