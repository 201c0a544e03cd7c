"""Diffusion denoisers and their serving study: tokens, FLOPs, guidance, batching."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.studies.diffusion import Config, simulate
from workloads.diffusion import DenoiserConfig, step_flops, step_ops

ROOT = Path(__file__).resolve().parents[1]


def test_resolution_to_tokens():
    dit = DenoiserConfig(preset="DiT-XL/2")
    assert dit.tokens(256) == (256 // 8 // 2) ** 2 == 256
    assert dit.tokens(512) == 1024


def test_dit_xl2_forward_is_the_papers_118_6_gmacs():
    # DiT paper, Table 4: DiT-XL/2 at 256 px, 118.6 Gflops (multiply-accumulates) per forward pass
    macs = step_flops(DenoiserConfig(preset="DiT-XL/2"), 1, 256, guidance=False) / 2
    assert macs / 1e9 == pytest.approx(118.6, rel=0.03)


@pytest.mark.parametrize("preset", ["DiT-XL/2", "SD-1.5-UNet"])
def test_guidance_doubles_the_step(preset):
    cfg = DenoiserConfig(preset=preset)
    assert step_flops(cfg, 3, 512, guidance=True) == pytest.approx(2 * step_flops(cfg, 3, 512, guidance=False))
    att = [op for op in step_ops(cfg, 3, 512) if op.kind == "attn_prefill"]
    assert att and all(op.seqs == 6 for op in att)  # 3 images x (conditional + unconditional)


def test_one_request_takes_steps_times_one_step_under_both_policies():
    cfg = Config(num_requests=1, steps=20)

    def step_s(n):
        return 0.01 * n

    for policy in ("stream", "request"):
        r = simulate(cfg, policy, step_s)
        assert r["latency_p50_s"] == pytest.approx(20 * 0.01) and r["iterations"] == 20


def test_stream_batching_lets_late_requests_join_a_running_batch():
    # constant step time whatever the batch: joining is free, so stream batching cannot be slower
    cfg = Config(num_requests=40, steps=10, max_batch=8, rate_per_s=50.0)

    def flat(n):
        return 0.01

    s, r = simulate(cfg, "stream", flat), simulate(cfg, "request", flat)
    assert s["mean_batch"] >= r["mean_batch"] and s["latency_p90_s"] <= r["latency_p90_s"] + 1e-12
    assert s["throughput_img_s"] >= r["throughput_img_s"]


def test_bad_resolution_one_line_exit_2():
    from typer.testing import CliRunner

    from simulator.cli import app

    r = CliRunner().invoke(app, ["check", str(ROOT / "scenarios/variants/diffusion_dit.yaml"),
                                 "--set", "resolution_px=500"])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "resolution" in lines[0]
