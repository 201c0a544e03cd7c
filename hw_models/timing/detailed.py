"""Detailed timing backend: an SM-level SimPy simulation of one GEMM kernel.

Models: the kernel the ``tile`` model's library heuristic picks, executed event by event — each
    CTA is a SimPy process that waits for a free slot (SMs x CTAs per SM, handed out in launch
    order as the hardware block scheduler does), loads its pipeline prologue ((stages - 1) K steps),
    then runs its K loop in ``chunks`` pieces on its SM's tensor pipe (a capacity-1 resource per SM
    shared by the CTAs resident there) while its remaining operand bytes stream through a
    shared HBM resource (processor sharing at the achievable bandwidth, each CTA
    capped by its bytes in flight over the HBM latency) and, when the plan has an L2 bound, a
    shared L2 resource (the tile plan's L2 -> SM bytes per CTA, multicast counted once, at the
    achievable L2 -> SM rate); the pipeline stages keep loads ahead of the MMAs, so a CTA ends when
    both streams are done. Then the epilogue (plus the DSMEM exchange of a DSMEM split-K plan), then
    the slot is freed. Hopper thread-block clusters take their places as a unit: floor(SMs x CTAs per
    SM / cluster size) places per GPC, all CTAs of a cluster started together and released
    together. The GPU-side fixed kernel cost is added.
    Other op kinds are timed by the ``tile`` backend (attention, memory-bound, collectives).
Ignores: warp scheduling inside an SM, L2 capacity (its reuse is folded into the per-CTA HBM bytes
    of the tile plan), L2 latency, DRAM bank/row effects, DSMEM contention.
Sources: as ``hw_models.gemm_tiles``; processor sharing as ``simulator.core.resources``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import simpy
from pydantic import Field

from hw_models.gemm_tiles import GemmPlan, _dsmem_s
from hw_models.timing.base import TimingBackend
from hw_models.timing.tile import TileBackend, TileConfig
from simulator.core.clock import PS_PER_S
from simulator.core.registry import register_timing
from simulator.core.resources import SharedBandwidth


class DetailedConfig(TileConfig):
    chunks: int = Field(default=8, ge=1, le=256, description="pieces each CTA's K loop is simulated in")


def _cluster_slots(plan: GemmPlan, p: Any) -> list[tuple[int, ...]]:
    """Where the kernel's clusters can sit: per GPC, floor(SMs x CTAs per SM / cluster size) places,
    each naming the SM of every CTA of the cluster (1x1 plans: one place per SM x CTAs per SM)."""
    size = plan.cluster[0] * plan.cluster[1] * plan.cluster[2]
    gpcs = p.sms_per_gpc if size > 1 else (p.sms,)
    places, first = [], 0
    for g in gpcs:
        for j in range(g * plan.ctas_per_sm // size):
            places.append(tuple(first + (j * size + c) % g for c in range(size)))
        first += g
    return places


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
    if plan.dsmem:  # the cluster's K-slices exchange fp32 partial tiles over the SM-to-SM network
        epilogue_ps += int(_dsmem_s(p, plan.tile, plan.split_k, 1, 1) * PS_PER_S)
    in_flight_bw = (plan.stages - 1) * (bm + bn) * bk * 2.0 / p.hbm_latency_s  # Little's law, as in tile
    env = simpy.Environment()
    hbm = SharedBandwidth(env, p.hbm_bw, latency_ps=int(p.hbm_latency_s * PS_PER_S),
                          per_transfer_cap_bytes_per_s=in_flight_bw, name="hbm")
    l2 = SharedBandwidth(env, p.l2_bw, name="l2") if p.l2_bw else None
    cta_l2 = plan.l2_bytes / plan.ctas  # operand bytes out of L2 (multicast counted once)
    prologue = min(1.0, (plan.stages - 1) / k_iters)
    places = simpy.Store(env)
    for place in _cluster_slots(plan, p):
        places.put(place)
    pipes = [simpy.Resource(env, capacity=1) for _ in range(p.sms)]
    piece_ps = int(cta_compute_ps / pieces)

    def fetch(share: float):
        nbytes = cta_bytes * share
        if l2 is None:
            return hbm.transfer(nbytes)
        return env.all_of([hbm.transfer(nbytes), l2.transfer(cta_l2 * share)])

    def cta(sm: int):
        yield fetch(prologue)  # pipeline fill: (stages - 1) K steps before the first MMA
        loads = fetch(1.0 - prologue)  # one transfer: processor sharing serves it at its share throughout
        for _ in range(pieces):  # the stages keep loads ahead of the MMAs: each side at its own rate
            with pipes[sm].request() as req:
                yield req
                yield env.timeout(piece_ps)
        yield loads  # a CTA ends when both its MMAs and its operand stream are done
        yield env.timeout(epilogue_ps)

    def cluster():  # its CTAs are co-scheduled on one GPC and leave together
        place = yield places.get()
        if len(place) == 1:
            yield from cta(place[0])
        else:
            yield env.all_of([env.process(cta(sm)) for sm in place])
        yield places.put(place)

    size = plan.cluster[0] * plan.cluster[1] * plan.cluster[2]
    for _ in range(-(-plan.ctas // size)):
        env.process(cluster())
    env.run()
    fixed = p.kernel_fixed_s * (2 if plan.split_k > 1 and not plan.dsmem else 1)
    return env.now / PS_PER_S + fixed


@register_timing("detailed", config=DetailedConfig)
class DetailedBackend(TimingBackend):
    """SM-level SimPy simulation of one kernel: thread blocks on SMs sharing L2 and HBM."""
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
