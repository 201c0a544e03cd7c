"""End-to-end serving benchmarks on H200 (skipped when ../shared/validation is absent).

The bands are the figures FIDELITY.md reports for `hwsim validate serving` on the dense rows,
with a margin of a few points; a change that moves the predictions away from the measurements
fails here. Every third dense row is simulated to keep the test short (the full command covers
all 199; FIDELITY.md gives both).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator.validation.serving import _is_moe, classify, errors, predict_all, read_rows, stats

CSV = Path(__file__).resolve().parents[2] / "shared" / "validation" / "aic" / "silicon_e2e_h200_sxm.csv"
pytestmark = pytest.mark.skipif(not CSV.is_file(), reason="../shared/validation/aic not present")


@pytest.fixture(scope="module")
def preds():
    rows = [r for r in read_rows(CSV) if classify(r)[0] is not None and not _is_moe(r.model)]
    assert len(rows) == 199  # the dense aggregated rows of the file
    return predict_all(rows[::3], jobs=2)


@pytest.fixture(scope="module")
def moe_preds():
    rows = [r for r in read_rows(CSV) if classify(r)[0] is not None and _is_moe(r.model)]
    assert len(rows) == 292  # gpt-oss-120b, Qwen3-235B-A22B-FP8, DeepSeek-V3/R1 rows on one node
    return predict_all(rows[::6], jobs=2)


def test_every_row_not_simulated_is_skipped_with_its_reason_and_none_silently():
    rows = read_rows(CSV)
    skipped = [classify(r)[1] for r in rows if classify(r)[0] is None]
    reasons = {why.split(":")[0].split(" (")[0] for why in skipped}
    assert reasons == {"mode 'disagg'", "mixture-of-experts model not shipped with hwsim",
                       "version 'gpt-oss-dev' is a development build, not a release hwsim has a profile for",
                       "64 GPUs span several nodes"}, reasons
    assert len(rows) == 967 and len(skipped) == 967 - 199 - 292


def test_tpot_on_the_moe_h200_rows_is_within_the_reported_band(moe_preds):
    """FIDELITY.md: MoE rows TPOT median 11.0 % on all 292 (bias +2.1 %; 12.8 % / +4.1 % before the serving
    lowering's fp8 experts took their tile configurations); this every-sixth sample (12.3 %, p90 27.5 %,
    +5.1 % when the band was written) has a band of its own."""
    med, p90, bias, n = stats(*errors(moe_preds, "tpot"))
    assert n == 49
    assert med <= 16.0 and p90 <= 35.0 and abs(bias) <= 12.0, (med, p90, bias)


def test_fidelity_target_moe_tpot_median_15_percent(moe_preds):
    """The target of the MoE serving issue on this sample (12.3 % when written)."""
    med, _, _, _ = stats(*errors(moe_preds, "tpot"))
    assert med <= 15.0


def test_tpot_on_the_dense_h200_rows_is_within_the_reported_band(preds):
    med, p90, bias, n = stats(*errors(preds, "tpot"))
    assert n == 67
    assert med <= 11.0 and abs(bias) <= 5.0, (med, p90, bias)  # every third row: 8.7 % median, +0.1 % bias


def test_ttft_on_the_dense_h200_rows_is_within_the_reported_band(preds):
    med, p90, bias, n = stats(*errors(preds, "ttft"))
    # every third row: 19.4 % median, -3.0 % bias when written; 19.4 / -5.6 before and 20.9 / -8.6 after vLLM's
    # add + RMSNorm took its quantize kernel's H200 rate and host.request_s its refit (FIDELITY.md, prefill by parts)
    assert med <= 24.0 and abs(bias) <= 10.0, (med, p90, bias)


def test_tpot_of_the_70b_rows_per_framework_is_within_ten_percent_median(preds):
    for fw in ("vllm", "trtllm"):
        sub = [p for p in preds if fw == p.row.framework and "70B" in p.row.model]
        med, _, _, n = stats(*errors(sub, "tpot"))
        assert n >= 15 and med <= 10.0, (fw, med)


def test_more_clients_never_lower_the_predicted_tpot_of_one_configuration(preds):
    """Queueing theory: in a closed loop, more clients mean as large or larger batches and steps."""
    groups: dict[tuple, list] = {}
    for p in preds:
        r = p.row
        groups.setdefault((r.model, r.framework, r.tp, r.isl, r.osl), []).append((r.concurrency, p.tpot_ms))
    checked = 0
    for pts in groups.values():
        if len(pts) < 2:
            continue
        pts.sort()
        tpots = np.array([t for _, t in pts])
        assert np.all(np.diff(tpots) >= -0.02 * tpots[:-1]), pts
        checked += 1
    assert checked >= 5


@pytest.mark.xfail(strict=True, reason="fidelity target not reached yet: TPOT p90 <= 25 % on all dense rows (the "
                                       "vLLM Llama-3.1-8B-FP8 rows, see FIDELITY.md)")
def test_fidelity_target_tpot_p90_25_percent(preds):
    assert stats(*errors(preds, "tpot"))[1] <= 25.0


@pytest.mark.xfail(strict=True, reason="fidelity target not reached yet: SGLang TTFT (requests wait before their "
                                       "first token as behind an admission limit; the frontend queue is ruled out "
                                       "by the rows' own rates, see FIDELITY.md)")
def test_fidelity_target_sglang_ttft_20_percent(preds):
    sub = [p for p in preds if p.row.framework == "sglang"]
    assert stats(*errors(sub, "ttft"))[0] <= 20.0
