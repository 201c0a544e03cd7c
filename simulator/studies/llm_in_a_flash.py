"""LLM in a flash study: a model twice the DRAM size, FFN weights read from flash on demand per token.

Models: batch-1 decode of a transformer whose weights (``dtype`` of the model preset) do not fit in
    DRAM (``dram_fraction`` of the weight bytes; 0.5 = the model is 2x DRAM). Per token:
    * naive: the weights that do not fit are read from flash whole, one request per layer
      (``(1 - dram_fraction) x weights / layers`` bytes each, ``queue_depth`` deep), and the layer
      is computed dense;
    * LLM in a flash: attention, embeddings and norms stay in DRAM; the FFN neurons the predictor
      flags are read from flash. A token activates ``1 - ffn_sparsity`` of the FFN neurons; the
      predictor flags ``(1 - ffn_sparsity) x recall / precision`` of them (the density rho).
      Windowing keeps the neurons used by the last ``window_tokens`` tokens in DRAM, so only
      ``window_new_fraction[k]`` of a token's flagged neurons are read (an input curve); the
      DRAM left over after attention and the window cache holds a fixed share of the FFN
      neurons (the "hybrid" share), never read. Row-column bundling stores neuron i's up-row
      and down-column (and gate-row) together, so one read fetches all of a neuron's weights;
      without it each matrix is read separately. Neurons to read are spread at random over the
      non-resident neurons, so consecutive ones form runs of 1 / (1 - rho x new) neurons on
      average (geometric; the static share is one contiguous block):
      a request is a run of bundles (or rows), capped at the layer's non-resident FFN bytes,
      and the drive delivers them at the ``ssd`` model's throughput for that request size and
      queue depth. Compute is sparse (only the flagged neurons) plus the predictor's low-rank
      matmuls. CPU: max(bytes touched / DRAM rate, FLOPs / (fp32 FMA peak x gemm_efficiency)),
      the DRAM rate min(cores x per-core, socket) x the preset's DRAM efficiency. GPU: bytes
      touched / memory bandwidth (FLOPs / tensor peak if larger) plus the flash-loaded bytes
      over the host link (PCIe). Flash reads and compute do not overlap (the predictor for a
      layer runs on that layer's input), so a token costs I/O + compute.
    With sparsity 0, recall = precision = 1 and no window the method reads exactly the naive
    bytes in the same request sizes, so it equals naive.
Ignores: quality effects of sparsity and predictor misses (inputs), the DRAM copy cost of the
    neuron buffer management (the paper's preallocated matrix; a memmove per new neuron),
    attention/KV cache growth with context, OS page cache, thermal throttling.
Sources: Alizadeh et al., "LLM in a flash: Efficient Large Language Model Inference with Limited
    Memory" (ACL 2024): OPT-6.7B, ReLU FFN ~97 % sparse, low-rank predictor, windowing of the
    last 5 tokens, row-column bundling; models up to 2x DRAM; 4-5x (CPU) and 20-25x (GPU) faster
    than naive loading. Hardware numbers from the ``ssd``, ``cpu``, ``gpu`` and ``link`` presets.
"""

from __future__ import annotations

from pydantic import Field

from hw_models.ssd import Ssd
from simulator.config.loader import resolve_component
from simulator.config.quantities import StrictConfig
from simulator.core import registry as reg
from simulator.core.errors import ConfigError


class Config(StrictConfig):
    model: str = "OPT-6.7B"
    ssd: str = Field(default="Client-NVMe-PCIe4", description="flash preset (e.g. UFS4-phone)")
    cpu: str = "Ryzen-7840U"
    gpu: str = "RTX-4090"
    host_link: str = Field(default="PCIe4", description="link preset between host DRAM and the GPU")
    dram_fraction: float = Field(default=0.5, gt=0, le=1, description="DRAM (or GPU memory) / weight bytes")
    ffn_sparsity: float = Field(default=0.97, ge=0, lt=1, description="share of FFN neurons inactive per token")
    predictor_recall: float = Field(default=0.95, gt=0, le=1, description="share of active neurons flagged")
    predictor_precision: float = Field(default=0.5, gt=0, le=1, description="share of flagged neurons active")
    predictor_rank: int = Field(default=128, ge=0, description="low-rank predictor width (0: no predictor cost)")
    window_tokens: int = Field(default=5, ge=0, description="tokens whose neurons stay in DRAM (0: no windowing)")
    window_new_fraction: list[float] = Field(
        default=[1.0, 0.55, 0.42, 0.35, 0.31, 0.28, 0.26, 0.25],
        description="index k: share of a token's flagged neurons not used by the previous k tokens (assumed curve)")
    bundling: bool = True
    queue_depth: int = Field(default=32, gt=0, description="parallel flash reads in flight")

    def new_fraction(self) -> float:
        c = self.window_new_fraction
        return c[min(self.window_tokens, len(c) - 1)]


