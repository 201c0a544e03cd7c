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
