"""The host-time fit runs on the same rows as the frontend fit and `try`: a framework's simulated dense rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.validation.serving import _is_moe, classify, read_rows
from simulator.validation.serving_fit import dense_rows

CSV = Path(__file__).resolve().parents[2] / "shared/validation/aic/silicon_e2e_h200_sxm.csv"


@pytest.mark.skipif(not CSV.exists(), reason="the aic end-to-end rows are not present")
@pytest.mark.parametrize("fw", ["vllm", "trtllm", "sglang"])
def test_the_host_fit_takes_the_frameworks_simulated_dense_rows_only(fw):
    rows = dense_rows(CSV, fw)
    every = [r for r in read_rows(CSV) if r.framework == fw and classify(r)[0] is not None]
    assert rows and all(r.framework == fw and not _is_moe(r.model) for r in rows)
    assert len(rows) < len(every)  # the framework has simulated MoE rows, left out
    assert {r.line for r in rows} == {r.line for r in every if not _is_moe(r.model)}
    assert {r.line % 2 for r in rows} == {0, 1}  # both splits: even lines fit, odd held out


def _row(line: int, conc: int, isl: int, osl: int, ttft_ms: float, tpot_ms: float):
    from simulator.validation.serving import ServingRow

    return ServingRow(line, "r", "m", "trtllm", None, "fp8", "agg", isl, osl, conc, 1, 1, 1, 1, "h200_sxm",
                      ttft_ms, tpot_ms)


def test_the_frontend_fits_search_space_is_bounded_by_the_even_lines_only():
    """The Little's-law bounds cut the grid the fit searches: taken over every row, a held-out (odd)
    line's rate would shape the fit. An odd line 100x faster than the even ones changes nothing; the
    same row on an even line cuts the grid."""
    from simulator.validation.serving_fit import frontend_search

    even = [_row(2, 10, 1000, 11, 100.0, 10.0), _row(4, 1, 4000, 2, 100.0, 100.0)]
    fast = _row(3, 100, 8000, 101, 10.0, 0.1)  # 100 clients, 20 ms each: 5,000 requests/s
    grids, bounds = frontend_search(even + [fast], replace_latency=True)
    assert grids == frontend_search(even, replace_latency=True)[0]
    assert bounds["request_s"] == pytest.approx(50.0)
    cut, _ = frontend_search(even + [_row(6, 100, 8000, 101, 10.0, 0.1)], replace_latency=True)
    assert max(cut["request_s"][1]) < max(grids["request_s"][1])  # 1 / 5,000 per s: 0.2 ms, the grid's 0 only
    assert cut["request_s"][1] == (0,)


@pytest.mark.skipif(not CSV.exists(), reason="the aic end-to-end rows are not present")
@pytest.mark.parametrize("argv, names", [
    (["try", str(CSV), "trtllm", "[1]"], "object"),
    (["try", str(CSV), "trtllm", '{"bogus": 1}'], "bogus"),
    (["try", str(CSV), "nosuchfw", "{}"], "nosuchfw"),
    (["try", "/nonexistent/rows.csv", "trtllm", "{}"], "/nonexistent/rows.csv"),
    (["frontend", str(CSV), "nosuchfw"], "nosuchfw"),
    (["host", "/nonexistent/rows.csv", "vllm"], "/nonexistent/rows.csv"),
])
def test_the_fit_tools_refuse_bad_input_with_one_line_and_exit_2(argv, names, capsys):
    from simulator.validation.serving_fit import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and names in err[0], err
