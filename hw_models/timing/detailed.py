"""Detailed timing backend: an SM-level SimPy simulation of one GEMM kernel.

Models: the kernel the ``tile`` model's library heuristic picks, executed event by event — each
    CTA is a SimPy process that waits for a free slot (SMs x CTAs per SM, handed out in launch
    order as the hardware block scheduler does), then streams its K loop in ``chunks`` pieces:
    the operand bytes of a piece cross a shared HBM resource (processor sharing at the achievable
    bandwidth, each CTA capped by its bytes in flight over the HBM latency) while the previous
    piece runs on its SM's tensor pipe (a capacity-1 resource per SM shared by the CTAs resident
    there); then the epilogue, then the slot is freed. The GPU-side fixed kernel cost is added.
    Other op kinds are timed by the ``tile`` backend (attention, memory-bound, collectives).
Ignores: warp scheduling inside an SM, L2 as a separate bandwidth stage (its reuse is folded into
    the per-CTA HBM bytes of the tile plan), DRAM bank/row effects.
Sources: as ``hw_models.gemm_tiles``; processor sharing as ``simulator.core.resources``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import simpy
from pydantic import Field

from hw_models.gemm_tiles import GemmPlan
from hw_models.timing.base import TimingBackend
from hw_models.timing.tile import TileBackend, TileConfig
from simulator.core.clock import PS_PER_S
from simulator.core.registry import register_timing
from simulator.core.resources import SharedBandwidth


class DetailedConfig(TileConfig):
    chunks: int = Field(default=8, ge=1, le=256, description="pieces each CTA's K loop is simulated in")


def simulate_gemm(plan: GemmPlan, m: int, n: int, k: int, backend: TileBackend, dtype: str, chunks: int = 8
                  ) -> float:
    """Seconds of ``plan``'s kernel, simulated CTA by CTA."""
    p = backend.gemm_params(dtype)
    bm, bn, bk = plan.tile
    cta_compute_ps = plan.cta_cycles / p.clock_hz * PS_PER_S
    cta_bytes = plan.hbm_bytes / plan.ctas
    k_split = -(-k // plan.split_k)
    k_iters = -(-k_split // bk)
    pieces = max(1, min(chunks, k_iters))
    epilogue_ps = int(p.cta_overhead_cycles / p.clock_hz * PS_PER_S)
    in_flight_bw = (plan.stages - 1) * (bm + bn) * bk * 2.0 / p.hbm_latency_s  # Little's law, as in tile
    env = simpy.Environment()
    hbm = SharedBandwidth(env, p.hbm_bw, latency_ps=int(p.hbm_latency_s * PS_PER_S),
                          per_transfer_cap_bytes_per_s=in_flight_bw, name="hbm")
    slots = simpy.Store(env)
    for _slot in range(plan.ctas_per_sm):
        for sm in range(p.sms):
            slots.put(sm)
    pipes = [simpy.Resource(env, capacity=1) for _ in range(p.sms)]
    piece_ps = int(cta_compute_ps / pieces)
    piece_bytes = cta_bytes / pieces

    def cta():
        sm = yield slots.get()
        load = hbm.transfer(piece_bytes)
        for i in range(pieces):
            yield load
            if i + 1 < pieces:
                load = hbm.transfer(piece_bytes)  # next piece streams while this one computes
            with pipes[sm].request() as req:
                yield req
                yield env.timeout(piece_ps)
        yield env.timeout(epilogue_ps)
        yield slots.put(sm)

    for _ in range(plan.ctas):
        env.process(cta())
    env.run()
    fixed = p.kernel_fixed_s * (2 if plan.split_k > 1 and not plan.dsmem else 1)
    return env.now / PS_PER_S + fixed


@register_timing("detailed", config=DetailedConfig)
class DetailedBackend(TimingBackend):
    name = "detailed"

    def __init__(self, config: DetailedConfig, device: Any, link: Any = None) -> None:
        super().__init__(config, device, link)
        tile_cfg = TileConfig.model_construct(**{f: getattr(config, f) for f in TileConfig.model_fields})
        self.tile = TileBackend(tile_cfg, device, link)
        self._launch = 0.0 if config.cuda_graphs else device.launch_overhead_s

    def gemm_plan(self, m: int, n: int, k: int, dtype: str = "bf16", dtype_bytes: float = 2.0) -> GemmPlan:
        return self.tile.gemm_plan(m, n, k, dtype, dtype_bytes)

    def gemm_s(self, m: int, n: int, k: int, dtype: str = "bf16", dtype_bytes: float = 2.0) -> float:
        plan = self.gemm_plan(m, n, k, dtype, dtype_bytes)
        return simulate_gemm(plan, m, n, k, self.tile, dtype, self.config.chunks)

    def _op_s(self, op: Any) -> float:
        if op.kind != "gemm":
            return self.tile.op_s(op)
        return (self.gemm_s(op.m, op.n, op.k, op.dtype, op.dtype_bytes) + self._launch) * op.count

    def decode_attention_s(self, op: Any, kv_tokens: np.ndarray) -> np.ndarray:
        return self.tile.decode_attention_s(op, kv_tokens)
