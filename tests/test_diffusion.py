"""Diffusion denoisers: tokens, FLOPs, guidance, weights (serving them: tests/test_diffusion_serving.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

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


@pytest.mark.parametrize("scenario, override, needle", [
    ("diffusion_dit", "resolution_px=500", "resolution"),
    ("diffusion_dit", "model.num_heads=7", "not a multiple of num_heads 7"),
    ("diffusion_unet", "model.num_heads=7", "not a multiple of num_heads 7"),
    ("diffusion_unet", "model.channels=[320, 640, 1280, 0]", "one positive width per level"),
    ("diffusion_unet", "resolution_px=8", "cannot be halved 3 times"),
])
def test_bad_input_one_line_exit_2(scenario, override, needle):
    from typer.testing import CliRunner

    from simulator.cli import app

    r = CliRunner().invoke(app, ["check", str(ROOT / f"scenarios/variants/{scenario}.yaml"), "--set", override])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and needle in lines[0], r.output


def test_sd15_unet_lowering_holds_the_published_weights():
    """Every weight layer of SD-1.5's UNet appears once per step: the GEMMs' weights (count x n x k) plus
    the time embedding the lowering leaves out (MLP 320 -> 1280 -> 1280 and each ResNet's 1280 -> C
    projection) are the UNet's 859.52 M parameters (runwayml/stable-diffusion-v1-5 unet; biases and
    norms, about 0.4 M, are the rest)."""
    cfg = DenoiserConfig(preset="SD-1.5-UNet")
    ops = step_ops(cfg, 1, 512, guidance=False)
    weights = sum(op.count * op.n * op.k for op in ops if op.kind == "gemm")
    resnet_out = [320] * 2 + [640] * 2 + [1280] * 4 + [1280] * 2 + [1280] * 3 + [1280] * 3 + [640] * 3 + [320] * 3
    time = 320 * 1280 + 1280 * 1280 + 1280 * sum(resnet_out)
    assert weights + time == pytest.approx(859.52e6, rel=1e-3)
    by = {op.name: op for op in ops}
    # the up path concatenates the skips: at 8 x 8 the first ResNet reads 1280 + 1280 channels
    assert by["unet_conv_l3_2560_1280"].k == 9 * 2560 and by["unet_conv_l3_2560_1280"].m == 64
    # self-attention at 64 x 64 latent pixels: 4096^2 pairs per image, two down + three up blocks
    assert by["unet_self_attention_l0"].pairs == 4096 ** 2 and by["unet_self_attention_l0"].count == 5
    assert by["unet_self_attention_mid"].pairs == 64 ** 2
