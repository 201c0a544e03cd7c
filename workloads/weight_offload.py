"""Weight offload: a dense model's layer weights partly on the GPU, the rest in host DRAM or on an SSD /
flash, streamed to the GPU layer by layer in every iteration, overlapped with compute.

Models: an iteration is a pass over the L layers. Layer j's streamed weights (``layer_read``) come
    from host DRAM over PCIe (host -> device) or from the drive, staged through host DRAM and then
    over PCIe (the drive's read at its request size and queue depth, ``hw_models.ssd``, in series
    with the PCIe copy). With KV in host DRAM and attention on the GPU, the layer's KV of the decode
    rows also crosses host -> device; new KV goes back device -> host (the other direction of the
    full-duplex link); with attention on the host CPU only the new tokens' Q, K, V cross to the host
    and the attention outputs back, and the CPU reads the KV at ``host_attention_bw`` (a share of
    DRAM bandwidth) or computes it at the CPU's FLOP rate, whichever is slower. KV on the drive: the
    decode rows' KV is read from it each layer (at the direct or the page-cache path's rate) and new
    KV written to it (reads and writes queue separately); with attention in storage (InstInfer) the
    drive's unit reads ``storage_read_fraction`` of the KV at its internal flash bandwidth (or
    computes at its FLOP rate, the slower) and only Q, the new K, V and the outputs cross the drive's
    own link (peer to peer, or also PCIe when bounced through host DRAM). One layer's load takes
    f = copy overhead + max(host -> device, device -> host bytes) / PCIe rate + drive time; its compute
    c = (GPU time of the iteration's dense ops + attention) / L, or, with decode attention off the GPU
    (host CPU or storage), the block's k GPU batches pipelining through the GPU and the attention
    unit: (max(GPU, off-GPU) + min(GPU, off-GPU) / k) / L. With ``overlap`` (layer j+1 loads while
    layer j computes) the pass takes f + (L - 1) max(c, f) + c; without (or with one layer buffer),
    L (c + f). FlexGen's zig-zag block schedule: the iteration's rows run as ``num_gpu_batches`` GPU
    batches under one weight transfer per layer (the step timer times the dense ops of one batch of
    rows / k, k times). Tensor parallelism: each GPU holds and streams 1 / tp of every weight; the
    all-reduces are in the dense ops (the link's collective model). Memory: the GPU holds the
    non-layer weights (embeddings, head), the resident share of every layer and ``buffer_layers``
    buffers of the streamed share (TPI-LLM's sliding window; 2 with overlap); with KV in host DRAM its
    capacity is the DRAM the host-resident weights leave, on disk the drive's capacity.
    Flash (LLM in a flash, :class:`FlashRead`): attention and embeddings stay on the GPU; of the FFN
    the GPU keeps a window cache (the neurons the last w tokens used) and, with the memory left, a
    static share; per iteration of T tokens it reads the neurons a predictor flags (per token
    rho = density x recall / precision; for T independent tokens 1 - (1 - rho)^T) that the window
    does not hold (a share ``new`` of them, an input curve) outside the static share. The flagged
    neurons are spread at random over the non-resident ones, so a read request is a run of
    consecutive neurons, 1 / (1 - rho_T x new) on average (geometric), each neuron's up row and down
    column (and gate row) one bundle with row-column bundling, or one row per matrix without; the
    drive delivers those requests at its throughput for that size. The FFN's GPU time scales with
    the flagged share (its share of the layer's weight bytes: exact when the dense ops are
    memory-bound, as at small batches) plus the low-rank predictor.
Ignores: the first layer's exposed load beyond f (counted once); KV buffers on the GPU when KV is off
    it and attention on the GPU (two layers' worth); host DRAM bandwidth shared between the drive
    staging and CPU attention; page-cache hits; read amplification of sparse in-storage reads (whole
    flash pages); the drive's internal writes of new KV; predictor misses' quality effect (recall is an
    input); the DRAM copies of the neuron buffer management; correlation of active neurons across the
    sequences of a batch (independent tokens); Python and synchronisation overheads of the systems.
Sources: Sheng et al., "FlexGen" (ICML 2023), Algorithm 1 (zig-zag block schedule) and Section 4 (cost
    model: a layer's time is the max of its loads, stores and compute); Alizadeh et al., "LLM in a
    flash" (ACL 2024): sparsity predictor, windowing, row-column bundling; Pan et al., "InstInfer"
    (2024): in-storage decode attention, SparF; Li et al., "TPI-LLM" (2024): sliding-window weight
    memory scheduler over tensor-parallel edge devices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from simulator.core.errors import ConfigError

GiB = 2**30


@dataclass(frozen=True)
class FlashRead:
    """LLM in a flash's sparse FFN read plan for one layer (one GPU)."""

    ffn_layer_bytes: float  # every FFN weight of one layer
    attn_layer_bytes: float  # attention weights of one layer (resident)
    neuron_bytes: float  # one neuron's weights in every FFN matrix (a bundle)
    row_bytes: float  # one neuron's row of one matrix
    matrices: int  # 2 (up, down) or 3 (gated)
    density: float  # share of neurons active per token
    recall: float
    precision: float
    new_fraction: float  # share of a token's flagged neurons the window does not hold
    window_tokens: int
    bundling: bool
    predictor_bytes: float  # low-rank predictor weights of one layer

    @property
    def rho(self) -> float:
        """Share of neurons the predictor flags for one token."""
        return min(1.0, self.density * self.recall / self.precision)

    def flagged(self, tokens):
        """Share of a layer's neurons flagged for any of ``tokens`` independent tokens."""
        return 1.0 - (1.0 - self.rho) ** np.maximum(tokens, 1)

    def window_bytes(self) -> float:
        """FFN bytes per layer the window cache holds (the neurons of the last w tokens)."""
        if not self.window_tokens:
            return 0.0
        return min(1.0, self.rho * (1.0 + self.window_tokens * self.new_fraction)) * self.ffn_layer_bytes

    def read(self, tokens, static_share: float):
        """(bytes, request bytes) read from flash per layer for an iteration of ``tokens`` tokens."""
        rho_t = self.flagged(tokens)
        new = self.new_fraction if self.window_tokens else 1.0
        nbytes = self.ffn_layer_bytes * rho_t * new * (1.0 - static_share)
        unit = self.neuron_bytes if self.bundling else self.row_bytes
        cap = self.ffn_layer_bytes * (1.0 - static_share) / (1 if self.bundling else self.matrices)
        run = rho_t * new
        req = np.where(run >= 1.0, cap, np.minimum(cap, unit / np.maximum(1e-12, 1.0 - run)))
        return nbytes, req


