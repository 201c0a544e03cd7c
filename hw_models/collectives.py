"""Collectives over GPU links, as NCCL runs them: ring and tree, LL / LL128 / Simple protocols.

Models: a collective over ``p`` GPUs of a :class:`Fabric` — GPUs in groups of ``group`` joined by a
    fast ``intra`` link (NVSwitch: every GPU of the node; NVLink bridge: pairs), groups joined by
    an ``inter`` link (PCIe through the host, or a network). Each (algorithm, protocol) pair costs
    NCCL's base latency + steps x the hop latency of the slowest link crossed + the bytes on the
    wire over the slowest link's bandwidth x the protocol's payload share (LL 1/2, LL128 120/128,
    Simple 1) x NCCL's achieved share of the link (one constant for reducing collectives, one
    for copies: the reduction is done by the GPU's SMs between hops). Like NCCL's tuner, the
    cheapest pair is used. Ring all-reduce: 2(p-1) steps, 2(p-1)/p of the message per link; tree
    (reduce then broadcast, pipelined; a chain inside a node): 2 (p/nodes - 1 + ceil(log2 nodes))
    steps, the message twice; all-gather /
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
    NCCL on an NVSwitch Hopper node also has NVLS (NVLink SHARP: the switch reduces and multicasts,
    (p-1)/p of the message each way per GPU) from ``nvls_min_gpus`` GPUs on.
    The serving frameworks' own all-reduce over NVLink P2P (``custom_allreduce_s``, see its
    docstring): one-shot, two-shot, vLLM's symmetric-memory (multimem) path, NCCL above a limit.
Ignores: CollNet, per-message channel-count tuning, congestion from other traffic,
    the double binary tree's bandwidth trick (tree here is the textbook pipelined tree).
Sources: NCCL src/graph/tuning.cc (v2.18: baseLat, hwLat per link type, LL/LL128 bandwidth
    factors); Thakur, Rabenseifner, Gropp, "Optimization of Collective Communication Operations
    in MPICH" (IJHPCA 2005) for the ring/tree step and byte counts; link bandwidths from the
    ``presets/link`` files; NCCL src/transport/p2p.cc and the NCCL_P2P_LL_THRESHOLD default
    (16 KB) for send/recv. Constants fitted on the Vidur A100 NCCL tables (see NcclParams); the
    custom all-reduce, NVLS and in-graph NCCL constants on the aic H200 + A100 comm tables
    (``python -m simulator.validation.aic_comm fit ../shared/validation/aic``).
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

    reduce_eff: float = 0.952  # x the link preset's efficiency, for reducing collectives (fitted)
    copy_eff: float = 1.19  # x the link preset's efficiency, for all-gather (capped at the link rate;
    # fitted on send/recv before send/recv got its own p2p rate; no all-gather table to refit on)
    chunk_bytes: float = 125e3  # pipeline-fill chunk (fitted; NCCL's LL128/Simple slices are 64-512 KB)
    # Reducing collectives are also capped by NCCL's channels: each channel is one CTA that
    # receives, reduces and forwards, so bus bandwidth <= channels x per-channel rate (NCCL
    # tuning.cc: bw = min(link bw, nChannels x perChMaxBw)). On NVLink NCCL opens channels per
    # NVLink (topology search), so the cap scales with the GPU's NVLink rating; it is expressed as
    # a share of that rating. PCIe and network links are link-bound (no cap).
    channel_share: float = 0.644  # x the NVLink rating (fitted on A100 NVLink3: 193 GB/s of 300)
    reduce_call_s: float = 19.3e-6  # per-call cost of a collective outside the wire model (fitted on
    # all-reduce; eager torch.distributed calls: dispatch + stream sync; ~0 replayed in a CUDA graph)
    # send/recv: the call lasts at least this long (rendezvous with the peer's receive + stream
    # sync); the copy overlaps it (fitted; the tables sit flat at ~10-17 us from 16 KB to 1 MB)
    p2p_floor_s: float = 17.0e-6
    # all-reduce: an eager call lasts at least this long (fitted: the Vidur tables sit at 58-62 us for
    # small messages at 2, 4 and 8 GPUs alike: host dispatch + stream sync overlap the kernel); 0 in a graph
    reduce_floor_s: float = 62.5e-6
    # The ring's channel cap on an NVSwitch node with NVLink SHARP (Hopper and later), by GPU count
    # (the entry of the smallest key >= p), in place of ``channel_share`` there; () keeps channel_share.
    # Measured on the aic H200 NCCL tables (half all-reduce, 16-256 MiB, NCCL 2.23 / 2.26.2 / 2.29.2):
    # the ring's marginal bus bandwidth is ~310 GB/s at 2 GPUs (the A100-fitted 0.644 x 450 GB/s holds:
    # +0.4 % bias) but ~350 GB/s at 4 GPUs, the NVLink4 preset's collective rate (efficiency 0.8 x
    # reduce_eff): no channel cap binds there (1.0; a fit on the even rows >= 16 MiB returns 0.83,
    # above the link's rate). 8 GPUs run NVLS at these sizes (the A100 value kept for the ring).
    # `python -m simulator.validation.aic_comm report ../shared/validation/aic` (FIDELITY.md).
    nvswitch_channel_share: tuple[tuple[int, float], ...] = ((2, 0.644), (4, 1.0), (8, 0.644))


@dataclass(frozen=True, slots=True)
class Fabric:
    """GPUs in groups of ``group`` on ``intra``; groups joined by ``inter`` (LinkConfig-like).
    ``nvls``: the intra link is an NVSwitch with NVLink SHARP (Hopper and later NVSwitch nodes)."""

    intra: Any
    group: int = 1 << 30
    inter: Any = None
    nvls: bool = False

    @classmethod
    def of(cls, link_config: Any, nvls: bool = False) -> Fabric:
        """One link preset: a switch joins every GPU; a point-to-point link forms the ring itself."""
        return cls(link_config, 1 << 30, None, nvls)

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
          params: NcclParams, reduce: bool = True, channel_share: float | None = None) -> float:
    bw = link.bw_bytes_per_s * min(1.0, getattr(link, "efficiency", 1.0) * eff)
    if reduce and _lat_kind(link) == "nvlink":
        bw = min(bw, (params.channel_share if channel_share is None else channel_share) * link.bw_bytes_per_s)
    return max(params.reduce_floor_s, _wire(steps, wire_bytes, link, bw, algo, size, p, params) + params.reduce_call_s)


def p2p_bw(link: Any) -> float:
    """Point-to-point copy rate of ``link``: its rating x its p2p efficiency (its collective
    efficiency where the preset gives none)."""
    eff = getattr(link, "p2p_efficiency", None)
    return link.bw_bytes_per_s * (eff if eff is not None else getattr(link, "efficiency", 1.0))


def allreduce_s(size_bytes: float, p: int, fabric: Fabric, params: NcclParams = NcclParams(),
                algorithms: tuple[str, ...] = ("ring", "tree"), nvls: NvlsParams | None = None) -> float:
    """NCCL all-reduce of ``size_bytes`` per GPU over ``p`` GPUs (0 for one GPU); NVLS joins the
    tuner's choice on a fabric with ``nvls`` (``nvls``: its constants, default ``NVLS``)."""
    if p <= 1 or size_bytes <= 0:
        return 0.0
    link = fabric.bottleneck(p)
    t = math.inf
    share = None  # an NVSwitch NVLS node inside the switch: the ring's channel cap measured there, by GPU count
    if fabric.nvls and p <= fabric.group and params.nvswitch_channel_share:
        share = by_gpus(dict(params.nvswitch_channel_share), p)
    if "ring" in algorithms:
        t = _best(2 * (p - 1), 2.0 * (p - 1) / p * size_bytes, link, params.reduce_eff, "ring", size_bytes, p, params,
                  channel_share=share)
    if "tree" in algorithms:
        # NCCL's tree is a chain inside a node and a binary tree across nodes (tuning.cc: tree latency
        # 2 x ((ranks per node - 1) x intra hwLat + log2(nodes) x inter hwLat))
        nodes = max(1, math.ceil(p / fabric.group))
        steps = 2 * (p // nodes - 1 + math.ceil(math.log2(nodes)))
        t = min(t, _best(steps, 2.0 * size_bytes, link, params.reduce_eff, "tree", size_bytes, p, params,
                         channel_share=share))
    nv = nvls or NVLS
    if fabric.nvls and nv.nccl_min_gpus <= p <= fabric.group:
        wire = nv.nccl_s + params.reduce_call_s + (p - 1) / p * size_bytes / (nv.nccl_share * link.bw_bytes_per_s)
        t = min(t, max(params.reduce_floor_s, wire))
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


# -- NVLS and the serving frameworks' own all-reduce ---------------------------------------------
MiB = float(1 << 20)
NO_LIMIT = 1e18
NVLS_ARCHS = ("hopper", "blackwell")  # NVSwitch generations with NVLink SHARP (NVSwitch 3 and 4)


@dataclass(frozen=True, slots=True)
class NvlsParams:
    """NVLink SHARP on an NVSwitch Hopper node. NCCL: reduce-scatter by multimem.ld_reduce then
    all-gather by multimem.st, (p-1)/p of the message each way per GPU. vLLM's symmetric-memory
    all-reduce (torch symm_mem multimem_all_reduce_): every rank reduces the whole message through
    the switch, so the switch's reduction traffic is p x the message. Fitted on the aic H200 tables."""

    nccl_s: float = 39.1e-6  # fixed cost of an NVLS all-reduce (fitted)
    nccl_share: float = 0.457  # x the NVLink rating, per direction (fitted)
    nccl_min_gpus: int = 8  # estimate from the H200 NCCL tables: at 2 and 4 GPUs the rates are ring rates
    symm_s: float = 7.75e-6  # fixed cost of vLLM's multimem all-reduce (fitted)
    symm_share: float = 1.74  # p x message / time over the NVLink rating (fitted)


@dataclass(frozen=True, slots=True)
class ArKernel:
    """Constants of a framework's NVLink P2P all-reduce kernels (one-shot and two-shot).

    One-shot: each GPU loads the (p-1) peers' registered buffers over NVLink and reduces locally,
    after one flag barrier. Two-shot: reduce-scatter (each GPU reduces its 1/p slice from p-1 peers)
    then all-gather (it loads the other p-1 reduced slices), two barriers: 2(p-1)/p of the
    message over each GPU's NVLink. Fitted on the aic H200 + A100 tables."""

    oneshot_s: float  # fixed cost of a one-shot call (in-graph launch + one barrier)
    twoshot_s: float  # fixed cost of a two-shot call (two barriers, two passes)
    peer_s: float  # per peer and barrier: one flag written to / polled from each peer
    p2p_share: float  # achieved share of the NVLink rating for the P2P loads


# fitted: python -m simulator.validation.aic_comm fit ../shared/validation/aic
AR_KERNELS = {"custom": ArKernel(4.43e-6, 6.97e-6, 0.058e-6, 0.639),  # vLLM / SGLang custom all-reduce
              "trtllm": ArKernel(2.88e-6, 6.97e-6, 0.057e-6, 0.675)}  # TensorRT-LLM allreduce kernels
# (TRT-LLM's two-shot cost is the vLLM/SGLang one: AUTO runs no two-shot in the tables, nothing to fit it on)
NVLS = NvlsParams()
NCCL_GRAPH_CALL_S = 0.0  # NCCL per-call cost outside the wire model when replayed in a CUDA graph (fitted)


@dataclass(frozen=True, slots=True)
class ArLimits:
    """When a framework runs its own kernel. Each dict maps a GPU count to a byte limit; a call of
    ``p`` GPUs uses the entry of the smallest key >= p (the largest key above all keys).
    ``max_bytes``: the custom kernel runs below it, NCCL at or above (``hopper_max_bytes`` replaces it
    on Hopper, ``pre_hopper_max_bytes`` before Hopper); ``oneshot_bytes``: one-shot below it,
    two-shot above; ``symm_mem_bytes``: vLLM's symmetric-memory path on an NVSwitch Hopper node
    between the custom limit and this one (two-shot at 2 GPUs, multimem NVLS above)."""

    max_bytes: dict[int, float]
    oneshot_bytes: dict[int, float]
    hopper_max_bytes: dict[int, float] | None = None
    pre_hopper_max_bytes: dict[int, float] | None = None
    symm_mem_bytes: dict[int, float] | None = None


def by_gpus(table: dict[int, float] | None, p: int, default: float = 0.0) -> float:
    if not table:
        return default
    keys = sorted(int(k) for k in table)
    k = next((k for k in keys if k >= p), keys[-1])
    return float(table[k] if k in table else table[str(k)])  # type: ignore[index]


# vLLM csrc/custom_all_reduce.cuh (allreduce dispatch): 2 GPUs always one-shot; with full NVLink
# one-shot below 512 KiB at <= 4 GPUs and below 256 KiB at <= 8 GPUs, else two-shot.
_VLLM_ONESHOT = {2: NO_LIMIT, 4: 512 * 1024.0, 8: 256 * 1024.0}
AR_LIMITS = {
    # vLLM custom_all_reduce.py: max_size = 8192 * 1024 (registered buffer; custom iff bytes < max_size);
    # vllm/distributed/device_communicators/all_reduce_utils.py CUSTOM_ALL_REDUCE_MAX_SIZES["9.0"]:
    # 2: 64 MiB, 4: 32 MiB, 6: 512 KiB, 8: 256 KiB (min with the 8 MiB buffer)
    "vllm": ArLimits({8: 8 * MiB}, _VLLM_ONESHOT, hopper_max_bytes={4: 8 * MiB, 6: 0.5 * MiB, 8: 0.25 * MiB}),
    # vLLM >= 0.11 with VLLM_ALLREDUCE_USE_SYMM_MEM: all_reduce_utils.py SYMM_MEM_ALL_REDUCE_MAX_SIZES["9.0"]:
    # 2: 64 MiB, 4: 32 MiB, 6: 64 MiB, 8: 64 MiB (multimem at 4, 6, 8 GPUs; two-shot at 2)
    "vllm-symm-mem": ArLimits({8: 8 * MiB}, _VLLM_ONESHOT, hopper_max_bytes={4: 8 * MiB, 6: 0.5 * MiB, 8: 0.25 * MiB},
                              symm_mem_bytes={2: 64 * MiB, 4: 32 * MiB, 8: 64 * MiB}),
    # SGLang's copy of vLLM's kernel, same one-/two-shot switch; the limit is an estimate from the aic
    # tables (custom at 8 MiB, NCCL at 16 MiB on H200 and A100)
    "sglang": ArLimits({8: 16 * MiB}, _VLLM_ONESHOT),
    # TensorRT-LLM customAllReduceUtils.h getMaxRequiredWorkspaceSize: 16 MB at <= 2 GPUs (kept: the
    # H200 tables run the kernel to 8 MiB at 2 GPUs). The rest are estimates from the aic tables
    # (TRT-LLM 1.2/1.3 on H200, 1.0 on A100): AUTO runs the one-shot (min-latency) kernel, below
    # ~2 MB at 4 GPUs and ~1 MB at 8 on H200 and below 1 MiB on A100, and NCCL above; no two-shot
    # region shows in the tables (the 0.x rule was one-shot below 1 MB / 500 kB, two-shot to 8 MB).
    "trtllm": ArLimits({2: 16e6, 4: 2.1e6, 8: 1.1e6}, {8: NO_LIMIT}, pre_hopper_max_bytes={8: 1.1e6}),
}
FRAMEWORK_DEFAULT = {"custom": "vllm", "trtllm": "trtllm"}


def _nvlink_domain(p: int, fabric: Fabric) -> bool:
    """The custom kernels need every GPU of the call on one NVLink domain (a switch, or a bridged pair)."""
    link = fabric.intra
    if p > fabric.group or getattr(link, "technology", "") not in ("nvlink", "nvswitch"):
        return False
    return getattr(link, "topology", "switch") == "switch" or p == 2


def oneshot_s(size_bytes: float, p: int, link: Any, k: ArKernel) -> float:
    """One-shot: a barrier, then (p-1) peer buffers in over this GPU's NVLink."""
    return k.oneshot_s + (p - 1) * k.peer_s + (p - 1) * size_bytes / (k.p2p_share * link.bw_bytes_per_s)


def twoshot_s(size_bytes: float, p: int, link: Any, k: ArKernel) -> float:
    """Two-shot: reduce-scatter + all-gather by P2P loads, 2(p-1)/p of the message in, two barriers."""
    return k.twoshot_s + 2 * (p - 1) * k.peer_s + 2.0 * (p - 1) / p * size_bytes / (k.p2p_share * link.bw_bytes_per_s)


def symm_mem_s(size_bytes: float, p: int, link: Any, k: ArKernel, nvls: NvlsParams = NVLS) -> float:
    """vLLM's symmetric-memory all-reduce: two-shot at 2 GPUs, multimem (NVLS) from 4 on."""
    if p <= 2:
        return twoshot_s(size_bytes, p, link, k)
    return nvls.symm_s + p * size_bytes / (nvls.symm_share * link.bw_bytes_per_s)


def allreduce_path(size_bytes: float, p: int, fabric: Fabric, limits: ArLimits, architecture: str = "hopper") -> str:
    """The kernel a framework picks: "oneshot" | "twoshot" | "symm_mem" | "nccl"."""
    if not _nvlink_domain(p, fabric):
        return "nccl"
    table = limits.max_bytes
    if architecture == "hopper" and limits.hopper_max_bytes:
        table = limits.hopper_max_bytes
    elif architecture in ("ampere", "ada", "turing", "volta") and limits.pre_hopper_max_bytes:
        table = limits.pre_hopper_max_bytes
    if size_bytes < by_gpus(table, p):
        return "oneshot" if size_bytes < by_gpus(limits.oneshot_bytes, p) else "twoshot"
    if fabric.nvls and limits.symm_mem_bytes and size_bytes < by_gpus(limits.symm_mem_bytes, p):
        return "symm_mem"
    return "nccl"


def custom_allreduce_s(size_bytes: float, p: int, fabric: Fabric, framework: str = "custom",
                       limits: ArLimits | None = None, kernel: ArKernel | None = None,
                       nccl: NcclParams = NcclParams(), architecture: str = "hopper",
                       nvls: NvlsParams | None = None) -> float:
    """All-reduce as a serving framework runs it (``framework``: "custom" = vLLM / SGLang,
    "trtllm" = TensorRT-LLM AUTO; "nccl": NCCL only). Above the framework's limits, or when the GPUs
    do not share one NVLink domain, NCCL (``allreduce_s`` with ``nccl``, NVLS where the fabric has it)."""
    if p <= 1 or size_bytes <= 0:
        return 0.0
    if framework == "nccl":
        return allreduce_s(size_bytes, p, fabric, nccl, nvls=nvls)
    limits = limits or AR_LIMITS[FRAMEWORK_DEFAULT[framework]]
    kernel = kernel or AR_KERNELS[framework]
    path = allreduce_path(size_bytes, p, fabric, limits, architecture)
    if path == "oneshot":
        return oneshot_s(size_bytes, p, fabric.intra, kernel)
    if path == "twoshot":
        return twoshot_s(size_bytes, p, fabric.intra, kernel)
    if path == "symm_mem":
        return symm_mem_s(size_bytes, p, fabric.intra, kernel, nvls or NVLS)
    return allreduce_s(size_bytes, p, fabric, nccl, nvls=nvls)
