"""``prefix``: a radix tree of KV blocks shared between requests, with LRU eviction of unused leaves.

Models: every full KV block is identified by its path of block keys from the root (what vLLM and
    SGLang identify by hashing the block's tokens and its prefix). hwsim does not carry token ids,
    so a key is ``(group, index)``: requests of one multi-turn session (``session_id``) or one shared
    prompt prefix (``prefix_id``, first ``prefix_tokens`` tokens) produce the same keys. A request
    whose first blocks are cached maps them (reference count + 1) instead of recomputing them;
    a shared prefix's blocks are cached as soon as a request has computed them (so requests
    running together share them); when a request leaves, its full blocks inside the shareable
    range stay cached with no reference. A cached block counts once against the KV pool however
    many requests map it; one with no reference counts as free (evictable).
    Eviction takes the least recently used leaf with no reference (a block in use, or a block
    with a cached child, is never a candidate), so what stays cached is always a path prefix.
    Idle sessions (``offload_idle_sessions``): when a turn ends, its session's cached blocks are
    copied to host DRAM over PCIe in the background (write-through: the GPU copy stays cached until
    evicted); when the session's next turn arrives, the blocks no longer on the GPU are prefetched
    back from host DRAM, and the turn's prefill starts after that copy instead of recomputing
    them (CachedAttention / AttentionStore-style session KV reuse). Host space is bounded; the
    least recently saved session is dropped to make room. The mechanism is
    ``simulator.serving.kv_offload.SessionOffload``.
Ignores: token-level (sub-block) matches; sharing between sessions of a common system prompt
    unless the session id is absent and the prefix id is given; cache-aware routing.
Sources: Zheng et al., "SGLang: Efficient Execution of Structured Language Model Programs"
    (RadixAttention, 2024); vLLM automatic prefix caching (block hashing, LRU of free blocks);
    Gao et al., "Cost-Efficient Large Language Model Serving for Multi-turn Conversations with
    CachedAttention" (USENIX ATC 2024) for saving idle sessions' KV to host memory.
"""

from __future__ import annotations

import heapq
from typing import Literal

from pydantic import Field

from simulator.config.quantities import Bytes, StrictConfig
from simulator.core.registry import register_cache_policy


class PrefixConfig(StrictConfig):
    eviction: Literal["lru"] = Field(default="lru", description="victim among unreferenced leaf blocks")
    offload_idle_sessions: bool = Field(default=False, description="save a session's KV to host DRAM between "
                                        "turns and prefetch it back when its next turn arrives")
    host: str = Field(default="DGX-A100-host", description="host preset (kind host): PCIe link and DRAM")
    host_capacity: Bytes = Field(default="16GiB", description="host DRAM for idle sessions' KV, per GPU")


class Node:
    __slots__ = ("key", "parent", "children", "ref", "last", "owner")

    def __init__(self, key, parent) -> None:
        self.key = key
        self.parent = parent
        self.children: dict = {}
        self.ref = 0
        self.last = 0
        self.owner = -1  # request that computed the block (for checks)


@register_cache_policy("prefix", config=PrefixConfig)
class RadixPrefixCache:
    """The policy: which cached blocks a request may reuse and which block to evict.

    ``match(keys)`` returns the nodes of the longest cached path; ``acquire``/``release`` move
    reference counts; ``insert`` caches new blocks under a path; ``evict(n)`` removes up to ``n``
    unreferenced leaves, least recently used first. The mechanism holds the block accounting.
    """

    mechanism = "prefix"

    def __init__(self, config: PrefixConfig | None = None) -> None:
        self.config = config or PrefixConfig()
        self.root = Node(None, None)
        self.root.ref = 1  # never evicted
        self.size = 0  # cached blocks (nodes other than the root)
        self.clock = 0
        self._heap: list[tuple[int, int, Node]] = []  # (last use, tiebreak, node): candidate leaves
        self._tie = 0
        self.lookups = 0
        self.hits = 0  # blocks
        self.queried = 0  # blocks asked for

    def _tick(self) -> int:
        self.clock += 1
        return self.clock

    def _push(self, node: Node) -> None:
        if node.ref == 0 and not node.children and node is not self.root:
            self._tie += 1
            heapq.heappush(self._heap, (node.last, self._tie, node))

    def match(self, keys, count: bool = False) -> list[Node]:
        node, out = self.root, []
        for k in keys:
            node = node.children.get(k)
            if node is None:
                break
            out.append(node)
        if count:
            self.lookups += 1
            self.queried += len(keys)
            self.hits += len(out)
        return out

    def acquire(self, nodes: list[Node]) -> None:
        t = self._tick()
        for n in nodes:
            n.ref += 1
            n.last = t

    def release(self, nodes: list[Node]) -> None:
        t = self._tick()
        for n in reversed(nodes):
            if n.ref <= 0:
                raise RuntimeError("prefix cache: released a block with no reference")
            n.ref -= 1
            n.last = t
            self._push(n)

    def insert(self, parent: Node | None, keys, owner: int = -1) -> list[Node]:
        """Cache blocks ``keys`` as a path under ``parent`` (the root if None); returns the new
        nodes (keys already cached are skipped, and the path continues through them)."""
        node = parent or self.root
        t = self._tick()
        new = []
        for k in keys:
            child = node.children.get(k)
            if child is None:
                child = Node(k, node)
                child.owner = owner
                node.children[k] = child
                self.size += 1
                new.append(child)
            child.last = t
            node = child
        self._push(node)
        return new

    def evictable(self) -> int:
        return sum(1 for n in self.nodes() if n.ref == 0)

    def nodes(self):
        stack = list(self.root.children.values())
        while stack:
            n = stack.pop()
            yield n
            stack.extend(n.children.values())

    def candidates(self) -> list[Node]:
        return [n for n in self.nodes() if n.ref == 0 and not n.children]

    def evict(self, n: int) -> list[Node]:
        """Remove up to ``n`` unreferenced leaves, least recently used first (a parent left
        childless becomes a candidate in turn)."""
        out = []
        heap = self._heap
        while len(out) < n and heap:
            last, _, node = heapq.heappop(heap)
            if node.ref or node.children or node.parent is None or node.last != last:
                continue  # stale entry
            del node.parent.children[node.key]
            parent, node.parent = node.parent, None
            self.size -= 1
            out.append(node)
            self._push(parent)
        return out

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queried if self.queried else 0.0
