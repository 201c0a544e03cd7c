"""TPI-LLM study: a 70B model tensor-parallel over a few edge devices on a slow network, weights
streamed from each device's disk through a sliding window of layers.

Models: ``devices`` identical devices (``cpu`` preset, ``disk`` ssd preset) joined by a link of
    ``link_bw`` per device and ``link_latency`` per message (alpha-beta). Every layer is split
    column/row-wise over the devices (Megatron style), so each holds 1/devices of every layer and
    after attention and after the MLP runs an all-reduce of the step's activations
    (tokens x hidden x activation bytes):
    * star (the master gathers, reduces, broadcasts; its link carries every message):
      2 alpha + 2 (p - 1) S / B;
    * ring: 2 (p - 1) alpha + 2 (p - 1) / p x S / B;
    star is cheaper below S* = (p - 2) p alpha B / (p - 1)^2 (latency-bound), ring above it.
    Each device keeps only ``window_layers`` layer shards in memory; a loader thread reads the
    next shard from disk (one sequential read at the ``ssd`` model's rate) while the current one
    computes, so a layer costs max(compute + all-reduces, shard load) (no overlap with a window
    of 1) and every token re-reads every layer. Compute on a CPU: max(shard bytes / DRAM rate,
    FLOPs / (fp32 FMA peak x gemm_efficiency)). The master also holds the embedding and the LM
    head (read once per step). Peak memory of the master = window x shard bytes + embedding and
    head + its share of the KV cache + ``runtime_bytes`` (process, framework, buffers).
    Baselines: the same TP without a window (every shard resident) for memory, and HF Accelerate
    disk offload on one device for latency: each layer is read whole from disk, then computed,
    one after the other, no prefetch.
Ignores: Wi-Fi medium sharing between devices (each link is independent), straggler devices,
    the Python/PyTorch per-op overhead, OS page cache hits on re-read weights (every token reads
    from disk), KV cache growth beyond ``context_tokens``.
Sources: Li et al., "TPI-LLM: Serving 70B-scale LLMs Efficiently on Low-resource Edge Devices"
    (2024): star all-reduce for latency-bound links, sliding-window memory scheduler; peak memory
    of Llama-2-70B down 90 % to 3.1 GB; >80 % lower TTFT and token latency than Accelerate.
    Thakur, Rabenseifner, Gropp (IJHPCA 2005) for the ring/star alpha-beta costs. Device numbers
    from the ``cpu`` and ``ssd`` presets; link numbers are study inputs.
"""

from __future__ import annotations

from pydantic import Field

from hw_models.ssd import Ssd
from simulator.config.loader import resolve_component
from simulator.config.quantities import Bytes, PositiveBytesPerS, Seconds, StrictConfig
from simulator.core import registry as reg


class Config(StrictConfig):
    model: str = "Llama-2-70B"
    devices: int = Field(default=8, ge=1)
    cpu: str = Field(default="Ryzen-7840U", description="cpu preset of each device (laptop)")
    disk: str = Field(default="Client-NVMe-PCIe4", description="ssd preset of each device")
    link_bw: PositiveBytesPerS = Field(default="125MB/s", description="per device, per direction (1 Gbit/s Ethernet)")
    link_latency: Seconds = Field(default="0.5ms", description="alpha: per message, one way (estimate)")
    allreduce: str = Field(default="auto", pattern="^(auto|star|ring)$")
    window_layers: int = Field(default=4, ge=1, description="layer shards resident per device")
    prompt_tokens: int = Field(default=128, gt=0)
    context_tokens: int = Field(default=512, gt=0, description="KV cache held at peak")
    activation_bytes: float = Field(default=2, gt=0, description="bytes per activation element on the wire")
    runtime_bytes: Bytes = Field(default="1GiB", description="process + framework resident set (estimate)")


def star_allreduce_s(size: float, p: int, alpha: float, bw: float) -> float:
    return 0.0 if p <= 1 else 2.0 * alpha + 2.0 * (p - 1) * size / bw


def ring_allreduce_s(size: float, p: int, alpha: float, bw: float) -> float:
    return 0.0 if p <= 1 else 2.0 * (p - 1) * alpha + 2.0 * (p - 1) / p * size / bw


def star_ring_crossover_bytes(p: int, alpha: float, bw: float) -> float:
    """Message size below which star beats ring (alpha-beta): S* = (p - 2) p alpha B / (p - 1)^2."""
    return (p - 2) * p * alpha * bw / (p - 1) ** 2


