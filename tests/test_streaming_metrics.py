"""Streaming (bounded-memory) metrics against the exact metrics on the same runs, and the
router's per-arrival cost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import simulator.metrics_stream as ms
from simulator.config.loader import load_scenario
from simulator.outputs import write_results
from simulator.runner import Simulation
from simulator.serving.cluster import LazyLoads
from simulator.sketch import RELATIVE_ERROR

ROOT = Path(__file__).resolve().parents[1]
LATENCIES = ("ttft_s", "tpot_s", "itl_s", "e2e_s", "queue_s")


def scenario(metrics: str, n: int = 1500, router: str = "least_outstanding", **run) -> dict:
    sc = yaml.safe_load((ROOT / "scenarios" / "multi_replica.yaml").read_text())
    sc["workload"]["num_requests"] = n
    sc["cluster"]["router"] = {"kind": router}
    sc["run"] = {"warmup_requests": 50, "cooldown_requests": 30, "metrics": metrics, **run}
    return sc


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same run with exact and with streaming metrics (small chunks and sample, so that the
    stream flushes many times and samples), each written to a results folder."""
    mp = pytest.MonkeyPatch()
    mp.setattr(ms, "CHUNK", 97)
    mp.setattr(ms, "SAMPLE_REQUESTS", 300)
    mp.setattr(ms, "SAMPLE_SEGMENTS", 500)
    out = {}
    sims = {}
    try:
        for mode in ("exact", "streaming"):
            resolved = load_scenario(scenario(mode))
            sim = Simulation(resolved)
            res = sim.run()
            d = tmp_path_factory.mktemp(mode)
            write_results(res, resolved.to_yaml(), d, report=False, chrome_trace=False)
            out[mode] = (res, d)
            sims[mode] = sim
    finally:
        mp.undo()
    return out, sims


def test_counts_sums_and_means_are_exact(pair):
    (exact, _), (stream, _) = pair[0]["exact"], pair[0]["streaming"]
    a, b = exact.summary, stream.summary
    for k in ("requests_total", "requests_arrived", "requests_finished", "requests_rejected", "requests_unfinished",
              "requests_measured", "preemptions", "iterations", "batch_segments", "gpus", "slo_attainment",
              "slo_met", "sim_time_s", "measured_window_s", "kv_utilization_peak"):
        assert a[k] == b[k], k
    for k in ("throughput_rps", "output_tokens_per_s", "goodput_rps", "batch_size_mean", "queue_length_mean",
              "kv_utilization_mean", "kv_fragmentation_mean", "gpu_busy_fraction", "mfu", "energy_busy_j",
              "cost_usd", "energy_j", "energy_dynamic_j", "energy_idle_j", "energy_per_output_token_j",
              "power_mean_w", "power_peak_w_per_device"):
        if k in a or k in b:
            assert b[k] == pytest.approx(a[k], rel=1e-9), k
    for k in ("L", "lambda_W", "lambda", "W"):
        assert b["littles_law"][k] == pytest.approx(a["littles_law"][k], rel=1e-9), k
    for k in LATENCIES:
        assert b[k]["count"] == a[k]["count"] and b[k]["max"] == a[k]["max"], k
        assert b[k]["mean"] == pytest.approx(a[k]["mean"], rel=1e-9), k


def test_percentiles_within_the_stated_error(pair):
    a, b = pair[0]["exact"][0].summary, pair[0]["streaming"][0].summary
    for k in LATENCIES:
        for q in ("p50", "p90", "p99"):
            assert abs(b[k][q] - a[k][q]) <= RELATIVE_ERROR * a[k][q], (k, q, a[k][q], b[k][q])
    assert b["metrics"]["percentile_relative_error"] == RELATIVE_ERROR
    assert "metrics" not in a  # exact mode: summary.json unchanged


def test_written_tables_hold_every_row(pair):
    (_, da), (_, db) = pair[0]["exact"], pair[0]["streaming"]
    for name in ("events.csv", "batches.csv"):  # flushed in the order they were recorded
        assert (da / name).read_bytes() == (db / name).read_bytes(), name
    ea, eb = ((d / "requests.csv").read_text().splitlines() for d in (da, db))
    assert ea[0] == eb[0] and sorted(ea[1:]) == sorted(eb[1:])  # rows in finishing order


def test_memory_holds_no_finished_request_and_a_bounded_sample(pair):
    sim = pair[1]["streaming"]
    res = pair[0]["streaming"][0]
    assert sim.cluster.requests == [] and sim.cluster.live == {}
    assert len(sim.recorder.ev_t) == 0 and len(sim.recorder.batch["replica"]) == 0
    stride = res.summary["metrics"]["sample_every_kth_request"]
    assert stride == 5  # ceil(1500 / 300)
    assert np.all(res.requests["rid"] % stride == 0) and res.requests["rid"].size == 300
    assert res.batches["replica"].size <= 500
    exact = pair[0]["exact"][0]
    keep = np.isin(exact.requests["rid"], res.requests["rid"])
    for col in ("ttft_s", "e2e_s", "finish_s", "status", "measured"):  # the sample's rows are the exact rows
        np.testing.assert_array_equal(res.requests[col], exact.requests[col][keep], err_msg=col)


