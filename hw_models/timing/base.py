"""The one interface every timing backend implements, and its memoisation.

A backend turns an :class:`~workloads.llm.Op`-like object (duck-typed: ``kind``, shape fields,
``count``) into seconds. ``decode_attention_s`` evaluates the one op whose cost changes from one
decode iteration to the next (attention over a growing context) for many context sums at once,
so the serving loop can time a stretch of identical decode iterations in one call.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# backends that model an NVIDIA GPU's SMs; a device of another kind is timed by its own backend
GPU_BACKENDS = ("tile", "detailed")


class TimingBackend:
    """Base class: subclasses implement ``_op_s`` and may override ``decode_attention_s``.

    Device dispatch: a device config of another kind than ``gpu`` names its backend in
    ``timing_kind`` (``cpu``, ``npu``, ``accelerator``); asking a GPU backend (tile, detailed) to
    time such a device builds that backend, with its default config, instead. Other backends
    (roofline, constant, profiled) time any device that has the fields they read."""

    name = "base"

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
        self._memo: dict[Any, float] = {}

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
