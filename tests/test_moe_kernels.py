"""Fused-MoE kernel structure of the tile backend: the Triton family's per-pair cache rows, each family's
passes over the routed rows outside the op list (the CUTLASS permute), a group's rows re-read only when
they do not fit in L2, the family's own HBM share, and the per-quantization constants. First principles:
byte conservation and bounds."""

from __future__ import annotations

import dataclasses

import pytest

from hw_models.gemm_grouped import plan_grouped
from hw_models.timing.tile import FIT_MOE, TileBackend, TileConfig
from simulator.validation.kernels import gpu_config
from workloads.llm import GROUPED, moe_ops
from workloads.moe import RoutingConfig


def _model(experts: int = 128, top_k: int = 8, hidden: int = 4096, inter: int = 1536):
    from workloads.architectures.transformer import TransformerConfig

    return TransformerConfig(name="t", family="moe", num_layers=1, hidden_size=hidden, num_heads=1, num_kv_heads=1,
                             head_dim=1, intermediate_size=inter, gated_mlp=True, vocab_size=1, max_position=1,
                             num_experts=experts, experts_per_token=top_k, routing=RoutingConfig())


def _backend(family: str, **fam) -> TileBackend:
    kern = {k: dict(v) for k, v in FIT_MOE.items()}
    kern[family].update(fam)
    return TileBackend(TileConfig(moe_kernel=family, moe_kernels=kern, cuda_graphs=True), gpu_config("H200"))


def _grouped(tokens: int, tp: int, ep: int):
    return [op for op in moe_ops(tokens, _model(), tp, ep) if op.kind == GROUPED]


def test_the_grouped_ops_carry_every_pair_of_the_batch_and_the_gpu_its_share():
    for ep in (1, 2, 8):
        for op in _grouped(4096, ep, ep):
            assert op.pairs == 4096 * 8
            assert op.m == sum(op.groups) <= op.pairs
            assert (op.m == op.pairs) == (ep == 1)


@pytest.mark.parametrize("tokens", [1, 64, 4096])
def test_without_expert_parallelism_the_pair_cache_costs_nothing(tokens):
    on, off = _backend("triton"), _backend("triton", pair_cache=0.0)
    for op in _grouped(tokens, 1, 1):
        assert on._op_s(op) == off._op_s(op)


def test_the_pair_cache_charges_exactly_the_other_gpus_rows_and_never_speeds_a_layer_up():
    on, off = _backend("triton"), _backend("triton", pair_cache=0.0)
    up, down = _grouped(8192, 8, 8)
    other = up.pairs - up.m
    assert on._pair_cache_bytes(up, on._moe_family()) == pytest.approx(other * 2.5 * up.n * 2.0)
    assert on._pair_cache_bytes(down, on._moe_family()) == pytest.approx(other * 2 * down.n * 2.0)
    for op in (up, down):
        assert on._op_s(op) >= off._op_s(op)
    # the cache traffic alone, at the datasheet HBM rate, bounds the layer from below
    gpu = gpu_config("H200")
    cache = sum(on._pair_cache_bytes(op, on._moe_family()) for op in (up, down))
    assert on._op_s(up) + on._op_s(down) >= cache / gpu.memory_bw_bytes_per_s


@pytest.mark.parametrize("family", ["cutlass", "triton"])
def test_the_row_passes_stream_the_gpus_routed_rows_once_each_at_the_familys_hbm_share(family):
    up, down = _grouped(4096, 2, 2)
    with_, without = _backend(family), _backend(family, row_passes=0.0)
    fam = with_._moe_family()
    one = up.m * up.k * 2.0 / (gpu_config("H200").memory_bw_bytes_per_s * fam["hbm_efficiency"])
    assert with_._row_pass_s(up, fam) == pytest.approx(fam["row_passes"] * one)
    assert with_._row_pass_s(down, fam) == 0.0  # charged once per layer
    assert with_._op_s(up) - without._op_s(up) == pytest.approx(fam["row_passes"] * one)  # not hidden under the MMAs
    assert with_._op_s(down) == without._op_s(down)
    assert with_._pair_cache_bytes(up, fam) == without._pair_cache_bytes(up, fam)  # no double count with the cache


