"""Energy and power of a device: joules per FLOP by dtype, per byte by memory tier, idle power,
and a power cap enforced by clock throttling (DVFS).

Models: the dynamic energy of an op is FLOPs x J/FLOP of its dtype + bytes x J/byte of the tier
    the bytes cross (device memory for every op's operands, the interconnect for collectives);
    the device draws ``idle_w`` at all times on top. A step's power is idle + dynamic energy /
    step time. Under a power cap below that demand the clock drops by a factor s (0 < s <= 1):
    CMOS dynamic power is C V^2 f and the voltage follows the clock (DVFS), so compute energy
    per FLOP scales by s^2; the step's compute-bound share slows by 1 / s, its memory-bound share
    does not (the step stretches as its roofline bound, see ``throttle``; memory energy per byte
    is the DRAM's and does not scale). s is the largest clock at which the step's average power
    (idle + dynamic energy / stretched time) is at most the cap.
    Per-FLOP energy by default: the board power above idle at the dense peak of each dtype,
    (TDP - idle) / peak (a device runs its tensor peak at its TDP: vendors rate the TDP for it).
    If the device does reach its peak within its TDP this is an upper bound: it puts the whole
    dynamic budget on the FLOPs while an op's bytes are charged on top, overestimating compute
    energy by up to the memory share of the TDP (an H100 at full HBM bandwidth: about 150 W of
    630 W, from the pJ/bit below); a device that cannot hold its peak clock within its TDP
    spends more per FLOP than this. An uncapped device is not held to its TDP (with the backends'
    efficiencies below 1 a step stays under it: Llama-3-8B prefill on an H100 peaks at 510 W on
    the tile backend, 650 W on the roofline); give ``power_cap_w`` to enforce a limit;
    per-byte energy: a byte of an op's operands crosses device memory, the L2 and the SRAM (the
    memory technology's pJ/bit below + Horowitz's SRAM figures); register traffic is in the
    per-FLOP figure.
Ignores: temperature and leakage changes with clock, memory clocks under a cap, per-kernel power
    transients (the cap holds on each step's average, as a power limiter's ms-scale loop does),
    the mix of compute- and memory-bound ops inside a step (the step's aggregate roofline decides
    how much of it stretches).
Sources: M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014
    (45 nm: 64-bit SRAM read 8 KB 10 pJ, 1 MB 100 pJ; DRAM 1.3-2.6 nJ per 64 bit); M. O'Connor et
    al., "Fine-Grained DRAM", MICRO 2017 (HBM2 3.9 pJ/bit, GDDR5 14 pJ/bit); NVIDIA Grace Hopper
    Superchip architecture whitepaper (2023): NVLink-C2C 1.3 pJ/bit, "5x the energy efficiency of
    PCIe Gen 5" (so PCIe ~6.5 pJ/bit); vendor TDPs in the presets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from simulator.config.quantities import StrictConfig
from simulator.core.errors import ConfigError

TIERS = ("sram", "l2", "dram", "pcie", "nvlink", "ssd")
Tier = Literal["sram", "l2", "dram", "pcie", "nvlink", "ssd"]
MemoryType = Literal["hbm2", "hbm2e", "hbm3", "hbm3e", "gddr6", "gddr6x", "ddr4", "ddr5", "lpddr5", "lpddr5x",
                     "sram"]
PJ = 1e-12
# Access energy of device memory per bit, interface included.
MEMORY_PJ_PER_BIT = {
    "hbm2": 3.9,  # source: O'Connor et al., MICRO 2017, HBM2 ~3.9 pJ/bit
    "hbm2e": 3.9,  # source: as HBM2 (same interface; O'Connor et al., MICRO 2017)
    "hbm3": 3.9,  # source: as HBM2 (assumption: vendors quote HBM3 per-bit energy close to HBM2e's)
    "hbm3e": 3.9,  # source: as HBM2 (assumption, as hbm3)
    "gddr6": 7.5,  # source: as recalled from Micron GDDR6 technical notes, ~7.5 pJ/bit (GDDR5: 14, O'Connor 2017)
    "gddr6x": 7.25,  # source: Micron GDDR6X product brief, 7.25 pJ/bit (as recalled: "15% less power per bit")
    "ddr4": 20.0,  # source: Horowitz ISSCC 2014, DRAM 1.3-2.6 nJ per 64-bit access = 20-40 pJ/bit (low end)
    "ddr5": 16.0,  # source: assumption, DDR4's figure less ~20% (lower VDD 1.1 V vs 1.2 V, on-DIMM PMIC)
    "lpddr5": 5.0,  # source: as recalled, LPDDR5 ~4-6 pJ/bit system-level (JEDEC low-power interface, 0.5 V VDDQ)
    "lpddr5x": 4.5,  # source: assumption, LPDDR5's figure less ~10% (Samsung/Micron LPDDR5X claims)
    "sram": 0.3,  # source: Horowitz ISSCC 2014, 64-bit read from 32 KB SRAM ~20 pJ at 45 nm = 0.31 pJ/bit
}
# Data movement outside device memory, per bit.
TIER_PJ_PER_BIT = {
    "sram": 0.3,  # source: Horowitz ISSCC 2014, 32 KB SRAM at 45 nm, 20 pJ per 64 bit
    "l2": 1.5,  # source: Horowitz ISSCC 2014, 1 MB SRAM at 45 nm, 100 pJ per 64 bit
    "pcie": 6.5,  # source: NVIDIA Grace Hopper whitepaper (2023): NVLink-C2C 1.3 pJ/bit, 5x better than PCIe Gen5
    "nvlink": 1.3,  # source: NVIDIA Grace Hopper whitepaper (2023), NVLink-C2C 1.3 pJ/bit (on-package: a lower bound)
    # source: derived, a PCIe4 NVMe drive reading 7 GB/s at ~17 W active (vendor datasheets): 17 W / 7e9 B/s
    # = 2.43 nJ/byte = 304 pJ/bit, + PCIe 6.5 pJ/bit
    "ssd": 310.0,
}


class EnergyConfig(StrictConfig):
    """Overrides of a device's derived energy coefficients (all optional)."""

    memory_type: MemoryType | None = Field(default=None, description="device memory technology (sets J/byte of "
                                                                      "the dram tier); default from the device")
    flop_pj: dict[str, float] = Field(default_factory=dict, description="pJ per FLOP by dtype (default: "
                                                                          "(TDP - idle) / dense peak)")
    byte_pj: dict[Tier, float] = Field(default_factory=dict, description="pJ per byte by tier: " + ", ".join(TIERS))


