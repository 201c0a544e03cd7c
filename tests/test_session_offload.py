"""Idle multi-turn sessions' KV saved to host DRAM between turns (``prefix`` with
``offload_idle_sessions``): under GPU KV pressure a session's next turn waits for a PCIe copy
instead of recomputing its context, host bytes are conserved (offloaded = restored + dropped +
still resident), host DRAM never holds more than its capacity, and the steady-decode fast path
still gives the same run."""

from __future__ import annotations

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from test_serving_invariants import KV_PER_TOKEN, assert_same_run, check_invariants, run, scenario

from simulator.config.loader import resolve_component
from simulator.core import registry as reg
from simulator.serving.kv_offload import SessionOffload


def multi_turn(offload: bool | None, kv_tokens: int = 4096) -> dict:
    """Llama-2-7B on an L4 with 4096 tokens of KV; 12 sessions (0.2/s) of 3 turns, a 1500-token
    system prompt, 20-60 user and 10-30 output tokens per turn, 10 s think time: two contexts fit
    on the GPU, so an idle session's blocks are usually evicted before its next turn."""
    sc = scenario(scheduler={"kind": "vllm"}, kv_tokens=kv_tokens, seed=5)
    sc["workload"] = {"kind": "multi_turn", "num_sessions": 12,
                      "session_arrival": {"process": "poisson", "rate": "0.2/s"},
                      "turns": {"dist": "fixed", "value": 3},
                      "system_tokens": {"dist": "fixed", "value": 1500},
                      "user_tokens": {"dist": "uniform", "low": 20, "high": 60},
                      "output_tokens": {"dist": "uniform", "low": 10, "high": 30},
                      "think_time": "10s", "response_allowance": "1s", "max_context": 2000}
    sc["policies"]["kv_cache"] = {"kind": "prefix"}
    if offload is not None:
        sc["policies"]["kv_cache"]["offload_idle_sessions"] = offload
    return sc


def ttfts(result, sim):
    req = result.requests
    ttft = (req["first_token_s"] - req["arrival_s"])[np.argsort(req["rid"])]
    later = np.asarray(sim.table.prefix_tokens) > 0  # turns 2 and 3 (their context is a prefix)
    return ttft[~later], ttft[later]


def host():
    hc = resolve_component({"kind": "host", "preset": "DGX-A100-host"}, reg.HARDWARE, "host")
    return hc.cls(hc.config)


def pcie_rate() -> float:
    return host().config.copy_rate()


def test_next_turn_waits_for_a_pcie_copy_instead_of_recomputing_its_context():
    base, base_sim = run(multi_turn(False))
    off, off_sim = run(multi_turn(True))
    check_invariants(off, off_sim)
    first_base, next_base = ttfts(base, base_sim)
    _, next_off = ttfts(off, off_sim)
    kv = off.summary["kv_cache"]
    assert kv["session_restores"] >= 8  # most second/third turns found their blocks evicted
    # Recompute vs copy, per context token: the first turns' TTFT is (almost only) the prefill of
    # ~1540 tokens, 0.21 s here = ~7.3k tokens/s; PCIe Gen4 x16 at 80 % moves 25.2 GB/s = 48k
    # tokens/s of 0.5 MiB each, so a restore costs ~0.15 of a recompute. The next turns' mean TTFT
    # can therefore drop at most to ~0.15 of the baseline (every turn restored, new tokens
    # negligible) and should drop clearly (< 0.8): turns whose blocks stayed on the GPU and the
    # new user tokens cost the same in both runs. Measured 0.090 s vs 0.171 s = 0.53.
    recompute_tok_s = (1500 + 40) / float(np.mean(first_base))
    copy_tok_s = pcie_rate() / KV_PER_TOKEN
    floor = recompute_tok_s / copy_tok_s
    ratio = float(np.mean(next_off) / np.mean(next_base))
    assert floor <= ratio <= 0.8
    # the replica's stall is the copies' time at most (a prefetch started on arrival may overlap
    # the queueing), and not zero (an idle replica admits at once)
    assert 0 < kv["stall_s"] <= kv["bytes_restored"] / pcie_rate() + kv["session_restores"] * 20e-6
    # conservation of host bytes
    assert kv["bytes_offloaded"] == pytest.approx(
        kv["bytes_restored"] + kv["bytes_dropped"] + kv["host_resident_bytes"], rel=1e-12)
    assert kv["bytes_to_device"] == kv["bytes_restored"]


def test_offload_off_is_the_default_and_changes_nothing():
    a, _ = run(multi_turn(None))
    b, _ = run(multi_turn(False))
    assert_same_run(a, b)
    assert "session_saves" not in a.summary["kv_cache"]


def test_fast_path_is_unchanged_with_session_offload():
    fast, fast_sim = run(multi_turn(True, kv_tokens=3072), steady=True)
    slow, slow_sim = run(multi_turn(True, kv_tokens=3072), steady=False)
    check_invariants(fast, fast_sim)
    check_invariants(slow, slow_sim)
    assert_same_run(fast, slow)
    assert fast.summary["kv_cache"]["session_restores"] > 0


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(0, 4), st.integers(0, 40), st.integers(0, 40)),
                    max_size=40),
       capacity=st.sampled_from([0.0, 30.0, 100.0, 1e6]))
def test_host_bytes_are_conserved_and_never_exceed_the_capacity(ops, capacity):
    env = simpy.Environment()
    off = SessionOffload(env, 1.0, host(), capacity, None)
    for save, session, blocks, have in ops:
        if save:
            off.save(session, blocks, float(blocks))
        else:
            got = off.take(session, have, blocks)
            if got is not None:
                assert got[1] > have
        assert 0 <= off.host_used <= capacity
        assert off.offloaded == pytest.approx(off.restored + off.dropped + off.host_used)
    env.run()