def test_the_cutlass_families_pay_their_permute_kernels_read_and_write_beyond_the_triton_gather():
    # CUTLASS MoE copies each pair's input row into expert order (read + write: 2 passes); Triton gathers
    # the rows inside its GEMM; FlashInfer's CUTLASS MoE runs TensorRT-LLM's permute
    assert FIT_MOE["cutlass"]["row_passes"] >= 2.0
    assert FIT_MOE["cutlass"]["row_passes"] >= FIT_MOE["triton"]["row_passes"] + 2.0
    assert FIT_MOE["flashinfer_cutlass"]["row_passes"] == FIT_MOE["cutlass"]["row_passes"]


def test_a_narrow_expert_layer_is_bounded_below_by_its_row_traffic():
    # width 48 per GPU, 16384 tokens x top-8: the rows (1 GiB a pass) dominate; the up GEMM reads them, the
    # down GEMM writes them, the top-k sum reads them, plus the family's own passes, at the datasheet rate
    ops = [op for op in moe_ops(16384, _model(), 32, 1) if op.name != "moe_router"]
    up = next(op for op in ops if op.name == "moe_up")
    gpu = gpu_config("H200")
    for family in FIT_MOE:
        be = _backend(family)
        passes = 3 + be._moe_family()["row_passes"]
        assert sum(be._op_s(op) for op in ops) >= passes * up.m * up.k * 2.0 / gpu.memory_bw_bytes_per_s


def test_a_group_that_fits_in_l2_is_read_once_and_a_larger_one_once_per_n_sweep():
    p = TileBackend(TileConfig(), gpu_config("H200")).gemm_params("bf16")
    n, k = 3072, 4096
    small = (256,) * 64  # 2 MB of rows per group, 128 MB in all: far above L2, but each group fits
    plan = plan_grouped(small, n, k, 2.0, p)
    m = sum(small)
    assert plan.hbm_bytes == pytest.approx(m * k * 2.0 + len(small) * k * n * 2.0 + m * n * 2.0)
    big = (8192, 8192)  # 64 MB of rows per group: re-read as a GEMM's A would be
    plan = plan_grouped(big, n, k, 2.0, p)
    m = sum(big)
    assert plan.hbm_bytes > m * k * 2.0 + 2 * k * n * 2.0 + m * n * 2.0


def test_a_weight_bound_layer_scales_with_the_familys_hbm_share():
    up, down = _grouped(16, 1, 1)  # 16 tokens x top-8 over 128 experts: weight-bound
    t = [sum(_backend("cutlass", hbm_efficiency=h)._op_s(op) for op in (up, down)) for h in (0.6, 0.9)]
    assert t[0] > t[1]
    gpu = gpu_config("H200")
    weights = len(up.groups) * (up.n * up.k + down.n * down.k) * 2.0
    assert t[1] >= weights / gpu.memory_bw_bytes_per_s


def test_each_quantization_runs_its_own_constants_and_falls_back_to_the_16_bit_ones():
    up = _grouped(4096, 1, 1)[0]
    fp8 = dataclasses.replace(up, dtype="fp8", dtype_bytes=1.0, w_bytes=1.0, out_bytes=2.0)
    block = dataclasses.replace(fp8, scale_block_k=128)
    be = _backend("triton", efficiency_fp8=0.3, efficiency_fp8_block=1.0)
    assert be._op_s(fp8) > be._op_s(block)
    bare = {k: v for k, v in FIT_MOE["triton"].items() if "fp8" not in k}
    kern = {**{k: dict(v) for k, v in FIT_MOE.items()}, "triton": bare}
    plain = TileBackend(TileConfig(moe_kernel="triton", moe_kernels=kern, cuda_graphs=True), gpu_config("H200"))
    same = TileBackend(TileConfig(moe_kernel="triton", moe_kernels={**kern, "triton": {
        **bare, "efficiency_fp8": bare["efficiency"], "fixed_s_fp8": bare["fixed_s"]}}, cuda_graphs=True),
        gpu_config("H200"))
    assert plain._op_s(fp8) == same._op_s(fp8)