@dataclass(frozen=True)
class StepEnergy:
    """Joules of one step: compute (FLOPs) and memory/link (bytes), per op in op order."""

    compute_j: float
    memory_j: float
    per_op_j: tuple[float, ...] = ()

    @property
    def dynamic_j(self) -> float:
        return self.compute_j + self.memory_j


@dataclass(frozen=True)
class EnergyModel:
    """Coefficients of one device (per GPU / per chip)."""

    name: str
    flop_j: dict[str, float]
    byte_j: dict[str, float]
    idle_w: float
    tdp_w: float
    cap_w: float | None = None
    mem_bw: float = 0.0  # device memory bytes/s (0: every op slows with the clock under a cap)

    def flop_energy(self, dtype: str) -> float:
        e = self.flop_j.get(dtype)
        if e is None:
            raise ConfigError(f"{self.name} has no {dtype} compute path (it supports "
                              f"{', '.join(sorted(self.flop_j))})", where="hardware.device")
        return e

    def op_j(self, op: Any) -> tuple[float, float]:
        """(compute J, memory J) of all ``op.count`` runs of an op."""
        kind = op.kind
        if kind in ("allreduce", "alltoall"):
            return 0.0, op.bytes * op.count * self.byte_j["nvlink"]
        flops = op.flops()
        compute = flops * self.flop_energy(op.dtype) if flops else 0.0
        return compute, op.bytes_moved() * self.dram_path_j

    @property
    def dram_path_j(self) -> float:
        """J per byte read from device memory into the compute units: DRAM, then L2, then SRAM."""
        return self.byte_j["dram"] + self.byte_j["l2"] + self.byte_j["sram"]

    def ops_energy(self, ops: list[Any]) -> StepEnergy:
        parts = [self.op_j(op) for op in ops]
        return StepEnergy(sum(c for c, _ in parts), sum(m for _, m in parts), tuple(c + m for c, m in parts))

    def throttle(self, t_s: Any, compute_j: Any, memory_j: Any) -> tuple[np.ndarray, np.ndarray]:
        """(step seconds, dynamic joules) under the power cap; unchanged without a cap or below it.

        At clock factor s the step's roofline times are t_c / s (compute: E_c / (TDP - idle), the
        FLOPs over the peak) and t_m (memory: E_m / (J per byte x bandwidth), not clocked by the
        cores); the step stretches as its roofline bound does, t(s) = t x max(t_m, t_c / s) /
        max(t_m, t_c), and never runs faster than E_m / (cap - idle) (the memory's own power
        must fit). Power idle + (E_c s^2 + E_m) / t(s) rises with s, so the largest s in (0, 1]
        with power <= cap is found by bisection (50 halvings).
        """
        t = np.asarray(t_s, dtype=np.float64)
        ec = np.asarray(compute_j, dtype=np.float64)
        em = np.asarray(memory_j, dtype=np.float64)
        if self.cap_w is None:
            return t, ec + em
        budget = self.cap_w - self.idle_w  # > 0: checked when the model is built
        over = ec + em > budget * t
        if not np.any(over):
            return t, ec + em
        if t.ndim and not np.all(over):  # only the steps above the cap are solved (each on its own)
            t2, dyn = t.copy(), ec + em
            t2[over], dyn[over] = self._solve(t[over], ec[over], em[over], budget)
            return t2, dyn
        return self._solve(t, ec, em, budget)

    def throttle_step(self, t: float, compute_j: float, memory_j: float) -> tuple[float, float]:
        """:meth:`throttle` of one step in plain floats (the same operations, so the same result):
        a step below the cap costs one comparison, one above it a bisection without numpy."""
        if self.cap_w is None:
            return t, compute_j + memory_j
        budget = self.cap_w - self.idle_w
        if not compute_j + memory_j > budget * t:
            return t, compute_j + memory_j
        ec, em = compute_j, memory_j
        tc = ec / max(self.tdp_w - self.idle_w, 1e-30)
        tm = em / (self.dram_path_j * self.mem_bw) if self.mem_bw else 0.0
        base = max(max(tm, tc), 1e-300)
        floor = em / budget

        def stretched(s: float) -> float:
            if tc > 0:
                roof = t * max(tm, tc / s) / base
            else:
                roof = t / s if not self.mem_bw else t
            return max(roof, floor)

        lo, hi = 0.0, 1.0
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            if ec * (mid * mid) + em <= budget * stretched(mid):
                lo = mid
            else:
                hi = mid
        s = max(lo, 1e-12)
        return max(stretched(s), t), ec * (s * s) + em

    def _solve(self, t: np.ndarray, ec: np.ndarray, em: np.ndarray, budget: float) -> tuple[np.ndarray, np.ndarray]:
        """The bisection of :meth:`throttle` over steps that all demand more than the cap."""
        tc = ec / max(self.tdp_w - self.idle_w, 1e-30)
        tm = em / (self.dram_path_j * self.mem_bw) if self.mem_bw else np.zeros_like(em)
        base = np.maximum(np.maximum(tm, tc), 1e-300)

        def stretched(s: np.ndarray) -> np.ndarray:
            roof = np.where(tc > 0, t * np.maximum(tm, tc / s) / base, t / s if not self.mem_bw else t)
            return np.maximum(roof, em / budget)

        lo = np.zeros_like(t)
        hi = np.ones_like(t)
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            ok = ec * mid**2 + em <= budget * stretched(mid)
            lo = np.where(ok, mid, lo)
            hi = np.where(ok, hi, mid)
        s = np.maximum(lo, 1e-12)
        return np.maximum(stretched(s), t), ec * s**2 + em

    def power_w(self, t_s: Any, dynamic_j: Any) -> np.ndarray:
        return self.idle_w + np.asarray(dynamic_j, dtype=np.float64) / np.maximum(np.asarray(t_s, dtype=float), 1e-30)


