"""The tile backend's fitted constants, one table per kernel family (``hw_models.timing.tile`` reads them).

Each table names the command that fitted it and the measurements it was fitted on; FIDELITY.md gives
the error figures of each fit.
"""

# Fitted with `python -m simulator.validation.fit compute ../shared/validation/vidur_a100` on
# Llama-2-7B and Llama-2-70B (TP 1-8); held out: the other six models (FIDELITY.md).
FIT_GEMM = dict(mma_efficiency=0.787, hbm_efficiency=0.754, cta_overhead_cycles=1436.0, kernel_fixed_s="3.7us",
                frag_cost=5.0, l2_bytes_per_clk_sm=33.3)
# Traffic multiplier of each memory-bound library kernel over the bytes the lowering counts (the
# minimum: read inputs once, write outputs once); fitted on the same rows. >1 means the kernel
# re-reads its input (two-pass norms), moves fp32 intermediates or gathers with poor coalescing.
FIT_MEM_MULT = {"embed": 4.87, "norm": 2.06, "rope": 1.66, "act": 1.55, "add": 0.79, "other": 1.0, "quant": 2.151}
FIT_MEM_FIXED = "1.51us"
# Shortest time of the library's kernel(s) for an op of each class, seconds: the median measured
# time at <= 16 tokens on the training models (the kernels are flat there: e.g. an unfused RMSNorm
# runs several ~1.5 us kernels). fit_compute prints them.
FIT_MEM_FLOOR = {"embed": 5.0e-6, "norm": 6.0e-6, "rope": 3.5e-6, "act": 5.0e-6, "add": 2.0e-6, "quant": 4.264e-6}
# bytes in flight per row CTA of a per-token activation-quantize kernel (fitted with the fp8 rows below)
FIT_ROW_IN_FLIGHT = 2756.0
# Hopper-class (wgmma + TMA) kernels, fitted with `python -m simulator.validation.fit aic
# ../shared/validation/aic/h200_sxm` on the H200 aic tables (FIDELITY.md): the share of each dtype's
# tensor peak a large-tile wgmma main loop sustains (fp8 runs at a lower share of its doubled peak),
# the per-wave prologue/epilogue and the in-GPU fixed cost of a wgmma GEMM kernel.
FIT_WGMMA = dict(efficiency={"bf16": 0.8435, "fp16": 0.8435, "fp8": 0.6847, "int8": 0.6847},
                 cta_overhead_cycles=1028.6, kernel_fixed_s="2.110us")
# Fused-MoE kernel families (grouped GEMMs over the experts), fitted per family with `python -m
# simulator.validation.aic_moe fit ../shared/validation/aic/h200_sxm` on the H200 bf16 / fp8 rows:
# triton = vLLM's Triton fused_moe (tuned configs), triton_sglang = SGLang's copy, cutlass =
# TensorRT-LLM's CUTLASS MoE, flashinfer_cutlass = FlashInfer's CUTLASS MoE (vLLM / SGLang).
# pair_cache 1: the family keeps a cache row per (token, expert) pair of the whole batch (Triton fused_moe;
# describes the code, TileBackend._pair_cache_bytes). row_passes: passes over the GPU's routed [pairs x
# hidden] rows by kernels the op list does not hold (TileBackend._row_pass_s), measured on the family's
# narrowest-expert 16-bit rows with `python -m simulator.validation.aic_moe passes
# ../shared/validation/aic/h200_sxm` (CUTLASS 5.7 of which the permute kernel's read + write are 2,
# Triton 2.1, SGLang's Triton 3.9 at the constants below; FlashInfer's CUTLASS MoE, without such rows, takes
# TensorRT-LLM's). The Triton families run each grouped GEMM at their framework version's own tile
# configuration (TileConfig.moe_config_set, hw_models.moe_configs); their constants were refitted with it
# (`... aic_moe fit ../shared/validation/aic/h200_sxm triton triton_sglang`, passes measured in between).
# fused_quant 1: per-tensor fp8 inputs are quantized by the permute (up GEMM) and activation
# (down GEMM) kernels, no quantize kernel of their own (TensorRT-LLM expandInputRowsKernel / doActivation
# take the fp8 scales; code structure, not fitted).
FIT_MOE = {"triton": {"hbm_efficiency": 0.85, "efficiency": 0.90, "fixed_s": 23e-6, "efficiency_fp8": 1.25,
                      "fixed_s_fp8": 14e-6, "efficiency_fp8_block": 0.55, "fixed_s_fp8_block": 18e-6,
                      "pair_cache": 1.0, "row_passes": 2.1},
           "triton_sglang": {"hbm_efficiency": 0.85, "efficiency": 0.20, "fixed_s": 30e-6, "efficiency_fp8_block": 1.50,
                             "fixed_s_fp8_block": 22e-6, "pair_cache": 1.0, "row_passes": 3.9},
           "cutlass": {"hbm_efficiency": 0.85, "efficiency": 1.00, "fixed_s": 18e-6, "efficiency_fp8": 1.30,
                       "fixed_s_fp8": 33e-6, "efficiency_fp8_block": 0.45, "fixed_s_fp8_block": 0.0,
                       "pair_cache": 0.0, "row_passes": 5.7, "fused_quant": 1.0},
           "flashinfer_cutlass": {"hbm_efficiency": 0.75, "efficiency": 0.10, "fixed_s": 92e-6, "efficiency_fp8": 0.10,
                                  "fixed_s_fp8": 189e-6, "efficiency_fp8_block": 0.55, "fixed_s_fp8_block": 10e-6,
                                  "pair_cache": 0.0, "row_passes": 5.7, "fused_quant": 1.0}}
