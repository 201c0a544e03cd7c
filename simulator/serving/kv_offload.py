"""KV traffic between GPU memory and host DRAM for one replica: swap preemption over PCIe, and the
page-mapping cost of vAttention-style virtual KV.

Models: two contended links per replica (device-to-host and host-to-device; PCIe is full duplex),
    each a processor-sharing :class:`SharedBandwidth` at the host preset's pinned copy rate with
    its per-copy overhead as latency; a bounded host swap space; the replica waits for its
    pending copies before the next model step and the wait is recorded as stall time. For
    vAttention without overlap, each new KV page costs ``mapping_latency`` per layer buffer
    (K and V of every layer on this GPU), paid in the iteration that needs it.
    A scheduler may ask for FastSwitch-style swaps (``KVManager.configure_swaps``): copies issued
    per group of ``group_blocks`` blocks of each layer buffer (each copy pays the per-copy
    overhead; 1 = vLLM's per-block copies; concurrent swaps share the link's bytes and pay their
    per-copy overheads one after another on its copy stream), swaps overlapping compute on their own copy streams
    (a swap-out's blocks are reused at once; a swapped-in request holds its blocks but joins the
    batch only once its copy is done, while the others keep computing; a swap-in of the same
    request waits for its swap-out),
    and the host copy of a resumed request kept, so its next swap-out copies only the new tokens.
Ignores: copy/compute overlap (unless asked for), host memory bandwidth contention.
Sources: see ``policies/caching/swap.py`` and ``policies/caching/vattention.py``.
"""

from __future__ import annotations

from simulator.core.request import Request


