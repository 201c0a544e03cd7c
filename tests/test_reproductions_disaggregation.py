"""Disaggregation and pipeline-parallel reproductions beyond the headline figures. DistServe's
4.48x, Splitwise's per-dollar gain and Sarathi-Serve's 6.9x on Falcon-180B are rows of
simulator/reproduce.py with paper-derived bands (tests/test_reproduce.py reports each as in band or
missed); this file checks the directions behind them, on the same memoised capacity searches."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.reproduce import get
from simulator.reproduce_measure import (
    DISTSERVE_COLOCATED,
    DISTSERVE_P1_D2,
    SPLITWISE_HA,
    SPLITWISE_HH,
    distserve_capacity,
    falcon_capacity,
    preset_price,
    splitwise_capacity,
)

PAPERS = Path(__file__).resolve().parents[1] / "scenarios" / "papers"


def test_distserve_gain_shrinks_when_the_tpot_slo_is_loose():
    # DistServe's gain comes from taking prefill stalls out of decode batches; with a loose TPOT SLO
    # (60 ms) those stalls no longer decide the SLO and the colocated engine uses all three GPUs for
    # prefill too: the gain must fall below the tight-SLO gain and below 1.2
    p = get("distserve_opt13b").params()
    tight = distserve_capacity(DISTSERVE_P1_D2, p) / distserve_capacity(DISTSERVE_COLOCATED, p)
    loose = distserve_capacity(DISTSERVE_P1_D2, p, 0.060) / distserve_capacity(DISTSERVE_COLOCATED, p, 0.060)
    assert tight > 1.0 and loose < tight and loose <= 1.2, (tight, loose)


def test_splitwise_ha_serves_about_the_h100_fleets_rate_on_a_cheaper_fleet():
    # the mechanism behind the per-dollar gain: A100 decode keeps up with H100 decode (decode is
    # HBM-bound and the A100 pool holds the decode batch), and the preset prices make the mixed
    # fleet cheaper; the per-dollar figure itself is the reproduction row
    ha, hh = splitwise_capacity(SPLITWISE_HA), splitwise_capacity(SPLITWISE_HH)
    assert ha >= 0.9 * hh, (ha, hh)
    h100, a100 = preset_price("H100-SXM"), preset_price("A100-80GB")
    assert a100 < h100 and 8 * h100 + 4 * a100 < 12 * h100


def test_sarathis_falcon_180b_gain_is_larger_under_the_strict_tbt_slo_than_under_the_relaxed_one():
    # Paper rule: strict P99 TBT = 5x a decode step (~0.25 s here), relaxed = 25x (1.25 s). The size
    # under the strict SLO is row `sarathi_falcon180b` (reported missed: hwsim overstates it)
    strict = falcon_capacity("sarathi", 0.25) / falcon_capacity("vllm", 0.25)
    relaxed = falcon_capacity("sarathi", 1.25) / falcon_capacity("vllm", 1.25)
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