# Each family's MXFP4 expert kernel (4-bit e2m1 weights with e8m0 scales, widened to bf16 in the kernel;
# Op.w_dtype "mxfp4"): triton = vLLM's gpt-oss MXFP4 MoE (OpenAI's Triton matmul_ogs kernels), cutlass =
# TensorRT-LLM's w4a16 MXFP4 MoE, triton_sglang = SGLang's Triton MXFP4 MoE. HBM share, efficiency
# relative to a dense 16-bit GEMM and per-layer fixed cost, fitted with `python -m
# simulator.validation.aic_moe_w4 fit ../shared/validation/aic/h200_sxm` (H200 w4a16_mxfp4 rows, even rows
# of a 1500-row sample per family at the 16-bit constants above, vLLM 0.19's table left out (aic_moe_w4.UNSPLIT);
# held-out median APE triton 16.6 %, cutlass 20.6 %, triton_sglang 19.0 %).
FIT_MOE_MXFP4 = {"triton": {"hbm_efficiency_mxfp4": 0.55, "efficiency_mxfp4": 1.25, "fixed_s_mxfp4": 52e-6},
                 "cutlass": {"hbm_efficiency_mxfp4": 0.40, "efficiency_mxfp4": 0.60, "fixed_s_mxfp4": 70e-6},
                 "triton_sglang": {"hbm_efficiency_mxfp4": 0.35, "efficiency_mxfp4": 0.60, "fixed_s_mxfp4": 42e-6}}
# Each Triton family's framework runs weight-only int4 experts (and its Marlin MXFP4 ones) on the Marlin MoE
# kernel (vllm==0.24.0 fused_moe/experts/marlin_moe.py fused_marlin_moe, SGLang's fused_marlin_moe), not the
# Triton fused_moe: its own HBM share, efficiency relative to a dense 16-bit GEMM and per-layer fixed cost (no
# constant of the Triton kernel: no row passes measured for it, 0; the pair rows are the code's, as Triton's),
# fitted together with `python -m simulator.validation.aic_moe_w4 fit-marlin ../shared/validation/aic/h200_sxm`
# on the even rows of a 1500-row sample of the family's int4_wo rows, odd rows held out: triton (vLLM 0.24's
# Marlin table; 0.19's left out, aic_moe_w4.SLOW_MARLIN) 19.0 % (+7.6), triton_sglang 35.0 % (-18.1).
FIT_MOE_MARLIN = {"triton": {"hbm_efficiency_marlin": 0.30, "efficiency_marlin": 0.55, "fixed_s_marlin": 3e-6,
                             "row_passes_marlin": 0.0},
                  "triton_sglang": {"hbm_efficiency_marlin": 0.45, "efficiency_marlin": 0.55, "fixed_s_marlin": 17e-6,
                                    "row_passes_marlin": 0.0}}
# MoE all-to-all (DeepEP low-latency and high-throughput dispatch / combine within one NVSwitch node),
# fitted with `python -m simulator.validation.aic_moe fit-a2a ../shared/validation/aic/h200_sxm`.
# Per DeepEP kernel family: "ll" low-latency (decode-sized batches, at most 128 tokens per GPU, DeepEP's
# default num_max_dispatch_tokens_per_rank) and "ht" high-throughput ("normal") kernels; the values are
# the fit over all frameworks' rows; the vLLM and TensorRT-LLM profiles carry their own framework's fit
# (simulator.validation.aic.FRAMEWORK_TIMING); SGLang runs on these (the fit reads the moe_a2a_perf
# tables, not SGLang's wideep_deepep_* tables).
FIT_A2A = dict(efficiency={"ll": 0.399, "ht": 0.512}, latency_s={"ll": 41.2e-6, "ht": 66.3e-6}, ll_max_tokens=128)
# Attention kernels per family: fa2 (FlashAttention-2 / mma.sync, Ampere) and fa3 (wgmma, softmax
# overlapped; Hopper-class). MMA efficiency, cycles per Q-tile CTA (prologue: Q tile and first K/V
# loads; epilogue: O write), and the fixed cost of the framework's attention op around the kernel
# (its preparation kernels: KV-cache append, metadata), prefill and decode. fa2 fitted with
# `python -m simulator.validation.fit aic ../shared/validation/aic/a100_sxm`, fa3 on h200_sxm.
FIT_ATTN = {"fa2": dict(mma_efficiency=0.6299, cta_cycles=2059.4, prefill_fixed_s=5.626e-6, decode_fixed_s=6.396e-6,
                        decode_cta_cycles=3015.5),
            "fa3": dict(mma_efficiency=0.5795, cta_cycles=2310.0, prefill_fixed_s=6.704e-6, decode_fixed_s=3.313e-6,
                        decode_cta_cycles=5022.5)}

DECODE_KERNEL = {"fa2": "split_kv", "fa3": "lean"}  # decode_kernel auto: the better fit per family (same command)
