"""Kernels running concurrently on disjoint SM sets of one GPU, sharing its HBM bandwidth.

Models: a *part* is a sequence of kernels (ops) run one after the other on a share of the GPU's
    SMs; parts run concurrently. A kernel's GPU time on its share is the timing backend's own
    prediction for a copy of the device with ``sm_count`` (and every per-GPU throughput that scales
    with the SMs: tensor and CUDA-core peaks, L2 bandwidth, SMs per GPC) scaled to the share, so a
    compute-bound kernel slows by its SM share as the backend's tiling and waves say, and a
    memory-bound kernel keeps the full HBM bandwidth alone (the ``tile`` backend caps it by the
    bytes its fewer SMs keep in flight). A communication kernel (all-reduce) on ``s`` SMs moves at
    most ``s`` x NCCL's per-channel bandwidth (one CTA per channel). Running together, the parts
    share the HBM bandwidth as a fluid: each kernel asks for its bytes / its time alone, the
    bandwidth is split max-min fair when the asks exceed it, and a kernel given less than it asks
    progresses proportionally slower. The result is never less than the slowest part alone on its
    SMs and never more than the parts' times summed (see ``overlapped_s``). Host launch costs
    the backend counts per kernel are taken out of the kernels' GPU time and added once per kernel
    after the overlap: the host issues kernels one at a time, so overlap does not hide them.
    ``plan_s`` times a nano-batch plan: streams (SM partitions) each running its ops of every
    nano-batch, plus the dependency bound: a nano-batch's ops run in order, so the plan lasts at
    least the longest nano-batch chain.
Ignores: L2 capacity and bandwidth contention between the parts, SM partition granularity (TPCs)
    beyond rounding to whole SMs, the scheduling of dependent kernels of different nano-batches
    inside a layer (the streams are assumed kept busy by the software pipeline; the chain bound
    is the dependency check), NVLink contention between communication parts.
Sources: NanoFlow (Zhu et al., OSDI 2025) for kernels on disjoint SM sets with nano-batches;
    NCCL src/graph/tuning.cc (perChMaxRingLL128Bws: 20 GB/s per channel on Volta/Ampere, 36.7 on
    Hopper) for the per-channel bandwidth; the fluid bandwidth share is processor sharing
    (max-min fairness, Bertsekas and Gallager, "Data Networks", 6.5.2).
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Sequence
from typing import Any

# NCCL src/graph/tuning.cc, perChMaxRingLL128Bws (v2.18): bus bandwidth one channel (one CTA on one
# SM) sustains, bytes/s: 20 GB/s on Volta/Ampere, 36.7 GB/s on Hopper. Turing and Ada take the
# Ampere value and Blackwell the Hopper value (estimates: the table has no row for them).
PER_CHANNEL_BW = {"volta": 20e9, "turing": 20e9, "ampere": 20e9, "ada": 20e9, "hopper": 36.7e9,
                  "blackwell": 36.7e9}
COMM_KINDS = ("allreduce",)


def sms_of(device: Any, share: float) -> int:
    """Whole SMs of ``share`` (0 < share <= 1) of ``device``'s SMs, at least one."""
    return max(1, min(device.sm_count, int(round(share * device.sm_count))))


def scaled_device(device: Any, sms: int) -> Any:
    """A copy of GPU config ``device`` with ``sms`` SMs: the per-GPU throughputs that grow with the
    SM count (tensor and CUDA-core peaks, L2 bandwidth) scaled by the same ratio; HBM bandwidth,
    capacities and latencies unchanged."""
    if sms == device.sm_count:
        return device
    f = sms / device.sm_count
    update: dict[str, Any] = {
        "sm_count": sms,
        "tensor_flops_per_s": {k: v * f for k, v in device.tensor_flops_per_s.items()},
        "vector_flops_per_s": device.vector_flops_per_s * f,
    }
    if getattr(device, "l2_bw_bytes_per_s", None):
        update["l2_bw_bytes_per_s"] = device.l2_bw_bytes_per_s * f
    gpcs = getattr(device, "sms_per_gpc", None)
    if gpcs:
        scaled = [max(1, int(round(g * f))) for g in gpcs]
        scaled[-1] += sms - sum(scaled)  # whole SMs summing to sms
        update["sms_per_gpc"] = scaled if min(scaled) > 0 else None
    return device.model_copy(update=update)


