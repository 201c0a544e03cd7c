"""Collectives over GPU links, as NCCL runs them: ring and tree, LL / LL128 / Simple protocols.

Models: a collective over ``p`` GPUs of a :class:`Fabric` — GPUs in groups of ``group`` joined by a
    fast ``intra`` link (NVSwitch: every GPU of the node; NVLink bridge: pairs), groups joined by
    an ``inter`` link (PCIe through the host, or a network). Each (algorithm, protocol) pair costs
    NCCL's base latency + steps x the hop latency of the slowest link crossed + the bytes on the
    wire over the slowest link's bandwidth x the protocol's payload share (LL 1/2, LL128 120/128,
    Simple 1) x NCCL's achieved share of the link (one constant for reducing collectives, one
    for copies: the reduction is done by the GPU's SMs between hops). Like NCCL's tuner, the
    cheapest pair is used. Ring all-reduce: 2(p-1) steps, 2(p-1)/p of the message per link; tree
    (reduce then broadcast, pipelined): 2 ceil(log2 p) steps, the message twice; all-gather /
    reduce-scatter: p-1 steps, (p-1)/p of the (full) message. Send/recv is not tuned by NCCL
    (LL up to 16 KB, Simple above, one hop): link latency + the message at the link's p2p rate
    (rating x ``p2p_efficiency``: a direct NVLink bridge reaches its rating, a copy through
    NVSwitch the switch's collective share), overlapped with a rendezvous floor — the data flows
    into the peer's pre-posted FIFO while the receive is set up, so the time is the larger of the
    two (measured: flat ~10-17 us from 16 KB to ~1-4 MB, then linear in size).
    A message is cut into chunks; the first chunk must cross every step before the pipeline
    streams (a fill term of steps x chunk / bandwidth, chunk = min(chunk_bytes, message / p)).
    Reducing collectives are further capped by NCCL's channels (one CTA per channel receives,
    reduces with the SM's ALUs and forwards: bus bandwidth <= nChannels x per-channel rate, as
    tuning.cc caps bw by nChannels x perChMaxBw); the cap binds on NVLink (300 GB/s), not on
    PCIe (31.5 GB/s), which is what makes the NVSwitch and the PCIe-crossing rows need different
    effective efficiencies. A ring over mixed hops (NVLink-bridged pairs joined over PCIe) runs
    at its slowest hop. Each collective call also pays a fixed per-call cost (fitted; framework +
    stream).
Ignores: NVLink SHARP (NVLS) and CollNet, per-message channel-count tuning, congestion from other traffic,
    the double binary tree's bandwidth trick (tree here is the textbook pipelined tree).
Sources: NCCL src/graph/tuning.cc (v2.18: baseLat, hwLat per link type, LL/LL128 bandwidth
    factors); Thakur, Rabenseifner, Gropp, "Optimization of Collective Communication Operations
    in MPICH" (IJHPCA 2005) for the ring/tree step and byte counts; link bandwidths from the
    ``presets/link`` files; NCCL src/transport/p2p.cc and the NCCL_P2P_LL_THRESHOLD default
    (16 KB) for send/recv. Constants fitted on the Vidur A100 NCCL tables (see NcclParams).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

PROTO_BW = {"LL": 0.5, "LL128": 120.0 / 128.0, "Simple": 1.0}  # payload share of each 8 / 128 B line
# NCCL tuning.cc baseLat [algo][proto] in us (Tree, Ring; LL, LL128, Simple)
BASE_LAT_US = {"tree": {"LL": 6.8, "LL128": 14.0, "Simple": 0.0}, "ring": {"LL": 6.6, "LL128": 14.0, "Simple": 8.4}}
# NCCL tuning.cc hwLat [link][algo][proto] in us per step
HW_LAT_US = {
    "nvlink": {"tree": {"LL": 0.6, "LL128": 1.25, "Simple": 28.0}, "ring": {"LL": 0.6, "LL128": 1.9, "Simple": 3.4}},
    "pcie": {"tree": {"LL": 1.0, "LL128": 1.9, "Simple": 28.0}, "ring": {"LL": 1.0, "LL128": 2.5, "Simple": 5.7}},
    "net": {"tree": {"LL": 5.0, "LL128": 8.5, "Simple": 28.0}, "ring": {"LL": 2.7, "LL128": 4.0, "Simple": 14.0}},
}
LL_MAX_BYTES = 256 * 1024  # NCCL disables LL above a few hundred KB per rank (tuning.cc thresholds)
P2P_LL_MAX_BYTES = 16 * 1024  # NCCL send/recv use LL up to NCCL_P2P_LL_THRESHOLD (16 KB), Simple above


@dataclass(frozen=True, slots=True)
class NcclParams:
    """NCCL library constants. Fitted on the Vidur A100 NCCL tables (intra-node rows):
    ``python -m simulator.validation.fit network ../shared/validation/vidur_a100`` (see FIDELITY.md)."""

    reduce_eff: float = 0.954  # x the link preset's efficiency, for reducing collectives (fitted)
    copy_eff: float = 1.19  # x the link preset's efficiency, for all-gather (capped at the link rate;
    # fitted on send/recv before send/recv got its own p2p rate; no all-gather table to refit on)
    chunk_bytes: float = 136e3  # pipeline-fill chunk (fitted; NCCL's LL128/Simple slices are 64-512 KB)
    # Reducing collectives are also capped by NCCL's channels: each channel is one CTA that
    # receives, reduces and forwards, so bus bandwidth <= channels x per-channel rate (NCCL
    # tuning.cc: bw = min(link bw, nChannels x perChMaxBw)). On NVLink NCCL opens channels per
    # NVLink (topology search), so the cap scales with the GPU's NVLink rating; it is expressed as
    # a share of that rating. PCIe and network links are link-bound (no cap).
    channel_share: float = 0.657  # x the NVLink rating (fitted on A100 NVLink3: 197 GB/s of 300)
    reduce_call_s: float = 26.4e-6  # per-call cost of a collective outside the wire model (fitted on
    # all-reduce; the Vidur tables floor at ~50 us for all-reduce of any size: stream sync + dispatch)
    # send/recv: the call lasts at least this long (rendezvous with the peer's receive + stream
    # sync); the copy overlaps it (fitted; the tables sit flat at ~10-17 us from 16 KB to 1 MB)
    p2p_floor_s: float = 17.0e-6


@dataclass(frozen=True, slots=True)
class Fabric:
    """GPUs in groups of ``group`` on ``intra``; groups joined by ``inter`` (LinkConfig-like)."""

    intra: Any
    group: int = 1 << 30
    inter: Any = None

    @classmethod
    def of(cls, link_config: Any) -> Fabric:
        """One link preset: a switch joins every GPU; a point-to-point link forms the ring itself."""
        return cls(link_config, 1 << 30, None)

    def bottleneck(self, p: int) -> Any:
        if p <= self.group or self.inter is None:
            return self.intra
        a, b = self.intra, self.inter
        return a if a.bw_bytes_per_s <= b.bw_bytes_per_s else b


def _lat_kind(link: Any) -> str:
    tech = getattr(link, "technology", "nvlink")
    return "nvlink" if tech in ("nvlink", "nvswitch") else "pcie" if tech == "pcie" else "net"


def _wire(steps: int, wire_bytes: float, link: Any, bw: float, algo: str, size: float, p: int,
          params: NcclParams) -> float:
    """NCCL's tuner model: the cheapest (protocol) of latency + pipeline fill + bytes over ``bw``."""
    kind = _lat_kind(link)
    chunk = min(params.chunk_bytes, size / max(p, 1))
    best = math.inf
    for proto, share in PROTO_BW.items():
        if proto == "LL" and size / max(p, 1) > LL_MAX_BYTES:
            continue
        lat = (BASE_LAT_US[algo][proto] + steps * HW_LAT_US[kind][algo][proto]) * 1e-6
        t = lat + (wire_bytes + steps * chunk) / (bw * share)
        best = min(best, t)
    return best


