"""``shadowkv``: ShadowKV -- low-rank pre-RoPE keys and landmarks on the GPU, values in host DRAM, a sparse
budget of values fetched over PCIe every decode step.

Models: per token and layer the GPU keeps the token's row of the low-rank key factor A (``rank``
    elements), its share of one landmark per ``chunk_tokens`` chunk (``kv_width / chunk_tokens``) and,
    for the outlier chunks (``outlier_fraction``), full K and V (``2 kv_width``); per sequence and layer
    the shared factor B (``rank x kv_width``). In full-KV token units (``2 kv_width`` elements) a
    sequence of c tokens holds ``ceil(share x c) + rank / 2`` tokens' worth of blocks, share =
    (rank + kv_width / chunk + 2 kv_width x outlier_fraction) / (2 kv_width) (mechanism:
    ``simulator.serving.kv_cache.CappedKvCache``); decode attention reads those GPU bytes (the
    landmarks it scores, the key factor and the outliers). The values live in host DRAM: each decode
    step, per layer, the values of ``ceil(sparse_budget x c)`` selected tokens cross PCIe (less the share
    ``value_cache_hit`` kept from the last step) while their keys are rebuilt as A_sel @ B on the
    tensor cores; the slower of the two adds to the step (``workloads.sparse_kv_fetch``).
Ignores: accuracy (rank, budget and outliers are inputs); the SVD at prefill and the prefill's full KV,
    held as workspace (the scenario's activation reserve); that attention reads only the selected rows
    of A (it is charged for all of them: an upper bound); host DRAM capacity for the values; the CPU
    gather of the selected values (pinned, contiguous per chunk).
Sources: Sun et al., "ShadowKV: KV Cache in Shadows for High-Throughput Long-Context LLM Inference" (2024):
    rank 160, chunk 8, sparse budget 1.56 %; up to 6x larger batch and 3.04x throughput on an A100 for
    Llama-3.1-8B at 122K context.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from simulator.config.quantities import StrictConfig
from simulator.core.registry import register_cache_policy


class ShadowKvConfig(StrictConfig):
    kv_width: int = Field(gt=0, description="K (or V) elements per token per layer: KV heads x head dim (the "
                                            "engine checks it against the model)")
    rank: int = Field(default=160, gt=0, description="low-rank dimension of the pre-RoPE keys (input)")
    chunk_tokens: int = Field(default=8, gt=0, description="tokens per chunk (one landmark each)")
    sparse_budget: float = Field(default=0.0156, gt=0, le=1, description="share of the context fetched per step")
    outlier_fraction: float = Field(default=0.002, ge=0, le=1, description="share of chunks kept in full on the GPU")
    value_cache_hit: float = Field(default=0.0, ge=0, lt=1, description="share of the selected values already on "
                                                                         "the GPU from the last step (input)")
    host: str | dict[str, Any] = Field(default="DGX-A100-host", description="host preset: DRAM and the PCIe link")


@register_cache_policy("shadowkv", config=ShadowKvConfig)
class ShadowKvPolicy:
    """Low-rank keys on the GPU, values in host DRAM, sparse value fetch per decode step."""
    mechanism = "capped"

    def __init__(self, config: ShadowKvConfig) -> None:
        self.config = config
        c = config
        self.share = (c.rank + c.kv_width / c.chunk_tokens + 2 * c.kv_width * c.outlier_fraction) / (2 * c.kv_width)
        self.fixed = math.ceil(c.rank / 2)  # the shared factor B, in full-KV tokens

    def resident(self, context: int) -> int:
        """Full-KV tokens' worth of GPU blocks a ``context``-token sequence holds (non-decreasing,
        growing by at most one per token since share < 1)."""
        return min(context, math.ceil(self.share * context) + self.fixed)

    def resident_array(self, context: np.ndarray) -> np.ndarray:
        return np.minimum(context, np.ceil(self.share * context).astype(np.int64) + self.fixed)

    def context_of(self, resident, rows):
        """The summed context behind the summed resident count of ``rows`` sequences (the inverse of
        ``resident`` away from its cap, up to the rounding of one token per sequence)."""
        return np.maximum(0.0, resident - self.fixed * rows) / self.share

    def report(self) -> dict:
        c = self.config
        return {"policy": "shadowkv", "rank": c.rank, "chunk_tokens": c.chunk_tokens, "sparse_budget": c.sparse_budget,
                "outlier_fraction": c.outlier_fraction, "gpu_share_of_kv": self.share}
