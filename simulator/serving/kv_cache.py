"""Paged KV-cache block accounting (the mechanism; policies only decide).

Models: a pool of fixed-size blocks per replica; a request holds enough blocks for the larger of
    its cached tokens and its reservation; blocks return to the pool when it finishes or is
    preempted. Capacity is derived as an engine does: device memory x utilisation - weights -
    activation reserve, divided by the bytes of one block.
    ``PrefixKvCache`` adds sharing of cached prefix blocks (radix tree, LRU eviction).
    ``CappedKvCache`` holds blocks for at most cap(context) resident tokens per request
    (StreamingLLM, H2O eviction).
Ignores: block tables (only counts); fragmentation inside the last block is counted as used.
Sources: vLLM PagedAttention (Kwon et al., SOSP 2023), its profiling-based capacity rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from simulator.core.contracts import KvView
from simulator.core.request import Request


class PagedKvCache:
    shares = False  # blocks are never shared between requests (see PrefixKvCache)
    capped = False  # every cached token is resident (see CappedKvCache)
    _view: KvView | None = None  # the last view handed out (view())

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

    # blocks a request needs to hold new_tokens more (and a reservation): the policy view's rule, the
    # same function (it reads only block_size), inline arithmetic because it runs per request per step
    need = KvView.blocks_to_grow

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
        self.used -= req.kv_blocks
        return self._detach(req)

    @staticmethod
    def _detach(req: Request) -> int:
        """Clear ``req``'s block count and reservation; the blocks it held."""
        n = req.kv_blocks
        req.kv_blocks = 0
        req.kv_reserve_tokens = 0
        return n

    def admit_need(self, req: Request, new_tokens: int, reserve_tokens: int = 0) -> int:
        """Free blocks a first chunk of waiting ``req`` takes (``KvView.blocks_to_admit``)."""
        return self.need(req, new_tokens, reserve_tokens)

    def freed_by(self, req: Request, mapped: bool = True) -> int:
        """Free blocks preempting ``req`` gives back (``KvView.blocks_freed_by``)."""
        return req.kv_blocks

    def overlap(self, victims, admitted) -> int:
        """Correction to a plan's need - freed, counted per request: + the cached blocks its
        admissions count as mapped that only its victims map, - those several victims map
        together (freed jointly). 0 without sharing."""
        return 0

    def view(self) -> KvView:
        """The policy's view; the same (frozen) object while the block size, total and free blocks are."""
        v = self._view
        free = self.total_blocks - self.used
        if v is None or v.free_blocks != free or v.total_blocks != self.total_blocks or v.block_size != self.block_size:
            v = self._view = KvView(self.block_size, self.total_blocks, free)
        return v

    def stats(self) -> dict:
        return {}


