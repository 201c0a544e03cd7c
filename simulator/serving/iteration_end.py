"""The end of a replica's iteration: a timeout that fires after every other event at its instant.

Rule: at equal timestamps, everything else (arrivals, a request's way into the engine, KV
transfers completing, wake-ups) happens before an iteration ends, so the scheduler planning the
next iteration at time t sees every request that arrived at or before t. SimPy would otherwise
order events of one instant by when they were scheduled, which differs between timing a stretch
of decode iterations as one wait (the steady-decode fast path) and one iteration at a time, and
would make the two paths admit a request that arrives exactly at an iteration boundary one
iteration apart.
"""

from __future__ import annotations

import simpy
from simpy.events import NORMAL, Timeout

LATE = NORMAL + 1  # heap key (time, priority, id): after every NORMAL and URGENT event of the instant


class IterationEnd(Timeout):
    def __init__(self, env: simpy.Environment, delay: int) -> None:
        if delay < 0:
            raise ValueError(f"negative delay {delay}")
        # Timeout.__init__ inlined with the priority changed (the same fields SimPy sets)
        self.env = env
        self.callbacks = []
        self._value = None
        self._delay = delay
        self._ok = True
        env.schedule(self, LATE, delay)
