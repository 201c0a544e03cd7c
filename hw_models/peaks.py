"""A device's dense peak for one dtype, or one clear error naming the device and what it does have
(shared by the GPU, CPU, NPU and accelerator configs)."""

from __future__ import annotations

from collections.abc import Mapping


def peak_or_refuse(device: str, peaks: Mapping[str, float], dtype: str, path: str = "compute path") -> float:
    """``peaks[dtype]`` when the device has it (non-zero); else a ``CapacityError`` at ``hardware.device``:
    "<device> has no <dtype> <path> (it supports ...)"."""
    peak = peaks.get(dtype)
    if not peak:
        from simulator.core.errors import CapacityError

        have = ", ".join(k for k, v in peaks.items() if v)
        raise CapacityError(f"{device} has no {dtype} {path} (it supports {have})", where="hardware.device")
    return peak
