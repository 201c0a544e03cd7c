"""Speculative decoding: the closed form of tokens per step, exact limits, KV rollback, bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.speculation import AcceptanceConfig, SpeculationConfig, expected_tokens
from policies.speculation.draft_heads import DraftHeadsConfig, DraftHeadsSpeculation
from policies.speculation.ngram import NgramSpeculation
from simulator.config.loader import load_scenario
from simulator.core.errors import PolicyError
from simulator.runner import Simulation, run_scenario
from simulator.serving.speculation import Speculator

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "policy_speculation.yaml"
SMALL = ["workload.num_requests=40"]
NGRAM = ["policies.speculation.kind=ngram", "policies.speculation.num_speculative_tokens=4",
         "policies.speculation.acceptance.alpha=0.8", "policies.speculation.length.kind=fixed"]


def closed_form(alpha: float, k: int) -> float:
    return (1 - alpha ** (k + 1)) / (1 - alpha) if alpha < 1 else k + 1.0


@given(st.floats(0.0, 0.999), st.integers(0, 16))
def test_expected_tokens_per_step_is_the_geometric_closed_form(alpha, k):
    rates = AcceptanceConfig(alpha=alpha).rate_array(k)
    assert expected_tokens(rates) == pytest.approx(closed_form(alpha, k), rel=1e-12)


@settings(max_examples=12, deadline=None)
@given(st.sampled_from([0.0, 0.3, 0.6, 0.8, 0.95, 1.0]), st.integers(1, 8))
def test_sampled_tokens_per_step_match_the_closed_form(alpha, k):
    cfg = SpeculationConfig(num_speculative_tokens=k, acceptance={"alpha": alpha})
    spec = Speculator(NgramSpeculation(cfg), "ngram", None, "fixed", None, np.random.default_rng(1))
    n = 20_000
    tokens = np.array([spec.sample_accepted(0, k) + 1 for _ in range(n)], dtype=np.float64)
    mean, sd = closed_form(alpha, k), tokens.std()
    assert abs(tokens.mean() - mean) <= 5 * sd / np.sqrt(n) + 1e-12  # 5 standard errors


def test_a_tree_of_top_k_candidates_raises_each_positions_acceptance():
    cfg = DraftHeadsConfig(num_speculative_tokens=3, acceptance={"rates": [0.6, 0.5, 0.4]}, top_k=2, tree_tokens=6)
    m = DraftHeadsSpeculation(cfg)
    assert m.position_rates(3) == pytest.approx([1 - 0.4**2, 1 - 0.5**2, 1 - 0.6**2])
    assert m.verify_tokens(3) == 7 and m.verify_tokens(0) == 1


def _run(overrides):
    return run_scenario(load_scenario(SCENARIO, SMALL + overrides))


def test_full_acceptance_emits_k_plus_one_tokens_per_step_and_returns_every_block():
    sim = Simulation(load_scenario(SCENARIO, SMALL + NGRAM + ["policies.speculation.acceptance.alpha=1.0"]))
    res = sim.run()
    kv = res.summary["kv_cache"]
    k = 4
    # every step a request takes part in emits k+1 tokens, or what is left of its output
    for r in sim.cluster.requests:
        steps = sum(b - a for _, a, b in r.runs)
        assert steps == 1 + -(-(r.max_new_tokens - 1) // (k + 1))  # prefill step, then speculative steps
    assert kv["spec_accepted_tokens"] == kv["spec_proposed_tokens"]
    assert all(rep.kvm.used == 0 for rep in sim.cluster.replicas)


def test_zero_acceptance_emits_one_token_per_step_and_rolls_back_every_proposal():
    sim = Simulation(load_scenario(SCENARIO, SMALL + NGRAM + ["policies.speculation.acceptance.alpha=0.0"]))
    res = sim.run()
    kv = res.summary["kv_cache"]
    assert kv["spec_accepted_tokens"] == 0 and kv["spec_emitted_tokens"] == kv["spec_rows"]
    assert kv["speculative_rolled_back_tokens"] == kv["spec_proposed_tokens"]
    for r in sim.cluster.requests:
        assert sum(b - a for _, a, b in r.runs) == r.max_new_tokens
    assert all(rep.kvm.used == 0 for rep in sim.cluster.replicas)


def test_measured_tokens_per_step_in_a_run_match_the_closed_form():
    res = _run(NGRAM + ["workload.num_requests=120"])
    kv = res.summary["kv_cache"]
    # rows capped by a request's last tokens emit fewer; the rest follow the closed form
    assert kv["spec_tokens_per_step"] == pytest.approx(closed_form(0.8, 4), rel=0.05)


def test_a_draft_model_takes_memory_from_the_kv_cache_and_time_from_each_step():
    plain = Simulation(load_scenario(SCENARIO, SMALL + NGRAM))
    draft = Simulation(load_scenario(SCENARIO, SMALL))
    assert draft.cluster.replicas[0].kvm.total_blocks < plain.cluster.replicas[0].kvm.total_blocks
    res = draft.run()
    assert res.summary["kv_cache"]["spec_draft_s"] > 0


def test_speculation_shortens_decode_at_low_load_and_smartspec_backs_off_at_high_load():
    base = ["policies.speculation.length.kind=fixed", "policies.speculation.length.k=0"]
    off = _run(base).summary["tpot_s"]["p50"]
    on = _run([]).summary["tpot_s"]["p50"]
    assert on < off
    busy = ["workload.arrival.rate=40/s", "workload.num_requests=150"]
    fixed = _run(busy + ["policies.speculation.length.kind=fixed"]).summary["e2e_s"]["mean"]
    smart = _run(busy).summary["e2e_s"]["mean"]
    assert smart <= fixed


class _Negative:
    def __init__(self, config=None):
        pass

    def choose(self, view):
        return -1


def test_a_negative_speculation_length_is_a_policy_error_naming_the_policy():
    kind = f"{__name__}:_Negative"
    sim = Simulation(load_scenario(SCENARIO, SMALL + [f"policies.speculation.length.kind={kind}"]))
    with pytest.raises(PolicyError, match=f"{kind}.*outside 0..4"):
        sim.run()


@pytest.mark.parametrize("override, words", [
    ("policies.speculation.acceptance.alpha=1.5", "acceptance.alpha"),
    ("policies.speculation.num_speculative_tokens=-1", "num_speculative_tokens"),
    ("policies.speculation.length.kind=nope", "speculation length policy kind 'nope'"),
])
def test_bad_speculation_input_is_one_line_and_exit_2(override, words, tmp_path):
    p = subprocess.run([sys.executable, "-m", "simulator.cli", "run", str(SCENARIO), "--set", override,
                        "-o", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2
    err = (p.stderr + p.stdout).strip()
    assert words in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_speculation_of_zero_tokens_reproduces_the_fast_path_run_exactly():
    # speculation turns decode stretches off; with k = 0 every step is an ordinary decode step, so the
    # per-iteration run must equal the fast-path run request by request
    quick = ROOT / "scenarios" / "quickstart.yaml"
    base = ["workload.num_requests=150"]
    off = Simulation(load_scenario(quick, base))
    on = Simulation(load_scenario(quick, base + ["policies.speculation={kind: ngram, num_speculative_tokens: 4, "
                                                 "acceptance: {alpha: 0.5}, length: {kind: fixed, k: 0}}"]))
    off.run(), on.run()
    assert not on.cluster.replicas[0].steady and off.cluster.replicas[0].steady
    a = [(r.rid, r.first_token_ps, r.finish_ps) for r in off.cluster.requests]
    b = [(r.rid, r.first_token_ps, r.finish_ps) for r in on.cluster.requests]
    assert a == b


def test_draft_heads_cost_more_per_step_than_free_lookup_and_a_wider_tree_accepts_more():
    heads = ["policies.speculation.kind=draft_heads", "policies.speculation.num_speculative_tokens=4",
             "policies.speculation.acceptance.alpha=0.6", "policies.speculation.length.kind=fixed"]
    lookup = NGRAM + ["policies.speculation.acceptance.alpha=0.6"]
    medusa = _run(heads).summary
    eagle = _run(heads + ["policies.speculation.style=eagle"]).summary
    wide = _run(heads + ["policies.speculation.top_k=3"]).summary
    free = _run(lookup).summary
    # same acceptance with one candidate per position: Medusa's extra LM-head rows only add time
    assert medusa["kv_cache"]["spec_tokens_per_step"] == pytest.approx(free["kv_cache"]["spec_tokens_per_step"],
                                                                       rel=0.05)
    assert medusa["tpot_s"]["p50"] > free["tpot_s"]["p50"]
    assert eagle["kv_cache"]["spec_draft_s"] > 0 == free["kv_cache"]["spec_draft_s"]
    assert wide["kv_cache"]["spec_tokens_per_step"] > medusa["kv_cache"]["spec_tokens_per_step"]


def _trace_with_alpha(tmp_path, alphas):
    lines = ["arrived_at,num_prefill_tokens,num_decode_tokens,alpha"]
    lines += [f"{i * 0.5},{200 + 10 * i},{41 + i},{a}" for i, a in enumerate(alphas)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    return ["workload={kind: trace, path: " + str(tmp_path / "t.csv") + ", format: splitwise}",
            *NGRAM[:2], "policies.speculation.acceptance={column: alpha}", "policies.speculation.length.kind=fixed"]


def test_acceptance_from_a_trace_column_is_per_request(tmp_path):
    alphas = [1.0, 0.0] * 6
    sim = Simulation(load_scenario(SCENARIO, _trace_with_alpha(tmp_path, alphas)))
    sim.run()
    for r in sim.cluster.requests:
        steps = sum(b - a for _, a, b in r.runs)
        if alphas[r.rid] == 1.0:
            assert steps == 1 + -(-(r.max_new_tokens - 1) // 5)
        else:
            assert steps == r.max_new_tokens


def test_an_acceptance_column_value_outside_0_1_is_one_line_and_exit_2(tmp_path):
    sets = _trace_with_alpha(tmp_path, [0.5, 1.5])
    args = [x for s in sets for x in ("--set", s)]
    p = subprocess.run([sys.executable, "-m", "simulator.cli", "run", str(SCENARIO), *args, "-o", str(tmp_path / "o")],
                       capture_output=True, text=True, cwd=ROOT)
    err = (p.stderr + p.stdout).strip()
    assert p.returncode == 2 and "alpha=1.5 outside [0, 1]" in err and len(err.splitlines()) == 1
