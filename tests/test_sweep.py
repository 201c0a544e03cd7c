"""hwsim sweep: points, hashes, validation before any run, the local pool, constraints, capacity,
the results store surviving kill -9 and --resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from simulator.capacity import capacity_search
from simulator.cli import app
from simulator.compare_page import pareto
from simulator.config.loader import load_scenario
from simulator.core.errors import HwsimError
from simulator.results_store import FILE_NAME, ResultsStore
from simulator.sweep import check_metrics, run_sweep
from simulator.sweep_spec import build_sweep, scenario_hash

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "scenarios/quickstart.yaml"
SMALL = {"workload.num_requests": 80, "run.warmup_requests": 5}


def sweep_file(tmp_path: Path, **over) -> Path:
    doc = {"name": "t", "base": str(QUICK), "set": dict(SMALL),
           "grid": {"cluster.replicas": [1, 2], "workload.arrival.rate": ["4/s", "12/s"]},
           "objectives": ["min cost_usd_per_mtok", "min ttft_s.p90"], "constraints": ["slo_attainment >= 0.9"]}
    doc.update(over)
    doc = {k: v for k, v in doc.items() if v is not None}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def comparable(rows: list[dict]) -> list[dict]:
    """Rows without the wall time (the only machine-dependent column)."""
    return [json.loads(json.dumps({k: v for k, v in r.items() if k != "wall_s"})) for r in rows]


def test_a_grid_is_every_combination_in_order_and_each_point_hashes_its_resolved_scenario(tmp_path):
    sw = build_sweep(sweep_file(tmp_path))
    assert [p.axes for p in sw.points] == [{"cluster.replicas": r, "workload.arrival.rate": x}
                                           for r in (1, 2) for x in ("4/s", "12/s")]
    assert len({p.scenario_hash for p in sw.points}) == 4
    sets = [f"{k}={v}" for k, v in SMALL.items()]
    assert sw.points[0].scenario_hash == scenario_hash(load_scenario(QUICK, [*sets, "workload.arrival.rate=4/s"]))
    assert build_sweep(sweep_file(tmp_path)).spec_hash == sw.spec_hash  # stable


def test_the_same_scenario_reached_two_ways_has_one_hash(tmp_path):
    # replicas=1 is the base's own value: setting it changes nothing in the resolved scenario
    sw = build_sweep(sweep_file(tmp_path, grid=None, points=[{"cluster.replicas": 1}, {"seed": 42}]))
    assert sw.points[0].scenario_hash == sw.points[1].scenario_hash


def test_a_point_hash_follows_its_trace_file_bytes_not_where_the_file_lies(tmp_path):
    import shutil

    hashes = []
    for name in ("a", "b/deeper"):
        d = tmp_path / name
        (d / "traces").mkdir(parents=True)
        shutil.copy(ROOT / "scenarios" / "trace_replay.yaml", d / "trace_replay.yaml")
        shutil.copy(ROOT / "scenarios" / "traces" / "conv_sample.csv", d / "traces" / "conv_sample.csv")
        hashes.append(scenario_hash(load_scenario(d / "trace_replay.yaml")))
    assert hashes[0] == hashes[1]  # moved, same bytes: a store written in one place resumes in the other
    trace = tmp_path / "a" / "traces" / "conv_sample.csv"
    trace.write_text(trace.read_text().replace("\n", "\n", 1) + trace.read_text().splitlines()[-1] + "\n")
    assert scenario_hash(load_scenario(tmp_path / "a" / "trace_replay.yaml")) != hashes[0]  # other bytes


def test_an_axis_may_set_a_field_of_the_block_another_axis_switches_to_in_either_order(tmp_path):
    # the base runs vllm, which has no chunk_size; the kind axis is listed after the chunk axis
    sw = build_sweep(sweep_file(tmp_path, grid={"policies.scheduler.chunk_size": [256, 1024],
                                                "policies.scheduler.kind": ["sarathi"]},
                                set={**SMALL, "policies.scheduler.max_num_seqs": 64}, constraints=None))
    for p, chunk in zip(sw.points, (256, 1024)):
        sched = sw.load(p).scheduler
        assert (sched.kind, sched.config.chunk_size, sched.config.max_num_seqs) == ("sarathi", chunk, 64)
    assert sw.points[0].scenario_hash != sw.points[1].scenario_hash


def test_a_random_design_is_seeded_within_bounds_and_honours_log_integer_and_choices(tmp_path):
    rnd = {"seed": 7, "count": 25, "axes": {"cluster.replicas": {"low": 1, "high": 4, "integer": True},
                                            "workload.arrival.rate": {"low": 1, "high": 30, "log": True,
                                                                      "unit": "/s"},
                                            "policies.scheduler.kind": {"choices": ["vllm", "sarathi"]}}}
    a = build_sweep(sweep_file(tmp_path, grid=None, random=rnd))
    b = build_sweep(sweep_file(tmp_path, grid=None, random=rnd))
    assert [p.axes for p in a.points] == [p.axes for p in b.points] and len(a.points) == 25
    for p in a.points:
        assert p.axes["cluster.replicas"] in (1, 2, 3, 4)
        assert 1 <= float(p.axes["workload.arrival.rate"].removesuffix("/s")) <= 30
    assert {p.axes["policies.scheduler.kind"] for p in a.points} == {"vllm", "sarathi"}


@pytest.mark.parametrize("over, where", [
    ({"grid": {"cluster.replicaz": [1, 2]}}, "sweep.grid.cluster.replicaz: the axis path 'cluster.replicaz' does not"),
    ({"grid": {"cluster.replicas": []}}, "sweep.grid.cluster.replicas: the axis is empty"),
    ({"constraints": ["slo_atainment >= 0.9"]}, "sweep.constraints[0].metric: unknown metric 'slo_atainment'; did "
                                                "you mean 'slo_attainment'?"),
    ({"objectives": ["min cost_per_token"]}, "sweep.objectives[0].metric: unknown metric 'cost_per_token'"),
    ({"grid": {"hardware.device.preset": ["H100-SXM", "H999"]}}, "sweep point 1 (hardware.device.preset=H999): "
                                                                "hardware.device.preset: unknown gpu preset 'H999'"),
    ({"grid": None}, "give exactly one of grid, random, points (got none)"),
    ({"constraints": ["slo_attainment >> 1"]}, "must look like 'metric >= number'"),
    ({"set": {"workload.num_requests": 50, "run.warmup_requests": 100}}, "sweep point 0 (cluster.replicas=1, "
     "workload.arrival.rate=4/s): run.warmup_requests: warmup_requests=100 leaves none of the workload's 50"),
    ({"base": "nope.yaml"}, "sweep.base: base scenario 'nope.yaml' not found"),
])
def test_bad_sweeps_fail_with_one_line_and_exit_2_before_any_point_runs(tmp_path, over, where):
    res = CliRunner().invoke(app, ["sweep", str(sweep_file(tmp_path, **over)), "-o", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and where in lines[0], res.output
    assert not (tmp_path / "out" / FILE_NAME).exists()  # nothing ran, no store


def test_the_pool_gives_the_rows_of_a_serial_run_and_constraints_and_objectives_follow_the_metrics(tmp_path):
    sw = build_sweep(sweep_file(tmp_path))
    serial = run_sweep(sw, tmp_path / "serial", workers=1, html=False)
    pooled = run_sweep(sw, tmp_path / "pooled", workers=2, html=False)
    assert comparable(serial) == comparable(pooled)
    assert [r["point_id"] for r in pooled] == [0, 1, 2, 3]
    for r in pooled:
        m = r["metrics"]
        assert r["error"] is None
        assert r["constraints"] == {"slo_attainment >= 0.9": m["slo_attainment"] >= 0.9}
        assert r["passed"] == (m["slo_attainment"] >= 0.9)
        assert r["objectives"] == {"min cost_usd_per_mtok": m["cost_usd_per_mtok"], "min ttft_s.p90": m["ttft_s.p90"]}
        assert m["requests_total"] == 80
        q = r["detail"]["ttft_s"]  # CDF quantiles: sorted, ending at the max
        assert q == sorted(q) and q[-1] == pytest.approx(m["ttft_s.max"])
    # two replicas cost twice the GPUs for the same tokens at the same rate
    assert pooled[2]["metrics"]["gpus"] == 2 * pooled[0]["metrics"]["gpus"]
    assert (tmp_path / "pooled/results.csv").read_text().count("\n") == 5
    assert (tmp_path / "pooled/results.parquet").is_file()


def test_a_point_that_cannot_run_is_a_row_with_its_error_and_fails(tmp_path):
    # Llama-3-70B in bf16 does not fit one 80 GB GPU; on 4 it does
    doc = sweep_file(tmp_path, grid={"cluster.tensor_parallel": [1, 4]},
                     set={**SMALL, "model.preset": "Llama-3-70B"}, constraints=None)
    rows = run_sweep(doc, tmp_path / "out", workers=1, html=False)
    assert rows[0]["error"].startswith("model: Llama-3-70B needs 131.4 GiB of weights per GPU at tensor_parallel=1")
    assert rows[0]["passed"] is False and rows[0]["metrics"] == {}
    assert rows[1]["error"] is None and rows[1]["passed"] is True


def test_metric_names_come_from_the_first_point_that_can_run_however_many_cannot(tmp_path):
    # the rate axis varies fastest: the first six points are Llama-3-70B on one 80 GB GPU (does not fit)
    doc = sweep_file(tmp_path, grid={"cluster.tensor_parallel": [1, 4], "workload.arrival.rate": [f"{r}/s" for r in
                                                                                             range(1, 7)]},
                     set={**SMALL, "model.preset": "Llama-3-70B"})
    names = check_metrics(build_sweep(doc))
    assert "slo_attainment" in names and "cost_usd_per_mtok" in names
    doc = sweep_file(tmp_path, grid={"cluster.tensor_parallel": [1]}, set={**SMALL, "model.preset": "Llama-3-70B"})
    with pytest.raises(HwsimError, match="no point can run.*131.4 GiB of weights"):
        check_metrics(build_sweep(doc))


def test_per_point_capacity_is_the_capacity_search_of_that_point(tmp_path):
    cap = {"slo_ttft": "300ms", "slo_tpot": "30ms", "attainment": 0.9, "rates": ["4/s", "12/s", "30/s"]}
    doc = sweep_file(tmp_path, grid={"cluster.replicas": [1, 2]}, capacity=cap,
                     constraints=["capacity_rps >= 10"], objectives=["max capacity_rps"])
    rows = run_sweep(doc, tmp_path / "out", workers=1, html=False)
    for r, replicas in zip(rows, (1, 2)):
        direct = capacity_search(QUICK, slo_ttft_s=0.3, slo_tpot_s=0.03, attainment=0.9, rates=[4, 12, 30],
                                 overrides=[*(f"{k}={v}" for k, v in SMALL.items()), f"cluster.replicas={replicas}"])
        assert r["metrics"]["capacity_rps"] == direct["capacity_rps"]
        assert [p["rate_rps"] for p in r["detail"]["capacity"]] == [4, 12, 30]
        assert r["passed"] == (direct["capacity_rps"] >= 10)
    assert rows[1]["metrics"]["capacity_rps"] >= rows[0]["metrics"]["capacity_rps"]  # more replicas never less


def test_an_existing_store_needs_resume_or_overwrite_and_a_changed_sweep_cannot_resume(tmp_path):
    path = sweep_file(tmp_path, grid={"cluster.replicas": [1]})
    run_sweep(path, tmp_path / "out", workers=1, html=False)
    res = CliRunner().invoke(app, ["sweep", str(path), "-o", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 2 and "--resume" in res.output
    sweep_file(tmp_path, grid={"cluster.replicas": [2]})
    res = CliRunner().invoke(app, ["sweep", str(path), "-o", str(tmp_path / "out"), "-q", "--resume"])
    assert res.exit_code == 2 and "changed since this store was written" in res.output
    res = CliRunner().invoke(app, ["sweep", str(path), "-o", str(tmp_path / "out"), "-q", "--resume", "--overwrite"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "give one of --resume" in res.output, res.output
    res = CliRunner().invoke(app, ["sweep", str(path), "-o", str(tmp_path / "out"), "-q", "--overwrite"])
    assert res.exit_code == 0, res.output
    with ResultsStore(tmp_path / "out") as store:
        assert [r["axes"] for r in store.rows()] == [{"cluster.replicas": 2}]


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_a_sweep_killed_with_sigkill_resumes_to_the_rows_of_an_uninterrupted_run(tmp_path):
    rates = ["3/s", "6/s", "9/s", "12/s"]
    path = sweep_file(tmp_path, grid={"cluster.replicas": [1, 2], "workload.arrival.rate": rates},
                      set={"workload.num_requests": 200, "run.warmup_requests": 5})
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "simulator.cli", "sweep", str(path), "-o", str(out), "-j", "2", "-q"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    rows_then = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            with sqlite3.connect(out / FILE_NAME, timeout=1) as db:
                rows_then = db.execute("SELECT COUNT(*) FROM points").fetchone()[0]
        except sqlite3.Error:
            continue
        if rows_then >= 2:
            break
    assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.stderr.read().decode()}"
    workers = children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(workers) == 2 and not any(alive(w) for w in workers)  # the pool dies with the sweep
    with ResultsStore(out) as store:
        kept = store.count()
    assert 2 <= kept < 8
    res = subprocess.run([*cmd, "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    whole = run_sweep(path, tmp_path / "whole", workers=2, html=False)
    with ResultsStore(out) as store:
        resumed = store.rows()
    assert comparable(resumed) == comparable(whole) and len(whole) == 8


def test_resume_runs_only_the_missing_points(tmp_path):
    path = sweep_file(tmp_path)
    run_sweep(path, tmp_path / "out", workers=1, html=False)
    with sqlite3.connect(tmp_path / "out" / FILE_NAME) as db:
        db.execute("DELETE FROM points WHERE point_id IN (1, 3)")
    ran = []
    run_sweep(path, tmp_path / "out", workers=1, resume=True, html=False, on_row=lambda r: ran.append(r["point_id"]))
    assert sorted(ran) == [1, 3]
    # a point that stopped on an internal error (a bug) runs again on resume; one that cannot run does not
    with sqlite3.connect(tmp_path / "out" / FILE_NAME) as db:
        db.execute("UPDATE points SET error = 'internal error: KeyError: 3' WHERE point_id = 2")
        db.execute("UPDATE points SET error = 'model: does not fit' WHERE point_id = 0")
    ran.clear()
    rows = run_sweep(path, tmp_path / "out", workers=1, resume=True, html=False,
                     on_row=lambda r: ran.append(r["point_id"]))
    assert ran == [2] and rows[2]["error"] is None and rows[0]["error"] == "model: does not fit"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=30), st.booleans(),
       st.booleans())
def test_the_pareto_front_is_exactly_the_points_no_other_point_dominates(pts, x_min, y_min):
    sx, sy = (1 if x_min else -1), (1 if y_min else -1)
    items = [(float(x), float(y), i) for i, (x, y) in enumerate(pts)]
    front = set(pareto(items, x_min, y_min))

    def dominated(a):
        return any(sx * b[0] <= sx * a[0] and sy * b[1] <= sy * a[1] and (b[0], b[1]) != (a[0], a[1]) for b in items)

    for a in items:
        if a[2] in front:
            assert not dominated(a)
        elif not dominated(a):  # a duplicate of a front point: one copy stands for both
            assert any((b[0], b[1]) == (a[0], a[1]) and b[2] in front for b in items)


def test_hwsim_check_validates_a_sweep_file_and_hwsim_run_points_to_hwsim_sweep(tmp_path):
    good = sweep_file(tmp_path, type="sweep")
    res = CliRunner().invoke(app, ["check", str(good)])
    assert res.exit_code == 0 and res.output.startswith(f"ok: {good} — sweep t: 4 points over cluster.replicas, "
                                                         "workload.arrival.rate; min cost_usd_per_mtok"), res.output
    res = CliRunner().invoke(app, ["run", str(good)])
    assert res.exit_code == 2 and "run it with `hwsim sweep FILE`" in res.output
    bad = sweep_file(tmp_path, type="sweep", constraints=["p99_ttft <= 1"])
    res = CliRunner().invoke(app, ["check", str(bad)])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "unknown metric 'p99_ttft'" in res.output