def _best(steps: int, wire_bytes: float, link: Any, eff: float, algo: str, size: float, p: int,
          params: NcclParams, reduce: bool = True) -> float:
    bw = link.bw_bytes_per_s * min(1.0, getattr(link, "efficiency", 1.0) * eff)
    if reduce and _lat_kind(link) == "nvlink":
        bw = min(bw, params.channel_share * link.bw_bytes_per_s)
    return _wire(steps, wire_bytes, link, bw, algo, size, p, params) + params.reduce_call_s


def p2p_bw(link: Any) -> float:
    """Point-to-point copy rate of ``link``: its rating x its p2p efficiency (its collective
    efficiency where the preset gives none)."""
    eff = getattr(link, "p2p_efficiency", None)
    return link.bw_bytes_per_s * (eff if eff is not None else getattr(link, "efficiency", 1.0))


def allreduce_s(size_bytes: float, p: int, fabric: Fabric, params: NcclParams = NcclParams(),
                algorithms: tuple[str, ...] = ("ring", "tree")) -> float:
    """NCCL all-reduce of ``size_bytes`` per GPU over ``p`` GPUs (0 for one GPU)."""
    if p <= 1 or size_bytes <= 0:
        return 0.0
    link = fabric.bottleneck(p)
    t = math.inf
    if "ring" in algorithms:
        t = _best(2 * (p - 1), 2.0 * (p - 1) / p * size_bytes, link, params.reduce_eff, "ring", size_bytes, p, params)
    if "tree" in algorithms:
        steps = 2 * math.ceil(math.log2(p))
        t = min(t, _best(steps, 2.0 * size_bytes, link, params.reduce_eff, "tree", size_bytes, p, params))
    return t


