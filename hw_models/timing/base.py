"""The one interface every timing backend implements, and its memoisation.

A backend turns an :class:`~workloads.llm.Op`-like object (duck-typed: ``kind``, shape fields,
``count``) into seconds. ``decode_attention_s`` evaluates the one op whose cost changes from one
decode iteration to the next (attention over a growing context) for many context sums at once,
so the serving loop can time a stretch of identical decode iterations in one call.

The shape memo is shared by every backend of the same class built, in one process, on equal
(config, device, link): a backend's ``_op_s`` is a pure function of those three and the op, so a
second run of the same deployment (a sweep worker's next point, a capacity search's next rate)
finds its ops already timed and gets the same seconds (BENCHMARKS.md, Sweeps, has the saving). A
backend whose timing reads anything else (a file: the profiled backend) sets ``share_memo = False``;
so does any backend whose config, device or link cannot be hashed or written as JSON (it keeps a
memo of its own). The shared memos are bounded when a backend is built: at most ``SHARED_MEMOS``
deployments and ``SHARED_MEMO_ENTRIES`` shapes in all (about 370 bytes a shape), the least recently
built dropped first (a memo only saves work, so dropping it changes no result).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# backends that model an NVIDIA GPU's SMs; a device of another kind is timed by its own backend
GPU_BACKENDS = ("tile", "detailed")

SHARED_MEMOS = 16  # deployments whose shape memo a process keeps (least recently built dropped first)
SHARED_MEMO_ENTRIES = 250_000  # shapes kept in all, about 90 MB (an Op key ~240 B + its dict slot and float)
_shared: dict[Any, dict[Any, float]] = {}


def _fingerprint(x: Any) -> Any:
    """``x`` itself when it hashes; a pydantic config with a dict or list field as its class and JSON."""
    try:
        hash(x)
        return x
    except TypeError:
        dump = getattr(x, "model_dump_json", None)
        if dump is None:
            raise
        return (type(x), dump())


def link_memo_key(link: Any) -> Any:
    """What of ``link`` a backend's timing can read, hashable; raises TypeError when unknown."""
    if link is None:
        return None
    key = getattr(link, "memo_key", None)
    if key is not None:
        return key()
    from hw_models.link import Link

    if type(link) is Link:
        return ("Link", _fingerprint(link.config))
    raise TypeError(f"no memo key for {type(link).__name__}")


def shared_memo(cls: type, config: Any, device: Any, link: Any) -> dict[Any, float]:
    """The shape memo of backends of ``cls`` on (config, device, link): shared when all three hash,
    a fresh one otherwise (see the module docstring)."""
    if not getattr(cls, "share_memo", True):
        return {}
    try:
        key = (cls, _fingerprint(config), _fingerprint(device), link_memo_key(link))
        hash(key)
    except TypeError:
        return {}
    memo = _shared.pop(key, None)
    if memo is None or len(memo) > SHARED_MEMO_ENTRIES:
        memo = {}
    _shared[key] = memo  # most recently built last
    total = sum(map(len, _shared.values()))
    while len(_shared) > SHARED_MEMOS or (total > SHARED_MEMO_ENTRIES and len(_shared) > 1):
        total -= len(_shared.pop(next(iter(_shared))))
    return memo


def clear_shared_memos() -> None:
    """Forget every shared shape memo (a test's fresh start; results never depend on it)."""
    _shared.clear()


class TimingBackend:
    """Base class: subclasses implement ``_op_s`` and may override ``decode_attention_s``.

    Device dispatch: a device config of another kind than ``gpu`` names its backend in
    ``timing_kind`` (``cpu``, ``npu``, ``accelerator``); asking a GPU backend (tile, detailed) to
    time such a device builds that backend, with its default config, instead. Other backends
    (roofline, constant, profiled) time any device that has the fields they read."""

    name = "base"
    share_memo = True  # False: this backend's timing reads more than (config, device, link)

    def __new__(cls, config: Any = None, device: Any = None, link: Any = None) -> TimingBackend:
        own = getattr(device, "timing_kind", None)
        if own and cls.name in GPU_BACKENDS:
            from simulator.core.registry import TIMING

            entry = TIMING.get(own, where="hardware.timing")
            return entry.cls(entry.config(), device, link)
        return super().__new__(cls)

    def __init__(self, config: Any, device: Any, link: Any = None) -> None:
        self.config = config
        self.device = device  # a GpuConfig (or any device config the backend understands)
        self.link = link  # hw_models.link.Link or None
        self._memo: dict[Any, float] = shared_memo(type(self), config, device, link)

    def _op_s(self, op: Any) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def op_s(self, op: Any) -> float:
        """Seconds for ``op`` (all ``op.count`` repetitions), memoised by shape."""
        t = self._memo.get(op)
        if t is None:
            t = self._memo[op] = self._op_s(op)
        return t

    def ops_s(self, ops: list[Any]) -> float:
        return sum(self.op_s(op) for op in ops)

    def decode_attention_s(self, op: Any, kv_tokens: np.ndarray) -> np.ndarray:
        """Seconds of decode-attention ``op`` with its ``kv_tokens`` replaced by each value."""
        import dataclasses

        return np.array([self.op_s(dataclasses.replace(op, kv_tokens=int(k))) for k in kv_tokens])
