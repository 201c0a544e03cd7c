"""The linear-attention kernel tables (aic, H200): rows map to hwsim's state-space ops, and the
errors stay within the ceilings FIDELITY.md reports (regression guard, not a fit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator.validation.aic_linear import CLASSES, ops_of

AIC = Path(__file__).resolve().parents[2] / "shared" / "validation" / "aic" / "h200_sxm"


def test_conv_row_moves_its_channels_in_and_out():
    r = {"kernel_source": "causal_conv1d_fn", "batch_size": 2, "seq_len": 1024, "num_v_heads": 32, "head_v_dim": 128,
         "head_k_dim": 128, "num_k_heads": 16, "d_conv": 4}
    cls, ops = ops_of(r, "gdn")
    conv_dim = 32 * 128 + 2 * 16 * 128  # v, k, q channels
    assert cls == "linear conv context" and ops[0].bytes == 2 * 2048 * conv_dim * 2


def test_recurrent_row_reads_and_writes_each_state():
    r = {"kernel_source": "fused_recurrent_gated_delta_rule", "batch_size": 64, "seq_len": 1, "num_v_heads": 32,
         "head_v_dim": 128, "head_k_dim": 128, "num_k_heads": 16, "d_conv": 4}
    cls, ops = ops_of(r, "gdn")
    assert cls == "gdn recurrent generation"
    assert ops[0].bytes >= 64 * 2 * 32 * 128 * 128 * 2


@pytest.mark.skipif(not AIC.exists(), reason="aic tables not present")
def test_generation_kernels_within_reported_ceilings():
    from simulator.validation.aic import predict_aic
    from simulator.validation.aic_linear import load_linear
    from simulator.validation.kernels import gpu_config

    rows, _ = load_linear(AIC, phase="generation")
    assert {r.op for r in rows} == {CLASSES[1], CLASSES[3]}
    res = predict_aic(rows, "tile", gpu_config("H200"))
    summary = res.summary(key=lambda r: r.op)
    assert summary[CLASSES[1]][0] < 15.0  # conv update: median APE % (FIDELITY.md: 10.0)
    assert summary[CLASSES[3]][0] < 40.0  # recurrent state update (FIDELITY.md: 33.8)
    assert np.all(res.predicted > 0)


@pytest.mark.skipif(not AIC.exists(), reason="aic tables not present")
def test_sliding_window_attention_rows_within_reported_ceilings():
    """The aic attention tables' windowed rows (128 / 1,024 / 8,192 tokens) through the variant lowering."""
    from simulator.validation.aic import predict_aic
    from simulator.validation.aic_window import CLASSES as WINDOW
    from simulator.validation.aic_window import load_window
    from simulator.validation.kernels import gpu_config

    rows, skipped = load_window(AIC, stride=25)
    assert skipped and {r.op for r in rows} == set(WINDOW)
    res = predict_aic(rows, "tile", gpu_config("H200"))
    summary = res.summary(key=lambda r: r.op)
    assert summary[WINDOW[0]][0] < 25.0  # context: FIDELITY.md 17.5 % median (all rows)
    assert summary[WINDOW[1]][0] < 20.0  # generation: FIDELITY.md 13.9 %


def test_validate_variants_refuses_a_missing_directory_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from simulator.cli import app

    r = CliRunner().invoke(app, ["validate", "variants", str(tmp_path / "none")])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "not a directory" in lines[0]