class PrefixKvCache(PagedKvCache):
    """Paged blocks plus a radix-tree prefix cache (policy: ``policies.caching.prefix``).

    Accounting: ``used`` = private blocks + cached blocks with at least one reference (``pinned``),
    each counted once however many requests map it; unreferenced cached blocks are evictable and
    count as free. Physically, the pool holds the private blocks plus every cached block once
    (``physical``); unreferenced cached blocks are evicted (policy: LRU leaf) when a private
    allocation needs room, which always succeeds while ``used <= total_blocks``. Admitting a
    request costs its private blocks plus its hit blocks nobody references yet
    (``admit_need``); preempting one frees its private blocks plus the cached blocks it alone
    references (``freed_by``). A request's ``kv_blocks`` still counts every block it maps.
    A waiting request is shown with ``num_computed`` = its cached prefix (a tentative hit,
    refreshed when the tree gains blocks or the request is new); on admission the hit is
    re-matched (blocks may have been evicted since) and the matched blocks are referenced.
    Shared-prefix blocks are published to the tree as soon as a request has computed them
    (``publish``), so requests running at the same time share them, as with vLLM's block hashing.
    """

    shares = True
    REFRESH_HEAD = 64  # waiting requests whose tentative hit is refreshed per iteration

    def __init__(self, total_blocks: int, block_size: int, policy) -> None:
        super().__init__(total_blocks, block_size)
        self.tree = policy
        self.private = 0
        self.pinned = 0  # cached blocks with a reference
        self.peak_physical = 0
        self.held: dict[int, list] = {}
        self.version = 0
        self.seen: dict[int, int] = {}  # rid -> tree version of its last refresh
        self.hit_tokens = 0
        self.evicted = 0
        self.sessions = None  # SessionOffload: idle sessions' KV in host DRAM (set by the replica)
        self.restoring: dict[int, tuple] = {}  # rid -> (copy done, GPU blocks when it started, blocks after)

    # -- keys ------------------------------------------------------------------------------
    @staticmethod
    def group(r: Request):
        if r.session_id >= 0:
            return ("s", r.session_id)
        if r.prefix_id >= 0:
            return ("p", r.prefix_id)
        return ("r", r.rid)

    def _match_cap(self, r: Request) -> int:
        """Blocks ``r`` may take from the cache: its shared prefix (or, after a preemption, what it
        had computed itself), always leaving at least one token to compute."""
        limit = r.prefix_tokens if r.session_id >= 0 or r.prefix_id >= 0 else 0
        if r.num_preemptions:
            limit = max(limit, r.prefill_target - 1)
        return min(limit, r.prefill_target - 1) // self.block_size

    def _insert_cap(self, r: Request) -> int:
        full = r.num_computed // self.block_size
        if r.session_id >= 0:
            return full
        if r.prefix_id >= 0:
            return min(full, r.prefix_tokens // self.block_size)
        return full if r.num_generated < r.max_new_tokens else 0  # own blocks kept only when preempted

    def _keys(self, r: Request, lo: int, hi: int) -> list:
        g = self.group(r)
        return [(g, i) for i in range(lo, hi)]

    # -- hits ------------------------------------------------------------------------------
    def refresh_hits(self, waiting) -> int:
        """Set the tentative hit of the first waiting requests; returns tokens newly counted as
        computed (to subtract from outstanding work)."""
        delta = 0
        v, seen, bs = self.version, self.seen, self.block_size
        for i, r in enumerate(waiting):
            if i >= self.REFRESH_HEAD:
                break
            if r.kv_blocks or seen.get(r.rid) == v or r.rid in self.restoring:
                continue
            first = r.rid not in seen
            seen[r.rid] = v
            cap = self._match_cap(r)
            h = len(self.tree.match(self._keys(r, 0, cap))) if cap > 0 else 0
            if first and self.sessions is not None and r.session_id >= 0 and not r.num_preemptions:
                got = self.sessions.take(r.session_id, h, cap)  # prefetch on arrival
                if got is not None:
                    self.restoring[r.rid] = (got[0], h, got[1])
                    h = got[1]
            delta += h * bs - r.num_computed
            r.num_computed = h * bs
        return delta

    def attach(self, r: Request) -> int:
        """Admission: reference the cached prefix; returns the change in computed tokens versus
        the tentative hit (negative when blocks were evicted meanwhile)."""
        self.seen.pop(r.rid, None)
        cap = self._match_cap(r)
        nodes = self.tree.match(self._keys(r, 0, cap), count=True) if cap > 0 else []
        h = min(len(nodes), r.num_computed // self.block_size)  # never more than the scheduler saw
        nodes = nodes[:h]
        before = r.num_computed
        r.num_computed = h * self.block_size
        if r.rid in self.restoring:
            nodes = self._restore(r, nodes)
            h = len(nodes)
        if nodes:
            fresh = sum(1 for n in nodes if n.ref == 0)
            self.tree.acquire(nodes)
            self.held[r.rid] = nodes
            r.kv_blocks = h
            if self.private + self.tree.size > self.total_blocks:  # restored blocks need room
                self._alloc(0)
            self.pinned += fresh
            self.used += fresh
            if self.used > self.total_blocks:
                raise RuntimeError(f"prefix KV cache over capacity: {self.used} of {self.total_blocks} blocks")
            if self.used > self.peak_used:
                self.peak_used = self.used
            self.hit_tokens += r.num_computed
        return r.num_computed - before

    def _restore(self, r: Request, nodes: list) -> list:
        """Map the blocks a prefetch from host DRAM brings back after the ``nodes`` the GPU kept
        (the replica waits for the copy before the step); unusable after a gap."""
        done, h0, hi = self.restoring.pop(r.rid)
        g = len(nodes)
        if g < h0 or hi <= g:  # evicted below the copy's start meanwhile, or nothing new
            self.sessions.unused += self.sessions.kv_bytes_per_token * self.block_size * (hi - h0)
            return nodes
        self.tree.insert(nodes[-1] if nodes else None, self._keys(r, g, hi), owner=r.rid)
        self.version += 1
        self.sessions.pending.append(done)
        r.num_computed = hi * self.block_size
        return nodes + self.tree.match(self._keys(r, 0, hi))[g:]

    def publish(self, r: Request) -> None:
        """Cache the shared-prefix blocks ``r`` has computed so far and map them (its private
        copies of blocks another request published meanwhile are dropped)."""
        if r.prefix_id < 0 or r.session_id >= 0:
            return
        nodes = self.held.get(r.rid, [])
        h = len(nodes)
        hi = min(r.num_computed, r.prefix_tokens, r.kv_blocks * self.block_size) // self.block_size
        if hi <= h:
            return
        if self.tree.insert(nodes[-1] if nodes else None, self._keys(r, h, hi), owner=r.rid):
            self.version += 1
        ext = self.tree.match(self._keys(r, 0, hi))[h:]
        mapped = sum(1 for n in ext if n.ref > 0)
        self.tree.acquire(ext)
        self.held[r.rid] = nodes + ext
        self.private -= len(ext)
        self.pinned += len(ext) - mapped
        self.used -= mapped

    def _hit_nodes(self, r: Request) -> list:
        h = r.num_computed // self.block_size
        return self.tree.match(self._keys(r, 0, h)) if h > 0 else []

    def admit_need(self, req: Request, new_tokens: int, reserve_tokens: int = 0) -> int:
        n = self.need(req, new_tokens, reserve_tokens)
        if req.kv_blocks or req.rid in self.held:
            return n
        return max(0, n - sum(1 for node in self._hit_nodes(req) if node.ref > 0))

    def freed_by(self, req: Request, mapped: bool = True) -> int:
        nodes = self.held.get(req.rid, ())
        own = req.kv_blocks - len(nodes)
        return own + sum(1 for n in nodes if n.ref == 1) if mapped else own

    def overlap(self, victims, admitted) -> int:
        holds: dict[int, int] = {}
        nodes = {}
        for v in victims:
            for n in self.held.get(v.rid, ()):
                holds[id(n)] = holds.get(id(n), 0) + 1
                nodes[id(n)] = n
        joint = sum(1 for i, n in nodes.items() if n.ref > 1 and holds[i] == n.ref)  # freed together
        extra = set()
        for r in admitted:
            for n in self._hit_nodes(r):
                if n.ref and holds.get(id(n), 0) == n.ref:
                    extra.add(id(n))
        return len(extra) - joint

    def view(self) -> KvView:
        return PrefixKvView(self.block_size, self.total_blocks, self.total_blocks - self.used, self)

    # -- physical blocks ---------------------------------------------------------------------
    def _alloc(self, n: int) -> None:
        self.private += n
        over = self.private + self.tree.size - self.total_blocks
        if over > 0:
            gone = len(self.tree.evict(over))
            self.evicted += gone
            if gone < over:
                raise RuntimeError(f"prefix KV cache over capacity by {over - gone} blocks")
        phys = self.private + self.tree.size
        if phys > self.peak_physical:
            self.peak_physical = phys

    def grow(self, req: Request, new_tokens: int, reserve_tokens: int = 0) -> None:
        before = req.kv_blocks
        super().grow(req, new_tokens, reserve_tokens)
        if req.kv_blocks > before:
            self._alloc(req.kv_blocks - before)

    def add_used(self, blocks: int) -> None:
        super().add_used(blocks)
        if blocks:
            self._alloc(blocks)

    def release(self, req: Request) -> int:
        nodes = self.held.pop(req.rid, [])
        h = len(nodes)
        own = req.kv_blocks - h
        ins = min(self._insert_cap(req), req.kv_blocks)
        if ins > h:
            new = self.tree.insert(nodes[-1] if nodes else None, self._keys(req, h, ins), owner=req.rid)
            if new:
                self.version += 1
        if self.sessions is not None and req.session_id >= 0 and req.num_generated >= req.max_new_tokens:
            self.sessions.save(req.session_id, ins, ins * self.block_size * self.sessions.kv_bytes_per_token)
        self.private -= own  # kept as cached blocks (inserted above) or returned to the pool
        unpinned = sum(1 for n in nodes if n.ref == 1)
        if nodes:
            self.tree.release(nodes)
        self.pinned -= unpinned
        self.used -= own + unpinned
        self.seen.pop(req.rid, None)
        return self._detach(req)

    @property
    def physical(self) -> int:
        return self.private + self.tree.size

    def stats(self) -> dict:
        t = self.tree
        return {"policy": "prefix", "lookups": t.lookups, "hit_blocks": t.hits, "queried_blocks": t.queried,
                "hit_rate": t.hit_rate, "hit_tokens": self.hit_tokens, "evicted_blocks": self.evicted,
                "cached_blocks_end": t.size, "peak_physical_blocks": self.peak_physical}


@dataclass(frozen=True, slots=True)
class PrefixKvView(KvView):
    """The scheduler's view of a prefix cache: admission and preemption count shared blocks once."""

    cache: PrefixKvCache | None = None

    def blocks_to_admit(self, req, tokens: int, reserve_tokens: int = 0) -> int:
        return self.cache.admit_need(req, tokens, reserve_tokens)

    def blocks_freed_by(self, req, mapped: bool = True) -> int:
        return self.cache.freed_by(req, mapped)


@dataclass(frozen=True, slots=True)
class CappedKvView(KvView):
    """The scheduler's view of a capped cache: growth is counted in resident tokens."""

    resident: Callable[[int], int] = int

    def blocks_to_grow(self, req, new_tokens: int, reserve_tokens: int = 0) -> int:
        res = self.resident
        target = max(self.blocks_for(res(req.num_computed + new_tokens)),
                     self.blocks_for(res(max(reserve_tokens, req.kv_reserve_tokens))))
        return max(0, target - req.kv_blocks)


class CappedKvCache(PagedKvCache):
    """Paged blocks for the resident tokens only: ``resident(context) <= context`` (policies
    ``streaming`` and ``h2o``; non-decreasing, growing by at most one per token). A request holds
    ``blocks_for(resident(num_computed))`` blocks, never more than the cap, and decode attention
    reads ``resident(context)`` tokens. Evicted tokens are counted when a request leaves.

    The steady-decode fast path stays exact: ``segment`` returns the summed resident context of
    each iteration (no longer linear once a request reaches its cap) and ends the stretch where the
    scheduler's own test (a request whose cached tokens fill its blocks asks for one more) would
    first exceed the free blocks, as the per-iteration loop would.
    """

    capped = True

    def __init__(self, total_blocks: int, block_size: int, policy) -> None:
        super().__init__(total_blocks, block_size)
        self.policy = policy
        self.resident = policy.resident
        self.evicted_tokens = 0
        self.capped_requests = 0
        self.peak_request_blocks = 0

    def need(self, req: Request, new_tokens: int, reserve_tokens: int = 0) -> int:
        res = self.resident
        target = max(self.blocks_for(res(req.num_computed + new_tokens)),
                     self.blocks_for(res(max(reserve_tokens, req.kv_reserve_tokens))))
        return max(0, target - req.kv_blocks)

    def grow(self, req: Request, new_tokens: int, reserve_tokens: int = 0) -> None:
        super().grow(req, new_tokens, reserve_tokens)
        if req.kv_blocks > self.peak_request_blocks:
            self.peak_request_blocks = req.kv_blocks

    def decode_kv(self, rows, ahead: int) -> int:
        """Summed resident context of ``rows`` after ``ahead`` more tokens each."""
        res = self.resident
        return sum(res(r.num_computed + ahead) for r in rows)

    def settle(self, req: Request, context: int) -> int:
        """Blocks ``req`` holds once it has ``context`` tokens computed (bulk commit of a segment)."""
        blocks = max(req.kv_blocks, self.blocks_for(self.resident(context)))
        if blocks > self.peak_request_blocks:
            self.peak_request_blocks = blocks
        return blocks

    def segment(self, running, k_max: int, min_free: int = 0) -> tuple[int, np.ndarray]:
        """(decode iterations the stretch can run, summed resident context of each of them);
        ``min_free``: blocks that must stay free after each iteration but the first."""
        n = len(running)
        c = np.fromiter((r.num_computed for r in running), np.int64, n)
        b0 = np.fromiter((r.kv_blocks for r in running), np.int64, n)
        k = min(k_max, min(r.max_new_tokens - r.num_generated for r in running))
        ctx = c[:, None] + np.arange(k + 1, dtype=np.int64)  # computed tokens before iteration j
        res = self.policy.resident_array(ctx)
        bs = self.block_size
        blocks = np.maximum(b0[:, None], -(-res // bs))  # blocks held before iteration j
        # rows whose next token needs a block beyond those held (the schedulers ask blocks_to_grow)
        asks = (-(-self.policy.resident_array(ctx + 1) // bs) > blocks).sum(axis=0)
        free = self.free - (blocks - b0[:, None]).sum(axis=0)
        bad = np.flatnonzero(asks[1:k] + min_free > free[1:k])
        if bad.size:
            k = int(bad[0]) + 1
        return k, res[:, 1:k + 1].sum(axis=0)

    def release(self, req: Request) -> int:
        dropped = req.num_computed - self.resident(req.num_computed)
        if dropped > 0:
            self.evicted_tokens += dropped
            self.capped_requests += 1
        return super().release(req)

    def view(self) -> KvView:
        return CappedKvView(self.block_size, self.total_blocks, self.total_blocks - self.used, self.resident)

    def stats(self) -> dict:
        return {**self.policy.report(), "evicted_tokens": self.evicted_tokens,
                "capped_requests": self.capped_requests, "peak_request_blocks": self.peak_request_blocks}