def run(cfg: Config) -> dict:
    m = resolve_component({"kind": "transformer", "preset": cfg.model}, reg.MODELS, "study.model").config
    cpu = resolve_component({"kind": "cpu", "preset": cfg.cpu}, reg.HARDWARE, "study.cpu").config
    disk = Ssd(resolve_component({"kind": "ssd", "preset": cfg.disk}, reg.HARDWARE, "study.disk").config)
    p, b, L = cfg.devices, m.dtype_bytes, m.num_layers
    layer_params = m.attn_params_per_layer() + m.mlp_params_per_layer() + 2 * m.hidden_size
    layer_bytes = layer_params * b
    shard = layer_bytes / p
    head_bytes = m.embedding_params() * b  # input embedding + LM head on the master
    kv = cfg.context_tokens * m.kv_bytes_per_token() / p
    window = min(cfg.window_layers, L)
    peak = window * shard + head_bytes + kv + cfg.runtime_bytes
    peak_no_window = L * shard + head_bytes + kv + cfg.runtime_bytes

    dram = min(cpu.dram_bw_per_core_bytes_per_s * cpu.cores, cpu.dram_bw_bytes_per_s) * cpu.bw_efficiency.dram
    flops_rate = cpu.peak_flops_per_core("fp32") * cpu.cores * cpu.gemm_efficiency

    def compute_s(nbytes: float, flops: float) -> float:
        return max(nbytes / dram, flops / flops_rate)

    def load_s(nbytes: float) -> float:
        return disk.read_s(nbytes, nbytes, 1)

    def allreduce_s(size: float) -> tuple[float, str]:
        star = star_allreduce_s(size, p, cfg.link_latency, cfg.link_bw)
        ring = ring_allreduce_s(size, p, cfg.link_latency, cfg.link_bw)
        if cfg.allreduce == "star" or (cfg.allreduce == "auto" and star <= ring):
            return star, "star"
        return ring, "ring"

    def step(tokens: int, ctx: int) -> dict:
        attn_flops = 4.0 * tokens * ctx * m.num_heads * m.head_dim  # QK^T and PV
        layer_flops = 2.0 * tokens * layer_params + attn_flops
        comp = compute_s(shard, layer_flops / p)
        ar, algo = allreduce_s(tokens * m.hidden_size * cfg.activation_bytes)
        busy = comp + 2.0 * ar
        load = load_s(shard)
        per_layer = max(busy, load) if window >= 2 else busy + load
        head = compute_s(m.vocab_size * m.hidden_size * b, 2.0 * m.vocab_size * m.hidden_size)
        tpi = load + L * per_layer + head  # the first shard's load is not hidden
        acc_layer = load_s(layer_bytes) + compute_s(layer_bytes, layer_flops)
        acc = L * acc_layer + head
        return {"tpi_s": tpi, "accelerate_s": acc, "compute_per_layer_s": comp, "allreduce_s": ar,
                "allreduce": algo, "load_per_layer_s": load}

    pre = step(cfg.prompt_tokens, cfg.prompt_tokens)
    dec = step(1, cfg.prompt_tokens + 1)
    msg = m.hidden_size * cfg.activation_bytes
    return {
        "model": cfg.model, "devices": p, "layer_bytes": layer_bytes, "shard_bytes": shard,
        "embedding_head_bytes": head_bytes, "kv_bytes_per_device": kv, "window_layers": window,
        "peak_memory_bytes": peak, "peak_memory_no_window_bytes": peak_no_window,
        "memory_reduction": 1.0 - peak / peak_no_window,
        "ttft_s": pre["tpi_s"], "accelerate_ttft_s": pre["accelerate_s"],
        "token_s": dec["tpi_s"], "accelerate_token_s": dec["accelerate_s"],
        "ttft_reduction": 1.0 - pre["tpi_s"] / pre["accelerate_s"],
        "token_latency_reduction": 1.0 - dec["tpi_s"] / dec["accelerate_s"],
        "decode_allreduce": dec["allreduce"], "prefill_allreduce": pre["allreduce"],
        "decode_allreduce_s": dec["allreduce_s"], "decode_compute_per_layer_s": dec["compute_per_layer_s"],
        "load_per_layer_s": dec["load_per_layer_s"],
        "decode_star_s": star_allreduce_s(msg, p, cfg.link_latency, cfg.link_bw),
        "decode_ring_s": ring_allreduce_s(msg, p, cfg.link_latency, cfg.link_bw),
        "star_ring_crossover_bytes": star_ring_crossover_bytes(p, cfg.link_latency, cfg.link_bw),
    }
