"""Non-prefix KV chunk reuse (CacheBlend-style): the tokens computed, the serving invariants, the gain."""

from __future__ import annotations

import pytest
from test_serving_invariants import check_invariants, run, scenario

from policies.caching.cacheblend import CacheBlendConfig, CacheBlendPolicy
from simulator.core.request import Request
from simulator.serving.chunk_reuse import ChunkReuseKvCache


def test_waiting_request_shows_the_reused_tokens_not_recomputed():
    pol = CacheBlendPolicy(CacheBlendConfig(reuse_fraction=0.8, recompute_fraction=0.15, min_prompt_tokens=100))
    kv = ChunkReuseKvCache(1000, 16, pol)
    long, short = Request(0, 0, 6000, 10), Request(1, 0, 50, 10)
    assert kv.refresh_hits([long, short]) == int(6000 * 0.8 * 0.85)
    assert long.num_computed == 4080 and short.num_computed == 0
    assert long.prefill_remaining == 6000 - 4080  # own tokens + the recomputed 15 % of the chunks
    assert kv.refresh_hits([long]) == 0  # counted once
    # the blocks of every prompt token are taken as the prefill grows
    assert kv.need(long, long.prefill_remaining) == -(-6000 // 16)


def _sc(policy: dict | None, n: int = 12):
    sc = scenario(scheduler={"kind": "vllm_chunked", "max_num_batched_tokens": 2048}, n=n, prompt=(1500, 2000),
                  output=(4, 16), kv_tokens=20_000, arrival={"process": "poisson", "rate": "0.5/s"})
    if policy is not None:
        sc["policies"]["kv_cache"] = policy
    return sc


def test_reuse_keeps_serving_invariants_and_cuts_ttft_by_at_most_the_token_ratio():
    blend = {"kind": "cacheblend", "reuse_fraction": 0.8, "recompute_fraction": 0.15}
    res, sim = run(_sc(blend))
    check_invariants(res, sim)
    base, _ = run(_sc(None))
    gain = base.summary["ttft_s"]["mean"] / res.summary["ttft_s"]["mean"]
    computed = 1.0 - 0.8 * 0.85
    # fewer tokens computed, but each recomputed token still attends to the whole context
    assert 1.5 < gain <= 1.0 / computed * 1.05
    st = sim.cluster.replicas[0].kv.stats()
    assert st["policy"] == "cacheblend" and st["reused_tokens"] > 0


def test_recomputing_everything_equals_no_reuse_in_tokens():
    pol = CacheBlendPolicy(CacheBlendConfig(reuse_fraction=1.0, recompute_fraction=1.0))
    assert pol.skipped_tokens(4096) == 0


@pytest.mark.parametrize("bad", [{"reuse_fraction": 0.0}, {"reuse_fraction": 1.2}, {"recompute_fraction": 0.0}])
def test_fractions_outside_unit_interval_are_refused(bad):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        CacheBlendConfig(**bad)


@pytest.mark.parametrize("model", [
    {"preset": "Llama-2-7B", "attention": {"layer_pattern": "WF*16", "window_tokens": 256, "sink_tokens": 4}},
    {"preset": "Llama-2-7B", "attention": {"layer_pattern": "SSSF*8"},
     "linear": {"kind": "mamba2", "num_heads": 64, "head_dim": 64, "state_dim": 128, "num_groups": 1}},
    {"preset": "Llama-2-7B", "attention": {"streaming_heads": 0.5, "head_window_tokens": 128, "head_sink_tokens": 4,
                                           "kv_budget": 0.5}},
], ids=["window", "hybrid", "heads_budget"])
def test_variant_models_keep_serving_invariants_and_the_fast_path_changes_nothing(model):
    from test_serving_invariants import assert_same_run

    sc = _sc(None, n=20)
    sc["model"] = model
    sc["policies"]["scheduler"]["max_num_seqs"] = 16  # the windows' K/V is reserved per batch slot
    fast, fast_sim = run(sc, steady=True)
    slow, slow_sim = run(sc, steady=False)
    check_invariants(fast, fast_sim)
    check_invariants(slow, slow_sim)
    assert_same_run(fast, slow)
