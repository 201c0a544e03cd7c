"""The timing backends' shape memo shared across runs in one process (hw_models/timing/base.py):
it must change no result, and must never hand one deployment another's seconds."""

from __future__ import annotations

from hw_models.link import Link, LinkConfig
from hw_models.node_network import NodeNetworkLink
from hw_models.timing import base
from simulator.config.loader import load_scenario
from simulator.runner import Simulation, run_scenario
from simulator.sweep_point import flatten

SMALL = ["workload.num_requests=150", "run.warmup_requests=10"]


def _summary(*overrides: str) -> dict:
    out = flatten(run_scenario(load_scenario("scenarios/quickstart.yaml", [*SMALL, *overrides])).summary)
    return {k: v for k, v in out.items() if "wall" not in k}


def test_shared_memo_gives_identical_metrics_and_no_cross_talk():
    base.clear_shared_memos()
    h100_fresh = _summary("workload.arrival.rate=8/s")
    base.clear_shared_memos()
    a100_fresh = _summary("hardware.device.preset=A100-80GB", "workload.arrival.rate=8/s")
    # now interleaved on warm memos: H100 at another rate, then A100 and H100 again
    _summary("workload.arrival.rate=16/s")
    a100_warm = _summary("hardware.device.preset=A100-80GB", "workload.arrival.rate=8/s")
    h100_warm = _summary("workload.arrival.rate=8/s")
    assert h100_warm == h100_fresh
    assert a100_warm == a100_fresh
    assert a100_fresh["ttft_s.p50"] != h100_fresh["ttft_s.p50"]  # the two deployments do differ


def test_equal_deployments_share_one_memo_and_others_do_not():
    base.clear_shared_memos()
    sc = load_scenario("scenarios/quickstart.yaml", SMALL)
    first = Simulation(sc).backend
    second = Simulation(load_scenario("scenarios/quickstart.yaml", SMALL)).backend
    assert second is not first and second._memo is first._memo
    other = Simulation(load_scenario("scenarios/quickstart.yaml", [*SMALL, "hardware.device.preset=H200"])).backend
    assert other._memo is not first._memo
    graphs_sc = load_scenario("scenarios/quickstart.yaml", [*SMALL, "hardware.timing.cuda_graphs=true"])
    graphs = Simulation(graphs_sc).backend
    assert graphs._memo is not first._memo


def test_link_keys():
    nv = LinkConfig(name="a", technology="nvlink", bw_bytes_per_s="450GB/s")
    ib = LinkConfig(name="b", technology="infiniband", bw_bytes_per_s="50GB/s")
    assert base.link_memo_key(Link(nv)) == base.link_memo_key(Link(nv.model_copy()))
    assert base.link_memo_key(Link(nv)) != base.link_memo_key(Link(ib))
    k8 = base.link_memo_key(NodeNetworkLink(Link(nv), Link(ib), 8))
    assert k8 != base.link_memo_key(NodeNetworkLink(Link(nv), Link(ib), 4))
    assert k8 != base.link_memo_key(Link(nv))

    class Odd:  # a link the memo cannot key on: its backend keeps a memo of its own
        config = nv

    sc = load_scenario("scenarios/quickstart.yaml", SMALL)
    cls, cfg, dev = sc.timing.cls, sc.timing.config, sc.pools[0].device.config
    assert cls(cfg, dev, Odd())._memo is not cls(cfg, dev, Odd())._memo
    assert cls(cfg, dev, Link(nv))._memo is cls(cfg, dev, Link(nv))._memo


def test_bounded():
    base.clear_shared_memos()
    sc = load_scenario("scenarios/quickstart.yaml", SMALL)
    cls, cfg = sc.timing.cls, sc.timing.config
    dev = sc.pools[0].device.config
    for i in range(base.SHARED_MEMOS + 5):
        cls(cfg, dev.model_copy(update={"launch_overhead_s": 1e-6 * (i + 1)}), None)
    assert len(base._shared) == base.SHARED_MEMOS
    keep = base.SHARED_MEMO_ENTRIES
    try:  # a budget of shapes in all: the least recently built memo goes first
        base.SHARED_MEMO_ENTRIES = 10
        first = cls(cfg, dev, None)._memo
        first.update({i: 0.0 for i in range(8)})
        second = cls(cfg, dev.model_copy(update={"launch_overhead_s": 1.0}), None)._memo
        second.update({i: 0.0 for i in range(8)})
        cls(cfg, dev.model_copy(update={"launch_overhead_s": 2.0}), None)
        assert all(m is not first for m in base._shared.values())
        assert any(m is second for m in base._shared.values())
    finally:
        base.SHARED_MEMO_ENTRIES = keep
