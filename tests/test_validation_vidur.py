"""Validation against the measured Vidur A100 tables (skipped when ../shared/validation is absent).

Every row of every table is predicted (no subsampling). Train = Llama-2-7B and Llama-2-70B (the
rows the tile constants were fitted on); held out = the other six models.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

VIDUR = Path(__file__).resolve().parents[2] / "shared" / "validation" / "vidur_a100"
pytestmark = pytest.mark.skipif(not VIDUR.is_dir(), reason="../shared/validation/vidur_a100 not present")
TRAIN = ("Llama-2-7b-hf", "Llama-2-70b-hf")


@pytest.fixture(scope="module")
def results():
    from simulator.validation.kernels import gpu_config, load, predict

    compute, network = load(VIDUR)
    g = gpu_config("A100-80GB")
    return {b: predict(compute + network, b, g) for b in ("tile", "roofline")}


def _subset(res, pred):
    from simulator.validation.kernels import Result

    idx = [i for i, r in enumerate(res.rows) if pred(r)]
    return Result(res.backend, [res.rows[i] for i in idx], res.predicted[idx])


def test_tile_gemm_error_on_train_and_held_out_models(results):
    tile = results["tile"]
    for sel in (lambda r: r.source in TRAIN, lambda r: r.source not in TRAIN and not isinstance(r.item, tuple)):
        med, p90, n = _subset(tile, sel).summary()["gemm"]
        assert n > 5000
        assert med <= 5.1 and p90 <= 14.2  # achieved: train 4.87 / 13.75, held out 4.84 / 13.56


def test_tile_memory_bound_kernels_have_median_error_under_10_percent(results):
    med, p90, _ = results["tile"].summary()["memory"]
    assert med <= 7.5 and p90 <= 23.5  # achieved 6.9 / 22.3


def test_tile_nccl_intra_node_collectives_error(results):
    s = results["tile"].summary()
    assert s["all_reduce"][0] <= 3.5 and s["all_reduce"][1] <= 18.0  # achieved 2.8 / 16.6
    assert s["send_recv"][0] <= 7.0 and s["send_recv"][1] <= 25.0  # achieved 6.3 / 23.3


def test_fidelity_target_nccl_all_reduce_10_percent(results):
    assert results["tile"].summary()["all_reduce"][0] <= 10.0


def test_tile_beats_the_datasheet_roofline_on_every_class(results):
    tile, roof = results["tile"].summary(), results["roofline"].summary()
    for cls in ("gemm", "memory", "all_reduce", "send_recv"):
        assert tile[cls][0] < roof[cls][0]
    assert roof["gemm"][0] > 25.0  # the reference: a plain roofline misses GEMMs by ~30%


def test_fidelity_target_send_recv_10(results):
    assert results["tile"].summary()["send_recv"][0] <= 10.0


@pytest.mark.xfail(strict=True, reason="fidelity target not reached yet: GEMM 3%/8% (see FIDELITY.md)")
def test_fidelity_target_gemm_3_8(results):
    s = results["tile"].summary()
    assert s["gemm"][0] <= 3.0 and s["gemm"][1] <= 8.0


def test_profiled_backend_reproduces_the_tables_it_interpolates():
    from simulator.validation.kernels import gpu_config, load, predict

    compute, _ = load(VIDUR)
    rows = [r for r in compute if r.source == "phi-2"]
    res = predict(rows, "profiled", gpu_config("A100-80GB"), {"tables": str(VIDUR / "compute")})
    assert res.summary()["gemm"][0] < 1.0


def test_validate_kernels_command_prints_figures_and_writes_a_report(tmp_path):
    from typer.testing import CliRunner

    from simulator.validation.cli import validate_app

    (tmp_path / "compute").mkdir()
    shutil.copy(VIDUR / "compute" / "microsoft__phi-2.mlp.csv", tmp_path / "compute")
    out = tmp_path / "v.html"
    r = CliRunner().invoke(validate_app, ["kernels", str(tmp_path), "--gpu", "A100-80GB", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "gemm" in r.output and "tile" in r.output and "roofline" in r.output
    text = out.read_text()
    assert 'id="validation-0"' in text and "plotly" in text
    bad = CliRunner().invoke(validate_app, ["kernels", str(tmp_path / "nope")])
    assert bad.exit_code == 2