def hbm_bw(backend: Any) -> float:
    """HBM bandwidth the backend's kernels can reach (its efficiency applied); 0 = not modelled."""
    dev = backend.device
    bw = getattr(dev, "memory_bw_bytes_per_s", 0.0) or 0.0
    cfg = backend.config
    return bw * getattr(cfg, "hbm_efficiency", getattr(cfg, "memory_efficiency", 1.0))


class SmPartition:
    """Per-share copies of one timing backend (memoised), and kernel times on a share."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.device = backend.device
        self._backends: dict[int, Any] = {backend.device.sm_count: backend}
        self._memo: dict[tuple[Any, int], tuple[float, float]] = {}
        self.bw = hbm_bw(backend)
        self.per_channel_bw = PER_CHANNEL_BW.get(getattr(self.device, "architecture", ""), PER_CHANNEL_BW["ampere"])

    def backend_on(self, sms: int) -> Any:
        hit = self._backends.get(sms)
        if hit is None:
            hit = type(self.backend)(self.backend.config, scaled_device(self.device, sms), self.backend.link)
            self._backends[sms] = hit
        return hit

    def launch_s(self, op: Any) -> float:
        """Host launch time the backend counts in ``op``'s time (its per-kernel ``_launch``; 0 for
        backends without one): the host issues kernels one at a time, whichever SMs run them."""
        return getattr(self.backend, "_launch", 0.0) * op.count if op.kind not in COMM_KINDS else 0.0

    def op(self, op: Any, sms: int) -> tuple[float, float]:
        """(GPU seconds without the host launch, HBM bytes) of ``op`` (all its ``count`` runs) on
        ``sms`` SMs."""
        key = (op, sms)
        hit = self._memo.get(key)
        if hit is None:
            t = self.backend_on(sms).op_s(op)
            t = max(0.0, t - self.launch_s(op)) if t > 0 else t
            if op.kind in COMM_KINDS and sms < self.device.sm_count and t > 0 and op.workers > 1:
                bus = 2.0 * (op.workers - 1) / op.workers * op.bytes * op.count  # ring: bytes each GPU sends
                t = max(t, bus / (sms * self.per_channel_bw))
            hit = self._memo[key] = (t, float(op.bytes_moved()) if op.kind not in COMM_KINDS else 0.0)
        return hit

    def part_s(self, ops: Sequence[Any], sms: int) -> float:
        return sum(self.op(o, sms)[0] for o in ops)


def fluid_s(streams: Sequence[Sequence[tuple[float, float]]], bw: float) -> float:
    """Makespan of concurrent streams of (seconds alone, HBM bytes) kernels sharing ``bw`` bytes/s
    max-min fair (``bw`` 0: no sharing). Each kernel asks bytes / seconds (at most ``bw``); given
    ``a`` of its ask ``d`` it runs at speed a / d. Whenever a kernel is slowed the bandwidth is
    fully used, so at least one kernel-second of work is done per second: the result lies
    between the longest stream alone and the sum of all streams."""
    queues = [[(t, b) for t, b in s if t > 0] for s in streams]
    queues = [q for q in queues if q]
    if not queues:
        return 0.0
    if len(queues) == 1 or bw <= 0:
        return max(sum(t for t, _ in q) for q in queues)
    pos = [0] * len(queues)
    left = [1.0] * len(queues)  # share of the current kernel still to run
    now = 0.0
    active = list(range(len(queues)))
    while active:
        asks = {i: min(queues[i][pos[i]][1] / queues[i][pos[i]][0], bw) for i in active}
        alloc = _max_min(asks, bw)
        dt, first = min(((left[i] * queues[i][pos[i]][0] / _speed(asks[i], alloc[i])), i) for i in active)
        now += dt
        nxt = []
        for i in active:
            t = queues[i][pos[i]][0]
            left[i] -= dt * _speed(asks[i], alloc[i]) / t
            if i == first or left[i] <= 1e-12:
                pos[i] += 1
                left[i] = 1.0
            if pos[i] < len(queues[i]):
                nxt.append(i)
        active = nxt
    return now


def _speed(ask: float, got: float) -> float:
    return 1.0 if ask <= 0 else min(1.0, got / ask)


def _max_min(asks: dict[int, float], cap: float) -> dict[int, float]:
    """Max-min fair split of ``cap`` over ``asks`` (water-filling)."""
    if sum(asks.values()) <= cap:
        return dict(asks)
    out: dict[int, float] = {}
    left, todo = cap, sorted(asks, key=asks.get)
    while todo:
        fair = left / len(todo)
        i = todo[0]
        if asks[i] <= fair:
            out[i] = asks[i]
            left -= asks[i]
            todo.pop(0)
        else:
            for j in todo:
                out[j] = fair
            break
    return out


@dataclasses.dataclass(frozen=True)
class Part:
    """Ops run in order on ``share`` (0 < share <= 1) of the GPU's SMs."""

    ops: tuple[Any, ...]
    share: float = 1.0


_PARTITIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _partition(backend: Any) -> SmPartition:
    """The backend's SM-partition helper (memoised while the backend lives)."""
    part = _PARTITIONS.get(backend)
    if part is None:
        part = _PARTITIONS[backend] = SmPartition(backend)
    return part


def part_s(backend: Any, part: Part) -> float:
    """Seconds of ``part`` alone on its SM share."""
    sp = _partition(backend)
    return sp.part_s(part.ops, sms_of(sp.device, part.share)) + sum(sp.launch_s(o) for o in part.ops)


def overlapped_s(backend: Any, parts: Sequence[Part]) -> float:
    """Seconds until every part is done, the parts running concurrently on their SM shares and
    sharing HBM bandwidth: >= the slowest part alone on its share, <= the parts' times summed."""
    if sum(p.share for p in parts) > 1.0 + 1e-9:
        raise ValueError(f"SM shares sum to {sum(p.share for p in parts):.3f} > 1")
    sp = _partition(backend)
    streams = [[sp.op(o, sms_of(sp.device, p.share)) for o in p.ops] for p in parts]
    return fluid_s(streams, sp.bw) + sum(sp.launch_s(o) for p in parts for o in p.ops)


def plan_s(backend: Any, nano_batches: Sequence[Sequence[tuple]], shares: Sequence[float]) -> float:
    """Seconds of a nano-batch plan: ``nano_batches[k]`` is nano-batch k's ops in order, each
    tagged with the stream (SM partition) it runs on — ``(stream, op)`` or ``(stream, op, whole)``
    where ``whole`` is the unsplit op the piece was cut from; stream ``s`` has ``shares[s]`` of the
    SMs. A stream runs its ops of every nano-batch (op position first, then nano-batch),
    concurrently with the other streams; the plan lasts at least the longest nano-batch chain (its
    ops one after another on their streams' shares). Pieces of one ``whole`` whose times on the
    whole GPU sum to less than the whole op's are stretched to it: cutting a kernel never saves
    time by itself (where the backend predicts otherwise — a tile choice or wave count that suits
    the smaller kernels — the library would run those tiles on the whole kernel too)."""
    if sum(shares) > 1.0 + 1e-9:
        raise ValueError(f"SM shares sum to {sum(shares):.3f} > 1")
    sp = _partition(backend)
    sms = [sms_of(sp.device, s) for s in shares]
    full = sp.device.sm_count
    stretch: dict[Any, float] = {}
    pieces: dict[Any, float] = {}
    for ops in nano_batches:
        for entry in ops:
            if len(entry) > 2 and entry[2] is not None:
                pieces[entry[2]] = pieces.get(entry[2], 0.0) + sp.op(entry[1], full)[0]
    for whole, t in pieces.items():
        stretch[whole] = max(1.0, sp.op(whole, full)[0] / t) if t > 0 else 1.0
    streams: list[list[tuple[int, int, tuple[float, float]]]] = [[] for _ in shares]
    chain = launches = 0.0
    for k, ops in enumerate(nano_batches):
        c = 0.0
        for j, entry in enumerate(ops):
            s, op = entry[0], entry[1]
            tb = sp.op(op, sms[s])
            if len(entry) > 2 and entry[2] is not None and stretch[entry[2]] > 1.0:
                tb = (tb[0] * stretch[entry[2]], tb[1])
            streams[s].append((j, k, tb))
            c += tb[0]
            launches += sp.launch_s(op)
        chain = max(chain, c)
    ordered = [[tb for _, _, tb in sorted(st, key=lambda x: (x[0], x[1]))] for st in streams]
    return max(chain, fluid_s(ordered, sp.bw)) + launches
