"""InstInfer study: decode attention inside computational storage vs FlexGen offloading KV to an SSD.

Models: both systems are policies of the FlexGen pipeline (:mod:`simulator.studies.flexgen`):
    weights on the GPU, the KV of a large batch on flash, prompt attention on the GPU (both
    systems' code runs the prompt on the GPU and writes its KV out). ``flexgen``: every decode step
    reads each layer's KV from the drive into host DRAM and then either copies it to the GPU over
    PCIe for GPU attention or runs attention on the host CPU, whichever is faster; new KV is
    written back through the host. Its disk path (``flexgen_disk_io``) is ``filesystem`` by
    default -- FlexGen's TorchDisk keeps KV in numpy memmap files, so reads are page-cache faults
    of readahead-sized windows, one outstanding per copy thread, each copied out of the page cache
    before the next (``flexgen.fs_read_rate``: the SSD model's response time at that request size
    and queue depth plus a single-thread copy) -- or ``direct`` (large deep-queued requests: the
    drive's sequential rate, an upper bound on any file path). ``instinfer``: the GPU sends Q and
    the new K/V of each layer to the drive peer to peer over the drive's own PCIe link (``p2p``;
    off: bounced through host DRAM) and the drive's in-storage unit computes attention reading
    flash at its internal bandwidth (``hw_models.ssd.Ssd.in_storage_s``: channels x NAND bus rate,
    never the host link); only the attention output returns. With SparF (flash-aware sparse
    attention) the engine reads only the flash pages of the selected tokens: ``kv_read_fraction``
    of the stored KV (all of it stays stored), and computes over what it reads. The zig-zag block
    pipelines GPU dense layers of one batch with storage attention of another. Batch: FlexGen's
    largest fitting block (KV on disk, weights on the GPU), the same for both systems. The dense
    variant (``kv_read_fraction`` 1) and the ``direct`` FlexGen path are reported beside the
    configured pair, so each mechanism's share of the gain shows.
Bounds: a decode step is flash-read bound in both systems, so decode_ratio <=
    (internal bandwidth / kv_read_fraction) / FlexGen's disk read rate.
Ignores: accuracy (SparF's selection quality: the fraction read is an input), page-granularity
    read amplification of the sparse reads (SparF selects whole pages: its flash-aware layout),
    SparF's approximate-score pass beyond the fraction, flash wear, the drive's FTL placement of KV
    pages across channels (assumed perfectly striped), memmap page-fault costs beyond the copy,
    page-cache hits on FlexGen's KV reads (each step scans the whole KV cyclically; when it exceeds
    the free host DRAM, LRU keeps none of it -- here 241 GB against 256 GiB, so this is assumed).
Sources: Pan et al., "InstInfer: In-Storage Attention Offloading for Cost-Effective Long-Context LLM
    Inference" (2024): up to 11.1x throughput vs FlexGen for a 13B model on an A6000; the
    in-storage unit's FLOP rate is an input (an FPGA-class engine; attention is memory-bound).
    SparF builds on SparQ attention (Ribar et al., 2023), whose headline setting moves 1/8 of the
    attention data: the default ``kv_read_fraction`` 0.125 (an assumption, not InstInfer's stated
    budget). FlexGen's disk path: flexgen/pytorch_backend.py (TorchDisk: numpy memmap files,
    4 copy threads); Linux default readahead 128 KiB (read_ahead_kb).
"""

from __future__ import annotations

from typing import Any, Literal

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
    kv_read_fraction: float = Field(default=0.125, gt=0, le=1,
                                    description="share of the stored KV SparF reads per step (1: dense attention; "
                                                "default SparQ's 1/8, assumed)")
    p2p: bool = Field(default=True, description="GPU <-> drive peer-to-peer for Q/K/V and outputs")
    flexgen_disk_io: Literal["direct", "filesystem"] = Field(
        default="filesystem", description="FlexGen's disk path: numpy memmap via the page cache, or direct "
                                          "large deep-queued reads (the drive's sequential rate)")
    fs_readahead_bytes: float = Field(default=131072, gt=0, description="page-cache read window (Linux 128 KiB)")
    fs_copy_threads: int = Field(default=4, gt=0, description="FlexGen TorchDisk copy threads")
    prefill_on_gpu: bool = Field(default=True, description="prompt attention on the GPU in both systems "
                                                           "(false: where decode attention runs)")