@dataclass
class WeightOffload:
    """One replica's weight offload (one GPU). ``disk_read_s(bytes, request_bytes)`` is the drive."""

    num_layers: int
    layer_bytes: float  # one layer's weights
    other_bytes: float  # embeddings, LM head, final norm: always on the GPU
    gpu_fraction: float
    disk_fraction: float
    pcie_rate: float  # bytes/s, one direction
    copy_overhead_s: float
    disk_read_s: Callable[[float, float], float]
    io_size: float
    overlap: bool
    num_gpu_batches: int
    host_dram_bytes: float
    kv_on_host: bool = False
    attention_on_host: bool = False
    host_attention_bw: float = 0.0  # bytes/s the CPU reads KV at
    host_flops: float | None = None
    kv_bytes_per_token: float = 0.0  # all layers
    attn_flops_per_kv: float = 0.0  # all layers, per (query row, context token)
    q_bytes_per_row: float = 0.0  # one layer's query (and output) bytes per row
    flash: FlashRead | None = None
    kv_on_disk: bool = False  # KV on the drive (kv_on_host is then set too: the KV is off the GPU)
    kv_disk_read_rate: float = 0.0  # bytes/s the KV is read from the drive (filesystem or direct path)
    kv_disk_write_rate: float = 0.0
    disk_capacity_bytes: float = 0.0
    attention_in_storage: bool = False  # computational storage runs decode attention (InstInfer)
    storage_internal_bw: float = 0.0  # bytes/s the in-storage unit reads flash at
    storage_flops: float | None = None
    storage_s: Callable[[float, float], float] | None = None  # (FLOPs, flash bytes) -> s: the drive's unit
    storage_read_fraction: float = 1.0  # share of the stored KV the in-storage unit reads (SparF)
    drive_link_rate: float = 0.0  # bytes/s of the drive's own host link
    p2p: bool = True  # Q/K/V and outputs GPU <-> drive peer to peer (False: bounced through host DRAM)
    kv_bytes_per_row: float = 0.0  # one layer's new K and V bytes per row
    buffer_layers: int | None = None  # layer buffers of streamed weights (default 2 with overlap, else 1)

    def __post_init__(self) -> None:
        if self.attention_on_host and not self.host_flops:
            raise ConfigError("attention: host needs a host preset with cpu_flops_per_s",
                              where="policies.weight_offload.host")
        if self.buffer_layers is None:
            self.buffer_layers = 2 if self.overlap else 1
        if self.buffer_layers < 2:
            self.overlap = False  # one buffer: the next layer cannot load while this one computes
        if self.attention_in_storage and not self.storage_flops:
            raise ConfigError("attention: storage needs an ssd with compute_flops_per_s (a computational storage "
                              "drive)", where="policies.weight_offload.ssd")

    # -- memory ----------------------------------------------------------------------------------
    @property
    def model_bytes(self) -> float:
        return self.other_bytes + self.num_layers * self.layer_bytes

    def static_share(self) -> float:
        """Flash: share of each layer's FFN kept on the GPU beside attention and the window cache."""
        f = self.flash
        budget = self.gpu_fraction * self.model_bytes - self.other_bytes - self.num_layers * (
            f.attn_layer_bytes + f.window_bytes() + f.predictor_bytes)
        return min(1.0, max(0.0, budget / (self.num_layers * f.ffn_layer_bytes)))

    def resident_weight_bytes(self, weights: float, room: float, where: str = "policies.weight_offload") -> float:
        """GPU weight bytes: ``weights`` (all on the GPU) less what is offloaded, plus the buffers.
        ``room``: the memory weights may use; a plan that does not fit is an error."""
        if self.flash is not None:
            f = self.flash
            if self.other_bytes + self.num_layers * f.attn_layer_bytes > self.gpu_fraction * self.model_bytes:
                raise ConfigError(f"gpu_fraction={self.gpu_fraction:g} leaves less than the attention weights and "
                                  f"embeddings ({(self.other_bytes + self.num_layers * f.attn_layer_bytes) / GiB:.2f}"
                                  f" GiB); LLM in a flash keeps those in memory", where=f"{where}.gpu_fraction")
            resident = self.other_bytes + self.num_layers * (f.attn_layer_bytes + f.window_bytes() + f.predictor_bytes
                                                             + self.static_share() * f.ffn_layer_bytes)
            resident += f.ffn_layer_bytes  # one layer's read buffer
        else:
            on_disk = self.num_layers * self.layer_bytes * self.disk_fraction
            if self.disk_capacity_bytes and on_disk > self.disk_capacity_bytes:
                raise ConfigError(f"disk_fraction={self.disk_fraction:g} puts {on_disk / GiB:.1f} GiB of weights on a "
                                  f"drive of {self.disk_capacity_bytes / GiB:.1f} GiB", where=f"{where}.disk_fraction")
            streamed = 1.0 - self.gpu_fraction
            resident = self.other_bytes + self.num_layers * self.layer_bytes * self.gpu_fraction
            resident += self.buffer_layers * self.layer_bytes * streamed if streamed > 0 else 0.0
        if resident > room:
            raise ConfigError(f"the weight-offload plan keeps {resident / GiB:.2f} GiB of weights on the GPU but "
                              f"{max(0.0, room) / GiB:.2f} GiB is left for weights; lower gpu_fraction",
                              where=f"{where}.gpu_fraction")
        return resident

    def host_weight_bytes(self) -> float:
        if self.flash is not None:
            return 0.0
        return self.num_layers * self.layer_bytes * max(0.0, 1.0 - self.gpu_fraction - self.disk_fraction)

    def host_kv_bytes(self, where: str = "policies.weight_offload") -> float:
        """KV capacity off the GPU: the drive's capacity (KV on disk) or what the host-resident weights leave
        of the DRAM."""
        if self.kv_on_disk:
            return self.disk_capacity_bytes - self.num_layers * self.layer_bytes * self.disk_fraction
        left = self.host_dram_bytes - self.host_weight_bytes()
        if left <= 0:
            raise ConfigError(f"the host's {self.host_dram_bytes / GiB:.0f} GiB of DRAM do not hold the "
                              f"{self.host_weight_bytes() / GiB:.1f} GiB of host-resident weights; raise "
                              f"disk_fraction or gpu_fraction", where=f"{where}.disk_fraction")
        return left

    def placement(self) -> dict:
        """The weight-placement plan of one GPU for the memory plan: layer weights in host DRAM and on the
        drive, and where the KV lives."""
        if self.flash is not None:
            disk = self.num_layers * self.flash.ffn_layer_bytes * (1.0 - self.static_share())
        else:
            disk = self.num_layers * self.layer_bytes * self.disk_fraction
        return {"weight_host_bytes": self.host_weight_bytes(), "weight_disk_bytes": disk,
                "kv_tier": "disk" if self.kv_on_disk else "host" if self.kv_on_host else "gpu"}

    # -- time ------------------------------------------------------------------------------------
    def layer_read(self, tokens):
        """(bytes over PCIe host -> device, bytes from the drive, drive request bytes) per layer."""
        if self.flash is not None:
            nbytes, req = self.flash.read(tokens, self.static_share())
            return nbytes, nbytes, req
        streamed = self.layer_bytes * (1.0 - self.gpu_fraction)
        return streamed + 0.0 * tokens, self.layer_bytes * self.disk_fraction + 0.0 * tokens, self.io_size

    def dense_scale(self, tokens):
        """Flash: the share of the dense GPU time left when only the flagged FFN neurons compute."""
        f = self.flash
        if f is None:
            return 1.0
        layer = f.attn_layer_bytes + f.ffn_layer_bytes
        return (f.attn_layer_bytes + f.ffn_layer_bytes * f.flagged(tokens) + f.predictor_bytes) / layer

    def host_attention_s(self, rows, kv):
        """Seconds the host CPU spends on decode attention of ``rows`` rows with summed context ``kv``."""
        return np.maximum(kv * self.kv_bytes_per_token / self.host_attention_bw,
                          kv * self.attn_flops_per_kv / self.host_flops) + 0.0 * rows

    def storage_attention_s(self, rows, kv):
        """Seconds the drive's in-storage unit spends on decode attention (it reads ``storage_read_fraction``
        of the KV at its internal bandwidth), plus Q, the new K, V and the outputs over its own link."""
        f = self.storage_read_fraction
        flops, nbytes = kv * self.attn_flops_per_kv * f, kv * self.kv_bytes_per_token * f
        inside = self.storage_s(flops, nbytes) if np.ndim(kv) == 0 else np.vectorize(self.storage_s)(flops, nbytes)
        return inside + self.num_layers * rows * (2 * self.q_bytes_per_row + self.kv_bytes_per_row) / \
            self.drive_link_rate

    def step_s(self, dense_s, other_attn_s, decode_attn_s, rows, decode_kv, tokens):
        """Seconds of one iteration: ``dense_s`` the GPU time of every op but attention,
        ``other_attn_s`` prefill attention (on the GPU), ``decode_attn_s`` the GPU time of decode
        attention (replaced by the host's when attention runs there), ``rows`` decode rows with
        summed context ``decode_kv``, ``tokens`` the tokens computed (each leaves new KV)."""
        L, k = self.num_layers, self.num_gpu_batches
        dense = dense_s * self.dense_scale(tokens)
        if self.attention_on_host or self.attention_in_storage:
            # decode attention off the GPU: the block's k GPU batches pipeline through the GPU and the
            # attention unit (two stages): max + min / k
            off = (self.host_attention_s(rows, decode_kv) if self.attention_on_host
                   else self.storage_attention_s(rows, decode_kv))
            c = (np.maximum(dense + other_attn_s, off) + np.minimum(dense + other_attn_s, off) / k) / L
        else:
            c = (dense + other_attn_s + decode_attn_s) / L
        h2d, d2h, disk, req, kv_read, kv_write = self.layer_traffic(rows, decode_kv, tokens)
        link = np.maximum(h2d, d2h)
        f = np.where(link > 0, self.copy_overhead_s + link / self.pcie_rate, 0.0)
        drive = np.where(disk > 0, self.disk_read_s(disk, req) if np.ndim(disk) == 0 else
                         np.vectorize(self.disk_read_s)(disk, req), 0.0)
        if self.kv_on_disk:  # reads and writes queue separately in the drive
            drive = np.maximum(drive + kv_read / self.kv_disk_read_rate, kv_write / self.kv_disk_write_rate)
        f = f + drive
        if self.overlap:
            return f + (L - 1) * np.maximum(c, f) + c
        return L * (c + f)

    def layer_traffic(self, rows, decode_kv, tokens):
        """Bytes per layer of one iteration: (host -> device, device -> host, weights read from the
        drive, drive request bytes, KV read from / written to the KV's tier)."""
        L = self.num_layers
        h2d, disk, req = self.layer_read(tokens)
        d2h = 0.0 * h2d
        kv_layer = self.kv_bytes_per_token / L
        kv_read = 0.0 * h2d  # bytes of KV read from the drive per layer
        kv_write = 0.0 * h2d
        if self.kv_on_host:
            if self.attention_in_storage:  # prompt KV leaves the GPU for the drive; decode rows' K, V go with Q
                kv_write = kv_write + (tokens - rows) * kv_layer
                if not self.p2p:
                    d2h = d2h + rows * (self.q_bytes_per_row + self.kv_bytes_per_row) + (tokens - rows) * kv_layer
                    h2d = h2d + rows * self.q_bytes_per_row
            else:
                d2h = d2h + tokens * kv_layer  # new K, V written back
                kv_write = kv_write + tokens * kv_layer
                if self.attention_on_host:  # Q (and the new K, V, counted above) out, attention output back
                    d2h = d2h + rows * self.q_bytes_per_row
                    h2d = h2d + rows * self.q_bytes_per_row
                else:
                    h2d = h2d + decode_kv * kv_layer
                kv_read = kv_read + decode_kv * kv_layer
        return h2d, d2h, disk, req, kv_read, kv_write


__all__ = ["FlashRead", "WeightOffload"]
