"""Sparse KV fetch per decode step (ShadowKV): values of a budget of selected tokens copied from host DRAM
over PCIe while their keys are rebuilt from a low-rank factor on the GPU.

Models: per decode iteration and layer, the rows' selected tokens (``sparse_budget`` of each row's
    context, summed) have their values copied host -> device (one copy per layer: ``copy_overhead_s`` +
    bytes / ``pcie_rate``, bytes = tokens x kv_width x dtype bytes x (1 - value_cache_hit)) and their keys
    rebuilt as A_sel @ B (2 x tokens x rank x kv_width FLOPs at the tensor peak x
    ``compute_efficiency``). The two run on separate streams and the fetch needs the layer's query
    (the selection), so it cannot run a layer ahead: the iteration waits L x max(fetch, rebuild)
    after its GPU time.
Ignores: contention with other host traffic on the same link (KV swaps); the gather on the host.
Sources: Sun et al., "ShadowKV" (2024), Section 4 (overlapped value fetch and key reconstruction).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SparseKvFetch:
    num_layers: int
    kv_width: int
    dtype_bytes: float
    rank: int
    sparse_budget: float
    value_cache_hit: float
    pcie_rate: float  # bytes/s host -> device
    copy_overhead_s: float
    flops_per_s: float  # tensor peak x efficiency for the key rebuild
    context_of: Callable  # (summed resident tokens, rows) -> summed context

    def selected(self, rows, decode_kv):
        """Tokens whose values are fetched per layer in one iteration."""
        return np.ceil(self.sparse_budget * self.context_of(decode_kv, rows))

    def stall_s(self, rows, decode_kv):
        """Seconds an iteration of ``rows`` decode rows (summed resident context ``decode_kv``) waits."""
        sel = self.selected(rows, decode_kv)
        nbytes = sel * self.kv_width * self.dtype_bytes * (1.0 - self.value_cache_hit)
        fetch = np.where(nbytes > 0, self.copy_overhead_s + nbytes / self.pcie_rate, 0.0)
        rebuild = 2.0 * sel * self.rank * self.kv_width / self.flops_per_s
        return self.num_layers * np.maximum(fetch, rebuild)


__all__ = ["SparseKvFetch"]
