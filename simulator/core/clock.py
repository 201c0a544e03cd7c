"""Simulated time is an integer number of picoseconds.

Conversions happen in bulk (``cycles_to_ps(n, freq_hz)``) and round once, never by summing
rounded periods.
"""

from __future__ import annotations

import math

PS_PER_S = 10**12
PS_PER_MS = 10**9
PS_PER_US = 10**6
PS_PER_NS = 10**3


def s_to_ps(seconds: float) -> int:
    """Seconds (float) to integer picoseconds, rounded to nearest."""
    if seconds != seconds or math.isinf(seconds):
        raise ValueError(f"time must be finite, got {seconds}")
    return int(round(seconds * PS_PER_S))


def ps_to_s(ps: int | float) -> float:
    return ps / PS_PER_S


def ps_to_ms(ps: int | float) -> float:
    return ps / PS_PER_MS


def cycles_to_ps(cycles: int | float, freq_hz: float) -> int:
    """Duration of ``cycles`` clock cycles at ``freq_hz``, rounded once."""
    if freq_hz <= 0:
        raise ValueError(f"frequency must be > 0, got {freq_hz}")
    return int(round(cycles * PS_PER_S / freq_hz))
