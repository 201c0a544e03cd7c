"""Weight-offload policies: a dense model's layer weights kept partly on the GPU and partly in host
DRAM or on an SSD / flash, streamed to the GPU layer by layer every iteration.

``policies.weight_offload: {kind: stream | flash, gpu_fraction: 0.5, disk_fraction: 0.0, ...}`` selects
one. ``stream`` is FlexGen's placement (a weight-placement plan: shares on GPU / host DRAM / disk; an
iteration's rows run as ``num_gpu_batches`` GPU batches under one weight transfer, the zig-zag block
schedule; KV in GPU memory or host DRAM; decode attention on the GPU or the host CPU). ``flash`` is LLM
in a flash: what does not fit is read from flash, and of the FFN only the neurons a sparsity
predictor flags, less those a window of recent tokens keeps in memory, in runs whose length sets the
read size. The mechanism (time and memory) is :mod:`workloads.weight_offload`; the replica-level
wiring is :mod:`simulator.serving.weight_offload`. Kinds are files of this package named after the
kind; third-party policies plug in through the ``hwsim.weight_offloads`` entry-point group.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from simulator.config.quantities import PositiveBytes, StrictConfig
from simulator.core.registry import Registry

WEIGHT_OFFLOADS = Registry("weight offload policy", "hwsim.weight_offloads", ("policies.weight_offload",))
register_weight_offload = WEIGHT_OFFLOADS.register


class OffloadConfig(StrictConfig):
    """What both kinds share: the GPU-resident share, the host and the drive."""

    gpu_fraction: float = Field(default=0.0, ge=0, le=1, description="share of every layer's weights kept on the GPU")
    host: str | dict[str, Any] = Field(default="DGX-A100-host", description="host preset or {preset: ..., "
                                                                            "<overrides>}: DRAM, PCIe link, CPU")
    ssd: str | dict[str, Any] = Field(default="DC-NVMe-PCIe4", description="SSD / flash preset or {preset: ...}")
    queue_depth: int = Field(default=32, gt=0, description="SSD reads outstanding")
    num_gpu_batches: int = Field(default=1, ge=1, description="GPU batches per zig-zag block: an iteration's rows "
                                                              "run as this many batches, each layer loaded once")
    unified_memory: bool = Field(default=False, description="the compute device reads host DRAM itself (a CPU, "
                                                            "Apple silicon): streamed bytes cross no PCIe link")


class StreamConfig(OffloadConfig):
    """FlexGen's placement: shares of the layer weights on GPU / host DRAM / disk, KV and attention."""

    disk_fraction: float = Field(default=0.0, ge=0, le=1, description="share on the SSD (the rest in host DRAM)")
    # source: estimate; large direct reads kept deep-queued reach the drive's sequential rate (hw_models/ssd.py)
    io_size: PositiveBytes = Field(default="1MiB", description="size of one SSD read command")
    overlap: bool = Field(default=True, description="load layer j+1 while layer j computes (two layer buffers)")
    buffer_layers: int | None = Field(default=None, ge=1, description="layer buffers of streamed weights (TPI-LLM's "
                                                                      "sliding window); default 2 with overlap, 1 "
                                                                      "without; 1 cannot overlap")
    kv: Literal["gpu", "host", "disk"] = Field(default="gpu", description="where the KV cache lives (host: its "
                                                                          "capacity is the DRAM the host weights "
                                                                          "leave; disk: the drive's capacity)")
    attention: Literal["gpu", "host", "storage"] = Field(
        default="gpu", description="where decode attention runs: gpu; host (the CPU, KV in DRAM or on disk); storage "
                                   "(the drive's in-storage unit, KV on disk: InstInfer)")
    disk_io: Literal["direct", "filesystem"] = Field(
        default="direct", description="how KV is read from the drive: direct (large deep-queued reads, the drive's "
                                      "sequential rate) or filesystem (FlexGen's numpy memmap: one readahead window "
                                      "per copy thread, each copied out of the page cache before the next)")
    # source: Linux default read_ahead_kb = 128
    fs_readahead_bytes: PositiveBytes = Field(default="128KiB", description="page-cache read window")
    # source: FlexGen TorchDisk num_copy_threads = 4 (flexgen/pytorch_backend.py)
    fs_copy_threads: int = Field(default=4, gt=0, description="concurrent copy threads of the filesystem path")
    storage_read_fraction: float = Field(default=1.0, gt=0, le=1, description="share of the stored KV the in-storage "
                                                                              "unit reads per step (InstInfer's "
                                                                              "SparF; an input)")
    p2p: bool = Field(default=True, description="storage attention: Q/K/V and outputs move GPU <-> drive peer to "
                                                "peer (false: bounced through host DRAM)")
    # source: estimate (FlexGen's CPU attention: numpy/PyTorch kernels reach about half of DRAM bandwidth)
    host_memory_efficiency: float = Field(default=0.5, gt=0, le=1, description="share of DRAM bandwidth host "
                                                                               "attention reads KV at")

    @model_validator(mode="after")
    def _check(self):
        if self.gpu_fraction + self.disk_fraction > 1.0 + 1e-12:
            raise ValueError(f"gpu_fraction + disk_fraction = {self.gpu_fraction + self.disk_fraction:g} exceeds 1")
        if self.attention == "host" and self.kv == "gpu":
            raise ValueError("attention: host needs kv: host or disk (the CPU reads the KV from host DRAM)")
        if self.attention == "storage" and self.kv != "disk":
            raise ValueError("attention: storage needs kv: disk (the drive computes over the KV it stores)")
        return self


class FlashConfig(OffloadConfig):
    """LLM in a flash: every weight not on the GPU is on flash; of the FFN only predicted neurons are read."""

    ssd: str | dict[str, Any] = Field(default="Client-NVMe-PCIe4", description="flash preset (e.g. UFS4-phone)")
    overlap: bool = Field(default=False, description="reads and compute do not overlap: the predictor of a layer "
                                                     "runs on that layer's input")
    ffn_density: float = Field(default=0.03, gt=0, le=1, description="share of FFN neurons active per token (input)")
    predictor_recall: float = Field(default=0.95, gt=0, le=1, description="share of active neurons flagged (input)")
    predictor_precision: float = Field(default=0.5, gt=0, le=1, description="share of flagged neurons active (input)")
    predictor_rank: int = Field(default=128, ge=0, description="low-rank predictor width (0: no predictor cost)")
    window_tokens: int = Field(default=5, ge=0, description="tokens whose neurons stay in memory (0: no window)")
    window_new_fraction: list[float] = Field(
        default=[1.0, 0.55, 0.42, 0.35, 0.31, 0.28, 0.26, 0.25],
        description="index k: share of a token's flagged neurons not used by the previous k tokens (an input curve)")
    bundling: bool = Field(default=True, description="row-column bundling: a neuron's up row and down column (and "
                                                     "gate row) stored together, read in one request")

    @model_validator(mode="after")
    def _curve(self):
        if not self.window_new_fraction or any(not 0 < x <= 1 for x in self.window_new_fraction):
            raise ValueError("window_new_fraction must be a non-empty list of shares in (0, 1]")
        return self

    def new_fraction(self) -> float:
        c = self.window_new_fraction
        return c[min(self.window_tokens, len(c) - 1)]


__all__ = ["WEIGHT_OFFLOADS", "FlashConfig", "OffloadConfig", "StreamConfig", "register_weight_offload"]