def default_memory_type(device: Any) -> str:
    """The device's memory technology when its config names none: its ``memory_type`` field, else
    HBM for a GPU with >= 1.2 TB/s (every HBM GPU preset; every GDDR one is below 1.1 TB/s)."""
    mt = getattr(device, "memory_type", None)
    if mt:
        return mt
    bw = getattr(device, "memory_bw_bytes_per_s", None) or getattr(device, "dram_bw_bytes_per_s", 0.0)
    return "hbm3" if bw >= 1.2e12 else "gddr6"


def idle_power_w(device: Any) -> float:
    """``idle_w`` when the preset gives it, else 10% of TDP (assumption: idle boards read 7-15% of
    TDP in nvidia-smi / RAPL; give ``idle_w`` in the preset where it is measured)."""
    idle = getattr(device, "idle_w", None)
    return float(idle) if idle is not None else 0.1 * float(device.tdp_w)


def energy_model(device: Any, where: str = "hardware.device") -> EnergyModel:
    """The energy coefficients of a device config (GPU, CPU, NPU or accelerator): its ``energy``
    overrides over the derived defaults. A power cap above TDP or at/below idle is an error."""
    tdp = getattr(device, "tdp_w", None)
    if not tdp:
        raise ConfigError(f"{device.name} has no tdp_w: energy needs the board power", where=where)
    idle = idle_power_w(device)
    over: EnergyConfig = getattr(device, "energy", None) or EnergyConfig()
    peaks = {d: p for d, p in device.tensor_flops_per_s.items() if p}
    flop_j = {d: max(tdp - idle, 0.0) / p for d, p in peaks.items()}
    flop_j.update({d: v * PJ for d, v in over.flop_pj.items()})
    mem = over.memory_type or default_memory_type(device)
    byte_j = {t: 8 * TIER_PJ_PER_BIT[t] * PJ for t in TIER_PJ_PER_BIT}
    byte_j["dram"] = 8 * MEMORY_PJ_PER_BIT[mem] * PJ
    byte_j.update({t: v * PJ for t, v in over.byte_pj.items()})
    cap = getattr(device, "power_cap_w", None)
    if cap is not None:
        if cap > tdp:
            raise ConfigError(f"power_cap_w {cap:g} W is above the TDP of {device.name} ({tdp:g} W)",
                              where=f"{where}.power_cap_w")
        if cap <= idle:
            raise ConfigError(f"power_cap_w {cap:g} W is not above the idle power of {device.name} ({idle:g} W)",
                              where=f"{where}.power_cap_w")
    return EnergyModel(device.name, flop_j, byte_j, idle, float(tdp), None if cap is None else float(cap),
                       float(getattr(device, "memory_bw_bytes_per_s", 0.0) or 0.0))


def active_energy(run_w: float, idle_w: float, seconds: float) -> dict[str, float]:
    """The same split for a device characterised by its run-mode power (an MCU: run current x
    supply): idle power for the whole time + the rest as dynamic energy; the keys of a serving
    run's summary."""
    idle_j = idle_w * seconds
    total = run_w * seconds
    return {"energy_j": total, "energy_dynamic_j": total - idle_j, "energy_idle_j": idle_j,
            "power_mean_w": run_w}
