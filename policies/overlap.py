"""Overlap policies: how one iteration's kernels are split and run concurrently on SM partitions.

A policy turns an iteration's op list (in execution order) into a plan — nano-batches whose ops
are tagged with the stream (SM partition) they run on, and each stream's SM share — and asks the
mechanism (``plan_s``, injected: ``hw_models.overlap.plan_s``) for its time. ``overlapped_s(ops,
backend)`` is what the step timer calls: the split iteration's seconds, or None when the
iteration runs unsplit (the step timer then keeps its own sum of the ops); ``step_s`` is the
iteration's seconds either way (the faster of the two).

Models:
    none — every kernel back to back: the sum of the ops' times (the step timer's default).
    nanoflow — NanoFlow's intra-device parallelism: the iteration's tokens split into ``n``
        nano-batches (every op's rows, sequences, bytes divided as evenly as whole units allow;
        each nano GEMM reads the whole weight again), compute-bound ops (GEMMs, prefill attention)
        on one SM partition, memory-bound ops (decode attention, norms, activations) on a second and
        network ops (all-reduce) on a third, so that different nano-batches' kernels overlap. The
        split (``n`` and the shares) is chosen by timing every candidate in the config and keeping
        the fastest, the unsplit iteration included (NanoFlow's offline auto-search picks the
        nano-batch sizes and SM shares per batch size); the choice is memoised per op-list shape
        and token count rounded up to a power of two (NanoFlow searches offline at a few batch
        sizes), and each iteration takes the faster of that plan and no overlap.
    tokenweave — TokenWeave: the tokens split in two halves; each half's all-reduce with the
        residual add and RMSNorm after it (TokenWeave fuses them into one kernel) runs on a small
        SM share while the other half computes on the rest; the communication share is chosen
        from ``comm_sms`` as above.
Ignores: the host launches of the extra kernels (the step timer's launch floor counts the unsplit
    kernels), NanoFlow's asynchronous scheduling and KV offload, nano-batch sizes that differ per
    operation (one split for the whole iteration), TokenWeave's wave-aware split point (halves).
Sources: Zhu et al., "NanoFlow: Towards Optimal Large Language Model Serving Throughput"
    (OSDI 2025); Gond et al., "TokenWeave: Efficient Compute-Communication Overlap for Distributed
    LLM Inference" (2025).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

COMPUTE, MEMORY, NETWORK = 0, 1, 2
COMPUTE_KINDS = ("gemm", "grouped_gemm", "attn_prefill")
COMM_KINDS = ("allreduce",)


def _pieces(x: int, n: int) -> list[int]:
    q, r = divmod(int(x), n)
    return [q + (1 if i < r else 0) for i in range(n)]


def split_op(op: Any, n: int) -> list[Any]:
    """``op`` cut into ``n`` nano-batch ops (by rows, sequences or bytes); empty pieces are None."""
    if n == 1:
        return [op]
    kind = op.kind
    rep = dataclasses.replace
    if kind == "gemm":
        return [rep(op, m=m) if m else None for m in _pieces(op.m, n)]
    if kind == "grouped_gemm":
        cols = list(zip(*[_pieces(g, n) for g in op.groups])) if op.groups else [()] * n
        out = []
        for c in cols:
            groups = tuple(g for g in c if g)
            out.append(rep(op, m=sum(groups), groups=groups) if groups else None)
        return out
    if kind == "attn_decode":
        out = []
        for s in _pieces(op.seqs, n):
            out.append(rep(op, seqs=s, q_tokens=s, kv_tokens=int(round(op.kv_tokens * s / op.seqs)))
                       if s else None)
        return out
    if kind == "attn_prefill":
        out = []
        for q in _pieces(op.q_tokens, n):
            f = q / op.q_tokens
            out.append(rep(op, q_tokens=q, seqs=max(1, int(round(op.seqs * f))), pairs=int(round(op.pairs * f)),
                           kv_tokens=max(q, int(round(op.kv_tokens * f)))) if q else None)
        return out
    if kind in ("elementwise", "allreduce"):
        rows = _pieces(op.m, n) if op.m else [0] * n
        return [rep(op, bytes=b, m=r) if b else None for b, r in zip(_pieces(op.bytes, n), rows)]
    return [op] + [None] * (n - 1)


def split_ops(ops: Sequence[Any], n: int) -> list[list[Any]]:
    """The nano-batches' op lists (each in the iteration's order)."""
    batches: list[list[Any]] = [[] for _ in range(n)]
    for op in ops:
        for k, piece in enumerate(split_op(op, n)):
            if piece is not None:
                batches[k].append(piece)
    return batches


def _tokens(ops: Sequence[Any]) -> int:
    return next((op.m for op in ops if op.kind == "gemm"), 0)


class NoOverlap:
    """Every kernel back to back."""

    kind = "none"

    def step_s(self, ops: Sequence[Any], backend: Any) -> float:
        return backend.ops_s(ops)

    def splits(self, ops: Sequence[Any], backend: Any) -> bool:
        return False

    def overlapped_s(self, ops: Sequence[Any], backend: Any) -> float | None:
        return None


class _SplitPolicy:
    """Shared search: time each candidate plan, keep the fastest (memoised per op-list shape)."""

    kind = ""

    def __init__(self, config: Any, plan_s: Callable[..., float]) -> None:
        self.config = config
        self.plan_s = plan_s
        self._choice: dict[tuple, tuple[int, tuple[float, ...]] | None] = {}
        self._pieces: dict[tuple[Any, int], list[tuple[int, Any, Any] | None]] = {}  # per-token ops, split

    def _split(self, op: Any, n: int) -> list[tuple[int, Any, Any] | None]:
        key = (op, n)
        hit = self._pieces.get(key)
        if hit is None:
            s = self.stream(op)
            hit = [(s, p, op) if p is not None else None for p in split_op(op, n)]
            if op.kind not in ("attn_decode", "attn_prefill"):  # attention changes every iteration
                self._pieces[key] = hit
        return hit

    def stream(self, op: Any) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def candidates(self, backend: Any, used: set[int]) -> list[tuple[int, tuple[float, ...]]]:
        raise NotImplementedError  # pragma: no cover

    def plan_time(self, ops: Sequence[Any], backend: Any, n: int, shares: Sequence[float]) -> float:
        batches: list[list[tuple[int, Any, Any]]] = [[] for _ in range(n)]
        for op in ops:
            for k, piece in enumerate(self._split(op, n)):
                if piece is not None:
                    batches[k].append(piece)
        return self.plan_s(backend, batches, shares)

    def choose(self, ops: Sequence[Any], backend: Any) -> tuple[int, tuple[float, ...]] | None:
        """The fastest candidate (n, shares) for ``ops``, or None when no split beats the sum."""
        key = (tuple((op.kind, op.name) for op in ops), 1 << max(0, _tokens(ops) - 1).bit_length())
        if key in self._choice:
            return self._choice[key]
        best, best_t = None, backend.ops_s(ops)
        used = {self.stream(op) for op in ops}
        for n, shares in self.candidates(backend, used):
            t = self.plan_time(ops, backend, n, shares)
            if t < best_t * (1 - 1e-9):  # a real gain, not float rounding of an equal time
                best, best_t = (n, shares), t
        self._choice[key] = best
        return best

    def splits(self, ops: Sequence[Any], backend: Any) -> bool:
        """Whether the iteration of ``ops`` runs split (the memoised choice for its shape)."""
        return self.choose(ops, backend) is not None

    def step_s(self, ops: Sequence[Any], backend: Any) -> float:
        seq = backend.ops_s(ops)
        over = self.overlapped_s(ops, backend)
        return seq if over is None else min(seq, over)

    def overlapped_s(self, ops: Sequence[Any], backend: Any) -> float | None:
        """Seconds of the chosen split of ``ops``; None when the choice is not to split."""
        choice = self.choose(ops, backend)
        return None if choice is None else self.plan_time(ops, backend, *choice)


def _give_unused(shares: list[float], used: set[int]) -> tuple[float, ...]:
    """The shares of streams with no ops go to the first stream that has some."""
    first = min(used) if used else COMPUTE
    for s in range(len(shares)):
        if s not in used and s != first:
            shares[first] += shares[s]
            shares[s] = 0.0
    return tuple(shares)


class NanoFlow(_SplitPolicy):
    kind = "nanoflow"

    def stream(self, op: Any) -> int:
        if op.kind in COMPUTE_KINDS:
            return COMPUTE
        if op.kind in COMM_KINDS:
            return NETWORK
        return MEMORY

    def candidates(self, backend: Any, used: set[int]) -> list[tuple[int, tuple[float, ...]]]:
        c = self.config
        sms = backend.device.sm_count
        out = []
        for n in c.nano_batches:
            for mem in c.memory_shares:
                for net in c.network_sms:
                    net_share = min(net, sms) / sms if NETWORK in used else 0.0
                    mem_share = mem if MEMORY in used else 0.0
                    if mem_share + net_share >= 1.0:
                        continue
                    shares = _give_unused([1.0 - mem_share - net_share, mem_share, net_share], used)
                    if (n, shares) not in out:
                        out.append((n, shares))
        return out


class TokenWeave(_SplitPolicy):
    kind = "tokenweave"

    def stream(self, op: Any) -> int:
        if op.kind in COMM_KINDS:
            return 1
        if op.kind == "elementwise" and (op.name.endswith("norm") or op.name.startswith("residual")) \
                and op.name not in ("embed", "final_norm"):
            return 1  # the residual add + RMSNorm after each all-reduce, fused with it
        return COMPUTE

    def candidates(self, backend: Any, used: set[int]) -> list[tuple[int, tuple[float, ...]]]:
        if 1 not in used:
            return []
        sms = backend.device.sm_count
        out = []
        for c in self.config.comm_sms:
            share = min(c, sms - 1) / sms
            out.append((2, (1.0 - share, share)))
        return out

    def choose(self, ops: Sequence[Any], backend: Any) -> tuple[int, tuple[float, ...]] | None:
        if not any(op.kind in COMM_KINDS for op in ops):  # nothing to hide (one GPU)
            return None
        return super().choose(ops, backend)


POLICIES = {"none": NoOverlap, "nanoflow": NanoFlow, "tokenweave": TokenWeave}


def make_overlap(config: Any, plan_s: Callable[..., float]) -> Any:
    """The overlap policy of ``config`` (``engine.overlap``; None = none) using mechanism ``plan_s``."""
    kind = getattr(config, "kind", "none") if config is not None else "none"
    if kind == "none":
        return NoOverlap()
    return POLICIES[kind](config, plan_s)
