"""ShadowKV study: low-rank pre-RoPE keys on the GPU, values in host DRAM, a sparse budget fetched per step.

Models: decode of a batch of long-context sequences on one GPU, two systems.
    ``full``: weights and the whole KV on the GPU; a step reads weights once and every sequence's
    KV (roofline at ``gpu_memory_efficiency`` of HBM); the batch is what fits beside the weights.
    ``shadowkv``: per sequence and layer the GPU holds the low-rank key factor A (context x
    ``rank``) and the shared factor B (``rank`` x kv width), one landmark (mean post-RoPE key) per
    ``chunk_tokens`` chunk, and the outlier chunks (``outlier_fraction`` of them) in full K and V;
    values live in host DRAM. A decode step, per layer: dense GEMMs (weights from HBM), scoring
    every landmark (landmark bytes from HBM), then, overlapped, the values of the selected
    ``sparse_budget`` of tokens over PCIe (less the share ``value_cache_hit`` already on the GPU
    from the last step) and the keys of those tokens rebuilt as A_sel @ B on the tensor cores,
    then sparse attention over budget + outliers. Per layer the slower of fetch and rebuild counts
    (they run on separate CUDA streams; the fetch needs this layer's query, so it cannot run a
    layer ahead), hence a closed form. The GPU also keeps one sequence's full KV as prefill
    workspace (a sequence is prefilled before it is split into factor and values). Throughput =
    batch / step time, at ``context_tokens``.
Ignores: accuracy (rank, budget and outliers are inputs), the SVD and prefill time, RoPE cost,
    the CPU-side gather of selected values (assumed pinned and contiguous per chunk).
Sources: Sun et al., "ShadowKV: KV Cache in Shadows for High-Throughput Long-Context LLM Inference"
    (2024): rank 160, chunk 8, sparse budget 1.56%; up to 6x larger batch and 3.04x throughput on an
    A100 for Llama-3.1-8B at 122K context.
"""

from __future__ import annotations

import math

from pydantic import Field

from hw_models.host import Host
from simulator.config.loader import resolve_component
from simulator.config.quantities import StrictConfig
from simulator.core import registry as reg
from simulator.studies.flexgen import Component, _block, layer_weight_bytes


class Config(StrictConfig):
    model: str = "Llama-3.1-8B"
    gpu: Component = "A100-80GB"
    host: Component = "DGX-A100-host"
    context_tokens: int = Field(default=122880, gt=0)
    rank: int = Field(default=160, gt=0, description="low-rank dimension of pre-RoPE keys (input)")
    chunk_tokens: int = Field(default=8, gt=0)
    sparse_budget: float = Field(default=0.0156, gt=0, le=1, description="share of tokens fetched per step (input)")
    outlier_fraction: float = Field(default=0.002, ge=0, le=1, description="share of chunks kept in full on the GPU")
    value_cache_hit: float = Field(default=0.0, ge=0, lt=1, description="share of selected values already on the GPU")
    max_batch: int = Field(default=512, gt=0)
    gpu_compute_efficiency: float = Field(default=0.6, gt=0, le=1)
    gpu_memory_efficiency: float = Field(default=0.8, gt=0, le=1)


def _parts(cfg: Config):
    m = resolve_component({"kind": "transformer", "preset": cfg.model}, reg.MODELS, "study.model").config
    g = resolve_component(_block(cfg.gpu, "gpu"), reg.HARDWARE, "study.gpu").config
    h = resolve_component(_block(cfg.host, "host"), reg.HARDWARE, "study.host").config
    return m, g, h


def per_sequence_gpu_bytes(cfg: Config, m) -> float:
    """ShadowKV's GPU bytes for one sequence (all layers)."""
    n, db, kvw = cfg.context_tokens, m.dtype_bytes, m.kv_size
    chunks = math.ceil(n / cfg.chunk_tokens)
    per_layer = n * cfg.rank * db + cfg.rank * kvw * db + chunks * kvw * db \
        + cfg.outlier_fraction * chunks * cfg.chunk_tokens * 2 * kvw * db
    return per_layer * m.num_layers


def run(cfg: Config) -> dict:
    m, g, h = _parts(cfg)
    n, db, kvw, L = cfg.context_tokens, m.dtype_bytes, m.kv_size, m.num_layers
    usable = g.memory_bytes - g.extra_memory_bytes
    weights = m.weight_bytes()
    kv_seq = n * m.kv_bytes_per_token()
    hbm = g.memory_bw_bytes_per_s * cfg.gpu_memory_efficiency
    peak = g.tensor_peak(m.dtype) * cfg.gpu_compute_efficiency
    full_batch = min(cfg.max_batch, max(0, int((usable - weights) // kv_seq)))
    full_step = (weights + full_batch * kv_seq) / hbm
    sk_seq = per_sequence_gpu_bytes(cfg, m)
    sk_batch = min(cfg.max_batch, max(0, int((usable - weights - kv_seq) // sk_seq)))
    host_need = sk_batch * n * kvw * db * L
    if host_need > h.dram_bytes:  # values must fit in host DRAM
        sk_batch = int(h.dram_bytes // (n * kvw * db * L))
    link = Host(h)
    sel = math.ceil(cfg.sparse_budget * n)
    chunks = math.ceil(n / cfg.chunk_tokens)
    outl = cfg.outlier_fraction * chunks * cfg.chunk_tokens
    b = sk_batch
    dense = max(2.0 * b * layer_weight_bytes(m) / db / peak, layer_weight_bytes(m) / hbm)
    score = max(2.0 * b * m.num_heads * m.head_dim * chunks / peak, b * chunks * kvw * db / hbm)
    fetch_bytes = b * sel * kvw * db * (1.0 - cfg.value_cache_hit)
    fetch = link.transfer_s(fetch_bytes)
    rebuild = max(2.0 * b * sel * cfg.rank * kvw / peak, b * (sel * cfg.rank + cfg.rank * kvw) * db / hbm)
    attend = b * (sel + outl) * 2 * kvw * db / hbm
    layer = dense + score + max(fetch, rebuild) + attend
    head = (m.embedding_params() * db) / hbm  # LM head read once a step (the full system's `weights` has it)
    sk_step = L * layer + head
    full_tput = full_batch / full_step if full_batch else 0.0
    sk_tput = b / sk_step if b else 0.0
    return {"context_tokens": n, "full_batch": full_batch, "shadowkv_batch": sk_batch,
            "batch_ratio": sk_batch / full_batch if full_batch else float("inf"),
            "full_step_s": full_step, "shadowkv_step_s": sk_step,
            "full_tok_s": full_tput, "shadowkv_tok_s": sk_tput,
            "throughput_ratio": sk_tput / full_tput if full_tput else float("inf"),
            "kv_bytes_per_seq": kv_seq, "shadowkv_gpu_bytes_per_seq": sk_seq,
            "gpu_memory_reduction": kv_seq / sk_seq, "value_fetch_bytes_per_layer": fetch_bytes,
            "value_fetch_s_per_layer": fetch, "key_rebuild_s_per_layer": rebuild,
            "pcie_bound_share": L * fetch / sk_step}
