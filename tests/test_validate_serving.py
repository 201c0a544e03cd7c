"""`hwsim validate serving`: benchmark rows become closed-loop scenarios; bad rows are one-line errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simulator.cli import app
from simulator.validation.serving import read_rows, stats

COLUMNS = ["id", "backend", "backend_version", "model_path", "system", "precision", "mode", "isl", "osl",
           "batch_size", "tp_size", "pp_size", "attention_dp_size", "moe_ep_size", "silicon_ttft_ms",
           "silicon_tpot_ms"]
DENSE = {"id": "dense", "backend": "vllm", "backend_version": "0.12.0",
         "model_path": "meta-llama/Llama-3.1-8B-Instruct",
         "system": "h200_sxm", "precision": "fp8", "mode": "agg", "isl": "512", "osl": "64", "batch_size": "4",
         "tp_size": "1", "pp_size": "1", "attention_dp_size": "1", "moe_ep_size": "1", "silicon_ttft_ms": "50",
         "silicon_tpot_ms": "5"}
MOE = {**DENSE, "id": "moe", "model_path": "deepseek-ai/DeepSeek-V3", "tp_size": "8", "attention_dp_size": "8"}
MOE_DP = {**DENSE, "id": "moe-dp", "model_path": "Qwen/Qwen3-30B-A3B", "precision": "bf16", "tp_size": "1",
          "attention_dp_size": "2", "moe_ep_size": "2"}
MOE_EP = {**DENSE, "id": "moe-ep", "model_path": "Qwen/Qwen3-30B-A3B", "precision": "bf16", "tp_size": "2",
          "moe_ep_size": "2"}
runner = CliRunner()


def write(tmp_path: Path, rows: list[dict], columns: list[str] = COLUMNS) -> Path:
    path = tmp_path / "bench.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


def one_line_error(result, *needles: str) -> None:
    out = result.output
    assert result.exit_code == 2, out
    assert "Traceback" not in out and out.count("\n") == 1 and out.startswith("error:"), out
    for n in needles:
        assert n in out, (n, out)


def test_a_csv_without_a_required_column_names_the_columns():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = write(Path(d), [DENSE], [c for c in COLUMNS if c not in ("isl", "silicon_tpot_ms")])
        one_line_error(runner.invoke(app, ["validate", "serving", str(path)]), "missing column(s)", "isl",
                       "silicon_tpot_ms")


@pytest.mark.parametrize("field, value, needles", [
    ("backend", "fastllm", ("line 2", "'backend'", "fastllm")),
    ("backend_version", "0.1.0", ("line 2", "backend_version", "older than every profile")),
    ("model_path", "acme/Foo-7B", ("line 2", "'model_path'", "not shipped")),
    ("isl", "-5", ("line 2", "'isl'")),
    ("batch_size", "many", ("line 2", "'batch_size'", "not a number")),
    ("precision", "int3", ("line 2", "'precision'")),
    ("silicon_tpot_ms", "0", ("line 2", "'silicon_tpot_ms'", "must be > 0")),
])
def test_a_bad_row_is_one_line_naming_the_line_and_field(tmp_path, field, value, needles):
    path = write(tmp_path, [{**DENSE, field: value}])
    one_line_error(runner.invoke(app, ["validate", "serving", str(path)]), *needles)


def test_moe_rows_are_simulated_with_expert_and_attention_data_parallelism_and_multi_node_rows_skipped(tmp_path):
    path = write(tmp_path, [DENSE, MOE_EP, MOE_DP, MOE])
    res = runner.invoke(app, ["validate", "serving", str(path), "--jobs", "1", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split()[:3] == ["class", "backend", "median"] and "bias" in lines[0]
    assert any(ln.startswith("ttft ") for ln in lines) and any(ln.startswith("tpot ") for ln in lines)
    assert "skipped 1 row(s): 64 GPUs span several nodes" in res.output
    rows = list(csv.DictReader(open(tmp_path / "out" / "rows.csv")))
    assert [r["skipped"] != "" for r in rows] == [False, False, False, True]
    assert all(float(r["predicted_tpot_ms"]) > 0 for r in rows[:3])
    assert any(ln.startswith("Qwen3-30B-A3B vllm tp1 dp2 ep2 tpot") for ln in lines)
    assert (tmp_path / "out" / "report.html").is_file()
    assert any((tmp_path / "out").glob("plotly-*.min.js"))  # plotly.js beside the page: opens offline


def test_a_lone_client_decodes_no_faster_than_the_weights_stream_from_hbm(tmp_path):
    """First principles: each decode step reads every weight once, so TPOT >= weight bytes / HBM bandwidth."""
    from simulator.validation.serving import predict_all

    row = read_rows(write(tmp_path, [{**DENSE, "batch_size": "1", "osl": "128"}]))
    pred = predict_all(row, per_client=2)[0]
    weights = 8.03e9 * 1.0 + 128256 * 4096 * 2  # fp8 weights, bf16 LM head (Llama-3.1-8B)
    assert pred.tpot_ms / 1e3 >= weights / 4.8e12
    assert pred.tpot_ms / 1e3 < 3 * weights / 4.8e12  # and a lone decode is bandwidth-bound, not far off


def test_the_error_statistics_are_median_p90_and_signed_bias():
    import numpy as np

    pred, meas = np.array([110.0, 90.0, 150.0]), np.array([100.0, 100.0, 100.0])
    med, p90, bias, n = stats(pred, meas)
    assert (med, bias, n) == (pytest.approx(10.0), pytest.approx(10.0), 3)
    assert p90 == pytest.approx(np.percentile([10, 10, 50], 90))


def test_a_binary_file_and_an_unknown_backend_are_one_line_errors(tmp_path):
    binary = tmp_path / "bench.csv"
    binary.write_bytes(bytes(range(200, 256)) * 8)
    one_line_error(runner.invoke(app, ["validate", "serving", str(binary)]), "not a text CSV file")
    path = write(tmp_path, [DENSE])
    one_line_error(runner.invoke(app, ["validate", "serving", str(path), "--backend", "warp"]), "--backend", "warp")
