"""FlexGen-style offloading study: weights and KV on CPU DRAM (or SSD) streamed to one GPU layer by layer.

Models: one forward pass (a prefill, or one decode step at the mean context) of an effective batch
    of ``gpu_batch x num_gpu_batches`` sequences, run in FlexGen's zig-zag block schedule as a SimPy
    pipeline: layer by layer, every GPU batch of the block runs the layer before its weights are
    dropped, so one weight transfer serves the whole block. Weights of layer j+1 are prefetched
    while layer j computes (two layer buffers); a sequence's KV of its next layer is prefetched while
    it computes the current one; new KV is written back (GPU -> host, and host -> SSD when on disk).
    The host->GPU and GPU->host directions of PCIe are each a processor-sharing link
    (:class:`simulator.core.resources.SharedBandwidth`, rate = the host preset's copy rate), so
    weight and KV streams slow each other down; SSD reads and writes are shared links at the drive's
    large-request rate (``hw_models.ssd``) and go through host DRAM. GPU kernels take the roofline
    time (dense GEMMs: FLOPs at ``gpu_compute_efficiency`` of the tensor peak or weight bytes at
    ``gpu_memory_efficiency`` of HBM; decode attention: KV bytes over HBM). Attention may instead run
    on the host CPU (FlexGen's choice when KV lives in DRAM: KV bytes at ``cpu_memory_efficiency`` of
    DRAM bandwidth, only Q/K/V of the new token cross PCIe) or inside computational storage
    (``storage``: the SSD's in-storage unit at its internal flash bandwidth reading
    ``storage_read_fraction`` of the KV; Q/K/V and outputs cross the drive's own link, peer to peer
    or bounced through host DRAM; used by InstInfer). ``prefill_attn_on: gpu`` runs prompt
    attention on the GPU whatever ``attn_on`` says (FlexGen's and InstInfer's code do).
    ``kv_fraction`` < 1 keeps only that share of each sequence's KV (stored and read; H2O's budget).
    Disk path (``disk_io``): ``direct`` reads large requests deep-queued (the drive's sequential
    rate); ``filesystem`` is FlexGen's numpy-memmap path: each copy thread faults in one readahead
    window at a time (drive response at queue depth = threads, ``hw_models.ssd``) and copies it out
    of the page cache at the host's single-thread rate before the next (``fs_read_rate``).
    Throughput = generated tokens / (prefill + (gen - 1) x decode step). Memory is closed form:
    GPU = resident weights + embeddings + two layer buffers of streamed weights + resident KV (or
    two layers of KV buffers) + hidden states of the block + one batch's MLP activations.
Ignores: page-fault and syscall costs of the memmap path beyond the copy, readahead overlapping a
    thread's own copy (async readahead), page-cache hits (KV re-read each step is assumed evicted),
    the LP policy search of FlexGen (placements are inputs; ``best_policy`` tries a small grid),
    weight/KV compression, CPU-GPU synchronisation overhead, the growth of the decode step with
    context within a generation (one step at the mean context stands for all: KV traffic is linear
    in context, so this is exact when a single resource binds), the LM head and sampling time.
Sources: Sheng et al., "FlexGen: High-Throughput Generative Inference of Large Language Models with
    a Single GPU" (ICML 2023), Algorithm 1 (zig-zag block schedule) and Section 4 (cost model);
    hardware numbers from the gpu/host/ssd presets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import simpy
from pydantic import Field

from hw_models.host import Host
from simulator.config.loader import resolve_component
from simulator.config.quantities import StrictConfig
from simulator.core import registry as reg
from simulator.core.clock import PS_PER_S, s_to_ps
from simulator.core.resources import SharedBandwidth

Component = str | dict[str, Any]


class Config(StrictConfig):
    model: str = "OPT-30B"
    gpu: Component = Field(default="A6000", description="GPU preset name or {preset: ..., <overrides>}")
    host: Component = "A6000-workstation"
    ssd: Component | None = Field(default="DC-NVMe-PCIe4", description="drive for disk offload (None: no disk)")
    prompt_tokens: int = Field(default=512, gt=0)
    gen_tokens: int = Field(default=32, gt=0)
    gpu_batch: int = Field(default=64, gt=0)
    num_gpu_batches: int = Field(default=8, gt=0, description="GPU batches in one zig-zag block")
    w_gpu: float = Field(default=0.0, ge=0, le=1, description="share of layer weights resident on the GPU")
    w_disk: float = Field(default=0.0, ge=0, le=1, description="share of layer weights on SSD (rest on CPU)")
    kv_where: Literal["gpu", "cpu", "disk"] = "cpu"
    attn_on: Literal["gpu", "cpu", "storage"] = "cpu"
    kv_fraction: float = Field(default=1.0, gt=0, le=1, description="share of KV kept (H2O budget; 1 = full)")
    overlap: bool = Field(default=True, description="prefetch the next layer while computing (FlexGen)")
    gpu_compute_efficiency: float = Field(default=0.6, gt=0, le=1)
    gpu_memory_efficiency: float = Field(default=0.8, gt=0, le=1)
    cpu_memory_efficiency: float = Field(default=0.5, gt=0, le=1, description="share of DRAM bw CPU attention gets")
    drives: int = Field(default=1, gt=0, description="SSDs striped together")
    ssd_request_bytes: float = Field(default=1048576, gt=0, description="bytes per SSD request (1 MiB)")
    ssd_queue_depth: int = Field(default=32, gt=0)
    disk_io: Literal["direct", "filesystem"] = Field(
        default="direct", description="direct: ssd_request_bytes kept ssd_queue_depth deep (the drive's sequential "
        "rate); filesystem: FlexGen's numpy-memmap path (readahead-sized requests, one per copy thread, each "
        "thread's page-cache copy in series with its read)")
    fs_readahead_bytes: float = Field(default=131072, gt=0,
                                      description="request size of a page-cache read (Linux read_ahead_kb 128)")
    fs_copy_threads: int = Field(default=4, gt=0, description="concurrent copy threads (FlexGen TorchDisk: 4)")
    storage_read_fraction: float = Field(default=1.0, gt=0, le=1, description="share of the stored KV the "
                                         "in-storage engine reads and attends to per step (InstInfer's SparF)")
    prefill_attn_on: Literal["decode", "gpu"] = Field(
        default="decode", description="prefill attention: where decode attention runs (decode) or on the GPU, "
        "as FlexGen's code (mha for the prompt, mha_gen for decode) and InstInfer (decode offloaded) do")
    p2p: bool = Field(default=True, description="storage attention: Q/K/V and outputs move GPU <-> drive peer "
                                                "to peer (False: bounced through host DRAM)")


@dataclass(frozen=True)
class Hw:
    model: Any
    gpu: Any
    host: Any
    ssd: Any | None


def _block(c: Component, kind: str) -> dict[str, Any]:
    return {"kind": kind, "preset": c} if isinstance(c, str) else {"kind": kind, **c}


def resolve_hw(cfg: Config) -> Hw:
    m = resolve_component({"kind": "transformer", "preset": cfg.model}, reg.MODELS, "study.model").config
    g = resolve_component(_block(cfg.gpu, "gpu"), reg.HARDWARE, "study.gpu").config
    h = resolve_component(_block(cfg.host, "host"), reg.HARDWARE, "study.host").config
    s = None if cfg.ssd is None else resolve_component(_block(cfg.ssd, "ssd"), reg.HARDWARE, "study.ssd").config
    return Hw(m, g, h, s)


# -- sizes -----------------------------------------------------------------------------------
def layer_weight_bytes(m: Any) -> float:
    return (m.attn_params_per_layer() + m.mlp_params_per_layer()) * m.dtype_bytes


def kv_layer_token_bytes(m: Any) -> float:
    return 2.0 * m.kv_size * m.dtype_bytes


def kept(tokens: int, fraction: float) -> int:
    return min(tokens, math.ceil(fraction * tokens))


def memory(cfg: Config, hw: Hw) -> dict[str, float]:
    """GPU and host bytes the policy needs (closed form, see module docstring)."""
    m = hw.model
    b, blk = cfg.gpu_batch, cfg.gpu_batch * cfg.num_gpu_batches
    wl = layer_weight_bytes(m)
    n_kv = kept(cfg.prompt_tokens + cfg.gen_tokens, cfg.kv_fraction)
    kv_seq = n_kv * kv_layer_token_bytes(m) * m.num_layers
    emb = m.embedding_params() * m.dtype_bytes
    streamed = 1.0 - cfg.w_gpu
    gpu = emb + m.num_layers * wl * cfg.w_gpu + (2 * wl * streamed if streamed > 0 else 0.0)
    if cfg.kv_where == "gpu":
        gpu += blk * kv_seq
    elif cfg.attn_on == "gpu":
        gpu += 2 * b * n_kv * kv_layer_token_bytes(m)
    gpu += blk * cfg.prompt_tokens * m.hidden_size * m.dtype_bytes  # hidden states of the block
    gpu += b * cfg.prompt_tokens * (m.intermediate_size + 3 * m.hidden_size) * m.dtype_bytes
    w_cpu = max(0.0, 1.0 - cfg.w_gpu - cfg.w_disk)
    host = m.num_layers * wl * w_cpu + (blk * kv_seq if cfg.kv_where == "cpu" else 0.0)
    disk = m.num_layers * wl * cfg.w_disk + (blk * kv_seq if cfg.kv_where == "disk" else 0.0)
    usable = hw.gpu.memory_bytes - hw.gpu.extra_memory_bytes
    fits = gpu <= usable and host <= hw.host.dram_bytes and \
        (disk == 0 or (hw.ssd is not None and disk <= hw.ssd.capacity_bytes * cfg.drives))
    return {"gpu_bytes": gpu, "host_bytes": host, "disk_bytes": disk, "fits": fits}


# -- the pipeline ----------------------------------------------------------------------------
def _ssd_rate(cfg: Config, hw: Hw, write: bool) -> float:
    """Bytes/s the policy's disk path moves (all drives). ``filesystem`` reads: each of the
    ``fs_copy_threads`` threads faults in one readahead window at a time and copies it out of the
    page cache before faulting the next, so a window costs the drive's response time at queue depth
    = threads (Little's law) plus the copy at the host's single-thread rate; writes land in the page
    cache and are written back in large requests, so they run at the slower of the two."""
    from hw_models.ssd import Ssd

    if hw.ssd is None:
        raise ValueError("the policy puts data on disk but no ssd is configured")
    d = Ssd(hw.ssd)
    if cfg.disk_io == "direct" or write:
        rate = d.throughput_bytes_per_s(cfg.ssd_request_bytes, cfg.ssd_queue_depth, write) * cfg.drives
        if cfg.disk_io == "direct":
            return rate
        return min(rate, cfg.fs_copy_threads * hw.host.pageable_copy_bw_bytes_per_s)
    return fs_read_rate(d, cfg.fs_readahead_bytes, cfg.fs_copy_threads, hw.host.pageable_copy_bw_bytes_per_s,
                        cfg.drives)


def fs_read_rate(ssd: Any, window: float, threads: int, copy_bw: float, drives: int = 1) -> float:
    """Page-cache read rate: ``threads`` threads, each with one ``window`` outstanding (spread over
    ``drives``), each window's copy (``copy_bw``) in series with its read."""
    per_drive = max(1, math.ceil(threads / drives))
    return threads * window / (ssd.response_s(window, per_drive) + window / copy_bw)


def _gpu_s(cfg: Config, hw: Hw, flops: float, nbytes: float) -> float:
    g, m = hw.gpu, hw.model
    return max(flops / (g.tensor_peak(m.dtype) * cfg.gpu_compute_efficiency),
               nbytes / (g.memory_bw_bytes_per_s * cfg.gpu_memory_efficiency))


def pass_s(cfg: Config, hw: Hw, q_tokens: int, ctx_tokens: int, prefill: bool) -> dict[str, float]:
    """Simulate one forward pass of the block: every layer, every GPU batch. Returns seconds and
    the busy time of each resource."""
    m, h = hw.model, hw.host
    env = simpy.Environment()
    if cfg.attn_on == "cpu" and h.cpu_flops_per_s is None:
        raise ValueError(f"attention on the CPU needs host.cpu_flops_per_s ({h.name} has none)")
    host = Host(h)
    h2d, d2h = host.shared_link(env, "h2d"), host.shared_link(env, "d2h")
    needs_disk = cfg.w_disk > 0 or cfg.kv_where == "disk"
    dr = SharedBandwidth(env, _ssd_rate(cfg, hw, False), name="ssd_read") if needs_disk else None
    dw = SharedBandwidth(env, _ssd_rate(cfg, hw, True), name="ssd_write") if needs_disk else None
    gpu, cpu, csd = simpy.Resource(env, 1), simpy.Resource(env, 1), simpy.Resource(env, 1)
    if cfg.attn_on == "storage":  # the drives' own host links (x4 each), one per direction
        if hw.ssd is None:
            raise ValueError("attention in storage needs an ssd with compute_flops_per_s")
        lat = s_to_ps(h.transfer_overhead_s)
        to_csd = SharedBandwidth(env, hw.ssd.host_rate * cfg.drives, latency_ps=lat, name="to_csd")
        from_csd = SharedBandwidth(env, hw.ssd.host_rate * cfg.drives, latency_ps=lat, name="from_csd")
    busy = {"gpu": 0.0, "cpu": 0.0, "csd": 0.0}
    L, k, b = m.num_layers, cfg.num_gpu_batches, cfg.gpu_batch
    wl, kvt, db = layer_weight_bytes(m), kv_layer_token_bytes(m), m.dtype_bytes
    rows = b * q_tokens
    n_read = ctx_tokens if prefill else kept(ctx_tokens, cfg.kv_fraction)
    kv_read = 0.0 if prefill else b * n_read * kvt  # prefill builds KV, reads none from storage
    kv_new = b * (kept(q_tokens, cfg.kv_fraction) if prefill else 1) * kvt
    qkv_share = m.hidden_size * (m.q_size + 2 * m.kv_size) / (m.attn_params_per_layer() + m.mlp_params_per_layer())
    dense = _gpu_s(cfg, hw, 2.0 * rows * wl / db, wl)
    pairs = b * q_tokens * (q_tokens + 1) / 2 if prefill else b * n_read
    attn_flops = 4.0 * m.num_heads * m.head_dim * pairs
    attn_gpu = _gpu_s(cfg, hw, attn_flops, (b * n_read * kvt) if not prefill else 2 * kv_new)
    w_stream = wl * (1.0 - cfg.w_gpu)
    w_disk = wl * cfg.w_disk
    layer_done = [env.event() for _ in range(L)]
    w_ready = [env.event() for _ in range(L)]
    pending: list[simpy.Event] = []

    def hold(res: simpy.Resource, seconds: float, key: str):
        with res.request() as req:
            yield req
            busy[key] += seconds
            yield env.timeout(s_to_ps(seconds))

    def via_disk(disk_bytes: float, link_bytes: float):
        if disk_bytes > 0:
            yield dr.transfer(disk_bytes)
        if link_bytes > 0:
            yield h2d.transfer(link_bytes)

    def weights():
        for j in range(L):
            if j >= (2 if cfg.overlap else 1):
                yield layer_done[j - (2 if cfg.overlap else 1)]
            if w_stream > 0:
                yield env.process(via_disk(w_disk, w_stream))
            w_ready[j].succeed()

    def fetch_kv():
        if cfg.attn_on != "gpu" or cfg.kv_where == "gpu" or kv_read == 0:
            return env.timeout(0)
        return env.process(via_disk(kv_read if cfg.kv_where == "disk" else 0.0, kv_read))

    def store_kv():
        if cfg.kv_where == "gpu":
            return
        if cfg.attn_on == "gpu":  # CPU / storage attention already received the new K, V
            yield d2h.transfer(kv_new)
        if cfg.kv_where == "disk":
            yield dw.transfer(kv_new)

    done_count = [0] * L

    def batch():
        nxt = fetch_kv()
        for j in range(L):
            cur, nxt = nxt, (fetch_kv() if j + 1 < L else None)
            yield w_ready[j]
            yield cur
            if cfg.attn_on == "gpu":
                yield env.process(hold(gpu, dense + attn_gpu, "gpu"))
            else:
                yield env.process(hold(gpu, dense * qkv_share, "gpu"))
                if cfg.attn_on == "cpu":
                    yield d2h.transfer(rows * (m.q_size + 2 * m.kv_size) * db)
                    if cfg.kv_where == "disk" and kv_read:
                        yield dr.transfer(kv_read)
                    cpu_s = b * n_read * kvt / (h.dram_bw_bytes_per_s * cfg.cpu_memory_efficiency) + \
                        attn_flops / h.cpu_flops_per_s
                    yield env.process(hold(cpu, cpu_s, "cpu"))
                    yield h2d.transfer(rows * m.q_size * db)
                else:  # computational storage reads KV at the drive's internal bandwidth
                    qkv, out = rows * (m.q_size + 2 * m.kv_size) * db, rows * m.q_size * db
                    if not cfg.p2p:  # staged in host DRAM, then written to the drive
                        yield d2h.transfer(qkv)
                    yield to_csd.transfer(qkv)
                    f = cfg.storage_read_fraction
                    csd_s = storage_attention_s(hw, attn_flops * f, b * n_read * kvt * f, cfg.drives)
                    yield env.process(hold(csd, csd_s, "csd"))
                    yield from_csd.transfer(out)
                    if not cfg.p2p:
                        yield h2d.transfer(out)
                yield env.process(hold(gpu, dense * (1 - qkv_share), "gpu"))
            pending.append(env.process(store_kv()))
            done_count[j] += 1
            if done_count[j] == k:
                layer_done[j].succeed()

    env.process(weights())
    procs = [env.process(batch()) for _ in range(k)]
    env.run(until=simpy.AllOf(env, procs))
    env.run(until=simpy.AllOf(env, pending))
    t = env.now / PS_PER_S
    return {"seconds": t, **{f"{key}_busy_s": v for key, v in busy.items()},
            "h2d_busy_s": h2d.busy_ps / PS_PER_S, "d2h_busy_s": d2h.busy_ps / PS_PER_S,
            "ssd_read_busy_s": (dr.busy_ps / PS_PER_S) if dr else 0.0}


def storage_attention_s(hw: Hw, flops: float, kv_bytes: float, drives: int) -> float:
    from hw_models.ssd import Ssd

    if hw.ssd is None or hw.ssd.compute_flops_per_s is None:
        raise ValueError("attention in storage needs an ssd with compute_flops_per_s")
    return Ssd(hw.ssd).in_storage_s(flops / drives, kv_bytes / drives)


def evaluate(cfg: Config, hw: Hw | None = None) -> dict[str, Any]:
    """Throughput, latency and memory of one policy."""
    hw = hw or resolve_hw(cfg)
    mem = memory(cfg, hw)
    pre_cfg = cfg if cfg.prefill_attn_on == "decode" else cfg.model_copy(update={"attn_on": "gpu"})
    pre = pass_s(pre_cfg, hw, cfg.prompt_tokens, cfg.prompt_tokens, prefill=True)
    dec = pass_s(cfg, hw, 1, cfg.prompt_tokens + cfg.gen_tokens // 2, prefill=False)
    blk = cfg.gpu_batch * cfg.num_gpu_batches
    total = pre["seconds"] + (cfg.gen_tokens - 1) * dec["seconds"]
    return {"block_size": blk, "prefill_s": pre["seconds"], "decode_step_s": dec["seconds"],
            "latency_s": total, "throughput_tok_s": blk * cfg.gen_tokens / total,
            "decode_throughput_tok_s": blk / dec["seconds"], **mem,
            **{f"decode_{k}": v for k, v in dec.items() if k.endswith("busy_s")}}


def max_gpu_batch(cfg: Config, hw: Hw, limit: int = 4096) -> int:
    """Largest ``gpu_batch`` whose memory fits (0 if none)."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if memory(replace_cfg(cfg, gpu_batch=mid), hw)["fits"]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def replace_cfg(cfg: Config, **kw: Any) -> Config:
    return cfg.model_copy(update=kw)


def best_policy(cfg: Config, hw: Hw, w_gpu_grid=(0.0, 0.5, 1.0), blocks=(1, 4, 8),
                cap: int = 256) -> tuple[Config, dict[str, Any]] | tuple[None, None]:
    """Try weight placements x block sizes, each at the largest fitting GPU batch (at most ``cap``);
    keep the policy of highest throughput."""
    best: tuple[Config, dict[str, Any]] | tuple[None, None] = (None, None)
    for w in w_gpu_grid:
        for nb in blocks:
            c = replace_cfg(cfg, w_gpu=w, num_gpu_batches=nb, w_disk=min(cfg.w_disk, 1.0 - w))
            bmax = min(cap, max_gpu_batch(c, hw))
            if bmax == 0:
                continue
            c = replace_cfg(c, gpu_batch=bmax)
            r = evaluate(c, hw)
            if best[1] is None or r["throughput_tok_s"] > best[1]["throughput_tok_s"]:
                best = (c, r)
    return best


def run(cfg: Config) -> dict:
    hw = resolve_hw(cfg)
    r = evaluate(cfg, hw)
    wl = layer_weight_bytes(hw.model) * (1.0 - cfg.w_gpu)
    rate = hw.host.copy_rate()
    return {**r, "weight_bytes_per_layer_streamed": wl,
            "weight_transfer_per_layer_s": Host(hw.host).transfer_s(wl) if wl > 0 else 0.0,
            "pcie_copy_rate_bytes_per_s": rate, "model_weight_bytes": hw.model.weight_bytes()}
