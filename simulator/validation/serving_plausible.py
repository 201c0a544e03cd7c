"""Plausibility of a measured serving row (``hwsim validate serving``): the share of the dense tensor peak and
the GPU time per second that the row's measured throughput needs for its prompts alone. A row beyond either
bound is marked implausible in rows.csv (a run with prompt reuse, or with settings the file does not record);
it is still predicted and counted. ``simulator.validation.serving`` re-exports these names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulator.core.errors import ConfigError

if TYPE_CHECKING:
    from simulator.validation.serving import ServingRow

TENSOR_DTYPE = {"fp8": "fp8", "bf16": "bf16", "fp16": "fp16", "fp4": "bf16"}  # fp4: weight-only on Hopper
# A row whose measured throughput needs its prompts' GEMMs alone to run at more than this share of
# the GPU's dense tensor peak is not a run without prompt (prefix) reuse: large fp8 GEMMs reach
# 0.42-0.67 of peak in the H200 kernel tables (8192^3, by framework), and the same GPU also decodes.
PLAUSIBLE_PEAK = 0.5
# ... or whose measured throughput needs more than one second of GPU time per second for its prompts'
# GEMMs and tensor-parallel all-reduces alone, timed by the kernel models checked on the H200 kernel tables
# (FIDELITY.md: fp8 GEMMs at M >= 4096 within -3..-7 % median bias, all-reduce +3..+8 %), in prefill
# iterations of BUSY_CHUNK tokens (the profiles' token budget); a lower bound of the GPU's busy time
# (attention, norms, quantization and the decodes come on top).
PLAUSIBLE_BUSY = 1.0
BUSY_CHUNK = 8192


def implied_peak(row: ServingRow, scenario: dict) -> float:
    """Share of the dense tensor peak per GPU the measured run needs for its prompts' GEMMs alone:
    request rate by Little's law (concurrency / (TTFT + (osl - 1) x TPOT)) x isl x 2 x the parameters
    a token runs through (a MoE model's active ones), over the tensor-parallel GPUs."""
    from simulator.config.loader import resolve_component
    from simulator.core import registry as reg

    model = resolve_component(scenario["model"], reg.MODELS, "model").config
    gpu = resolve_component(scenario["hardware"]["device"], reg.HARDWARE, "device").config
    life_s = (row.ttft_ms + (row.osl - 1) * row.tpot_ms) / 1e3
    if life_s <= 0:
        return float("nan")
    flops = row.concurrency / life_s * row.isl * 2.0 * model.active_params() / scenario["cluster"]["tensor_parallel"]
    return flops / gpu.tensor_peak(TENSOR_DTYPE[row.precision])


def implied_busy(row: ServingRow, scenario: dict) -> float:
    """GPU seconds per second the measured run needs for its prompts' GEMMs (grouped expert GEMMs
    included) and tensor-parallel all-reduces alone: request rate by Little's law x isl prompt tokens, in
    iterations of ``BUSY_CHUNK`` tokens lowered as the scenario runs them (model, parallelism,
    quantization), each op timed by the tile backend under the row's framework profile; all-reduces
    over the row's node fabric (not counted when hwsim does not know the node)."""
    from hw_models import collectives as co
    from hw_models.timing.tile import ar_limits
    from simulator.config.framework import parse_framework
    from simulator.config.loader import resolve_component
    from simulator.core import registry as reg
    from simulator.validation.kernels import make_backend, node_fabric
    from workloads.llm import dense_ops

    life_s = (row.ttft_ms + (row.osl - 1) * row.tpot_ms) / 1e3
    if life_s <= 0:
        return float("nan")
    model = resolve_component(scenario["model"], reg.MODELS, "model").config
    gpu = resolve_component(scenario["hardware"]["device"], reg.HARDWARE, "device").config
    be = make_backend("tile", gpu, dict(parse_framework(scenario["engine"]["framework"]).timing))
    scheme = None
    quant = scenario["policies"].get("quantization")
    if quant:
        comp = resolve_component(quant, reg.QUANTIZATION, "quantization")
        scheme = comp.cls(comp.config)
    cl = scenario["cluster"]
    ops = dense_ops(BUSY_CHUNK, 0, model, cl["tensor_parallel"], scheme, None, cl.get("expert_parallel", 1),
                    cl.get("attention_data_parallel", 1))
    busy = sum(be._op_s(op) for op in ops if op.kind in ("gemm", "grouped_gemm"))
    try:
        fabric, arch = node_fabric(row.system)
    except ConfigError:
        fabric = None
    if fabric is not None:
        busy += sum(co.custom_allreduce_s(op.bytes, op.workers, fabric, be.config.allreduce, ar_limits(be.config),
                                          nccl=be._nccl, architecture=arch) * op.count
                    for op in ops if op.kind == "allreduce" and op.workers > 1)
    return row.concurrency / life_s * row.isl * busy / BUSY_CHUNK
