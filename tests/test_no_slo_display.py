"""Without a TTFT / TPOT SLO the attainment is undefined: the CLI says so, JSON holds null, never NaN."""

from __future__ import annotations

import json
import math

import yaml
from typer.testing import CliRunner

from simulator.capacity_cli import _nan_to_null, _pct
from simulator.cli import app

runner = CliRunner()


def test_a_run_without_slos_prints_no_attainment_figure(tmp_path):
    sc = {"name": "no-slo", "hardware": {"device": {"kind": "gpu", "preset": "H100-SXM"}},
          "model": {"kind": "transformer", "preset": "Llama-3.1-8B"},
          "workload": {"kind": "closed_loop", "clients": 2, "num_requests": 4,
                       "prompt_tokens": {"dist": "fixed", "value": 64}, "output_tokens": {"dist": "fixed", "value": 4}},
          "outputs": {"report": False, "chrome_trace": False, "events": False, "requests": False}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sc))
    res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("goodput"))
    assert "no SLO set" in line and "nan" not in line.lower()
    summary = json.loads((tmp_path / "o" / "summary.json").read_text(),
                         parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))  # strict JSON: no NaN
    assert summary["slo_attainment"] is None


def test_the_capacity_curve_shows_a_dash_and_writes_null_for_an_undefined_attainment():
    assert _pct(float("nan")) == "-" and _pct(0.5) == "50.0%"
    rep = {"points": [{"rate_rps": 1.0, "attainment": math.nan, "ttft_p90_s": 0.1, "tpot_p90_s": 0.01}]}
    assert _nan_to_null(rep) == {"points": [{"rate_rps": 1.0, "attainment": None, "ttft_p90_s": 0.1,
                                             "tpot_p90_s": 0.01}]}
    assert "nan" not in json.dumps(_nan_to_null(rep)).lower()


def test_capacity_refuses_an_unwritable_results_directory_before_any_run(tmp_path):
    from pathlib import Path

    quick = Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.yaml"
    res = runner.invoke(app, ["capacity", str(quick), "--slo-ttft", "2s", "--out", "/proc/hwsim-capacity"])
    assert res.exit_code == 2, res.output
    assert "/proc/hwsim-capacity" in res.output and "rate " not in res.output  # no probe ran
