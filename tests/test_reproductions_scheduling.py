"""Scheduling-and-batching reproductions beyond the headline figures. The papers' headline figures
(Sarathi-Serve's 2.6x, FastGen's 3.7x and 2.3x, iteration- vs request-level batching) are rows of
simulator/reproduce.py, run with paper-derived bands by tests/test_reproduce.py; this file checks
the directions and mechanisms behind them, on the same (memoised) runs."""

from __future__ import annotations

import numpy as np

from simulator.reproduce import get
from simulator.reproduce_measure import fastgen_run, sarathi_capacity, serve

NOMINAL = get("sarathi_mistral7b_vs_vllm").params()


def test_sarathi_serves_gain_shrinks_under_a_relaxed_tbt_slo():
    # Paper: the gain is smaller under the relaxed SLO (Sarathi's budget grows to 2048, vLLM's
    # stalls are tolerated); it must stay a gain
    relaxed = sarathi_capacity("sarathi", NOMINAL, 0.5, 2048) / sarathi_capacity("vllm", NOMINAL, 0.5)
    strict = sarathi_capacity("sarathi", NOMINAL) / sarathi_capacity("vllm", NOMINAL)
    assert 1.0 <= relaxed < strict, (relaxed, strict)


def test_vllm_prefill_iterations_are_the_stalls_that_fastgen_removes():
    # SplitFuse caps an iteration at its token budget, so no inter-token gap can hold a whole
    # ~2600-token prefill; vLLM's prefill-first iterations do, and its worst gap is longer
    p = get("fastgen_tail_latency").params()
    fg, vl = fastgen_run("fastgen", p), fastgen_run("vllm", p)
    assert np.max(vl.itl_s) > np.max(fg.itl_s)
    assert vl.summary["e2e_s"]["mean"] >= fg.summary["e2e_s"]["mean"]  # paper: 2x lower mean latency


def test_paged_kv_admits_more_than_max_len_reservations_at_saturation():
    sets = ("workload.output_tokens.sigma=0.9058",)
    rate = {k: serve("iteration_vs_request_level.yaml", (f"policies.scheduler={{kind: {k}}}", *sets)).summary
            for k in ("static", "orca", "vllm")}
    assert rate["vllm"]["throughput_rps"] >= rate["orca"]["throughput_rps"] > rate["static"]["throughput_rps"]
    assert rate["vllm"]["batch_size_mean"] > rate["orca"]["batch_size_mean"]
