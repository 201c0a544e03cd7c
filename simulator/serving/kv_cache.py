"""Paged KV-cache block accounting (the mechanism; policies only decide).

Models: a pool of fixed-size blocks per replica; a request holds enough blocks for the larger of
    its cached tokens and its reservation; blocks return to the pool when it finishes or is
    preempted. Capacity is derived as an engine does: device memory x utilisation - weights -
    activation reserve, divided by the bytes of one block.
Ignores: block tables and prefix sharing (every request owns its blocks); fragmentation inside
    the last block is counted as used.
Sources: vLLM PagedAttention (Kwon et al., SOSP 2023), its profiling-based capacity rule.
"""

from __future__ import annotations

from simulator.core.contracts import KvView
from simulator.core.request import Request


class PagedKvCache:
    def __init__(self, total_blocks: int, block_size: int) -> None:
        if total_blocks < 0 or block_size <= 0:
            raise ValueError("total_blocks must be >= 0 and block_size > 0")
        self.total_blocks = total_blocks
        self.block_size = block_size
        self.used = 0
        self.peak_used = 0

    @property
    def free(self) -> int:
        return self.total_blocks - self.used

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    def need(self, req: Request, new_tokens: int, reserve_tokens: int = 0) -> int:
        target = max(self.blocks_for(req.num_computed + new_tokens),
                     self.blocks_for(max(reserve_tokens, req.kv_reserve_tokens)))
        return max(0, target - req.kv_blocks)

    def grow(self, req: Request, new_tokens: int, reserve_tokens: int = 0) -> None:
        n = self.need(req, new_tokens, reserve_tokens)
        if n > self.total_blocks - self.used:
            raise RuntimeError(f"KV cache over capacity: request {req.rid} needs {n} blocks, "
                               f"{self.total_blocks - self.used} free")
        if reserve_tokens > req.kv_reserve_tokens:
            req.kv_reserve_tokens = reserve_tokens
        req.kv_blocks += n
        self.used += n
        if self.used > self.peak_used:
            self.peak_used = self.used

    def add_used(self, blocks: int) -> None:
        """Account ``blocks`` taken by requests grown in bulk (a decode segment checked to fit)."""
        self.used += blocks
        if self.used > self.total_blocks:
            raise RuntimeError(f"KV cache over capacity: {self.used} of {self.total_blocks} blocks")
        if self.used > self.peak_used:
            self.peak_used = self.used

    def release(self, req: Request) -> int:
        n = req.kv_blocks
        self.used -= n
        req.kv_blocks = 0
        req.kv_reserve_tokens = 0
        return n

    def view(self) -> KvView:
        return KvView(self.block_size, self.total_blocks, self.total_blocks - self.used)