def _systems(cfg: Config, hw: Any, base: FlexConfig, b: int, fraction: float, disk_io: str) -> tuple[dict, str, dict]:
    fgc = base.model_copy(update={"disk_io": disk_io, "gpu_batch": b})
    fg = {a: evaluate(fgc.model_copy(update={"attn_on": a}), hw) for a in ("gpu", "cpu")}
    best = max(fg, key=lambda a: fg[a]["throughput_tok_s"])
    ii = evaluate(base.model_copy(update={"attn_on": "storage", "gpu_batch": b, "storage_read_fraction": fraction,
                                          "p2p": cfg.p2p}), hw)
    return fg[best], best, ii


def run(cfg: Config) -> dict:
    base = FlexConfig(model=cfg.model, gpu=cfg.gpu, host=cfg.host, ssd=cfg.csd, drives=cfg.drives,
                      prompt_tokens=cfg.prompt_tokens, gen_tokens=cfg.gen_tokens, gpu_batch=cfg.gpu_batch,
                      num_gpu_batches=cfg.num_gpu_batches, w_gpu=1.0, kv_where="disk",
                      gpu_compute_efficiency=cfg.gpu_compute_efficiency,
                      gpu_memory_efficiency=cfg.gpu_memory_efficiency,
                      cpu_memory_efficiency=cfg.cpu_memory_efficiency, fs_readahead_bytes=cfg.fs_readahead_bytes,
                      fs_copy_threads=cfg.fs_copy_threads,
                      prefill_attn_on="gpu" if cfg.prefill_on_gpu else "decode")
    hw = resolve_hw(base)
    b = min(cfg.gpu_batch, max_gpu_batch(base.model_copy(update={"attn_on": "gpu"}), hw))
    if b == 0:
        raise ValueError(f"{cfg.model} weights do not fit on the GPU beside one sequence")
    f, best, ii = _systems(cfg, hw, base, b, cfg.kv_read_fraction, cfg.flexgen_disk_io)
    s = hw.ssd
    from simulator.studies.flexgen import _ssd_rate

    fg_read = _ssd_rate(base.model_copy(update={"disk_io": cfg.flexgen_disk_io}), hw, False)
    internal = s.internal_read_bw * cfg.drives
    out = {"block_size": f["block_size"], "kv_bytes_on_flash": f["disk_bytes"],
           "flexgen_attention_on": best, "flexgen_tok_s": f["throughput_tok_s"],
           "flexgen_decode_tok_s": f["decode_throughput_tok_s"], "instinfer_tok_s": ii["throughput_tok_s"],
           "instinfer_decode_tok_s": ii["decode_throughput_tok_s"],
           "throughput_ratio": ii["throughput_tok_s"] / f["throughput_tok_s"],
           "decode_ratio": ii["decode_throughput_tok_s"] / f["decode_throughput_tok_s"],
           "flash_internal_bw_bytes_per_s": internal,
           "ssd_host_link_bytes_per_s": s.host_rate * cfg.drives,
           "flexgen_disk_read_bytes_per_s": fg_read,
           "internal_over_host_bw": s.internal_read_bw / s.host_rate,
           "decode_ratio_bound": internal / cfg.kv_read_fraction / fg_read,
           "flexgen_decode_step_s": f["decode_step_s"], "instinfer_decode_step_s": ii["decode_step_s"],
           "flexgen_prefill_s": f["prefill_s"], "prefill_s": ii["prefill_s"]}
    # each mechanism alone: dense attention in storage, and FlexGen at the drive's sequential rate
    variants = {"dense_direct": (1.0, "direct"), "dense": (1.0, cfg.flexgen_disk_io),
                "sparse_direct": (cfg.kv_read_fraction, "direct")}
    for name, (frac, io) in variants.items():
        fv, _, iv = _systems(cfg, hw, base, b, frac, io)
        out[f"{name}_throughput_ratio"] = iv["throughput_tok_s"] / fv["throughput_tok_s"]
        out[f"{name}_decode_ratio"] = iv["decode_throughput_tok_s"] / fv["decode_throughput_tok_s"]
    return out