class KvOffload:
    def __init__(self, env, kv_bytes_per_token: float, host=None, swap_space_bytes: float = 0.0,
                 policy=None, map_ps_per_block: int = 0) -> None:
        self.env = env
        self.kv_bytes_per_token = kv_bytes_per_token
        self.policy = policy
        self.d2h = host.shared_link(env, "pcie-d2h") if host is not None else None
        self.h2d = host.shared_link(env, "pcie-h2d") if host is not None else None
        self.swap_space = swap_space_bytes
        self.host_used = 0.0
        self.host_peak = 0.0
        self.swapped: dict[int, float] = {}  # rid -> bytes held in host DRAM
        self.pending: list = []
        self.map_ps_per_block = map_ps_per_block
        self.stall_ps = 0
        self.swap_outs = self.swap_ins = 0
        self.bytes_out = self.bytes_in = 0.0
        self.mapped_blocks = 0
        self.occupancy: list[tuple[int, float]] = []  # (t_ps, host bytes) after each change
        # FastSwitch-style swaps (set by KVManager.configure_swaps; defaults: one copy per request)
        self.group_blocks: int | None = None
        self.block_size = 16
        self.layer_buffers = 0
        self.reuse = False
        self.overlap = False
        self.kept: dict[int, float] = {}  # rid -> bytes of a resumed request's host copy, still valid
        self.out_done: dict[int, object] = {}  # rid -> its swap-out copy in flight (overlapped)
        self.in_done: dict[int, object] = {}  # rid -> its swap-in copy in flight (overlapped)
        self.copies = 0
        self.reused_bytes = 0.0
        self.streams: dict[str, object] = {}  # link name -> its copy stream (per-copy overheads in turn)

    def _note(self) -> None:
        self.occupancy.append((self.env.now, self.host_used))
        if self.host_used > self.host_peak:
            self.host_peak = self.host_used

    def swap_out(self, r: Request, forced: bool = False) -> bool:
        """Preemption: copy ``r``'s KV to host if the policy (or ``forced``: the scheduler asked
        for a swap) and the swap space allow."""
        if self.d2h is None or r.num_computed == 0:
            return False
        nbytes = r.num_computed * self.kv_bytes_per_token
        prior = min(self.kept.get(r.rid, 0.0), nbytes)  # a still-valid host copy of the first tokens
        new = nbytes - prior
        if forced:
            if new > self.swap_space - self.host_used:
                return False
        elif self.policy.choose(new, self.swap_space - self.host_used) != "swap":
            return False
        if prior:
            self.host_used -= self.kept.pop(r.rid) - prior
            self.reused_bytes += prior
        self.host_used += new
        self.swapped[r.rid] = nbytes
        r.kv_on_host = True
        done = self._copy(self.d2h, new)
        if self.overlap:
            self.out_done[r.rid] = done
        else:
            self.pending.append(done)
        self.swap_outs += 1
        self.bytes_out += new
        self._note()
        return True

    def _copy(self, link, nbytes: float):
        """One swap's copy over ``link``: a single transfer, or (block groups) one transfer whose
        per-copy overhead is paid once per group of blocks of each layer buffer."""
        if self.group_blocks is None or nbytes <= 0:
            self.copies += 1
            return link.transfer(nbytes)
        blocks = -(-int(round(nbytes / self.kv_bytes_per_token)) // self.block_size)
        n = max(1, self.layer_buffers * -(-blocks // self.group_blocks))
        self.copies += n
        return self.env.process(self._grouped(link, nbytes, (n - 1) * link.latency_ps))

    def _grouped(self, link, nbytes: float, extra_ps: int):
        yield link.transfer(nbytes)
        if extra_ps:  # the copies are issued one after another on the link's one copy stream
            stream = self.streams.get(link.name)
            if stream is None:
                import simpy

                stream = self.streams[link.name] = simpy.Resource(self.env, capacity=1)
            with stream.request() as turn:
                yield turn
                yield self.env.timeout(extra_ps)

    def forget(self, rid: int) -> None:
        """The request has ended: its kept host copy is freed."""
        nbytes = self.kept.pop(rid, None)
        if nbytes is not None:
            self.host_used -= nbytes
            self._note()

    def swap_in(self, r: Request) -> None:
        nbytes = self.swapped.pop(r.rid, None)
        if nbytes is None:
            return
        out = self.out_done.pop(r.rid, None)
        if out is not None and not out.processed:  # its swap-out is still on the copy stream
            done = self.env.process(self._after(out, nbytes))
        else:
            done = self._copy(self.h2d, nbytes)
        if self.overlap:  # the request joins the batch once its KV is back; the others keep computing
            self.in_done[r.rid] = done
        else:
            self.pending.append(done)
        done.callbacks.append(lambda _ev, r=r: self._landed(r))  # partly (GPU blocks + host copy) until then
        if self.reuse:
            self.kept[r.rid] = nbytes  # the host copy stays valid for the next swap-out
        else:
            self.host_used -= nbytes
        self.swap_ins += 1
        self.bytes_in += nbytes
        self._note()

    def _landed(self, r: Request) -> None:
        if r.rid not in self.swapped:  # not swapped out again meanwhile
            r.kv_on_host = False

    def _after(self, first, nbytes: float):
        yield first
        yield self._copy(self.h2d, nbytes)

    def wait(self):
        """Block the replica until its pending copies are done (a SimPy generator)."""
        start = self.env.now
        events, self.pending = self.pending, []
        yield self.env.all_of(events)
        self.stall_ps += self.env.now - start

    def map_ps(self, new_blocks: int) -> int:
        self.mapped_blocks += new_blocks
        return new_blocks * self.map_ps_per_block

    def stats(self) -> dict:
        extra = {"swap_copies": self.copies, "host_copy_reused_bytes": self.reused_bytes} if self.group_blocks \
            or self.reuse else {}
        return {**extra, "swap_outs": self.swap_outs, "swap_ins": self.swap_ins, "bytes_to_host": self.bytes_out,
                "bytes_to_device": self.bytes_in, "host_peak_bytes": self.host_peak,
                "stall_s": self.stall_ps / 1e12, "mapped_blocks": self.mapped_blocks}


class SessionOffload(KvOffload):
    """Idle multi-turn sessions' KV in host DRAM (policy ``prefix`` with ``offload_idle_sessions``).

    Models: when a turn ends, ``save`` copies the session's cached blocks GPU -> host over the
        device-to-host link in the background (write-through: the GPU copy stays cached); host
        space is bounded, the least recently saved sessions are dropped to make room, and a
        session's older copy is replaced. When the next turn of the session arrives, ``take``
        consumes the entry: the blocks the GPU no longer has are copied back host -> GPU (after the
        save has finished), the rest of the copy is dropped. The prefix cache maps the restored
        blocks on admission and the replica waits for the copy before the step (stall time).
        Bytes are conserved: offloaded = restored + dropped + still resident.
    Ignores: the GPU blocks a prefetch lands in are taken at admission, not when it starts; a GPU
        block evicted while its save is still in flight is assumed saved.
    """

    def __init__(self, env, kv_bytes_per_token: float, host, capacity: float, policy) -> None:
        super().__init__(env, kv_bytes_per_token, host, capacity, policy)
        self.entries: dict[int, tuple[int, float, object]] = {}  # session -> (blocks, bytes, save done)
        self.offloaded = self.restored = self.dropped = self.unused = 0.0
        self.saves = self.restores = 0

    def swap_out(self, r: Request, forced: bool = False) -> bool:
        return False  # preemption recomputes (the prefix cache keeps what it can)

    def swap_in(self, r: Request) -> None:
        return None

    def _drop(self, session: int) -> None:
        _, nbytes, _ = self.entries.pop(session)
        self.host_used -= nbytes
        self.dropped += nbytes

    def save(self, session: int, blocks: int, nbytes: float) -> None:
        if session in self.entries:
            self._drop(session)
        if blocks <= 0 or nbytes > self.swap_space:
            return
        while self.host_used + nbytes > self.swap_space:
            self._drop(next(iter(self.entries)))  # least recently saved first
        self.entries[session] = (blocks, nbytes, self.d2h.transfer(nbytes))
        self.host_used += nbytes
        self.offloaded += nbytes
        self.bytes_out += nbytes
        self.saves += 1
        self._note()

    def take(self, session: int, have: int, cap: int):
        """Next turn of ``session`` arrives with ``have`` blocks still on the GPU and may use
        ``cap``: (copy-done event, blocks it will hold) when host DRAM has more, else None."""
        if session not in self.entries:
            return None
        blocks, nbytes, saved = self.entries[session]
        hi = min(blocks, cap)
        if hi <= have:
            self._drop(session)
            return None
        del self.entries[session]
        self.host_used -= nbytes
        back = nbytes * (hi - have) / blocks
        self.restored += back
        self.dropped += nbytes - back
        self.bytes_in += back
        self.restores += 1
        self._note()
        return self.env.process(self._restore(saved, back)), hi

    def _restore(self, saved, nbytes: float):
        yield saved
        yield self.h2d.transfer(nbytes)

    def stats(self) -> dict:
        return {"session_saves": self.saves, "session_restores": self.restores,
                "bytes_offloaded": self.offloaded, "bytes_restored": self.restored,
                "bytes_dropped": self.dropped, "bytes_restored_unused": self.unused,
                "host_resident_bytes": self.host_used, "host_peak_bytes": self.host_peak,
                "bytes_to_host": self.bytes_out, "bytes_to_device": self.bytes_in,
                "stall_s": self.stall_ps / 1e12}


def page_block_size(component, model, tp: int) -> int | None:
    """vAttention: the allocation unit in tokens (one physical page of one layer's K or V buffer on
    one GPU); None for the other mechanisms (the scheduler's ``block_size`` is used)."""
    if component is None or component.cls.mechanism != "vattention":
        return None
    from workloads.llm import layer_shards

    _, kv_heads, _ = layer_shards(model, tp)
    return component.cls(component.config).tokens_per_page(kv_heads * model.head_dim * model.dtype_bytes)


# policy inputs reported as given (not summed over replicas)
POLICY_INPUTS = ("accuracy_delta", "budget_fraction", "heavy_fraction", "resident_cap_tokens")
TIMELINE_POINTS = 256  # most points of the per-tier occupancy timeline in summary.json


def tier_timeline(offloads) -> dict:
    """Host and SSD bytes over time summed over replicas (a step function), at most
    TIMELINE_POINTS points taken evenly (deterministic)."""
    import numpy as np

    parts = [np.asarray(o.timeline, dtype=np.float64) for o in offloads if getattr(o, "timeline", None)]
    if not parts:
        return {}
    t = np.unique(np.concatenate([p[:, 0] for p in parts]))
    host = np.zeros(t.size)
    ssd = np.zeros(t.size)
    for p in parts:  # value of each replica's step function at every change time (last change wins)
        idx = np.searchsorted(p[:, 0], t, side="right") - 1
        host += p[idx, 1]
        ssd += p[idx, 2]
    keep = np.unique(np.linspace(0, t.size - 1, min(t.size, TIMELINE_POINTS)).round().astype(np.int64))
    return {"t_s": (t[keep] / 1e12).tolist(), "host_bytes": host[keep].tolist(), "ssd_bytes": ssd[keep].tolist()}


def kv_summary(replicas) -> dict:
    """KV-policy counters summed over replicas (empty for plain paging): hit rate per tier (GPU
    prefix cache, host DRAM and SSD offload), bytes per link (PCIe each way, SSD), time stalled on
    transfers, host and SSD occupancy (peaks, and a timeline for the tiered policy)."""
    out: dict = {}
    for rep in replicas:
        stats = rep.kvm.stats()
        if getattr(rep, "spec", None) is not None:
            stats.update(rep.spec.stats())
        for k, v in stats.items():
            if isinstance(v, str) or k in POLICY_INPUTS:
                out[k] = v
            elif k.startswith("peak") or k.endswith("peak_bytes"):
                out[k] = max(out.get(k, 0), v)
            else:
                out[k] = out.get(k, 0) + v
    ctl = getattr(replicas[0], "controller", None) if replicas else None
    if ctl is not None:
        out.update(ctl.stats())
    if out.get("spec_rows"):
        out["spec_tokens_per_step"] = out["spec_emitted_tokens"] / out["spec_rows"]
        out["spec_acceptance_rate"] = out["spec_accepted_tokens"] / max(1, out["spec_proposed_tokens"])
    if "queried_blocks" in out:
        out["hit_rate"] = out["hit_blocks"] / out["queried_blocks"] if out["queried_blocks"] else 0.0
    if "host_hits" in out:
        resumes = out["host_hits"] + out["ssd_hits"]
        out["host_hit_rate"] = out["host_hits"] / resumes if resumes else 0.0
        out["ssd_hit_rate"] = out["ssd_hits"] / resumes if resumes else 0.0
        offloaded = out["swap_outs"] + out["recomputes"]
        out["offload_rate"] = out["swap_outs"] / offloaded if offloaded else 0.0
        out["occupancy"] = tier_timeline([rep.offload for rep in replicas if rep.offload is not None])
    return out