def test_the_cutlass_families_quantize_per_tensor_fp8_inputs_inside_their_permute_and_activation_kernels():
    from simulator.validation.aic_moe import item_of
    from workloads.moe import RoutingConfig as R

    per_tensor = item_of(4096, 4096, 1536, 128, 8, 1, 1, True, R(), "fp8", 1.0, 0)
    block = item_of(4096, 4096, 1536, 128, 8, 1, 1, True, R(), "fp8", 1.0, 128)
    quant = [op for op in per_tensor if op.name.endswith("_quant")]
    assert [op.name for op in quant] == ["moe_up_quant", "moe_down_quant"]
    cutlass, triton = _backend("cutlass"), _backend("triton")
    assert all(cutlass._op_s(op) == 0.0 < triton._op_s(op) for op in quant)
    # block-scaled fp8 keeps its quantize kernel (per 1 x 128 group scales)
    assert all(cutlass._op_s(op) > 0.0 for op in block if op.name.endswith("_quant"))


def _fp8(op, block: int = 0):
    return dataclasses.replace(op, dtype="fp8", dtype_bytes=1.0, w_bytes=1.0, out_bytes=2.0, scale_block_k=block)


@pytest.mark.parametrize("family", sorted(FIT_MOE))
@pytest.mark.parametrize("eff", [None, 1.5])  # the shipped constants, and the top of aic_moe fit's grid
def test_no_fused_moe_op_beats_its_flops_at_the_tensor_peak_nor_its_bytes_at_the_datasheet_hbm_rate(family, eff):
    # first principles (H200 datasheet: tensor peak per dtype, HBM bandwidth): whatever a family's fitted
    # efficiency relative to a dense GEMM, a grouped GEMM moves its active experts' weights, its input rows
    # and its output rows through HBM and runs 2 m n k FLOPs on the tensor cores
    gpu = gpu_config("H200")
    kern = TileConfig().moe_kernels  # the shipped tables, MXFP4 kernels included
    if eff is not None:
        kern[family] = {k: eff if k.startswith("efficiency") else v for k, v in kern[family].items()}
    be = TileBackend(TileConfig(moe_kernel=family, moe_kernels=kern, cuda_graphs=True), gpu)

    def mx(op):  # MXFP4 experts (4-bit e2m1 + an e8m0 scale per 32), 16-bit activations
        return dataclasses.replace(op, w_bytes=0.53125, w_dtype="mxfp4")
    for tokens in (1, 16, 256, 4096, 32768):
        for ep in (1, 8):
            for op16 in _grouped(tokens, ep, ep):
                for op, peak in ((op16, gpu.tensor_peak("bf16")), (_fp8(op16), gpu.tensor_peak("fp8")),
                                 (_fp8(op16, 128), gpu.tensor_peak("fp8")),
                                 (mx(op16), gpu.tensor_peak("bf16"))):
                    t = be._op_s(op)
                    flops = 2.0 * op.m * op.n * op.k
                    w = op.w_bytes or op.dtype_bytes
                    moved = (sum(1 for g in op.groups if g) * op.n * op.k * w + op.m * op.k * op.dtype_bytes
                             + op.m * op.n * (op.out_bytes or op.dtype_bytes))
                    assert t >= flops / peak, (family, tokens, ep, op.name, op.dtype, op.scale_block_k, op.w_dtype)
                    assert t >= moved / gpu.memory_bw_bytes_per_s, (family, tokens, ep, op.name, op.dtype)
