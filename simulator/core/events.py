"""Typed events and the append-only, columnar recorder.

Models emit events; they never aggregate, print or write files. The recorder stores each table
as columns of machine integers (``array('q')``) so a 100,000-request run records in
milliseconds; :meth:`Recorder.events` yields typed :class:`Event` records for the Python API.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class EventKind(IntEnum):
    ARRIVED = 0  # value: prompt tokens
    ROUTED = 1  # value: replica chosen
    SCHEDULED = 2  # first admission to a batch; value: queueing delay in ps
    FIRST_TOKEN = 3  # value: TTFT in ps
    PREEMPTED = 4  # value: tokens of KV dropped
    FINISHED = 5  # value: output tokens generated
    REJECTED = 6  # value: prompt tokens (request can never be served, e.g. longer than the KV cache)
    KV_TRANSFER_STARTED = 7  # disaggregated serving; replica: the decode replica; value: bytes
    KV_TRANSFERRED = 8  # value: transfer time in ps


@dataclass(frozen=True, slots=True)
class Event:
    t_ps: int
    kind: EventKind
    replica: int
    request: int
    value: int


BATCH_COLUMNS = ("replica", "start_ps", "end_ps", "iterations", "prefill_tokens", "decode_rows",
                 "kv_blocks_used", "kv_blocks_total", "waiting", "running", "kv_tokens")


class Recorder:
    """Append-only store of request events, batch segments and per-replica iteration end times."""

    def __init__(self, replicas: int = 1) -> None:
        self.ev_t = array("q")
        self.ev_kind = array("b")
        self.ev_replica = array("i")
        self.ev_request = array("q")
        self.ev_value = array("q")
        self.batch = {c: array("q") for c in BATCH_COLUMNS}
        self.batch_flops: list[float] = []
        self.batch_energy = array("d")
        self.iter_end_ps = [array("q") for _ in range(replicas)]
        self._bind()

    def _bind(self) -> None:
        """The columns' bound append methods, looked up once (emit and segment run per event / segment)."""
        self._ev_put = (self.ev_t.append, self.ev_kind.append, self.ev_replica.append, self.ev_request.append,
                        self.ev_value.append)
        self._seg_put = tuple(self.batch[c].append for c in BATCH_COLUMNS) + (self.batch_flops.append,
                                                                             self.batch_energy.append)

    def __getstate__(self) -> dict:
        """The columns without their bound methods: ``copy.deepcopy`` keeps a bound built-in method as it
        is, so a copy would append to this recorder's columns; ``__setstate__`` binds the copy's own."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_ev_put", "_seg_put")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bind()

    # -- emit ----------------------------------------------------------------------------
    def emit(self, t_ps: int, kind: int, replica: int, request: int, value: int = 0) -> None:
        t, k, r, q, v = self._ev_put
        t(t_ps)
        k(kind)
        r(replica)
        q(request)
        v(value)

    def segment(self, replica: int, start_ps: int, end_ps: int, iterations: int, prefill_tokens: int,
                decode_rows: int, kv_used: int, kv_total: int, waiting: int, running: int,
                flops: float, kv_tokens: int = 0, energy_j: float = 0.0) -> None:
        a, b, c, d, e, f, g, h, i, j, k, fl, en = self._seg_put  # BATCH_COLUMNS' order, then FLOPs, joules
        a(replica)
        b(start_ps)
        c(end_ps)
        d(iterations)
        e(prefill_tokens)
        f(decode_rows)
        g(kv_used)
        h(kv_total)
        i(waiting)
        j(running)
        k(kv_tokens)
        fl(flops)
        en(energy_j)  # dynamic joules per device of the segment (hw_models.energy)

    # -- read ----------------------------------------------------------------------------
    def events(self) -> Iterator[Event]:
        for t, k, r, q, v in zip(self.ev_t, self.ev_kind, self.ev_replica, self.ev_request, self.ev_value):
            yield Event(t, EventKind(k), r, q, v)

    def event_columns(self) -> dict[str, np.ndarray]:
        return {
            "t_ps": np.frombuffer(self.ev_t, dtype=np.int64).copy(),
            "kind": np.frombuffer(self.ev_kind, dtype=np.int8).astype(np.int64),
            "replica": np.frombuffer(self.ev_replica, dtype=np.int32).astype(np.int64),
            "request": np.frombuffer(self.ev_request, dtype=np.int64).copy(),
            "value": np.frombuffer(self.ev_value, dtype=np.int64).copy(),
        }

    def batch_columns(self) -> dict[str, np.ndarray]:
        out = {c: np.frombuffer(v, dtype=np.int64).copy() if len(v) else np.zeros(0, np.int64)
               for c, v in self.batch.items()}
        out["flops"] = np.asarray(self.batch_flops, dtype=np.float64)
        out["energy_j"] = np.frombuffer(self.batch_energy, dtype=np.float64).copy() if len(self.batch_energy) \
            else np.zeros(0)
        return out

    def iteration_ends(self, replica: int) -> np.ndarray:
        a = self.iter_end_ps[replica]
        return np.frombuffer(a, dtype=np.int64) if len(a) else np.zeros(0, np.int64)
