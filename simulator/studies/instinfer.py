"""InstInfer study: decode attention inside computational storage vs FlexGen offloading KV to an SSD.

Models: both systems are policies of the FlexGen pipeline (:mod:`simulator.studies.flexgen`):
    weights on the GPU, the KV of a large batch on flash. ``flexgen``: every decode step reads each
    layer's KV from the drive into host DRAM (the drive's large-request read rate, which is capped
    by its host link) and then either copies it to the GPU over PCIe for GPU attention or runs
    attention on the host CPU, whichever is faster; new KV is written back through the host.
    ``instinfer``: the GPU sends Q and the new K/V of each layer to the drive peer to peer and the
    drive's in-storage unit computes attention reading flash at its internal bandwidth
    (``hw_models.ssd.Ssd.in_storage_s``: channels x NAND bus rate, never the host link); only the
    attention output returns. The zig-zag block pipelines GPU dense layers of one batch with
    storage attention of another. Batch: FlexGen's largest fitting block (KV on disk, weights on
    the GPU), the same for both systems.
Ignores: accuracy (InstInfer's sparse attention/KV-dropping variants are not modelled: full attention
    in storage), flash wear, file-system and page-cache costs of FlexGen's disk path, the
    drive's FTL placement of KV pages across channels (assumed perfectly striped).
Sources: Pan et al., "InstInfer: In-Storage Attention Offloading for Cost-Effective Long-Context LLM
    Inference" (2024): up to 11.1x throughput vs FlexGen for a 13B model on an A6000;
    the in-storage unit's FLOP rate is an input (an FPGA-class engine; attention is memory-bound).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from simulator.config.quantities import StrictConfig
from simulator.studies.flexgen import Component, evaluate, max_gpu_batch, resolve_hw
from simulator.studies.flexgen import Config as FlexConfig


def _default_csd() -> dict[str, Any]:
    return {"preset": "DC-NVMe-PCIe4", "compute_flops_per_s": "1TFLOP/s"}


class Config(StrictConfig):
    model: str = "OPT-13B"
    gpu: Component = "A6000"
    host: Component = "A6000-workstation"
    csd: Component = Field(default_factory=_default_csd, description="drive with an in-storage compute unit")
    drives: int = Field(default=1, gt=0)
    prompt_tokens: int = Field(default=1024, gt=0)
    gen_tokens: int = Field(default=128, gt=0)
    gpu_batch: int = Field(default=32, gt=0)
    num_gpu_batches: int = Field(default=8, gt=0)
    gpu_compute_efficiency: float = Field(default=0.6, gt=0, le=1)
    gpu_memory_efficiency: float = Field(default=0.8, gt=0, le=1)
    cpu_memory_efficiency: float = Field(default=0.5, gt=0, le=1)


def run(cfg: Config) -> dict:
    base = FlexConfig(model=cfg.model, gpu=cfg.gpu, host=cfg.host, ssd=cfg.csd, drives=cfg.drives,
                      prompt_tokens=cfg.prompt_tokens, gen_tokens=cfg.gen_tokens, gpu_batch=cfg.gpu_batch,
                      num_gpu_batches=cfg.num_gpu_batches, w_gpu=1.0, kv_where="disk",
                      gpu_compute_efficiency=cfg.gpu_compute_efficiency,
                      gpu_memory_efficiency=cfg.gpu_memory_efficiency,
                      cpu_memory_efficiency=cfg.cpu_memory_efficiency)
    hw = resolve_hw(base)
    b = min(cfg.gpu_batch, max_gpu_batch(base.model_copy(update={"attn_on": "gpu"}), hw))
    if b == 0:
        raise ValueError(f"{cfg.model} weights do not fit on the GPU beside one sequence")
    fg = {a: evaluate(base.model_copy(update={"attn_on": a, "gpu_batch": b}), hw) for a in ("gpu", "cpu")}
    best = max(fg, key=lambda a: fg[a]["throughput_tok_s"])
    ii = evaluate(base.model_copy(update={"attn_on": "storage", "gpu_batch": b}), hw)
    f = fg[best]
    s = hw.ssd
    host_rate = s.host_rate * cfg.drives
    return {"block_size": f["block_size"], "kv_bytes_on_flash": f["disk_bytes"],
            "flexgen_attention_on": best, "flexgen_tok_s": f["throughput_tok_s"],
            "flexgen_decode_tok_s": f["decode_throughput_tok_s"], "instinfer_tok_s": ii["throughput_tok_s"],
            "instinfer_decode_tok_s": ii["decode_throughput_tok_s"],
            "throughput_ratio": ii["throughput_tok_s"] / f["throughput_tok_s"],
            "decode_ratio": ii["decode_throughput_tok_s"] / f["decode_throughput_tok_s"],
            "flash_internal_bw_bytes_per_s": s.internal_read_bw * cfg.drives,
            "ssd_host_link_bytes_per_s": host_rate,
            "internal_over_host_bw": s.internal_read_bw / s.host_rate,
            "flexgen_decode_step_s": f["decode_step_s"], "instinfer_decode_step_s": ii["decode_step_s"],
            "prefill_s": ii["prefill_s"]}
