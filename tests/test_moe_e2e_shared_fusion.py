"""SGLang's shared-expert fusion: DeepSeek-V3 / R1's shared expert as a 257th expert of the fused MoE
kernel (workloads.moe.fuse_shared_expert, profile fusion.shared_experts_in_moe)."""

from __future__ import annotations

import pytest

from simulator.config.framework import resolve_profile
from simulator.config.loader import resolve_component
from simulator.core import registry as reg
from workloads.llm import GEMM_KINDS, dense_ops
from workloads.moe import fuse_shared_expert


def _model(preset: str):
    return resolve_component({"kind": "transformer", "preset": preset}, reg.MODELS, "model").config


@pytest.fixture(scope="module")
def deepseek():
    return _model("DeepSeek-V3")


def _fusion(on: bool):
    f = resolve_profile("sglang", "0.5.9").fusion
    return f.model_copy(update={"shared_experts_in_moe": on})


@pytest.mark.parametrize("tokens", [1, 16, 300])
def test_the_shared_expert_joins_the_grouped_gemm_and_its_work_is_conserved(deepseek, tokens):
    plain = dense_ops(tokens, tokens, deepseek, 8, None, _fusion(False))
    fused = dense_ops(tokens, tokens, deepseek, 8, None, _fusion(True))
    names = {op.name for op in fused}
    assert not names & {"shared_up", "shared_act", "shared_down"}
    by = {op.name: op for op in plain}
    up = next(op for op in fused if op.name == "moe_up")
    assert up.groups == by["moe_up"].groups + (tokens,) and up.experts == 257
    assert up.m == by["moe_up"].m + tokens and up.pairs == by["moe_up"].pairs + tokens
    gemm_flops = [sum(op.flops() for op in ops if op.kind in GEMM_KINDS) for ops in (plain, fused)]
    assert gemm_flops[1] == pytest.approx(gemm_flops[0])  # the shared expert's FLOPs move, none are added


def test_not_fused_with_expert_or_attention_data_parallelism(deepseek):
    """Expert parallelism turns SGLang's fusion off (determine_num_fused_shared_experts). Attention data
    parallelism does not, in SGLang: its MoE layers gather every DP rank's tokens and run the shared expert
    among them; the lowering here runs the shared expert per DP rank on its own tokens instead (as
    TensorRT-LLM does), so it leaves the shared expert unfused there (no SGLang row with attention DP)."""
    for ep, dp in ((8, 1), (8, 8), (1, 8)):
        ops = dense_ops(16, 16, deepseek, 8, None, _fusion(True), ep, dp)
        assert "shared_up" in {op.name for op in ops}


def test_only_a_256_expert_model_with_one_shared_expert_of_an_experts_width(deepseek):
    for preset in ("Qwen3-235B-A22B", "Mixtral-8x7B", "Qwen3-Next-80B-A3B"):
        m = _model(preset)
        plain = dense_ops(16, 16, m, 8, None, _fusion(False))
        assert fuse_shared_expert(plain) == plain
    assert resolve_profile("sglang", "0.5.9").fusion.shared_experts_in_moe
    assert not resolve_profile("vllm", "0.12.0").fusion.shared_experts_in_moe
    assert not resolve_profile("trtllm", "1.0.0").fusion.shared_experts_in_moe
