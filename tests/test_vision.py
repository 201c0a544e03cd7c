"""Vision encoders: image tokens, encoder ops, the serving loop's prompts, encoder-attention tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.config.loader import load_scenario, resolve_component
from simulator.core import registry as reg
from workloads.llm import BatchShape, lower
from workloads.vision import VisionEncoderConfig, encoder_ops

ROOT = Path(__file__).resolve().parents[1]
AIC = ROOT.parent / "shared" / "validation" / "aic" / "h200_sxm"


def test_tokens_per_image_from_resolution_patch_and_merge():
    clip = VisionEncoderConfig(preset="clip-vit-l-14-336")
    assert clip.tokens_per_image == (336 // 14) ** 2 == 576  # LLaVA-1.5's 576 image tokens
    qwen = VisionEncoderConfig(preset="qwen2-vl-vit", image_size_px=448)
    assert qwen.patches_per_image == 1024 and qwen.tokens_per_image == 256  # 2 x 2 merge
    assert qwen.encoder_tokens_per_image == 1024  # no class token
    # Qwen2-VL's merger: 2 x 2 x 1280 = 5120 -> 5120 -> the LLM's 3584 (Qwen2-VL-7B)
    proj = [op for op in encoder_ops(1, qwen, 3584, "bf16", 2.0) if op.name.startswith("vit_projector")]
    assert [(op.k, op.n) for op in proj] == [(5120, 5120), (5120, 3584)] and proj[0].m == 256


def test_encoder_attention_is_bidirectional_over_each_image():
    v = VisionEncoderConfig(preset="clip-vit-l-14-336")
    ops = {op.name: op for op in encoder_ops(3, v, 4096, "bf16", 2.0)}
    att = ops["encoder_attention"]
    # CLIP's sequence: (336 / 14)^2 = 576 patches + 1 class token; every query reads every key of its image
    assert att.pairs == 3 * 577 * 577 and att.seqs == 3 and att.count == 24
    assert att.flops() == pytest.approx(4 * 16 * 64 * 3 * 577 * 577 * 24)
    assert ops["vit_qkv"].m == 3 * 577 and ops["vit_patch_embed"].m == 3 * 576
    # encoder GEMM FLOPs per layer and token: 2 x (4 h^2 + 2 h f) = 2 x 12.6 M for h 1024, f 4096
    gemm = sum(op.flops() for n, op in ops.items() if n in ("vit_qkv", "vit_o_proj", "vit_mlp_up", "vit_mlp_down"))
    assert gemm == pytest.approx(2 * (4 * 1024 ** 2 + 2 * 1024 * 4096) * 3 * 577 * 24)
    # the LLM gets the 576 patch features only (LLaVA drops the class token)
    assert ops["vit_projector0"].m == 3 * 576 and ops["vit_projector1"].n == 4096


def _model():
    return resolve_component({"kind": "transformer", "preset": "Llama-2-7B",
                              "vision": {"preset": "clip-vit-l-14-336", "images_per_request": 2}},
                             reg.MODELS, "model").config


def test_images_are_encoded_with_the_first_chunk_only():
    m = _model()
    shape = BatchShape(prefill=((1200, 0), (300, 800)), emitting=1)
    first = [op for op in lower(shape, m) if op.name.startswith("vit")]
    later = [op for op in lower(BatchShape(prefill=((300, 800),), emitting=1), m) if op.name.startswith("vit")]
    assert first and not later
    assert {op.name: op for op in first}["vit_qkv"].m == 2 * 577  # one request's two images (+ class tokens)


def test_serving_prompts_carry_the_image_tokens():
    from simulator.runner import Simulation

    sc = load_scenario(ROOT / "scenarios" / "variants" / "vision_llava.yaml", ["workload.num_requests=5"])
    text = load_scenario(ROOT / "scenarios" / "variants" / "vision_llava.yaml",
                         ["workload.num_requests=5", "model.vision.images_per_request=0"])
    a, b = Simulation(sc), Simulation(text)
    assert (a.table.prompt_tokens - b.table.prompt_tokens == 576).all()
    res = a.run()
    assert res.summary["requests_finished"] == 5


def test_image_size_not_a_multiple_of_the_patch_is_one_line_exit_2():
    from typer.testing import CliRunner

    from simulator.cli import app

    r = CliRunner().invoke(app, ["check", str(ROOT / "scenarios/variants/vision_llava.yaml"),
                                 "--set", "model.vision.image_size_px=340"])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "patch_px" in lines[0]


@pytest.mark.skipif(not AIC.exists(), reason="aic tables not present")
def test_encoder_attention_tables_within_reported_ceiling():
    from simulator.validation.aic_encoder import validate

    res = validate(AIC)
    for key, (med, p90, _n) in res.summary(key=lambda r: r.source).items():
        assert med < 16.0 and p90 < 45.0, (key, med, p90)  # FIDELITY.md: 11.2-13.9 % median, 34-40 % p90
