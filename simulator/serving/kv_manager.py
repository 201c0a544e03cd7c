"""One replica's KV manager: blocks, sharing, host tiers, host copies and copies in flight.

The replica and the cluster ask the manager; policies see its view (``KvView``); swap, migration
and speculative rollback are its operations. It composes the mechanisms that hold the state:

    KVManager
      cache    PagedKvCache | PrefixKvCache | CappedKvCache   (serving/kv_cache.py: block counts,
               sharing through the radix tree, resident caps)
      offload  KvOffload | SessionOffload | TieredOffload | None  (serving/kv_offload.py,
               serving/kv_tiers.py: host DRAM / SSD copies over contended PCIe and SSD queues)

Models: where each request's KV lives (``location``: gpu, host, partly, none); preemption by
    recompute, swap or drop (``preempt``); bringing a swapped request back (``admit``); blocks
    handed to another replica (``release_blocks``, migration and disaggregated hand-off); tokens
    allocated for a speculative verification and rolled back (``rollback``); the copies a step
    must wait for (``copies_pending`` / ``wait_copies``).
Ignores: see the composed mechanisms.
Sources: vLLM's block manager and swap space (Kwon et al., SOSP 2023).

Hot-path methods (``grow``, ``need``, ``add_used``, ...) are the cache's bound methods, so the
facade costs nothing per token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from simulator.core.clock import s_to_ps
from simulator.core.contracts import KvView
from simulator.core.request import Request
from simulator.serving.chunk_reuse import ChunkReuseKvCache
from simulator.serving.kv_cache import CappedKvCache, PagedKvCache, PrefixKvCache
from simulator.serving.kv_offload import KvOffload, SessionOffload
from simulator.serving.kv_tiers import TieredOffload

GPU, HOST, PARTLY, NONE = "gpu", "host", "partly", "none"
RECOMPUTE, SWAP, DROP = "recompute", "swap", "drop"
PREEMPT_MODES = (RECOMPUTE, SWAP, DROP)


@dataclass(frozen=True, slots=True)
class HostCopyKvView(KvView):
    """The view of a paged cache with host copies: ``location(req)`` says where its KV is."""

    where: Callable[[Request], str] | None = None

    def location(self, req) -> str:
        """gpu, host (swapped out), partly (GPU blocks and a host copy), or none."""
        return self.where(req)


class KVManager:
    def __init__(self, cache: PagedKvCache, offload: KvOffload | None = None) -> None:
        self.cache = cache
        self.offload = offload
        if offload is not None and cache.shares:
            cache.sessions = offload  # idle sessions' KV saved to host DRAM between turns
        self.block_size = cache.block_size
        self.total_blocks = cache.total_blocks
        self.shares = cache.shares
        self.capped = cache.capped
        # the cache's own operations, bound once (no per-call indirection on the hot path)
        self.need = cache.need
        self.grow = cache.grow
        self.add_used = cache.add_used
        self.admit_need = cache.admit_need
        self.freed_by = cache.freed_by
        self.overlap = cache.overlap
        self.blocks_for = cache.blocks_for
        self.rolled_back_tokens = 0
        self.dropped_tokens = 0
        self.host_reuse = 0  # swap-outs that found a still-valid host copy

    # -- queries ---------------------------------------------------------------------------
    @property
    def free(self) -> int:
        return self.cache.total_blocks - self.cache.used

    @property
    def used(self) -> int:
        return self.cache.used

    def view(self) -> KvView:
        v = self.cache.view()
        if self.offload is not None and type(v) is KvView:  # a policy can ask where a request's KV is
            return HostCopyKvView(v.block_size, v.total_blocks, v.free_blocks, self.location)
        return v

    @staticmethod
    def location(r: Request) -> str:
        """Where ``r``'s KV is: gpu, host (swapped out), partly (GPU blocks and the host copy it is
        being restored from: a swap-in in flight), or none (nothing cached): ``r.kv_location``."""
        return r.kv_location

    @property
    def can_swap(self) -> bool:
        """A swap can be made: the offload keeps host copies of preempted requests."""
        off = self.offload
        return off is not None and off.d2h is not None and type(off).__name__ != "SessionOffload"

    def arriving(self, r: Request):
        """The copy event of ``r``'s swap-in while it is still on the copy stream (overlapped swaps),
        else None."""
        ev = self.offload.in_done.get(r.rid) if self.offload is not None else None
        if ev is not None and ev.processed:
            del self.offload.in_done[r.rid]
            return None
        return ev

    def offload_swapped(self) -> dict:
        """Requests whose KV is on the host (rid -> bytes)."""
        return getattr(self.offload, "swapped", {}) if self.offload is not None else {}

    @property
    def copies_pending(self) -> bool:
        return self.offload is not None and bool(self.offload.pending)

    def swaps_as_asked(self, scheduler, model) -> bool:
        """Swaps as the scheduler's attributes ask (``swap_group_blocks``, ``reuse_host_copies``,
        ``overlap_swap``); True when swaps overlap compute."""
        overlap = bool(getattr(scheduler, "overlap_swap", False)) and type(self.offload) is KvOffload
        self.configure_swaps(getattr(scheduler, "swap_group_blocks", None),
                             bool(getattr(scheduler, "reuse_host_copies", False)), overlap, model, 1)
        return overlap

    def configure_swaps(self, group_blocks: int | None, reuse: bool, overlap: bool, model, tp: int) -> None:
        """Swap copies in groups of ``group_blocks`` blocks per layer buffer (None: one copy per
        request), keeping the host copy of a resumed request for its next swap-out (``reuse``), and
        swap-outs overlapping the next step on their own copy stream (``overlap``)."""
        off = self.offload
        if type(off) is not KvOffload or off.d2h is None:
            return
        off.group_blocks = group_blocks
        off.block_size = self.block_size
        off.layer_buffers = 2 * model.num_layers if not getattr(model, "is_mla", False) else model.num_layers
        off.reuse = reuse
        off.overlap = overlap

    # -- operations ------------------------------------------------------------------------
    def wait_copies(self):
        """SimPy generator: the replica waits for its pending copies (recorded as stall time)."""
        yield from self.offload.wait()

    def map_ps(self, new_blocks: int) -> int:
        """Page-mapping time of ``new_blocks`` new blocks (vAttention without overlap)."""
        return self.offload.map_ps(new_blocks) if self.offload is not None else 0

    @property
    def maps_pages(self) -> bool:
        return self.offload is not None and bool(self.offload.map_ps_per_block)

    def preempt(self, r: Request, mode: str | None = None) -> bool:
        """Free ``r``'s blocks. ``mode``: swap (copy to host when the offload allows), recompute,
        drop (no copy), or None (the cache policy's global choice). True when the KV was kept on
        the host (only the last token is computed again on resume)."""
        swapped = False
        if mode != RECOMPUTE and mode != DROP and self.offload is not None:
            swapped = self.offload.swap_out(r, mode == SWAP)
        if mode == DROP:
            self.dropped_tokens += r.num_computed
            if self.offload is not None and self.offload.reuse:
                self.offload.forget(r.rid)  # the request is given up: its kept host copy goes too
        self.cache.release(r)
        return swapped

    def admit(self, r: Request) -> int:
        """A waiting request joins the batch: reference its cached prefix, or start copying its
        swapped KV back. Returns the change in computed tokens (prefix caches)."""
        if self.cache.shares:
            return self.cache.attach(r)
        if self.offload is not None:
            self.offload.swap_in(r)
        return 0

    def release(self, r: Request) -> int:
        if self.offload is not None and self.offload.reuse:
            self.offload.forget(r.rid)  # the request has ended: its kept host copy is dropped
        return self.cache.release(r)

    def release_blocks(self, n: int) -> None:
        """Blocks of a request that has left this replica (its KV copied elsewhere) return."""
        self.cache.used -= n

    def rollback(self, r: Request, tokens: int) -> int:
        """Give back the blocks of ``tokens`` speculated tokens that were rejected: ``r`` keeps
        blocks for its computed tokens (and reservation) only. Returns the blocks freed."""
        if tokens <= 0:
            return 0
        self.rolled_back_tokens += tokens
        keep = max(self.blocks_for(r.num_computed), self.blocks_for(r.kv_reserve_tokens))
        extra = r.kv_blocks - keep
        if extra <= 0 or self.cache.capped:
            return 0
        r.kv_blocks = keep
        self.cache.used -= extra
        if self.cache.shares:  # the rolled-back blocks were private
            self.cache.private -= extra
        return extra

    def reserve(self, n: int) -> None:
        """Hold ``n`` free blocks for KV arriving from elsewhere (a migration's destination)."""
        self.cache.add_used(n)

    def unreserve(self, n: int) -> None:
        self.cache.used -= n

    def set_total_blocks(self, n: int) -> None:
        """Resize the pool before any block is taken (a draft model's memory comes out of it)."""
        if self.cache.used:
            raise RuntimeError("the KV pool is resized only while empty")
        self.cache.total_blocks = self.total_blocks = n

    def refresh_hits(self, waiting) -> int:
        return self.cache.refresh_hits(waiting)

    def publish(self, r: Request) -> None:
        self.cache.publish(r)

    def stats(self) -> dict:
        out = dict(self.cache.stats())
        if self.offload is not None:
            out.update(self.offload.stats())
        if self.rolled_back_tokens:
            out["speculative_rolled_back_tokens"] = self.rolled_back_tokens
        if self.dropped_tokens:
            out["preempt_dropped_tokens"] = self.dropped_tokens
        return out


def make_kv_cache(component, total_blocks: int, block_size: int) -> PagedKvCache:
    """The KV mechanism a ``policies.kv_cache`` block selects (plain paging when absent)."""
    if component is None or component.cls.mechanism in ("paged", "swap", "vattention", "tiered"):
        return PagedKvCache(total_blocks, block_size)
    if component.cls.mechanism == "capped":
        return CappedKvCache(total_blocks, block_size, component.cls(component.config))
    if component.cls.mechanism == "prefix":
        return PrefixKvCache(total_blocks, block_size, component.cls(component.config))
    if component.cls.mechanism == "chunk_reuse":  # CacheBlend-style non-prefix reuse
        return ChunkReuseKvCache(total_blocks, block_size, component.cls(component.config))
    raise ValueError(f"unknown KV mechanism {component.cls.mechanism!r}")


def make_offload(component, env, kv_bytes_per_token: float, layer_buffers: int) -> KvOffload | None:
    """The host-copy mechanism a ``policies.kv_cache`` block needs (None for paged and prefix)."""
    if component is None:
        return None
    mech = component.cls.mechanism
    if mech not in ("swap", "tiered", "prefix", "vattention"):
        return None
    from simulator.config.loader import resolve_component
    from simulator.core import registry as reg

    c = component.config

    def hw(kind: str, preset: str):
        hc = resolve_component({"kind": kind, "preset": preset}, reg.HARDWARE, f"policies.kv_cache.{kind}")
        return hc.cls(hc.config)

    if mech == "swap":
        return KvOffload(env, kv_bytes_per_token, hw("host", c.host), c.swap_space, component.cls(c))
    if mech == "tiered":
        return TieredOffload(env, kv_bytes_per_token, hw("host", c.host), hw("ssd", c.ssd), component.cls(c))
    if mech == "prefix" and c.offload_idle_sessions:
        return SessionOffload(env, kv_bytes_per_token, hw("host", c.host), float(c.host_capacity), None)
    if mech == "vattention" and not c.overlap:
        return KvOffload(env, kv_bytes_per_token, map_ps_per_block=layer_buffers * s_to_ps(c.mapping_latency))
    return None


def make_kv_manager(component, env, total_blocks: int, block_size: int, kv_bytes_per_token: float,
                    layer_buffers: int) -> KVManager:
    """A replica's KV manager for the ``policies.kv_cache`` block (plain paging when absent)."""
    return KVManager(make_kv_cache(component, total_blocks, block_size),
                     make_offload(component, env, kv_bytes_per_token, layer_buffers))
