"""Multi-tier KV offload for one replica: GPU -> host DRAM -> SSD, with prefetch before resume.

Models: a preempted request's KV (``num_computed x KV bytes per token``) is copied GPU -> host over
    the replica's device-to-host PCIe link (processor sharing, as for ``swap``); the replica waits
    for that copy before its next step (the blocks are reused). Host DRAM is a bounded tier (a
    SimPy container: a copy into it waits until its bytes fit, so occupancy never exceeds the
    capacity); when it is full, the policy's victims (idle entries, oldest offload first) are
    spilled host -> SSD in the background, and the incoming copy waits for them. A request that
    cannot fit in host DRAM goes straight to the SSD (through a pinned staging buffer); one that
    fits nowhere is recomputed. SSD reads and writes are two processor-sharing queues at the
    drive's throughput for ``io_size`` commands at ``queue_depth`` (``hw_models/ssd.py``) plus the
    latency of one command. After every change the policy names the requests to prefetch
    (the next ones to resume); their KV moves SSD -> host while other requests compute. On resume
    the KV moves host -> GPU over PCIe (a host hit), or, when the prefetch is late or was never
    started, the rest of the SSD read is waited for first (an SSD hit); the replica's wait is the
    stall time, and the part spent on SSD reads is recorded as ``prefetch_late_s``.
    Bytes are conserved per tier: written = read back + still resident (checked by the tests).
Ignores: a resume during a spill waits for the spill to finish and reads the KV back from the SSD
    (it does not take the host copy); host DRAM bandwidth; read/write interference inside the
    drive; the staging buffer's size.
Sources: see ``policies/caching/tiered.py``; ``hw_models/host.py`` and ``hw_models/ssd.py``.
"""

from __future__ import annotations

import simpy

from simulator.core.clock import s_to_ps
from simulator.core.request import Request
from simulator.core.resources import SharedBandwidth
from simulator.serving.kv_offload import KvOffload

HOST, SSD = "host", "ssd"


class Entry:
    __slots__ = ("rid", "nbytes", "tier", "busy", "spilling")

    def __init__(self, rid: int, nbytes: float, tier: str) -> None:
        self.rid = rid
        self.nbytes = nbytes
        self.tier = tier  # where the KV is (or is going)
        self.busy: simpy.Event | None = None  # the move in flight, if any
        self.spilling = False


