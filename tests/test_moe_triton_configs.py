"""The Triton fused-MoE tile configurations the frameworks run (hw_models.moe_configs): the shipped H200
files are the frameworks' own (values read in the wheels), the closest-batch-size rule and the default
configuration rules are the frameworks' code, moe_align_block_size's padding conserves tokens, and a
grouped GEMM at a fixed configuration never gets faster with more rows."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw_models.gemm_grouped import plan_grouped_config
from hw_models.moe_configs import config_sets, default_config, padded_rows, triton_config, tuned_file
from hw_models.timing.tile import TileBackend, TileConfig
from simulator.validation.kernels import gpu_config
from workloads.llm import GROUPED, moe_ops
from workloads.moe import RoutingConfig


def test_every_framework_version_measured_ships_its_h200_files():
    # the aic kernel tables' releases (sglang 0.5.10 / 0.5.14, vllm 0.19.0 / 0.24.0) and the SGLang serving rows'
    assert config_sets() == ("sglang==0.5.10", "sglang==0.5.14", "sglang==0.5.6.post2", "sglang==0.5.8.post1",
                             "sglang==0.5.9", "vllm==0.19.0", "vllm==0.24.0")


@pytest.mark.parametrize("release", ["0.5.6.post2", "0.5.8.post1", "0.5.9", "0.5.10", "0.5.14"])
def test_a_serving_run_of_an_sglang_release_runs_that_releases_tile_configurations(release):
    # validate serving runs each row at its own release (FrameworkProfile.for_version): the fused MoE's tuned
    # files are that release's, not the newest set's
    from simulator.config.framework import resolve_profile

    assert resolve_profile("sglang", release).timing["moe_config_set"] == f"sglang=={release}"


def test_sglang_releases_differ_in_their_deepseek_tile_configurations():
    # DeepSeek-V3 / R1 at tp 8 with the shared expert fused (E=257, N=256, block fp8): 0.5.6.post2 has no
    # triton_3_5_1 file and falls back to triton_3_3_1's, without a down-projection file; 0.5.9 loads triton_3_5_1's
    # (as 0.5.14, which finds no triton_3_6_0 one)
    from hw_models.moe_configs import _sets

    files = {r: _sets()[f"sglang=={r}"]["files"] for r in ("0.5.6.post2", "0.5.9", "0.5.14")}
    assert "/triton_3_3_1/" in files["0.5.6.post2"]["257,256,fp8_w8a8,128,128"]["file"]
    assert "257,256,fp8_w8a8,128,128,down" not in files["0.5.6.post2"]
    assert tuned_file("sglang==0.5.9", 257, 256, "fp8_w8a8", 128) == \
        tuned_file("sglang==0.5.14", 257, 256, "fp8_w8a8", 128)
    assert tuned_file("sglang==0.5.6.post2", 257, 256, "fp8_w8a8", 128) != \
        tuned_file("sglang==0.5.9", 257, 256, "fp8_w8a8", 128)
def test_a_shipped_file_holds_the_values_of_the_frameworks_file():
    # vllm==0.24.0 vllm/model_executor/layers/fused_moe/configs/E=128,N=768,device_name=NVIDIA_H200.json,
    # batch sizes 1 and 2 (read in the wheel)
    t = tuned_file("vllm==0.24.0", 128, 768, "bf16")
    assert t["1"] == dict(BLOCK_SIZE_M=16, BLOCK_SIZE_N=64, BLOCK_SIZE_K=64, GROUP_SIZE_M=1, num_warps=4, num_stages=5)
    assert t["2"] == dict(BLOCK_SIZE_M=16, BLOCK_SIZE_N=64, BLOCK_SIZE_K=64, GROUP_SIZE_M=1, num_warps=4, num_stages=4)
    assert triton_config("vllm==0.24.0", 1, 128, 768, "bf16") == (16, 64, 64, 1, 4, 5)


@pytest.mark.parametrize("cset", ["vllm==0.24.0", "sglang==0.5.10"])
def test_the_configuration_is_the_files_entry_at_the_closest_batch_size(cset):
    table = tuned_file(cset, 8, 14336, "bf16")  # Mixtral 8 x 14336 at tp 1: a file in both
    sizes = sorted(int(k) for k in table)
    for m in range(1, 2 * sizes[-1], 7):
        best = min(sizes, key=lambda s: (abs(s - m), s))  # ties: the smaller (files list batch sizes ascending)
        c = table[str(best)]
        want = (c["BLOCK_SIZE_M"], c["BLOCK_SIZE_N"], c["BLOCK_SIZE_K"], c.get("GROUP_SIZE_M", 1),
                c.get("num_warps", 4), c.get("num_stages", 3))
        assert triton_config(cset, m, 8, 14336, "bf16") == want, m


def test_sglang_looks_in_its_triton_versions_directory_first_then_its_fallback_order():
    from hw_models.moe_configs import _sets

    files = _sets()["sglang==0.5.10"]["files"]
    # triton 3.5.1 (torch 2.9.1) holds E=257,N=256 block fp8; Mixtral's files exist only for triton 3.1.0
    assert "/triton_3_5_1/" in files["257,256,fp8_w8a8,128,128"]["file"]
    assert "/triton_3_1_0/" in files["8,14336,bf16"]["file"]
    # sglang 0.5.14 runs triton 3.6.0: its own directory first
    assert "/triton_3_6_0/" in _sets()["sglang==0.5.14"]["files"]["128,704,bf16"]["file"]
    assert all("/triton_3_3_0/" not in f["file"] for f in files.values())  # not in 0.5.10's fallback list


def test_the_default_configurations_are_the_frameworks_rules():
    # sglang get_default_config, 16-bit: 16x32x64 while M <= E, then 64x64x32 (Triton's 4 warps, 3 stages)
    assert triton_config("sglang==0.5.10", 128, 128, 1536, "bf16") == (16, 32, 64, 1, 4, 3)
    assert triton_config("sglang==0.5.10", 129, 128, 1536, "bf16") == (64, 64, 32, 8, 4, 3)
    assert default_config("sglang", 10, 8, "fp8_w8a8", 128)["BLOCK_SIZE_M"] == 64
    # vllm get_default_config: BLOCK_SIZE_M 16 / 32 / 64 / 128 at M <= 32 / 96 / 512 / above
    assert [default_config("vllm", m, 128, "bf16")["BLOCK_SIZE_M"] for m in (32, 33, 96, 97, 512, 513)] == \
        [16, 32, 32, 64, 64, 128]
    assert default_config("vllm", 65, 128, "fp8_w8a8", 128)["BLOCK_SIZE_M"] == 64
    # another GPU (no tuned file shipped) runs the default even where the H200 has a file
    assert triton_config("vllm==0.24.0", 1, 128, 768, "bf16", tuned=False) == (16, 64, 128, 1, 4, 4)


def test_sglang_down_files_keep_the_up_configurations_block_m():
    up = triton_config("sglang==0.5.14", 4096, 128, 704, "bf16")
    down = triton_config("sglang==0.5.14", 4096, 128, 704, "bf16", down=True)
    assert down[0] == up[0]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5000), min_size=1, max_size=64), st.sampled_from([16, 32, 64, 128]))
def test_padding_conserves_tokens(groups, block_m):
    padded = padded_rows(tuple(groups), block_m)
    for g, p in zip(groups, padded, strict=True):
        assert g <= p < g + block_m and p % block_m == 0
    assert sum(groups) <= sum(padded) < sum(groups) + len(groups) * block_m


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3000), min_size=1, max_size=32), st.integers(0, 31), st.integers(1, 200),
       st.sampled_from([(16, 32, 64, 1, 4, 3), (64, 64, 32, 8, 4, 3), (128, 128, 64, 16, 8, 3),
                        (16, 64, 128, 1, 4, 4)]))
def test_time_never_falls_as_rows_are_added_within_a_configuration(groups, which, extra, cfg):
    p = TileBackend(TileConfig(), gpu_config("H200")).gemm_params("bf16")
    groups = tuple(groups)
    if not any(groups):
        groups = (1,) + groups[1:]
    more = list(groups)
    more[which % len(more)] += extra
    for n, k in ((3072, 4096), (4096, 1536)):
        t0 = plan_grouped_config(groups, n, k, 2.0, p, cfg).time_s
        t1 = plan_grouped_config(tuple(more), n, k, 2.0, p, cfg).time_s
        assert t1 >= t0 * (1 - 1e-12)


def _model(experts=128, top_k=8, hidden=4096, inter=1536):
    from workloads.architectures.transformer import TransformerConfig

    return TransformerConfig(name="t", family="moe", num_layers=1, hidden_size=hidden, num_heads=1, num_kv_heads=1,
                             head_dim=1, intermediate_size=inter, gated_mlp=True, vocab_size=1, max_position=1,
                             num_experts=experts, experts_per_token=top_k, routing=RoutingConfig())


def test_the_tile_backend_runs_a_triton_family_at_the_frameworks_configuration():
    ops = [op for op in moe_ops(4096, _model(), 2, 2) if op.kind == GROUPED]
    assert all(op.q_tokens == 4096 and op.experts == 64 for op in ops)
    be = TileBackend(TileConfig(moe_kernel="triton_sglang", moe_config_set="sglang==0.5.10"), gpu_config("H200"))
    up, down = ops
    assert be._triton_config(up) == triton_config("sglang==0.5.10", 4096, 64, 768, "bf16")
    assert be._triton_config(down) == triton_config("sglang==0.5.10", 4096, 64, 768, "bf16", down=True)
    cutlass = TileBackend(TileConfig(moe_kernel="cutlass"), gpu_config("H200"))
    assert cutlass._triton_config(up) is None  # CUTLASS families keep the fastest-tile plan


def test_small_tiles_are_bounded_by_their_l2_operand_traffic():
    # a 64 x 64 tile streams (64 + 64) x K x 2 bytes from L2 per 2 x 64 x 64 x K FLOPs: 1/32 B per FLOP
    p = TileBackend(TileConfig(), gpu_config("H200")).gemm_params("bf16")
    groups, n, k = (4096,) * 8, 3072, 4096
    plan = plan_grouped_config(groups, n, k, 2.0, p, (64, 64, 32, 8, 4, 3))
    flops = 2.0 * sum(groups) * n * k
    assert plan.l2_bytes == pytest.approx(flops / 32.0)
    assert plan.time_s >= plan.l2_bytes / p.l2_bw
    big = plan_grouped_config(groups, n, k, 2.0, p, (128, 128, 64, 16, 8, 3))
    assert big.time_s < plan.time_s


def test_an_unknown_configuration_set_is_a_one_line_error():
    with pytest.raises(ValueError, match="moe_config_set"):
        TileConfig(moe_config_set="sglang==9.9")
    r = subprocess.run([sys.executable, "-m", "simulator.validation.aic_moe", "fit", ".", "tritonn"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "unknown kernel family 'tritonn'" in r.stderr and "Traceback" not in r.stderr


def test_block_fp8_experts_on_another_family_are_not_timed_at_a_triton_configuration():
    # vLLM 0.12's profile: Triton fused MoE, block-scaled fp8 experts on DeepGEMM (moe_kernel_fp8_block); a
    # DeepGEMM grouped GEMM has no Triton tile configuration: it takes the same time as under DeepGEMM alone
    from dataclasses import replace

    h200 = gpu_config("H200")
    up, down = [op for op in moe_ops(256, _model(), 2, 1) if op.kind == GROUPED]
    mixed = TileBackend(TileConfig(moe_kernel="triton", moe_kernel_fp8_block="deepgemm"), h200)
    alone = TileBackend(TileConfig(moe_kernel="deepgemm"), h200)
    for op in (up, down):
        block = replace(op, dtype="fp8", dtype_bytes=1.0 + 4.0 / 128, w_bytes=1.0, out_bytes=2.0, scale_block_k=128)
        assert mixed._triton_config(block) is None
        assert mixed.op_s(block) == alone.op_s(block)
        assert mixed._triton_config(op) is not None  # 16-bit experts stay on the Triton kernel


@pytest.mark.parametrize("preset,triton", [("W8A8-fp8-block", True), ("W8A8-fp8", True), ("W4A16-marlin", False),
                                           ("W4A16-mxfp4-moe", False)])
def test_the_serving_lowering_of_quantized_experts_runs_the_configuration_the_kernel_check_runs(preset, triton):
    # serving lowers fp8 experts with the scheme's weight dtype (Op.w_dtype "fp8_e4m3"); the aic kernel check
    # (aic_moe.item_of) without it: both are the Triton fused_moe at fp8_w8a8 and take the same tile configuration.
    # Weight-only formats run other kernels (Marlin, MXFP4): no Triton configuration
    from dataclasses import replace

    import simulator.core.registry as reg
    from simulator.config.loader import resolve_component
    from workloads.llm import dense_ops

    comp = resolve_component({"kind": "scheme", "preset": preset}, reg.QUANTIZATION, "quantization")
    ops = [op for op in dense_ops(512, 0, _model(), 2, comp.cls(comp.config)) if op.kind == GROUPED]
    assert len(ops) == 2 and all(op.w_dtype for op in ops)
    be = TileBackend(TileConfig(moe_kernel="triton_sglang", moe_config_set="sglang==0.5.10"), gpu_config("H200"))
    for op in ops:
        if triton:
            assert be._triton_config(op) is not None
            assert be._triton_config(op) == be._triton_config(replace(op, w_dtype=""))
        else:
            assert be._triton_config(op) is None


@pytest.mark.parametrize("name,tuned", [("NVIDIA H200 SXM 141GB", True), ("H200", True), ("NVIDIA GH200 480GB", False),
                                        ("NVIDIA H200 NVL", False), ("NVIDIA H100 80GB HBM3", False)])
def test_only_the_h200_sxm_loads_the_h200_files(name, tuned):
    # the frameworks key a tuned file by torch.cuda.get_device_name(): a GH200 ("NVIDIA GH200 480GB") or an H200 NVL
    # ("NVIDIA H200 NVL") finds no NVIDIA_H200 file and runs the default configuration
    from hw_models.moe_configs import has_h200_files

    assert has_h200_files(name) is tuned
