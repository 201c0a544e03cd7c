"""The Python API: docs/api.md's notebook cells run as written, and the API agrees with the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hwsim
from simulator.cli import app

ROOT = Path(__file__).resolve().parents[1]
CELLS = re.findall(r"```python\n(.*?)```", (ROOT / "docs/api.md").read_text(encoding="utf-8"), flags=re.S)


def test_the_notebook_cells_of_docs_api_run_in_order_in_one_namespace():
    assert len(CELLS) >= 4
    ns: dict = {}
    cwd = os.getcwd()
    os.chdir(ROOT)  # the cells name scenarios relative to the repository, as a notebook beside it would
    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            for cell in CELLS:
                exec(compile(cell, "docs/api.md", "exec"), ns)
    finally:
        os.chdir(cwd)
    assert "cheapest within the SLO:" in out.getvalue()
    assert Path(ns["page"]).is_file() and len(ns["df"]) == 4
    cap = ns["cap"]  # the highest passing rate below the first failing one, from the probes themselves
    passed = [p["passed"] for p in cap["points"]]
    below = cap["points"][:passed.index(False)] if False in passed else cap["points"]
    assert cap["capacity_rps"] == max((p["rate_rps"] for p in below), default=0.0)


def test_run_gives_the_summary_hwsim_run_writes(tmp_path):
    sets = {"workload.num_requests": 150, "run.warmup_requests": 10}
    res = hwsim.run(ROOT / "scenarios/quickstart.yaml", set=sets)
    cli = CliRunner().invoke(app, ["run", str(ROOT / "scenarios/quickstart.yaml"), "-q", "--no-report", "-o",
                                   str(tmp_path), *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]])
    assert cli.exit_code == 0, cli.output
    written = json.loads((tmp_path / "summary.json").read_text())
    for key in ("requests_finished", "throughput_rps", "slo_attainment", "cost_usd_per_mtok"):
        assert res.summary[key] == pytest.approx(written[key], rel=1e-12)
    assert res.summary["ttft_s"]["p99"] == pytest.approx(written["ttft_s"]["p99"], rel=1e-12)
    assert len(res.requests) == 150 and set(res.requests.status) == {"finished"}
    assert res.metrics["ttft_s.p99"] == res.summary["ttft_s"]["p99"]


def test_api_errors_are_the_one_line_errors_of_the_cli():
    with pytest.raises(hwsim.HwsimError, match="hardware.device.preset: unknown gpu preset 'H999'"):
        hwsim.run(ROOT / "scenarios/quickstart.yaml", set={"hardware.device.preset": "H999"})
    with pytest.raises(hwsim.HwsimError, match="sweep.grid.cluster.replicas: the axis is empty"):
        hwsim.sweep({"base": str(ROOT / "scenarios/quickstart.yaml"), "grid": {"cluster.replicas": []}})
