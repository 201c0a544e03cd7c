"""CacheGen study: load a long context's KV over a network link, compressed or not, vs recompute.

Models: three ways to get the KV of an ``context_tokens`` prefix onto the serving GPU:
    recompute (prefill on the GPU: 2 x params x N plus causal attention 2 x layers x N^2 x d
    FLOPs at ``prefill_mfu`` of the tensor peak), fetch the 16-bit KV (N x KV bytes/token over
    the link, its latency plus bytes / bandwidth), or fetch CacheGen's bitstream (KV bytes /
    ``compression_ratio`` over the link, then decoded on the GPU at ``decode_bytes_per_s`` of
    KV produced, pipelined per chunk so the slower stage dominates plus one chunk of the other).
Ignores: quality loss of compression (the ratio is an input, from the paper), adaptation of the
    compression level to bandwidth changes, queuing behind other traffic.
Sources: Liu et al., "CacheGen: KV Cache Compression and Streaming for Fast Large Language Model
    Serving" (SIGCOMM 2024): 3.5-4.3x smaller than 8-bit quantized KV, 3.2-3.7x lower delay of
    fetching and processing contexts; papers.md: 3.7-4.3x less bandwidth, 2.7-3x lower delay.
"""

from __future__ import annotations

from pydantic import Field

from simulator.config.loader import resolve_component
from simulator.config.quantities import PositiveBytesPerS, Seconds, StrictConfig
from simulator.core import registry as reg


class CacheGenConfig(StrictConfig):
    model: str = "Llama-2-7B"
    gpu: str = "A100-80GB"
    context_tokens: int = Field(default=8192, gt=0)
    link_bw: PositiveBytesPerS = Field(default="3GB/s", description="network bandwidth to the KV store")
    link_latency: Seconds = "1ms"
    baseline_bits: int = Field(default=8, description="bits per KV element of the quantized baseline")
    compression_ratio: float = Field(default=3.9, gt=1, description="CacheGen bytes vs the 8-bit baseline (input)")
    decode_bytes_per_s: PositiveBytesPerS = Field(default="200GB/s", description="GPU decode rate of KV (input)")
    chunks: int = Field(default=8, gt=0, description="context chunks streamed and decoded in a pipeline")
    prefill_mfu: float = Field(default=0.6, gt=0, le=1)


def run(cfg: CacheGenConfig) -> dict:
    m = resolve_component({"kind": "transformer", "preset": cfg.model}, reg.MODELS, "study.model").config
    g = resolve_component({"kind": "gpu", "preset": cfg.gpu}, reg.HARDWARE, "study.gpu").config
    n = cfg.context_tokens
    flops = 2.0 * m.num_params() * n + 2.0 * m.num_layers * n * n * m.num_heads * m.head_dim
    recompute_s = flops / (g.tensor_flops_per_s[m.dtype] * cfg.prefill_mfu)
    kv16 = n * m.kv_bytes_per_token()
    kv_base = kv16 * cfg.baseline_bits / (8 * m.dtype_bytes)
    fetch16_s = cfg.link_latency + kv16 / cfg.link_bw
    fetch_base_s = cfg.link_latency + kv_base / cfg.link_bw
    cg_bytes = kv_base / cfg.compression_ratio
    net, dec = cg_bytes / cfg.link_bw, kv16 / cfg.decode_bytes_per_s
    cachegen_s = cfg.link_latency + max(net, dec) + min(net, dec) / cfg.chunks
    return {"context_tokens": n, "recompute_s": recompute_s, "fetch_fp16_s": fetch16_s,
            "fetch_quantized_s": fetch_base_s, "cachegen_s": cachegen_s, "kv_fp16_bytes": kv16,
            "kv_quantized_bytes": kv_base, "cachegen_bytes": cg_bytes,
            "bandwidth_saving_vs_quantized": kv_base / cg_bytes,
            "delay_gain_vs_quantized": fetch_base_s / cachegen_s, "delay_gain_vs_recompute": recompute_s / cachegen_s}
