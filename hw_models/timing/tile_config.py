"""The tile backend's configuration (``hw_models.timing.tile.TileConfig``): every fitted or cited constant of
the tile timing backend, with the command or source of each (FIDELITY.md gives the figures). Kept apart from
the backend's code so that each stays one readable module; ``hw_models.timing.tile`` re-exports it."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from hw_models.collectives import NcclParams
from hw_models.moe_configs import config_sets
from hw_models.moe_contiguous import DEEPGEMM_MOE
from hw_models.timing.tile_fits import (
    FIT_A2A,
    FIT_ATTN,
    FIT_GEMM,
    FIT_MEM_FIXED,
    FIT_MEM_FLOOR,
    FIT_MEM_MULT,
    FIT_MOE,
    FIT_MOE_MARLIN,
    FIT_MOE_MXFP4,
    FIT_ROW_IN_FLIGHT,
    FIT_WGMMA,
)
from simulator.config.quantities import Seconds, StrictConfig


class TileConfig(StrictConfig):
    mma_efficiency: float = Field(default=FIT_GEMM["mma_efficiency"], gt=0, le=1,
                                  description="share of the tensor peak a large-tile GEMM main loop sustains (fitted)")
    hbm_efficiency: float = Field(default=FIT_GEMM["hbm_efficiency"], gt=0, le=1,
                                  description="achievable share of HBM bandwidth for streaming kernels (fitted)")
    cta_overhead_cycles: float = Field(default=FIT_GEMM["cta_overhead_cycles"], ge=0,
                                       description="GEMM prologue + epilogue per wave, SM cycles (fitted)")
    kernel_fixed_s: Seconds = Field(default=FIT_GEMM["kernel_fixed_s"],
                                    description="in-GPU fixed cost of a GEMM kernel (fitted)")
    frag_cost: float = Field(default=FIT_GEMM["frag_cost"], ge=0,
                             description="warp-tile fragment-load cost relative to MMA work (fitted)")
    l2_bytes_per_clk_sm: float = Field(default=FIT_GEMM["l2_bytes_per_clk_sm"], gt=0,
                                       description="L2 -> SM operand bytes per SM clock of an mma.sync GEMM "
                                                   "(fitted; on wgmma/TMA kernels only with use_clusters)")
    mem_kernel_fixed_s: Seconds = Field(default=FIT_MEM_FIXED, description="in-GPU fixed cost of a memory-bound "
                                                                           "kernel (fitted)")
    mem_traffic_multiplier: dict[str, float] = Field(default_factory=lambda: dict(FIT_MEM_MULT),
                                                     description="bytes moved / bytes counted per kernel class")
    mem_kernel_floor_s: dict[str, float] = Field(default_factory=lambda: dict(FIT_MEM_FLOOR),
                                                 description="shortest time of an op of each memory-bound class, "
                                                             "seconds (fitted; the library's kernel count x launch)")

    @field_validator("mem_traffic_multiplier", mode="before")
    @classmethod
    def _multiplier_over_fitted(cls, v: Any) -> Any:
        """A table naming some classes overrides those; the others keep their fitted value."""
        return {**FIT_MEM_MULT, **v} if isinstance(v, dict) else v

    @field_validator("mem_kernel_floor_s", mode="before")
    @classmethod
    def _floor_over_fitted(cls, v: Any) -> Any:
        return {**FIT_MEM_FLOOR, **v} if isinstance(v, dict) else v

    bytes_in_flight_per_sm: float = Field(default=32768.0, gt=0,
                                          description="outstanding loads one SM sustains (estimate: 64 warps x 512 B)")
    row_bytes_in_flight: float = Field(default=FIT_ROW_IN_FLIGHT, gt=0,
                                       description="bytes one row's CTA of a per-row kernel (elementwise op with m "
                                                   "rows, e.g. per-token fp8 quantization) keeps in flight (fitted)")
    use_wgmma: bool = Field(default=True, description="Hopper GEMMs use wgmma+TMA (false: legacy mma.sync)")
    use_clusters: bool = Field(default=True,
                               description="Hopper GEMMs may use thread-block clusters (TMA multicast, DSMEM "
                                           "split-K; needs the preset's sms_per_gpc) under an L2 -> SM bound: "
                                           "the preset's l2_bw_bytes_per_s, else l2_bytes_per_clk_sm "
                                           "(false: 1x1 CTAs and no L2 bound on wgmma kernels)")
    wgmma_efficiency: dict[str, float] = Field(default_factory=lambda: dict(FIT_WGMMA["efficiency"]),
                                               description="share of each dtype's tensor peak a large-tile wgmma "
                                                           "GEMM main loop sustains (Hopper-class; fitted; a dtype "
                                                           "not listed uses mma_efficiency)")
    wgmma_cta_overhead_cycles: float = Field(default=FIT_WGMMA["cta_overhead_cycles"], ge=0,
                                             description="wgmma GEMM prologue + epilogue per wave, SM cycles (fitted)")
    wgmma_kernel_fixed_s: Seconds = Field(default=FIT_WGMMA["kernel_fixed_s"],
                                          description="in-GPU fixed cost of a GEMM kernel on a Hopper-class GPU "
                                                      "(fitted on its wgmma kernels; its mma.sync kernels pay it too)")
    moe_kernel: str = Field(default="triton", description="fused-MoE kernel family the engine runs (a key of "
                                                           "moe_kernels: triton, triton_sglang, cutlass, "
                                                           "flashinfer_cutlass)")
    moe_kernels: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {**{k: {**v, **FIT_MOE_MXFP4.get(k, {}), **FIT_MOE_MARLIN.get(k, {})}
                                    for k, v in FIT_MOE.items()},
                                 "deepgemm": dict(DEEPGEMM_MOE)},
        description="per fused-MoE kernel family: efficiency (tensor-core efficiency of its grouped GEMMs relative "
                    "to a dense GEMM's) and fixed_s (its per-layer cost besides the GEMMs: token sort / align, "
                    "bookkeeping), fitted on the aic MoE tables")
    moe_config_set: str = Field(
        default="", pattern="^(|" + "|".join(x.replace(".", "[.]") for x in config_sets()) + ")$",
        description="Triton fused-MoE tile configurations (triton, triton_sglang families): the framework version "
                    "whose tuned files and default-config rule pick each grouped GEMM's tile "
                    "(hw_models.moe_configs; '' = the family's newest)")
    alltoall_efficiency: dict[str, float] = Field(
        default_factory=lambda: dict(FIT_A2A["efficiency"]),
        description="share of the per-GPU link bandwidth an MoE all-to-all (DeepEP dispatch / combine) reaches, "
                    "per kernel family: ll (low-latency) and ht (high-throughput) (fitted)")
    alltoall_latency_s: dict[str, float] = Field(default_factory=lambda: dict(FIT_A2A["latency_s"]),
                                                 description="fixed time of one MoE all-to-all kernel per family, "
                                                             "seconds (fitted)")
    alltoall_ll_max_tokens: int = Field(default=FIT_A2A["ll_max_tokens"], ge=0,
                                        description="tokens per GPU up to which the low-latency kernels run "
                                                    "(DeepEP num_max_dispatch_tokens_per_rank default 128)")
    moe_kernel_fp8_block: str = Field(default="", description="fused-MoE kernel family for block-scaled fp8 "
                                      "experts when the engine runs another one for them than moe_kernel (a key "
                                      "of moe_kernels; '' = moe_kernel), e.g. deepgemm")
    moe_kernel_fp8_block_max_tp: int = Field(default=0, ge=0, description="moe_kernel_fp8_block only while each "
                                             "expert is split over at most this many GPUs (0: always)")
    moe_a2a: str = Field(default="deepep", pattern="^(deepep|allgather_reducescatter)$",
                         description="MoE dispatch / combine under attention data parallelism: deepep (each token "
                                     "sent once per destination GPU, DeepEP's fitted rates) or "
                                     "allgather_reducescatter (every data-parallel group's tokens all-gathered to "
                                     "every GPU before the experts, the outputs reduce-scattered back, NCCL)")
    fp8_gemm_kernel: str = Field(default="auto", pattern="^(auto|cutlass_sm90)$",
                                 description="per-tensor fp8 GEMM kernel family: auto (the fastest modelled tile "
                                             "and split-K, as cuBLASLt's heuristic), cutlass_sm90 (CUTLASS "
                                             "scaled_mm's fixed sm90 configuration per M bucket, no split-K: "
                                             "vLLM / SGLang; hw_models.scaled_mm; Hopper-class GPUs only)")
    scaled_mm_efficiency: float | None = Field(default=None, gt=0, le=1,
                                               description="share of the fp8 tensor peak the cutlass_sm90 kernels' "
                                                           "main loop sustains (fitted; unset: wgmma_efficiency fp8)")
    scaled_mm_cta_overhead_cycles: float | None = Field(default=None, ge=0,
                                                        description="prologue + epilogue per wave of the cutlass_sm90 "
                                                                    "kernels (scales applied in the epilogue), SM "
                                                                    "cycles (fitted; unset: wgmma_cta_overhead_cycles)")
    scaled_mm_hbm_efficiency: float | None = Field(default=None, gt=0, le=1,
                                                   description="share of the HBM rating the per-tensor fp8 GEMM "
                                                               "kernels (cutlass_sm90, or auto's cuBLASLt) reach "
                                                               "streaming weights (small-M decode GEMMs; "
                                                               "fitted on the framework's fp8 GEMM rows; unset: "
                                                               "hbm_efficiency)")
    scaled_mm_hbm_latency_s: float | None = Field(default=None, gt=0,
                                                  description="HBM latency one per-tensor fp8 GEMM CTA (cutlass_sm90 "
                                                              "or auto's cuBLASLt) sees under load: "
                                                              "its bytes in flight over it cap a small grid's "
                                                              "bandwidth (Little's law; fitted on the framework's "
                                                              "small-M fp8 GEMM rows; unset: the GPU's)")
    row_cost_s: dict[str, float] = Field(default_factory=dict,
                                         description="per-row kernels (elementwise ops with rows, e.g. per-token "
                                                     "quantize) by class: seconds each SM spends per row besides "
                                                     "its bytes (the row's reduction and synchronisation), fitted")
    dsmem_split_k: bool = Field(default=False,
                                description="Hopper clusters may also run split-K reduced through DSMEM (an "
                                            "hwsim design study; cuBLAS/CUTLASS reduce split-K in a workspace or "
                                            "by stream-K, and the H200 aic GEMM tables fit better without it)")
    attention_kernel: str = Field(default="auto", pattern="^(auto|fa2|fa3)$",
                                  description="attention kernel family: fa2 (FlashAttention-2, mma.sync), fa3 "
                                              "(wgmma, softmax overlapped with the MMAs), auto: fa3 on Hopper-class "
                                              "GPUs with use_wgmma, else fa2")
    attention_mma_efficiency: float = Field(default=FIT_ATTN["fa2"]["mma_efficiency"], gt=0, le=1,
                                            description="fa2 attention MMA efficiency (fitted)")
    fa3_mma_efficiency: float = Field(default=FIT_ATTN["fa3"]["mma_efficiency"], gt=0, le=1,
                                      description="fa3 attention MMA efficiency (fitted)")
    attention_cta_cycles: dict[str, float] = Field(
        default_factory=lambda: {f: v["cta_cycles"] for f, v in FIT_ATTN.items()},
        description="SM cycles per prefill Q-tile CTA per kernel family (fitted)")
    attention_softmax_overlap: dict[str, float] = Field(
        default_factory=dict,
        description="prefill, a family that overlaps softmax with its MMAs (fa3): the share of the shorter of the two "
                    "per (query, key) pair hidden behind the longer (fitted per framework on the H200 context "
                    "attention rows; unset: 1, the ideal overlap)")
    attention_persistent: dict[str, bool] = Field(
        default_factory=dict,
        description="prefill per kernel family: a persistent kernel whose SMs take (Q tile, head) tiles longest first "
                    "(the causal work shared evenly, at least the longest tile) rather than even waves of CTAs")
    attention_prefill_fixed_s: dict[str, float] = Field(
        default_factory=lambda: {f: v["prefill_fixed_s"] for f, v in FIT_ATTN.items()},
        description="fixed cost of the framework's prefill attention op per kernel family, seconds (fitted)")
    attention_decode_fixed_s: dict[str, float] = Field(
        default_factory=lambda: {f: v["decode_fixed_s"] for f, v in FIT_ATTN.items()},
        description="fixed cost of the framework's decode attention op per kernel family, seconds (fitted)")
    attention_decode_cta_cycles: dict[str, float] = Field(
        default_factory=lambda: {f: v["decode_cta_cycles"] for f, v in FIT_ATTN.items()},
        description="SM cycles per decode (sequence, KV head) CTA per kernel family (fitted)")
    attention_decode_hbm_efficiency: dict[str, float] = Field(
        default_factory=dict,
        description="share of HBM bandwidth a kernel family's decode streams K/V at, for a family whose decode "
                    "pipelines its K/V tiles with TMA (FA3: attention_kernels.FA3_CTA_IN_FLIGHT bytes in flight per "
                    "CTA); fitted on the aic generation rows. A family not named: hbm_efficiency and the paged "
                    "kernel's loads in flight")
    decode_kernel: str = Field(default="auto", pattern="^(auto|paged|split_kv|lean)$",
                               description="paged (one CTA per seq x KV head), split_kv (FlashDecoding), "
                                           "lean (stream-K over SMs), auto: the better fit of the attention "
                                           "family on the aic tables (fa2: split_kv, fa3: lean)")
    decode_max_group: int = Field(default=0, ge=0,
                                  description="most query heads per KV head the decode kernel serves with one K/V read "
                                              "(0: any; above it every query head reads K/V: TRT-LLM XQA takes up to "
                                              "32, else its MMHA kernel)")
    cuda_graphs: bool = Field(default=False, description="true: no host launch overhead per kernel")
    nccl_reduce_eff: float = Field(default=NcclParams().reduce_eff, gt=0)
    nccl_copy_eff: float = Field(default=NcclParams().copy_eff, gt=0)
    nccl_call_s: Seconds = Field(default=f"{NcclParams().reduce_call_s * 1e6}us",
                                 description="per-call cost of an NCCL collective outside the wire model "
                                             "(fitted: 19.3 us for eager torch.distributed calls, Vidur A100; "
                                             "0 us replayed in a CUDA graph, aic H200/A100 tables)")
    nccl_floor_s: Seconds = Field(default="0us",
                                  description="an NCCL all-reduce lasts at least this long (Vidur's eager calls "
                                              "with a stream sync each: 62.5 us, fitted; 0: calls queued ahead "
                                              "of the GPU, as a serving engine issues them)")
    allreduce: str = Field(default="nccl", pattern="^(nccl|custom|trtllm)$",
                           description="nccl (NCCL ring/tree, NVLS on NVSwitch Hopper), custom (vLLM/SGLang "
                                       "one-/two-shot over NVLink P2P, NCCL above the limit), trtllm "
                                       "(TensorRT-LLM AUTO: one-/two-shot, NCCL above the workspace)")
    allreduce_limits: str | None = Field(default=None, pattern="^(vllm|vllm-symm-mem|sglang|trtllm)$",
                                         description="the framework's size limits (hw_models.collectives.AR_LIMITS); "
                                                     "unset: vllm for custom, trtllm for trtllm")
    allreduce_max_bytes: dict[int, float] | None = Field(
        default=None, description="override: custom kernel below this many bytes, by GPU count (smallest key >= p)")
    allreduce_oneshot_max_bytes: dict[int, float] | None = Field(
        default=None, description="override: one-shot below this many bytes, two-shot above, by GPU count")
