"""report.html of real runs: size, the shared plotly.js, the configuration header, the panels and
their axes, and the MCU and capacity pages."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs

from simulator import dashboard_figures as figs
from simulator.capacity_cli import capacity_html
from simulator.config.loader import load_scenario
from simulator.dashboard import FIGURE_TITLES, config_rows, fmt_value, render_report, write_report
from simulator.dashboard_ops import op_phases
from simulator.html_assets import ensure_plotly_js, plotly_js_name, write_page
from simulator.mcu.report import render_mcu_report, summary_rows
from simulator.mcu.run import load_mcu_scenario, simulate
from simulator.op_breakdown import breakdown
from simulator.runner import Simulation

ROOT = Path(__file__).resolve().parents[1]


def as_plotly(fig) -> go.Figure:
    """A report figure (a plain plotly.js spec) read back by plotly, which validates every property."""
    return go.Figure(fig.to_dict())


def run(name: str, *overrides: str):
    return Simulation(load_scenario(ROOT / "scenarios" / name, list(overrides))).run()


@pytest.fixture(scope="module")
def single():
    return run("quickstart.yaml", "workload.num_requests=300")


@pytest.fixture(scope="module")
def disagg():
    return run("disaggregated.yaml", "workload.num_requests=300")


def test_a_full_size_report_is_under_1_mb_and_loads_the_library_beside_it(tmp_path):
    res = run("quickstart.yaml")  # the shipped scenario: 2000 requests, 4 million inter-token gaps
    write_report(res, tmp_path / "report.html")
    assert (tmp_path / "report.html").stat().st_size <= 1_000_000
    assert (tmp_path / plotly_js_name()).read_text(encoding="utf-8") == get_plotlyjs()


def test_runs_in_one_folder_share_one_copy_of_the_library(single, disagg, tmp_path):
    write_report(single, tmp_path / "a" / "report.html")
    write_report(disagg, tmp_path / "b" / "report.html")
    write_report(disagg, tmp_path / "b" / "again.html")  # a second page in a folder reuses its copy
    a, b = tmp_path / "a" / plotly_js_name(), tmp_path / "b" / plotly_js_name()
    assert a.read_bytes() == b.read_bytes()
    assert os.path.samefile(a, b)  # hard-linked: one copy on disk, each folder still complete
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(["again.html", "report.html", b.name])


def test_a_damaged_library_is_rewritten(tmp_path):
    (tmp_path / plotly_js_name()).write_text("truncated", encoding="utf-8")
    path = ensure_plotly_js(tmp_path)
    assert path.read_text(encoding="utf-8") == get_plotlyjs()
    write_page(tmp_path / "p.html", "<html></html>")
    assert (tmp_path / "p.html").read_text(encoding="utf-8") == "<html></html>"


def test_the_header_names_model_gpus_pools_policies_workload_seed_and_version(disagg):
    rows = dict(config_rows(disagg))
    assert rows["Model"] == "Llama-3-8B (bf16)"
    assert rows["GPUs"] == "NVIDIA H100 SXM5 80GB x 4"
    assert rows["Pool prefill"].startswith("role prefill, 2 replicas, TP 1 / PP 1")
    assert rows["Pool decode"].startswith("role decode, 2 replicas, TP 1 / PP 1")
    assert rows["Scheduler"].startswith("vllm") and rows["KV cache"] == "paged"
    assert rows["Quantization"] == "none (bf16)" and rows["Timing backend"] == "roofline"
    assert rows["Workload"] == "synthetic, 300 requests, poisson at 12/s"
    assert rows["Seed"] == "7" and rows["SLO"].startswith("TTFT 2s, TPOT 100ms")
    assert "hwsim" in rows
    page = render_report(disagg)
    assert "<h2>Configuration</h2>" in page and "Pool decode" in page


def test_every_panel_is_in_the_page_and_replicas_are_labelled_with_their_role(disagg):
    page = render_report(disagg)
    for title in FIGURE_TITLES:
        assert f"<h2>{title}</h2>" in page
    assert page.count('class="plotly-graph-div"') == len(FIGURE_TITLES)
    assert "replica 0 (prefill)" in page and "replica 3 (decode)" in page
    assert figs.replica_label(disagg, 2) == "replica 2 (decode)"


def test_slo_lines_mark_the_ttft_and_tpot_cdfs_in_ms(single):
    fig = as_plotly(figs.cdf_figure(single, {"ttft_s": 2.0, "tpot_s": 0.1}))
    assert sorted(s.x0 for s in fig.layout.shapes) == [100.0, 2000.0]
    assert {a.text.strip() for a in fig.layout.annotations} >= {"SLO 2000 ms", "SLO 100 ms"}
    assert not as_plotly(figs.cdf_figure(single, {})).layout.shapes
    assert fig.layout.xaxis.title.text == "ms" and fig.layout.yaxis.tickformat == ".0%"


def test_a_narrow_latency_range_gets_a_linear_axis_with_ticks_where_the_data_is(disagg):
    itl = np.sort(np.asarray(disagg.itl_s)) * 1e3
    assert itl[-1] / itl[0] < figs.LOG_AXIS_MIN_RATIO  # the disaggregated decode gaps are narrow
    fig = as_plotly(figs.cdf_figure(disagg, {}))
    assert fig.layout.xaxis3.type == "linear"
    assert figs._cdf_axis(np.array([1.0, 1000.0]))["type"] == "log"


def test_an_always_empty_queue_has_a_0_to_1_axis_with_whole_ticks(single):
    cols = figs.batch_columns(single)
    assert np.nanmax(cols["waiting"]) == 0
    fig = as_plotly(figs.timeline_figure(single, cols))
    assert tuple(fig.layout.yaxis3.range) == (0, 1) and fig.layout.yaxis3.dtick == 1
    cols = dict(cols, waiting=cols["waiting"] + 3)
    fig = as_plotly(figs.timeline_figure(single, cols))
    assert fig.layout.yaxis3.range is None and fig.layout.yaxis3.rangemode == "tozero"


def test_busy_fraction_per_bucket_is_the_busy_share_of_each_bucket():
    start, end = np.array([0.0, 2.0, 2.5]), np.array([1.0, 3.0, 4.0])
    frac = figs.busy_per_bucket(start, end, np.array([0.0, 2.0, 4.0]))
    assert frac.tolist() == [0.5, 1.0]  # [2, 4) holds 1 + 1.5 s of segments: capped at 100 %


def test_the_busy_panel_shows_utilisation_for_the_whole_run_and_opens_zoomed_on_segments(single):
    fig = as_plotly(figs.busy_figure(single, figs.batch_columns(single)))
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 1 and len(heat[0].x) == figs.TIME_BUCKETS
    assert 0.9 < float(np.mean(heat[0].z)) <= 1.0  # single replica busy ~100 % (summary says so)
    run_ms = single.sim_time_s * 1e3
    assert 0 < fig.layout.xaxis2.range[1] < run_ms / 5


def test_per_replica_bars_match_the_summary(disagg):
    fig = as_plotly(figs.replicas_figure(disagg, figs.batch_columns(disagg)))
    busy = np.asarray(fig.data[0].y, dtype=float)
    pools = disagg.summary["pools"]
    assert busy[:2].mean() == pytest.approx(pools["prefill"]["busy_fraction"], rel=1e-9)
    assert busy[2:].mean() == pytest.approx(pools["decode"]["busy_fraction"], rel=1e-9)
    mfu = np.asarray(fig.data[1].y, dtype=float)
    assert mfu[:2].mean() == pytest.approx(pools["prefill"]["mfu"], rel=1e-9)


def test_batch_distributions_weigh_each_iteration_once(single):
    fig = as_plotly(figs.batches_figure(figs.batch_columns(single)))
    for trace in fig.data:
        assert float(np.sum(trace.y)) == pytest.approx(1.0)


def test_throughput_over_time_adds_up_to_the_run_totals(single):
    fig = as_plotly(figs.throughput_figure(single, figs.batch_columns(single)))
    width = float(figs.time_edges(single, figs.RATE_BUCKETS)[1])
    by_name = {t.name: np.asarray(t.y, dtype=float) * width for t in fig.data}
    assert by_name["prefill tokens/s"].sum() == pytest.approx(single.batches["prefill_tokens"].sum())
    assert by_name["finished/s"].sum() == pytest.approx(single.summary["requests_finished"])


def test_operator_panel_shows_what_hwsim_ops_prints_per_phase(single):
    cols = figs.batch_columns(single)
    phases = op_phases(single, cols)
    assert [label.split(":")[0] for label, _ in phases] == ["prefill", "decode"]
    sc = load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    p = int(np.median(single.requests["prompt_tokens"]))
    assert sum(r["time_s"] for r in phases[0][1]) == pytest.approx(sum(r["time_s"] for r in breakdown(sc, p, 0)))
    assert {r["name"] for r in phases[1][1]} >= {"attn_decode", "mlp_up"}


def test_times_are_shown_in_ms_and_fractions_as_percentages():
    assert fmt_value({"p50": 0.0123, "p90": 0.5, "p99": 2.0}, "ms") == "p50 12.3 · p90 500 · p99 2,000"
    assert fmt_value(0.987, "pct") == "98.7%" and fmt_value(1, "pct") == "100.0%"
    assert fmt_value(float("nan"), "ms") == "–" and fmt_value(None) == "–" and fmt_value(12345) == "12,345"


def test_the_mcu_summary_has_human_labels_and_formatted_numbers():
    spec, base, _ = load_mcu_scenario(ROOT / "scenarios" / "mcu" / "mbv2_035_h743_patch.yaml")
    mcu = simulate(spec, base)
    rows = dict(summary_rows(mcu.summary))
    assert rows["Peak SRAM"] == f"{mcu.summary['peak_sram_bytes'] / 1024:,.1f} KiB"
    assert rows["Latency"].endswith(" ms") and rows["Recompute overhead"].endswith("%")
    assert all("_" not in label for label in rows)
    page = render_mcu_report(mcu)
    assert "peak_sram_bytes" not in page and "Peak SRAM" in page


def test_the_capacity_page_loads_the_shared_library_and_plots_latency_in_ms():
    report = {"scenario": "s", "scheduler": "vllm", "capacity_rps": 2.0, "capped": False,
              "criteria": {"attainment": 0.9, "slo_ttft_s": 0.5, "slo_tpot_s": None, "p99_itl_s": None},
              "points": [{"rate_rps": r, "attainment": a, "ttft_p90_s": t, "tpot_p90_s": 0.02, "itl_p99_s": None,
                          "goodput_rps": r * a, "passed": a >= 0.9}
                         for r, a, t in ((1.0, 1.0, 0.1), (2.0, 0.95, 0.3), (4.0, 0.5, 0.9))]}
    page = capacity_html(report)
    assert f'<script src="{plotly_js_name()}"' in page and len(page) < 100_000
    assert '"ms"' in page and '"tickformat":".0%"' in page and "TTFT SLO" in page
    # the SLO label sits at the line on the log axis (log10 units), not at 10^500
    assert '"text":"TTFT SLO","x":1,"xanchor":"right","xref":"x2 domain","y":2.69897' in page


def test_cdf_quantiles_of_a_large_array_equal_numpys():
    v = np.random.default_rng(1).lognormal(size=figs.CDF_RAW_LIMIT * 5)
    x, p = figs.ecdf(v)
    assert x.size == figs.CDF_QUANTILES and np.allclose(x, np.quantile(v, p), rtol=1e-12, atol=0)