def allgather_s(size_bytes: float, p: int, fabric: Fabric, params: NcclParams = NcclParams()) -> float:
    """Ring all-gather producing ``size_bytes`` on every GPU."""
    if p <= 1 or size_bytes <= 0:
        return 0.0
    link = fabric.bottleneck(p)
    return _best(p - 1, (p - 1) / p * size_bytes, link, params.copy_eff, "ring", size_bytes, p, params, False)


def reduce_scatter_s(size_bytes: float, p: int, fabric: Fabric, params: NcclParams = NcclParams()) -> float:
    """Ring reduce-scatter of a ``size_bytes`` input per GPU."""
    if p <= 1 or size_bytes <= 0:
        return 0.0
    link = fabric.bottleneck(p)
    return _best(p - 1, (p - 1) / p * size_bytes, link, params.reduce_eff, "ring", size_bytes, p, params)


def send_recv_s(size_bytes: float, fabric: Fabric, params: NcclParams = NcclParams(), same_group: bool = True) -> float:
    """Point-to-point copy of ``size_bytes`` between two GPUs (across groups when not ``same_group``).

    NCCL runs send/recv outside its collective tuner: LL up to ``P2P_LL_MAX_BYTES``, Simple above,
    one hop, no pipeline to fill. The copy starts into the peer's pre-posted FIFO while the peer's
    receive is still being set up, so the call ends at the later of the rendezvous floor
    (``params.p2p_floor_s``) and the link latency + the bytes over the link's p2p rate."""
    if size_bytes <= 0:
        return 0.0
    link = fabric.intra if same_group or fabric.inter is None else fabric.inter
    share = PROTO_BW["LL"] if size_bytes <= P2P_LL_MAX_BYTES else PROTO_BW["Simple"]
    wire = getattr(link, "latency_s", 0.0) + size_bytes / (p2p_bw(link) * share)
    return max(params.p2p_floor_s, wire)