class TieredOffload(KvOffload):
    def __init__(self, env, kv_bytes_per_token: float, host, ssd, policy) -> None:
        c = policy.config
        super().__init__(env, kv_bytes_per_token, host, c.host_capacity, policy)
        self.host_store = simpy.Container(env, capacity=max(int(c.host_capacity), 1))  # integer bytes: exact
        self.ssd_space = float(c.ssd_capacity if c.ssd_capacity is not None else ssd.config.capacity_bytes)
        io, qd = float(c.io_size), c.queue_depth
        self.ssd_w = SharedBandwidth(env, ssd.throughput_bytes_per_s(io, qd, write=True),
                                     latency_ps=s_to_ps(ssd.latency_s(io, write=True)), name="ssd-write")
        self.ssd_r = SharedBandwidth(env, ssd.throughput_bytes_per_s(io, qd),
                                     latency_ps=s_to_ps(ssd.latency_s(io)), name="ssd-read")
        self.entries: dict[int, Entry] = {}  # in offload order
        self.host_claim = 0.0  # bytes promised in host DRAM (resident, arriving, or spilling)
        self.spill_pending = 0.0  # bytes of host entries being spilled
        self.ssd_used = 0.0
        self.ssd_peak = 0.0
        self.written = {HOST: 0.0, SSD: 0.0}
        self.read = {HOST: 0.0, SSD: 0.0}
        self.link_bytes = {"pcie_d2h": 0.0, "pcie_h2d": 0.0, "ssd_write": 0.0, "ssd_read": 0.0}
        self.hits = {HOST: 0, SSD: 0}
        self.recomputes = self.spills = self.prefetches = 0
        self.late_ps = 0
        self.timeline: list[tuple[int, float, float]] = [(0, 0.0, 0.0)]  # (t_ps, host bytes, SSD bytes)

    def _note(self) -> None:
        self.host_used = self.host_store.level
        self.host_peak = max(self.host_peak, self.host_used)
        self.ssd_peak = max(self.ssd_peak, self.ssd_used)
        self.timeline.append((self.env.now, self.host_used, self.ssd_used))

    # -- offload -------------------------------------------------------------------------
    def swap_out(self, r: Request, forced: bool = False) -> bool:
        if r.num_computed == 0:
            return False
        nbytes = int(round(r.num_computed * self.kv_bytes_per_token))
        idle = [(e.rid, e.nbytes) for e in self.entries.values() if e.tier == HOST and e.busy is None]
        host_free = self.swap_space - (self.host_claim - self.spill_pending)
        ssd_free = self.ssd_space - self.ssd_used
        reclaim = min(sum(b for _, b in idle), ssd_free)
        where = self.policy.place(nbytes, host_free, reclaim, ssd_free)
        victims = self.policy.victims(idle, nbytes - host_free) if where == HOST and nbytes > host_free else []
        if sum(self.entries[v].nbytes for v in victims) > ssd_free:
            victims = []
        if where == HOST and nbytes > host_free and not victims:
            where = SSD if nbytes <= ssd_free else "recompute"
        if where == "recompute":
            self.recomputes += 1
            return False
        e = self.entries[r.rid] = Entry(r.rid, nbytes, where)
        r.kv_on_host = True
        self.swap_outs += 1
        self.bytes_out += nbytes
        self.link_bytes["pcie_d2h"] += nbytes
        if where == HOST:
            self.host_claim += nbytes
            spills = [self._spill(self.entries[v]) for v in victims]
            e.busy = self.env.process(self._to_host(e, spills))
            self.pending.append(e.busy)
        else:
            self.ssd_used += nbytes
            copied = self.d2h.transfer(nbytes)
            self.pending.append(copied)
            e.busy = self.env.process(self._write_ssd(e, copied))
        self._note()
        return True

    def _to_host(self, e: Entry, spills: list):
        if spills:
            yield self.env.all_of(spills)
        yield self.host_store.put(e.nbytes)
        self._note()
        yield self.d2h.transfer(e.nbytes)
        self.written[HOST] += e.nbytes
        e.busy = None
        self._prefetch()

    def _write_ssd(self, e: Entry, after):
        yield after
        yield self.ssd_w.transfer(e.nbytes)
        self.written[SSD] += e.nbytes
        self.link_bytes["ssd_write"] += e.nbytes
        e.busy = None
        self._note()

    def _spill(self, e: Entry) -> simpy.Process:
        """Host -> SSD in the background; the host bytes are freed when the write completes."""
        e.tier, e.spilling = SSD, True
        self.spill_pending += e.nbytes
        self.ssd_used += e.nbytes
        self.spills += 1
        e.busy = self.env.process(self._spill_proc(e))
        return e.busy

    def _spill_proc(self, e: Entry):
        yield self.ssd_w.transfer(e.nbytes)
        yield self.host_store.get(e.nbytes)
        self.host_claim -= e.nbytes
        self.spill_pending -= e.nbytes
        self.read[HOST] += e.nbytes
        self.written[SSD] += e.nbytes
        self.link_bytes["ssd_write"] += e.nbytes
        e.busy, e.spilling = None, False
        self._note()
        self._prefetch()

    # -- prefetch and resume ---------------------------------------------------------------
    def _prefetch(self) -> None:
        newest = [rid for rid in reversed(self.entries)]
        for rid in self.policy.prefetch(newest):
            e = self.entries[rid]
            if e.tier != SSD or e.busy is not None:
                continue
            if e.nbytes > self.swap_space - (self.host_claim - self.spill_pending):
                continue  # prefetch only into free host DRAM
            e.tier = HOST
            self.host_claim += e.nbytes
            self.prefetches += 1
            e.busy = self.env.process(self._prefetch_proc(e))

    def _prefetch_proc(self, e: Entry):
        yield self.host_store.put(e.nbytes)
        yield self.ssd_r.transfer(e.nbytes)
        self.ssd_used -= e.nbytes
        self.read[SSD] += e.nbytes
        self.written[HOST] += e.nbytes
        self.link_bytes["ssd_read"] += e.nbytes
        e.busy = None
        self._note()

    def swap_in(self, r: Request) -> None:
        e = self.entries.pop(r.rid, None)
        if e is None:
            return
        self.swap_ins += 1
        self.bytes_in += e.nbytes
        done = self.env.process(self._resume(e))
        done.callbacks.append(lambda _ev: setattr(r, "kv_on_host", r.rid in self.entries))
        self.pending.append(done)

    def _resume(self, e: Entry):
        start = self.env.now
        hit = HOST if e.tier == HOST and e.busy is None else SSD
        self.hits[hit] += 1
        if e.busy is not None:
            yield e.busy  # a prefetch, spill or write still in flight
        if e.tier == SSD:  # read through the staging buffer
            yield self.ssd_r.transfer(e.nbytes)
            self.ssd_used -= e.nbytes
            self.read[SSD] += e.nbytes
            self.link_bytes["ssd_read"] += e.nbytes
            self._note()
        self.late_ps += self.env.now - start
        yield self.h2d.transfer(e.nbytes)
        self.link_bytes["pcie_h2d"] += e.nbytes
        if e.tier == HOST:
            yield self.host_store.get(e.nbytes)
            self.host_claim -= e.nbytes
            self.read[HOST] += e.nbytes
        self._note()
        self._prefetch()

    # -- results ---------------------------------------------------------------------------
    def resident(self, tier: str) -> float:
        """Bytes settled in ``tier`` now (no move in flight)."""
        return sum(e.nbytes for e in self.entries.values() if e.tier == tier and e.busy is None)

    def stats(self) -> dict:
        lb = self.link_bytes
        return {"policy": "tiered", "swap_outs": self.swap_outs, "swap_ins": self.swap_ins,
                "recomputes": self.recomputes, "spills": self.spills, "prefetches": self.prefetches,
                "host_hits": self.hits[HOST], "ssd_hits": self.hits[SSD],
                "pcie_d2h_bytes": lb["pcie_d2h"], "pcie_h2d_bytes": lb["pcie_h2d"],
                "ssd_write_bytes": lb["ssd_write"], "ssd_read_bytes": lb["ssd_read"],
                "bytes_to_host": self.bytes_out, "bytes_to_device": self.bytes_in,
                "host_peak_bytes": self.host_peak, "ssd_peak_bytes": self.ssd_peak,
                "stall_s": self.stall_ps / 1e12, "prefetch_late_s": self.late_ps / 1e12}