def _loads(cfg: Config):
    m = resolve_component({"kind": "transformer", "preset": cfg.model}, reg.MODELS, "study.model").config
    ssd = Ssd(resolve_component({"kind": "ssd", "preset": cfg.ssd}, reg.HARDWARE, "study.ssd").config)
    cpu = resolve_component({"kind": "cpu", "preset": cfg.cpu}, reg.HARDWARE, "study.cpu").config
    gpu = resolve_component({"kind": "gpu", "preset": cfg.gpu}, reg.HARDWARE, "study.gpu").config
    link = resolve_component({"kind": "link", "preset": cfg.host_link}, reg.HARDWARE, "study.host_link").config
    return m, ssd, cpu, gpu, link


def _compute(bytes_touched: float, flops: float, cpu, gpu, link, flash_bytes: float, dtype: str) -> tuple[float, float]:
    dram = min(cpu.dram_bw_per_core_bytes_per_s * cpu.cores, cpu.dram_bw_bytes_per_s) * cpu.bw_efficiency.dram
    cpu_s = max(bytes_touched / dram, flops / (cpu.peak_flops_per_core("fp32") * cpu.cores * cpu.gemm_efficiency))
    gpu_s = max(bytes_touched / gpu.memory_bw_bytes_per_s, flops / gpu.tensor_flops_per_s[dtype])
    gpu_s += flash_bytes / (link.bw_bytes_per_s * link.efficiency)
    return cpu_s, gpu_s


def run(cfg: Config) -> dict:
    m, ssd, cpu, gpu, link = _loads(cfg)
    b, L, d, f = m.dtype_bytes, m.num_layers, m.hidden_size, m.intermediate_size
    weights = m.weight_bytes()
    mats = 3 if m.gated_mlp else 2
    ffn = L * m.mlp_params_per_layer() * b
    other = weights - ffn
    dram = cfg.dram_fraction * weights
    if other > dram:
        raise ConfigError(f"attention and embeddings ({other / 1e9:.2f} GB) do not fit in DRAM "
                          f"({dram / 1e9:.2f} GB)", where="study.dram_fraction")

    # naive: whole-layer reads of what does not fit
    naive_bytes = weights - dram
    naive_req = naive_bytes / L
    naive_io = ssd.read_s(naive_bytes, naive_req, cfg.queue_depth) if naive_bytes > 0 else 0.0
    dense_flops = 2.0 * m.num_params()

    # LLM in a flash: predicted neurons, windowing, hybrid share, bundling
    rho = min(1.0, (1.0 - cfg.ffn_sparsity) * cfg.predictor_recall / cfg.predictor_precision)
    new = cfg.new_fraction()
    union = min(1.0, rho * (1.0 + cfg.window_tokens * new)) if cfg.window_tokens else rho
    window_cache = union * ffn if cfg.window_tokens else 0.0
    static_share = min(1.0, max(0.0, dram - other - window_cache) / ffn)
    rho_new = rho * new * (1.0 - static_share)
    flash_bytes = ffn * rho_new
    neuron_bytes = mats * d * b
    unit = neuron_bytes if cfg.bundling else d * b
    layer_cap = ffn * (1.0 - static_share) / L / (1 if cfg.bundling else mats)
    run_density = rho * new  # among the non-resident neurons (the static share is one contiguous block)
    req = layer_cap if run_density >= 1.0 else min(layer_cap, unit / (1.0 - run_density))
    io = ssd.read_s(flash_bytes, req, cfg.queue_depth) if flash_bytes > 0 else 0.0
    pred_flops = 2.0 * L * cfg.predictor_rank * (d + f)
    sparse_flops = dense_flops - 2.0 * L * m.mlp_params_per_layer() * (1.0 - rho) + pred_flops
    sparse_bytes = other + rho * ffn + pred_flops / 2.0 * b
    dense_bytes = weights

    naive_cpu, naive_gpu = _compute(dense_bytes, dense_flops, cpu, gpu, link, naive_bytes, m.dtype)
    flash_cpu, flash_gpu = _compute(sparse_bytes, sparse_flops, cpu, gpu, link, flash_bytes, m.dtype)
    return {
        "model": cfg.model, "weight_bytes": weights, "dram_bytes": dram, "model_over_dram": weights / dram,
        "ffn_bytes": ffn, "predicted_density": rho, "new_fraction": new, "static_ffn_share": static_share,
        "dram_used_bytes": other + window_cache + static_share * ffn,
        "naive_flash_bytes_per_token": naive_bytes, "naive_request_bytes": naive_req,
        "flash_bytes_per_token": flash_bytes, "flash_request_bytes": req,
        "naive_io_s": naive_io, "flash_io_s": io,
        "naive_read_bw_bytes_per_s": naive_bytes / naive_io if naive_io else 0.0,
        "flash_read_bw_bytes_per_s": flash_bytes / io if io else 0.0,
        "naive_cpu_compute_s": naive_cpu, "flash_cpu_compute_s": flash_cpu,
        "naive_gpu_compute_s": naive_gpu, "flash_gpu_compute_s": flash_gpu,
        "naive_cpu_token_s": naive_io + naive_cpu, "flash_cpu_token_s": io + flash_cpu,
        "naive_gpu_token_s": naive_io + naive_gpu, "flash_gpu_token_s": io + flash_gpu,
        "cpu_speedup": (naive_io + naive_cpu) / (io + flash_cpu),
        "gpu_speedup": (naive_io + naive_gpu) / (io + flash_gpu),
    }
