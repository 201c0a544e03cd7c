"""`hwsim validate kernels` on calibration captures (the record format of `hwsim calibrate capture`).

No GPU capture ships with the project, so the GPU path is checked two ways: the measured Vidur
A100 GEMMs written out as a capture must give exactly the predictions and errors of the Vidur path
(same shapes, same measurements); and a hand-written CUDA capture maps each record kind to the op
with the record's shape (checked against the backend's own formulas).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from simulator.calibration.capture import COLUMNS, write_capture
from simulator.calibration.records import Capture, Measurement
from simulator.cli import app
from simulator.core.errors import CapacityError
from simulator.validation.capture_rows import capture_rows, load_capture
from simulator.validation.kernels import gpu_config, make_backend, predict

ROOT = Path(__file__).resolve().parents[1]
VIDUR = ROOT.parent / "shared" / "validation" / "vidur_a100"
CPU_CAPTURE = ROOT / "tests" / "data" / "calibration" / "cpu-quick"
runner = CliRunner()


def rec(kernel_class, op, dtype="bf16", m=0, n=0, k=0, batch=1, elements=0, nbytes=0, median=1e-4,
        device="cuda:NVIDIA A100-SXM4-80GB") -> dict:
    r = {c: 0 for c in COLUMNS}
    r.update(kernel_class=kernel_class, op=op, dtype=dtype, device=device, m=m, n=n, k=k, batch=batch,
             elements=elements, bytes=nbytes, median_s=median, p10_s=median, p90_s=median, repeats=5, number=1,
             label="")
    return r


@pytest.mark.skipif(not VIDUR.is_dir(), reason="../shared/validation/vidur_a100 not present")
def test_vidur_gemms_as_a_capture_give_the_vidur_paths_predictions(tmp_path):
    from simulator.calibration.vidur import read_vidur
    from simulator.validation.vidur import read_compute

    table = VIDUR / "compute" / "meta-llama__Llama-2-7b-hf.mlp.csv"
    cap = read_vidur(table)
    write_capture(tmp_path, [{c: getattr(m, c) for c in COLUMNS} for m in cap.rows], {"source": "vidur"})
    rows, skipped = load_capture(tmp_path)
    assert not skipped and len(rows) == len(cap.rows) > 1000
    g = gpu_config("A100-80GB")
    via_capture = predict(rows, "tile", g)
    vidur_rows = [r for r in read_compute(table) if r.op in ("attn_pre_proj", "attn_post_proj", "mlp_up_proj",
                                                             "mlp_down_proj")]
    via_vidur = predict(vidur_rows, "tile", g)
    key = lambda r: (r.item.m, r.item.n, r.item.k, round(r.measured_s, 12))  # noqa: E731
    a = dict(zip(map(key, via_capture.rows), via_capture.predicted))
    b = dict(zip(map(key, via_vidur.rows), via_vidur.predicted))
    assert a.keys() == b.keys()
    assert all(a[s] == pytest.approx(b[s], rel=1e-12) for s in a)
    assert via_capture.summary()["gemm"][:2] == pytest.approx(via_vidur.summary()["gemm"][:2], rel=1e-9)


def test_each_cuda_record_becomes_the_op_with_its_shape(tmp_path):
    rows = [rec("gemm", "matmul", "bf16", 1024, 4096, 4096), rec("gemm", "matmul", "fp8", 512, 8192, 8192),
            rec("attention", "sdpa_prefill", m=2048, n=2048, k=128, batch=32),
            rec("attention", "sdpa_decode", m=1, n=4096, k=128, batch=64 * 32),
            rec("stream", "triad", "fp32", elements=2 ** 22, nbytes=3 * 4 * 2 ** 22),
            rec("elementwise", "layernorm", m=4096, n=4096, elements=4096 ** 2, nbytes=4 * 4096 ** 2),
            rec("copy", "d2d", "fp32", elements=2 ** 20, nbytes=8 * 2 ** 20),
            rec("copy", "h2d", "fp32", elements=2 ** 20, nbytes=4 * 2 ** 20),
            rec("collective", "all_reduce", batch=8, elements=2 ** 20, nbytes=2 * 2 ** 20),
            rec("gemm", "matmul", "float32", 64, 64, 64, device="cpu")]
    write_capture(tmp_path, rows, {})
    got, skipped = capture_rows(Capture(str(tmp_path), [Measurement(**{c: r[c] for c in COLUMNS}) for r in rows]))
    assert len(got) == 7
    assert skipped == {"cpu records": 1, "copy h2d (no GPU kernel model)": 1,
                       "collective all_reduce (no GPU kernel model)": 1}
    ops = {r.op: r.item for r in got}
    assert (ops["gemm.matmul"].m, ops["gemm.matmul"].n, ops["gemm.matmul"].k) == (512, 8192, 8192)  # last wins
    pre = ops["attention.sdpa_prefill"]
    assert pre.flops() == pytest.approx(4.0 * 128 * 32 * 2048 * 2049 / 2)  # causal: half the pairs
    dec = ops["attention.sdpa_decode"]
    assert (dec.seqs, dec.kv_tokens) == (64 * 32, 64 * 32 * 4096)
    b = make_backend("tile", gpu_config("A100-80GB"))
    # a memory-bound record takes at least its bytes over the datasheet bandwidth
    bw = gpu_config("A100-80GB").memory_bw_bytes_per_s
    for name in ("stream.triad", "elementwise.layernorm", "copy.d2d"):
        assert b.op_s(ops[name]) >= ops[name].bytes / bw
    res = predict(got, "tile", gpu_config("H100-SXM"))  # H100 runs every record, fp8 included
    assert np.all(np.isfinite(res.predicted)) and np.all(res.predicted > 0)
    with pytest.raises(CapacityError, match="fp8"):  # an A100 has no fp8 tensor path: said, not guessed
        predict(got, "tile", gpu_config("A100-80GB"))


def test_cli_validates_a_capture_and_reports_skipped_records(tmp_path):
    rows = [rec("gemm", "matmul", "bf16", m, 4096, 4096, median=2.0 * m * 4096 * 4096 / 200e12 + 5e-6)
            for m in (256, 1024, 4096)] + [rec("copy", "h2d", "fp32", elements=2 ** 20, nbytes=4 * 2 ** 20)]
    write_capture(tmp_path, rows, {})
    out = runner.invoke(app, ["validate", "kernels", str(tmp_path), "--gpu", "A100-80GB", "--backend", "tile",
                              "--out", str(tmp_path / "v.html")])
    assert out.exit_code == 0, out.output
    assert "skipped 1 record(s): copy h2d" in out.output
    line = next(ln for ln in out.output.splitlines() if ln.startswith("gemm"))
    med = float(line.split()[2].rstrip("%"))
    assert math.isfinite(med) and med < 30.0  # records at 200 TFLOP/s: tile predicts the same order
    assert (tmp_path / "v.html").is_file()


def test_cli_rejects_a_cpu_capture_in_one_line():
    out = runner.invoke(app, ["validate", "kernels", str(CPU_CAPTURE), "--gpu", "A100-80GB"])
    assert out.exit_code == 2
    assert out.output.count("\n") == 1 and out.output.startswith("error:")
    assert "no GPU kernel records" in out.output and "calibrate report" in out.output


def test_profiled_backend_interpolates_a_capture_and_falls_back_elsewhere(tmp_path):
    from workloads.llm import Op

    rows = [rec("gemm", "matmul", "bf16", 256, 4096, 4096, median=30e-6),
            rec("gemm", "matmul", "bf16", 1024, 4096, 4096, median=90e-6),
            rec("gemm", "matmul", "fp8", 512, 4096, 4096, median=1e-6),  # not a 16-bit record: unused
            rec("elementwise", "layernorm", m=1024, n=4096, nbytes=1 << 23, median=10e-6),
            rec("elementwise", "layernorm", m=4096, n=4096, nbytes=1 << 25, median=25e-6)]
    write_capture(tmp_path, rows, {})
    g = gpu_config("A100-80GB")
    prof = make_backend("profiled", g, {"tables": str(tmp_path)})
    tile = make_backend("tile", g, {"cuda_graphs": False})  # the fallback as the profiled backend builds it
    gemm = lambda m, n=4096: Op("gemm", "gemm", 1, m=m, n=n, k=4096)  # noqa: E731
    assert prof.op_s(gemm(640)) == pytest.approx(60e-6)  # halfway between the two measured points
    assert prof.op_s(gemm(512)) == pytest.approx(50e-6)  # the fp8 record did not enter the table
    assert prof.op_s(gemm(2048)) == pytest.approx(170e-6)  # linear past the last point
    assert prof.op_s(gemm(640, n=11008)) == tile.op_s(gemm(640, n=11008))  # shape never measured: tile
    norm = Op("elementwise", "input_norm", 1, bytes=(1 << 24))
    assert prof.op_s(norm) == pytest.approx(10e-6 + 15e-6 * ((1 << 24) - (1 << 23)) / ((1 << 25) - (1 << 23)))