def test_unfinished_requests_at_max_time_count_the_same():
    sums = {}
    for mode in ("exact", "streaming"):
        sums[mode] = Simulation(load_scenario(scenario(mode, n=600, max_time="20s"))).run().summary
    a, b = sums["exact"], sums["streaming"]
    assert a["requests_unfinished"] > 0
    for k in ("requests_arrived", "requests_finished", "requests_unfinished", "slo_attainment"):
        assert a[k] == b[k], k
    assert b["littles_law"]["L"] == pytest.approx(a["littles_law"]["L"], rel=1e-9)


def test_auto_mode_switches_on_request_count():
    assert not ms.streaming("auto", ms.STREAM_THRESHOLD) and ms.streaming("auto", ms.STREAM_THRESHOLD + 1)
    assert ms.streaming("streaming", 10) and not ms.streaming("exact", 10**9)


def test_bad_metrics_mode_is_one_line_exit_2(tmp_path):
    from typer.testing import CliRunner

    from simulator.cli import app

    res = CliRunner().invoke(app, ["run", str(ROOT / "scenarios" / "quickstart.yaml"), "--set", "run.metrics=fast",
                                   "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "run.metrics" in res.output and "Traceback" not in res.output


# -- routing: the lazy view picks what the full scan picks, and round robin reads no load ----------
@pytest.mark.parametrize("router", ["least_outstanding", "least_kv", "round_robin"])
def test_router_on_the_lazy_view_picks_the_replica_of_the_full_scan(router):
    sim = Simulation(load_scenario(scenario("exact", n=400, router=router)))
    real = sim.cluster.router
    from simulator.core.contracts import ClusterView

    seen = {"calls": 0, "loads": 0}

    class Check:
        def route(self, req, view):
            eager = ClusterView(view.now_ps, tuple(view.replicas[i] for i in range(len(view.replicas))))
            lazy = ClusterView(view.now_ps, LazyLoads(sim.cluster.entry))
            # a stateful router (round robin) is asked once: compare on a copy of its state
            state = dict(vars(real))
            pick_eager = real.route(req, eager)
            vars(real).update(state)
            pick = real.route(req, lazy)
            assert pick == pick_eager
            seen["calls"] += 1
            seen["loads"] += lazy.replicas.computed()
            return pick

    sim.cluster.router = Check()
    sim.run()
    assert seen["calls"] == 400
    if router == "round_robin":
        assert seen["loads"] == 0  # O(1) per arrival whatever the replica count
    else:
        assert seen["loads"] == 4 * 400  # each replica's load computed once per arrival


@pytest.mark.parametrize("name,overrides", [
    ("disaggregated.yaml", ["workload.num_requests=500"]),
    ("closed_loop.yaml", []),
])
def test_disaggregated_and_closed_loop_runs_agree(name, overrides, monkeypatch):
    monkeypatch.setattr(ms, "CHUNK", 64)
    sums = {}
    for mode in ("exact", "streaming"):
        resolved = load_scenario(ROOT / "scenarios" / name, [*overrides, f"run.metrics={mode}"])
        sums[mode] = Simulation(resolved).run().summary
    a, b = sums["exact"], sums["streaming"]
    for k in ("requests_arrived", "requests_finished", "requests_rejected", "requests_measured", "iterations",
              "slo_attainment"):
        assert a[k] == b[k], k
    for k in LATENCIES:
        assert b[k]["count"] == a[k]["count"], k
        for q in ("p50", "p90", "p99"):
            assert abs(b[k][q] - a[k][q]) <= RELATIVE_ERROR * a[k][q], (k, q)
    if "kv_transfer" in a:
        assert a["kv_transfer"] == b["kv_transfer"]


def test_weighted_gaps_are_the_gaps(pair):
    """Each distinct iteration gap with its multiplicity is the multiset of every request's gaps."""
    sim = pair[1]["exact"]
    reqs = sorted(sim.cluster.requests, key=lambda r: r.rid)
    measured = np.ones(len(reqs), dtype=bool)
    measured[::3] = False
    gaps = ms.run_itl(reqs, sim.recorder.iter_end_ps, measured)
    values, weights = ms.run_itl_weighted(reqs, sim.recorder.iter_end_ps, measured)
    assert weights.sum() == gaps.size
    from simulator.metrics import inter_token_gaps

    rec = sim.recorder
    rids = {r.rid for r, m in zip(reqs, measured) if m}
    exact = inter_token_gaps(reqs, [rec.iteration_ends(i) for i in range(len(rec.iter_end_ps))], rids)
    np.testing.assert_array_equal(gaps, exact)
    np.testing.assert_array_equal(np.sort(np.repeat(values, weights)), np.sort(gaps))
