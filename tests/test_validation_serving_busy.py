"""The implausibility rule of `hwsim validate serving`: the GPU time a measured run needs for its prompts'
GEMMs and all-reduces alone (kernel models checked on the kernel tables) against the time there is."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from simulator.validation.serving import PLAUSIBLE_BUSY, Prediction, classify, implied_busy, implied_peak, read_rows

CSV = Path(__file__).resolve().parents[2] / "shared" / "validation" / "aic" / "silicon_e2e_h200_sxm.csv"
pytestmark = pytest.mark.skipif(not CSV.is_file(), reason="../shared/validation/aic not present")


def _rows():
    return {r.line: r for r in read_rows(CSV)}


def _busy(row) -> float:
    scenario, _, _ = classify(row)
    return implied_busy(row, scenario)


def test_the_busy_time_is_linear_in_the_measured_request_rate_and_never_below_the_peak_share():
    rows = _rows()
    for line in (230, 236, 246, 689):  # vLLM 8B-FP8 tp1 / tp8, tp4 osl 500; vLLM 70B tp4
        row = rows[line]
        scenario, _, _ = classify(row)
        busy = implied_busy(row, scenario)
        assert busy > 0
        twice = dataclasses.replace(row, concurrency=2 * row.concurrency)
        assert implied_busy(twice, scenario) == pytest.approx(2 * busy)
        # no GEMM runs above the tensor peak: the busy time bounds the peak share from above
        assert busy >= implied_peak(row, scenario)


def test_all_reduces_count_only_with_tensor_parallelism():
    rows = _rows()
    tp1, tp8 = rows[230], rows[236]
    assert tp1.tp == 1 and tp8.tp == 8
    s1, _, _ = classify(tp1)
    # without a node fabric the all-reduces are not counted: a TP1 row has none, so nothing changes
    assert implied_busy(dataclasses.replace(tp1, system="unknown_node"), s1) == implied_busy(tp1, s1)
    # the TP8 row on a system hwsim has no node fabric for: GEMMs only, less
    other = dataclasses.replace(tp8, system="unknown_node")
    s8, _, _ = classify(tp8)
    assert implied_busy(other, s8) < implied_busy(tp8, s8)


def test_the_rule_flags_the_vllm_8b_fp8_short_output_rows_and_no_70b_row():
    rows = _rows()
    flagged = []
    for row in rows.values():
        scenario, _, _ = classify(row)
        if scenario is None or "Llama" not in row.model:
            continue
        if implied_busy(row, scenario) > PLAUSIBLE_BUSY:
            flagged.append(row)
    assert flagged and all("8B-Instruct-FP8" in r.model and r.framework == "vllm" for r in flagged)
    assert {236, 243} <= {r.line for r in flagged}  # TP8, 4000 / 8000-token prompts, 100 output tokens
    p = Prediction(rows[236], implied_peak=0.1, implied_busy=1.5)
    assert p.implausible
