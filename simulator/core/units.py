"""Quantities with units, typed at the edge.

``parse_quantity("3.35TB/s", "bandwidth")`` returns bytes per second as a float; a bare number for a
dimensional field is an error that names the unit to give. ``format_quantity`` writes a value back
in a unit that parses to exactly the same number, so a resolved scenario re-loads bit for bit.
"""

from __future__ import annotations

import math
import re

from simulator.core.errors import UnitError

_DEC = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BIN = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}


def _table(base: str, prefixes: dict[str, float]) -> dict[str, float]:
    return {p + base: s for p, s in prefixes.items()}


_BYTES = {**_table("B", _DEC), **_table("B", _BIN)}
_BANDWIDTH = {k + "/s": v for k, v in _BYTES.items()}
_FREQ = {"Hz": 1.0, "kHz": 1e3, "MHz": 1e6, "GHz": 1e9}
_TIME = {"ps": 1e-12, "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
_FLOPS = {**{p + "FLOP/s": s for p, s in _DEC.items()}, **{p + "FLOPS": s for p, s in _DEC.items()},
          **{p + "OP/s": s for p, s in _DEC.items()}, **{p + "OPS": s for p, s in _DEC.items()}}
_FLOP = {**{p + "FLOP": s for p, s in _DEC.items()}, **{p + "MAC": s for p, s in _DEC.items()}}
_POWER = {"mW": 1e-3, "W": 1.0, "kW": 1e3}
_ENERGY = {"pJ": 1e-12, "nJ": 1e-9, "uJ": 1e-6, "µJ": 1e-6, "mJ": 1e-3, "J": 1.0, "kJ": 1e3, "kWh": 3.6e6}
_RATE = {"/s": 1.0, "/min": 1 / 60.0, "/h": 1 / 3600.0, "req/s": 1.0, "req/min": 1 / 60.0,
         "req/h": 1 / 3600.0}
_PRICE = {"USD/h": 1.0, "$/h": 1.0}

DIMENSIONS: dict[str, tuple[dict[str, float], str]] = {
    # name: (unit table, example shown in error messages)
    "bytes": (_BYTES, "80GiB"),
    "bandwidth": (_BANDWIDTH, "3.35TB/s"),
    "frequency": (_FREQ, "1.98GHz"),
    "time": (_TIME, "15ns"),
    "flops": (_FLOPS, "989TFLOP/s"),
    "flop": (_FLOP, "2GFLOP"),
    "power": (_POWER, "700W"),
    "energy": (_ENERGY, "5pJ"),
    "rate": (_RATE, "4/s"),
    "price": (_PRICE, "2.5USD/h"),
}

# Unit written back by format_quantity, largest first.
_PREFERRED = {
    "bytes": ["TiB", "GiB", "MiB", "KiB", "TB", "GB", "MB", "kB", "B"],
    "bandwidth": ["TB/s", "GB/s", "MB/s", "kB/s", "B/s", "TiB/s", "GiB/s", "MiB/s"],
    "frequency": ["GHz", "MHz", "kHz", "Hz"],
    "time": ["s", "ms", "us", "ns", "ps"],
    "flops": ["PFLOP/s", "TFLOP/s", "GFLOP/s", "MFLOP/s", "kFLOP/s", "FLOP/s"],
    "flop": ["PFLOP", "TFLOP", "GFLOP", "MFLOP", "kFLOP", "FLOP"],
    "power": ["kW", "W", "mW"],
    "energy": ["J", "mJ", "uJ", "nJ", "pJ"],
    "rate": ["/s"],
    "price": ["USD/h"],
}

_NUM = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\s\d].*?)?\s*$")


def parse_quantity(value: object, dimension: str) -> float:
    """Parse ``value`` (a string with a unit) into SI base units of ``dimension``."""
    table, example = DIMENSIONS[dimension]
    if isinstance(value, bool):
        raise UnitError(f"expected a {dimension} quantity such as {example!r}, got {value!r}")
    if isinstance(value, (int, float)):
        raise UnitError(f"bare number {value!r} is ambiguous: give a {dimension} unit, e.g. {example!r}")
    if not isinstance(value, str):
        raise UnitError(f"expected a {dimension} quantity such as {example!r}, got {type(value).__name__}")
    m = _NUM.match(value)
    if not m:
        raise UnitError(f"cannot read {value!r} as a {dimension} quantity such as {example!r}")
    number, unit = m.group(1), (m.group(2) or "").strip()
    if not unit:
        raise UnitError(f"{value!r} has no unit: give a {dimension} unit, e.g. {example!r}")
    scale = table.get(unit)
    if scale is None:
        known = ", ".join(sorted(table, key=lambda u: (table[u], u)))
        raise UnitError(f"unknown {dimension} unit {unit!r} in {value!r}; known: {known}")
    out = float(number) * scale
    if not math.isfinite(out):
        raise UnitError(f"{value!r} is not a finite {dimension} quantity")
    return out


def format_quantity(value: float, dimension: str) -> str:
    """Write ``value`` (SI) with a unit such that ``parse_quantity`` returns exactly ``value``."""
    table, _ = DIMENSIONS[dimension]
    for unit in _PREFERRED[dimension]:
        scale = table[unit]
        if abs(value) < scale and value != 0 and unit != _PREFERRED[dimension][-1]:
            continue
        scaled = value / scale
        for text in (f"{scaled:.12g}", repr(float(scaled))):
            if "e" in text or "inf" in text:
                continue
            if text.endswith(".0"):
                text = text[:-2]
            if float(text) * scale == value:
                return f"{text}{unit}"
    base = [u for u, s in table.items() if s == 1.0][0]
    return f"{float(value)!r}{base}"
