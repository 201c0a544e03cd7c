"""`hwsim validate kernels` on aic system directories (Parquet kernel tables, H200 / A100).

The figure tests read ../shared/validation/aic and skip when it is absent; the CLI tests build a
small aic-style directory of their own.
"""

from __future__ import annotations

import sys
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
from typer.testing import CliRunner

AIC = Path(__file__).resolve().parents[2] / "shared" / "validation" / "aic"
needs_aic = pytest.mark.skipif(not (AIC / "h200_sxm").is_dir(), reason="../shared/validation/aic not present")
runner = CliRunner()


def _app():
    from simulator.cli import app

    return app


def _tiny_aic(root: Path, name: str = "h200_sxm") -> Path:
    """An aic-style system directory: one GEMM table (bf16, fp8, block fp8) and one decode table."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    d = root / name
    g = d / "gemm" / "vllm" / "0.1"
    g.mkdir(parents=True)
    (g / "collection_meta.yaml").write_text("schema_version: 1\n")
    pq.write_table(pa.table({"gemm_dtype": ["bfloat16", "fp8", "fp8_block"], "m": [128, 4096, 64],
                             "n": [4096, 4096, 4096], "k": [4096, 4096, 4096], "latency": [0.02, 0.2, 0.01]}),
                   g / "gemm_perf.parquet")
    a = d / "attention" / "vllm" / "0.1"
    a.mkdir(parents=True)
    (a / "collection_meta.yaml").write_text("schema_version: 1\n")
    pq.write_table(pa.table({"batch_size": [8, 8], "isl": [1, 1], "step": [1023, 1023], "num_heads": [32, 32],
                             "num_key_value_heads": [8, 8], "head_dim": [128, 128], "beam_width": [1, 1],
                             "window_size": [0, 0], "attn_dtype": ["bfloat16", "bfloat16"],
                             "kv_cache_dtype": ["bfloat16", "fp8"], "latency": [0.02, 0.02]}),
                   a / "generation_attention_perf.parquet")
    return d


def test_a_small_aic_directory_lists_skipped_rows_and_writes_one_csv_line_per_row(tmp_path):
    d = _tiny_aic(tmp_path)
    out = runner.invoke(_app(), ["validate", "kernels", str(d), "--backend", "tile", "--by", "framework",
                                 "--out", str(tmp_path / "r.html"), "--csv", str(tmp_path / "rows.csv")])
    assert out.exit_code == 0, out.output
    assert "gemm fp8_block | vllm 0.1" in out.output  # block-scaled fp8 rows are predicted, not skipped
    assert "skipped 1 row(s): generation attention: fp8 KV cache" in out.output
    assert "on H200" in out.output  # the preset follows from the directory name
    assert "gemm fp8 | vllm 0.1" in out.output
    lines = (tmp_path / "rows.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 4  # header + bf16 GEMM, fp8 GEMM, block fp8 GEMM, one decode row
    assert lines[0].startswith("class,framework,version,m,n,k")
    assert lines[2].split(",")[:3] == ["gemm fp8", "vllm", "0.1"]


def test_gpu_option_overrides_the_preset_named_by_the_directory(tmp_path):
    d = _tiny_aic(tmp_path)
    out = runner.invoke(_app(), ["validate", "kernels", str(d), "--backend", "roofline", "--gpu", "H100-SXM",
                                 "--out", str(tmp_path / "r.html")])
    assert out.exit_code == 0, out.output
    assert "on H100-SXM" in out.output
    assert (tmp_path / "rows.csv").is_file()  # written beside --out without --csv


def test_an_unknown_system_name_without_gpu_exits_2_with_one_line(tmp_path):
    d = _tiny_aic(tmp_path, "x999_sxm")
    out = runner.invoke(_app(), ["validate", "kernels", str(d), "--out", str(tmp_path / "r.html")])
    assert out.exit_code == 2
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "x999_sxm" in lines[0] and "--gpu" in lines[0]


def test_missing_pyarrow_gives_the_one_line_install_hint_and_exit_2(tmp_path, monkeypatch):
    d = tmp_path / "h200_sxm" / "gemm" / "vllm" / "0.1"
    d.mkdir(parents=True)
    (d / "collection_meta.yaml").write_text("schema_version: 1\n")
    (d / "gemm_perf.parquet").write_bytes(b"PAR1")
    for mod in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    out = runner.invoke(_app(), ["validate", "kernels", str(tmp_path / "h200_sxm"), "--out", str(tmp_path / "r.html")])
    assert out.exit_code == 2
    assert out.output.strip() == "error: reading Parquet tables needs pyarrow: pip install 'hwsim[validate]'"


def test_fp8_large_gemm_reaches_between_40_and_75_percent_of_the_fp8_peak_and_never_the_roofline():
    from hw_models.gemm_tiles import gemm_roofline_s
    from simulator.validation.kernels import gpu_config, make_backend
    from workloads.llm import Op

    g = gpu_config("H200")
    b = make_backend("tile", g)
    for m, n, k in ((8192, 8192, 8192), (16384, 8192, 4096), (4096, 28672, 8192)):
        t = b.op_s(Op("gemm", "gemm", 1, m=m, n=n, k=k, dtype="fp8", dtype_bytes=1.0, out_bytes=2.0))
        eff = 2.0 * m * n * k / t / g.tensor_peak("fp8")
        assert 0.4 <= eff <= 0.75
        assert t >= gemm_roofline_s(m, n, k, 1.0, g.tensor_peak("fp8"), g.memory_bw_bytes_per_s)
        t16 = b.op_s(Op("gemm", "gemm", 1, m=m, n=n, k=k))
        assert t < t16  # fp8 still beats bf16 on the same shape


# The figure tests predict every SAMPLE-th row of the GEMM and attention tables (in load order, so
# every shape sweep is represented). Against all rows (H200, tile, measured on this tree) the sample's
# median APE differs by at most 0.1 point and its p90 by at most 0.6 point in the asserted classes
# (gemm bf16 7.41 / 20.58 vs 7.36 / 20.56, gemm fp8 7.81 / 23.61 vs 7.88 / 23.47, context 10.34 vs
# 10.40, generation 11.90 vs 11.89; A100 gemm bf16 9.53 vs 9.61, context 7.19 vs 7.08, generation
# 14.46 vs 14.34) and the bias by at most 0.2 point, so the thresholds, set on all rows, are checked
# on the sample as they are; row counts are checked on all rows. `hwsim validate kernels` and
# FIDELITY.md report all rows.
SAMPLE = 5


@pytest.fixture(scope="module")
def gemm_attention():
    """system -> (rows, {skip reason: count}) of its GEMM and attention tables, read once per module."""
    from simulator.validation.aic import _attention_rows, _gemm_rows

    @cache
    def read(system: str):
        skipped: Counter = Counter()
        rows = _gemm_rows(AIC / system, skipped) + _attention_rows(AIC / system, skipped)
        return rows, skipped

    return read


def sampled(rows, gpu: str):
    """(tile predictions of every SAMPLE-th row, {class: rows} over all rows)."""
    from simulator.validation.aic import predict_aic
    from simulator.validation.kernels import gpu_config, op_class

    return predict_aic(rows[::SAMPLE], "tile", gpu_config(gpu)), Counter(op_class(r) for r in rows)


@pytest.fixture(scope="module")
def h200(gemm_attention):
    return sampled(gemm_attention("h200_sxm")[0], "H200")


@needs_aic
def test_the_loader_reads_every_gemm_and_attention_table_row_or_counts_why_not(gemm_attention):
    import pyarrow.parquet as pq

    for system in ("h200_sxm", "a100_sxm"):
        d = AIC / system
        tables = list(d.glob("gemm/*/*/gemm_perf.parquet")) + list(d.glob("attention/*/*/*_attention_perf.parquet"))
        total = sum(pq.read_metadata(p).num_rows for p in tables)
        rows, skipped = gemm_attention(system)
        assert len(tables) >= 6 and len(rows) > 50_000
        assert len(rows) + sum(skipped.values()) == total
        assert {r.op for r in rows} >= {"gemm bf16", "context attention", "generation attention"}


@needs_aic
def test_h200_tile_predictions_meet_the_gemm_bf16_and_attention_targets(h200):
    res, full = h200
    s, bias = res.summary(), res.bias()
    assert min(s[c][2] for c in ("gemm bf16", "gemm fp8", "context attention", "generation attention")) > 5_000
    # targets: GEMM <= 8 %, attention <= 12 % median APE. Achieved (FIDELITY.md): bf16 7.4 / 20.6,
    # context 8.2 / 30.1 (10.4 / 31.4 before the persistent, partly overlapped fa3 prefill), generation 11.9 / 38.5;
    # fp8 7.8 / 22.9
    assert s["gemm bf16"][0] <= 7.8 and s["gemm bf16"][1] <= 21.5 and full["gemm bf16"] > 100_000
    assert s["context attention"][0] <= 8.7 and s["context attention"][1] <= 31.0
    assert s["generation attention"][0] <= 12.0
    assert s["gemm fp8"][0] <= 8.2 and s["gemm fp8"][1] <= 24.0 and full["gemm fp8"] > 100_000
    assert all(abs(bias[c]) < 5.0 for c in ("gemm bf16", "gemm fp8", "context attention", "generation attention"))


@needs_aic
def test_fidelity_target_h200_fp8_gemm_8_percent(h200):
    # the target itself, no margin: 7.6 % on all rows (FIDELITY.md, Decode step by parts)
    assert h200[0].summary()["gemm fp8"][0] <= 8.0


@needs_aic
def test_a100_aic_tables_are_predicted_by_the_same_model(gemm_attention):
    res, full = sampled(gemm_attention("a100_sxm")[0], "A100-80GB")
    s = res.summary()
    # achieved (FIDELITY.md): GEMM 9.6 / 36.9 (constants fitted on Vidur), context 7.1 / 27.7, generation 14.3 / 45.7
    assert s["gemm bf16"][0] <= 10.1 and full["gemm bf16"] > 50_000
    assert s["context attention"][0] <= 7.6 and s["generation attention"][0] <= 15.0


def test_profiled_backend_interpolates_aic_gemm_and_decode_tables_and_falls_back_elsewhere(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from simulator.validation.kernels import gpu_config, make_backend
    from workloads.llm import Op

    d = tmp_path / "h200_sxm"
    g, a = d / "gemm" / "vllm" / "0.1", d / "attention" / "vllm" / "0.1"
    g.mkdir(parents=True)
    a.mkdir(parents=True)
    pq.write_table(pa.table({"gemm_dtype": ["bfloat16", "bfloat16", "fp8"], "m": [16, 48, 32], "n": [4096] * 3,
                             "k": [4096] * 3, "latency": [0.010, 0.030, 0.001]}), g / "gemm_perf.parquet")
    pq.write_table(pa.table({"batch_size": [8, 8, 16, 16], "isl": [1] * 4, "step": [999, 1999, 999, 1999],
                             "num_heads": [32] * 4, "num_key_value_heads": [8] * 4, "head_dim": [128] * 4,
                             "beam_width": [1] * 4, "window_size": [0] * 4, "attn_dtype": ["bfloat16"] * 4,
                             "kv_cache_dtype": ["bfloat16"] * 4, "latency": [0.010, 0.020, 0.030, 0.040]}),
                   a / "generation_attention_perf.parquet")
    gpu = gpu_config("H200")
    b = make_backend("profiled", gpu, {"tables": str(d)})
    assert b.op_s(Op("gemm", "g", 1, m=32, n=4096, k=4096)) == pytest.approx(20e-6)  # the fp8 row is not used
    dec = Op("attn_decode", "d", 1, seqs=12, q_tokens=12, kv_tokens=12 * 1500, heads=32, kv_heads=8, head_dim=128)
    assert b.op_s(dec) == pytest.approx(25e-6)  # midway in batch (20 us) and context (30 us)
    assert b.decode_attention_s(dec, [8 * 1000 * 12 // 8])[0] == pytest.approx(20e-6)
    tile = make_backend("tile", gpu, {"cuda_graphs": False})  # the fallback: tile with its defaults
    other = Op("gemm", "g", 1, m=32, n=1024, k=1024)
    assert b.op_s(other) == tile.op_s(other)  # a shape the tables do not hold
