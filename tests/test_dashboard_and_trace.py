"""The HTML report and the Chrome/Perfetto trace, built from a hand-made RunResult."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest
from plotly.offline import get_plotlyjs

from simulator import dashboard
from simulator.dashboard import FIGURE_TITLES, busy_bars, ecdf, write_report
from simulator.html_assets import plotly_js_name
from simulator.results import FINISHED, REJECTED, UNFINISHED, RunResult
from simulator.trace_export import write_chrome_trace


def make_result(n_requests: int = 50, n_batches: int = 100, n_replicas: int = 2, seed: int = 0,
                all_unfinished: bool = False) -> RunResult:
    rng = np.random.default_rng(seed)
    n = n_requests
    rid = np.arange(n, dtype=np.int64)
    arrival = np.sort(rng.uniform(0.0, 10.0, n))
    prompt = rng.integers(16, 2048, n)
    output = rng.integers(8, 512, n)
    status = np.full(n, FINISHED, dtype=np.int64)
    status[::10] = REJECTED
    status[7::25] = UNFINISHED
    if all_unfinished:
        status[:] = UNFINISHED
    replica = rng.integers(0, n_replicas, n).astype(np.int64)
    replica[status == REJECTED] = -1
    queue = rng.exponential(0.05, n)
    first_sched = arrival + queue
    ttft = queue + rng.uniform(0.02, 0.3, n)
    first_token = arrival + ttft
    tpot = rng.uniform(0.01, 0.05, n)
    finish = first_token + tpot * (output - 1)
    done = status == FINISHED
    started = status != REJECTED
    nan = np.full(n, np.nan)
    generated = np.where(done, output, np.where(started, output // 2, 0))
    req = {
        "rid": rid, "replica": replica, "arrival_s": arrival,
        "first_scheduled_s": np.where(started, first_sched, nan),
        "first_token_s": np.where(started, first_token, nan),
        "finish_s": np.where(done, finish, nan),
        "prompt_tokens": prompt, "output_tokens": output, "generated_tokens": generated,
        "preemptions": np.zeros(n, dtype=np.int64), "status": status,
        "measured": np.arange(n) >= 3,
        "ttft_s": np.where(done, ttft, nan), "tpot_s": np.where(done, tpot, nan),
        "e2e_s": np.where(done, finish - arrival, nan), "queue_s": np.where(started, queue, nan),
        "slo_met": done & (ttft < 0.25),
    }
    b_rep = np.arange(n_batches, dtype=np.int64) % n_replicas
    per = np.bincount(b_rep, minlength=n_replicas)
    start = np.empty(n_batches)
    end = np.empty(n_batches)
    for r in range(n_replicas):
        dur = rng.uniform(0.01, 0.2, per[r])
        gap = np.where(rng.random(per[r]) < 0.3, rng.uniform(0.0, 0.1, per[r]), 0.0)
        s = np.cumsum(gap + dur) - dur
        start[b_rep == r] = s
        end[b_rep == r] = s + dur
    prefill = np.where(rng.random(n_batches) < 0.4, rng.integers(64, 4096, n_batches), 0)
    kv_total = np.full(n_batches, 4096, dtype=np.int64)
    batches = {
        "replica": b_rep, "start_s": start, "end_s": end, "iterations": rng.integers(1, 16, n_batches),
        "prefill_tokens": prefill, "decode_rows": rng.integers(0, 64, n_batches),
        "kv_blocks_used": rng.integers(0, 4096, n_batches), "kv_blocks_total": kv_total,
        "waiting": rng.integers(0, 20, n_batches), "running": rng.integers(1, 64, n_batches),
        "flops": rng.uniform(1e12, 1e14, n_batches),
    }
    # a preemption (4), a rejection (6) and an unknown kind (42) besides lifecycle events
    kinds = np.array([0, 1, 2, 3, 4, 5, 6, 42], dtype=np.int64)
    events = {"t_s": np.linspace(0.0, 5.0, 8), "kind": kinds, "replica": np.array([0, 0, 0, 0, 0, 0, -1, 1]),
              "request": np.array([1, 1, 1, 1, 1, 1, 0, 2]), "value": np.zeros(8)}
    itl = rng.exponential(0.03, 400)
    itl[::50] = np.nan
    summary = {
        "requests_finished": int(done.sum()), "throughput_rps": 4.2, "output_tokens_per_s": 1234.5,
        "ttft_s": {"p50": 0.1, "p90": 0.2, "p99": 0.3, "mean": 0.12},
        "tpot_s": {"p50": 0.02, "p90": 0.03, "p99": float("nan"), "mean": 0.02},
        "slo_attainment": 0.9, "preemptions": 0, "mfu": None, "cost_usd_per_mtok": 1.5,
    }
    replicas = [{"devices": 1, "tp": 1, "kv_blocks_total": 4096, "block_size": 16} for _ in range(n_replicas)]
    return RunResult(name="synthetic <run> & co", scenario={}, summary=summary, requests=req,
                     batches=batches, events=events, itl_s=itl, replicas=replicas,
                     sim_time_s=float(end.max()) + 1.0, wall_s=0.5)


@pytest.fixture
def result() -> RunResult:
    return make_result()


def test_report_loads_plotly_from_a_copy_beside_it_and_stays_under_1_mb(result, tmp_path):
    path = tmp_path / "report.html"
    write_report(result, path)
    text = path.read_text(encoding="utf-8")
    assert path.stat().st_size <= 1_000_000
    assert f'<script src="{plotly_js_name()}"' in text  # relative: the folder opens offline wherever it is
    assert (tmp_path / plotly_js_name()).read_text(encoding="utf-8") == get_plotlyjs()
    assert re.search(r"<(script|link|img)[^>]*(src|href)=[\"']?(https?:)?//", text) is None
    assert "Plotly.newPlot" in text


def test_report_contains_every_figure_title_and_escaped_summary(result, tmp_path):
    path = tmp_path / "report.html"
    write_report(result, path)
    text = path.read_text(encoding="utf-8")
    for title in FIGURE_TITLES:
        assert title in text
    assert "synthetic &lt;run&gt; &amp; co" in text and "synthetic <run>" not in text
    assert "p50 100 · p90 200 · p99 300" in text  # percentile dicts, seconds shown in ms
    assert "90.0%" in text  # slo_attainment 0.9 as a percentage
    assert "Throughput" in text and "Goodput" not in text  # missing keys skipped
    assert "Events PREEMPTED" in text or "Events 4" in text  # kind names, or ints before EventKind exists


def test_report_is_byte_identical_across_calls(result, tmp_path):
    a, b = tmp_path / "a.html", tmp_path / "b.html"
    write_report(result, a)
    write_report(make_result(), b)
    assert a.read_bytes() == b.read_bytes()


def test_report_is_written_when_no_request_finished(tmp_path):
    res = make_result(all_unfinished=True)
    res.itl_s = np.empty(0)
    res.summary = {"requests_finished": 0, "ttft_s": {}}
    write_report(res, tmp_path / "empty.html")
    text = (tmp_path / "empty.html").read_text(encoding="utf-8")
    assert all(f'id="fig-{i}"' in text for i in range(len(FIGURE_TITLES)))
    assert (tmp_path / plotly_js_name()).is_file()


def test_report_is_written_for_a_result_with_empty_tables(tmp_path):
    res = make_result()
    res.requests = {k: v[:0] for k, v in res.requests.items()}
    res.batches = {k: v[:0] for k, v in res.batches.items()}
    res.events = {}
    res.itl_s = np.empty(0)
    write_report(res, tmp_path / "r.html")
    write_chrome_trace(res, tmp_path / "t.json")
    assert json.loads((tmp_path / "t.json").read_text())["traceEvents"]


def test_large_arrays_are_reduced_to_quantiles_and_capped_bars():
    x, p = ecdf(np.arange(50_000, dtype=float))
    assert x.size == dashboard.CDF_QUANTILES and p[0] == 0.0 and p[-1] == 1.0
    x, p = ecdf(np.array([3.0, np.nan, 1.0, np.inf, 2.0]))
    assert x.tolist() == [1.0, 2.0, 3.0] and p[-1] == 1.0
    start = np.arange(12_000, dtype=float)
    s, e, pf = busy_bars(start, start + 0.5, np.arange(12_000) % 3 == 0)
    assert s.size == dashboard.GANTT_MAX_BARS and e[-1] == start[-1] + 0.5 and pf.dtype == bool
    s, e, pf = busy_bars(start, start + 1.0, np.zeros(12_000, dtype=bool))  # touching: one bar
    assert s.tolist() == [0.0] and e.tolist() == [12_000.0]


def load_trace(result, tmp_path, per_iteration: bool | None = False) -> list[dict]:
    path = tmp_path / "trace.json"
    write_chrome_trace(result, path, per_iteration)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["displayTimeUnit"] == "ms"
    return doc["traceEvents"]


def test_trace_has_one_ordered_complete_event_per_batch_segment(result, tmp_path):
    events = load_trace(result, tmp_path)
    xs = [e for e in events if e["ph"] == "X"]
    assert len(xs) == len(result.batches["start_s"])
    last: dict[tuple[int, int], float] = {}
    for e in xs:
        assert e["dur"] >= 0
        key = (e["pid"], e["tid"])
        assert e["ts"] >= last.get(key, -1.0)
        last[key] = e["ts"]
        a = e["args"]
        if a["prefill_tokens"] > 0:
            assert e["name"] == ("prefill+decode" if a["decode_rows"] > 0 else "prefill")
        else:
            assert e["name"] == ("decode" if a["iterations"] == 1 else f"decode x{a['iterations']}")
    names = {(e["pid"], e["args"]["name"]) for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert {(0, "replica 0"), (1, "replica 1")} <= names
    counters = Counter(e["name"] for e in events if e["ph"] == "C")
    assert counters == {"kv blocks used": 100, "queue length": 100}


def test_trace_request_spans_have_matching_begin_and_end(result, tmp_path):
    events = load_trace(result, tmp_path)
    begins = {e["id"]: e for e in events if e["ph"] == "b"}
    ends = {e["id"]: e for e in events if e["ph"] == "e"}
    assert len(begins) == len(ends) == len(result.requests["rid"])
    assert begins.keys() == ends.keys()
    for rid, b in begins.items():
        e = ends[rid]
        assert b["cat"] == e["cat"] == "request" and b["pid"] == e["pid"] and b["name"] == e["name"]
        assert e["ts"] >= b["ts"]
    first = [e for e in events if e["ph"] == "i" and e["name"] == "first token"]
    assert len(first) == int(np.isfinite(result.requests["first_token_s"]).sum())
    logged = sorted(e["name"] for e in events if e["ph"] == "i" and e["cat"] == "event")
    assert len(logged) == 3  # preemption, rejection, unknown kind; lifecycle kinds are not repeated
    assert "42" in logged


def test_trace_caps_request_spans_and_is_deterministic(tmp_path):
    res = make_result(n_requests=2_500, n_batches=300)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_chrome_trace(res, a, per_iteration=False)
    write_chrome_trace(make_result(n_requests=2_500, n_batches=300), b, per_iteration=False)
    assert a.read_bytes() == b.read_bytes()
    events = json.loads(a.read_text())["traceEvents"]
    assert sum(e["ph"] == "b" for e in events) == 2_000
    assert sum(e["ph"] == "X" for e in events) == 300
