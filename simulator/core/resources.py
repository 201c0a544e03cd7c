"""Contended bandwidth: a processor-sharing resource for links, HBM, PCIe lanes and SSD queues.

Models: egalitarian processor sharing — ``n`` concurrent transfers each progress at ``bw / n``
    (optionally capped per transfer), plus a fixed per-transfer latency before the bytes flow.
    Two equal transfers started together therefore each take twice as long as one alone.
Ignores: packetisation, protocol overheads beyond the fixed latency, priority classes.
Sources: processor-sharing queue (Kleinrock, Queueing Systems vol. 2, ch. 4).
"""

from __future__ import annotations

import math

import simpy

from simulator.core.clock import PS_PER_S


class SharedBandwidth:
    """A link of ``bw_bytes_per_s`` shared by all transfers in flight (times in integer ps)."""

    def __init__(self, env: simpy.Environment, bw_bytes_per_s: float, latency_ps: int = 0,
                 per_transfer_cap_bytes_per_s: float | None = None, name: str = "link") -> None:
        if bw_bytes_per_s <= 0:
            raise ValueError("bandwidth must be > 0")
        self.env = env
        self.name = name
        self.bw_per_ps = bw_bytes_per_s / PS_PER_S
        self.cap_per_ps = (per_transfer_cap_bytes_per_s / PS_PER_S) if per_transfer_cap_bytes_per_s else None
        self.latency_ps = int(latency_ps)
        self._active: dict[int, list] = {}  # id -> [remaining_bytes, done_event]
        self._next_id = 0
        self._last_ps = 0
        self._generation = 0
        self.bytes_done = 0.0
        self.busy_ps = 0

    def _rate(self) -> float:
        n = len(self._active)
        if n == 0:
            return 0.0
        rate = self.bw_per_ps / n
        return min(rate, self.cap_per_ps) if self.cap_per_ps else rate

    def _advance(self) -> None:
        now = self.env.now
        dt = now - self._last_ps
        if dt > 0 and self._active:
            moved = self._rate() * dt
            for item in self._active.values():
                item[0] -= moved
            self.busy_ps += dt
        self._last_ps = now

    def _reschedule(self) -> None:
        self._generation += 1
        if not self._active:
            return
        gen = self._generation
        rate = self._rate()
        remaining = min(item[0] for item in self._active.values())
        delay = max(0, math.ceil(remaining / rate - 1e-9)) if remaining > 0 else 0
        timer = self.env.timeout(delay)
        timer.callbacks.append(lambda _ev: self._on_timer(gen))

    def _on_timer(self, gen: int) -> None:
        if gen != self._generation:
            return
        self._advance()
        rate = self._rate()
        tol = max(rate, 1e-12)  # less than one picosecond of transfer left counts as done
        for tid in [t for t, item in self._active.items() if item[0] <= tol]:
            remaining, done = self._active.pop(tid)
            done.succeed()
        self._reschedule()

    def _start(self, size_bytes: float, done: simpy.Event) -> None:
        self._advance()
        self._active[self._next_id] = [float(size_bytes), done]
        self._next_id += 1
        self.bytes_done += size_bytes
        self._reschedule()

    def transfer(self, size_bytes: float) -> simpy.Event:
        """An event that fires when ``size_bytes`` have crossed the link."""
        if size_bytes < 0:
            raise ValueError("transfer size must be >= 0")
        done = self.env.event()
        if size_bytes == 0 and self.latency_ps == 0:
            done.succeed()
            return done
        if self.latency_ps:
            wait = self.env.timeout(self.latency_ps)
            wait.callbacks.append(lambda _ev: self._start(size_bytes, done))
        else:
            self._start(size_bytes, done)
        return done
