"""Fit a timing model's free parameters to measurements and report held-out error.

Models: least squares on log(predicted) - log(measured) (a soft-L1 loss so a few noisy samples
    on a shared machine do not dominate), parameters searched in log space within bounds, on a
    training split chosen by a fixed seeded shuffle; error is the absolute percentage error
    (APE) on the held-out split, median and p90 per kernel class, before and after fitting.
Ignores: measurement spread (each record's median is one point), correlations between params.
Sources: scipy.optimize.least_squares (trust-region reflective).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from hw_models.cpu import Cpu, CpuConfig
from hw_models.gpu import GpuConfig
from hw_models.timing.roofline import RooflineConfig
from simulator.calibration.records import Measurement
from simulator.config.loader import Component, resolve_component
from simulator.core import registry as reg
from simulator.core.errors import ConfigError, InputFileError
from simulator.core.units import format_quantity

# bytes per element, block scales included (NVFP4: one e4m3 scale per 16; MX: one e8m0 per 32)
GPU_DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp8": 1, "int8": 1, "tf32": 4, "fp32": 4, "fp64": 8,
                   "mxfp8": 1.03125, "nvfp4": 0.5625, "mxfp4": 0.53125}


@dataclass(frozen=True)
class Param:
    name: str  # dotted: "gemm_efficiency", "bw_efficiency.l1", "timing.compute_efficiency"
    lower: float
    upper: float
    unit: str | None = None  # a units.DIMENSIONS name for fields typed with a unit


class CpuAdapter:
    """Free parameters of :class:`hw_models.cpu.Cpu`, written back as a ``cpu`` preset overlay."""

    kind = "cpu"
    params = [Param("gemm_efficiency", 0.05, 1.0), Param("gemm_half_dim", 1.0, 1024.0),
              Param("gemm_fork_join_s", 1e-7, 1e-3, "time"), Param("call_overhead_s", 1e-8, 1e-4, "time"),
              Param("copy_overhead_s", 1e-8, 1e-4, "time"),
              Param("scalar_overhead_s", 1e-9, 1e-4, "time"), Param("reduce_overhead_s", 1e-9, 1e-4, "time"),
              Param("blas_call_overhead_s", 1e-8, 1e-4, "time"),
              Param("bw_efficiency.l1", 0.01, 1.0), Param("bw_efficiency.l2", 0.01, 1.0),
              Param("bw_efficiency.l3", 0.01, 1.0), Param("bw_efficiency.dram", 0.01, 1.0),
              Param("cache_usable_fraction", 0.05, 1.0),
              Param("cache_edge_sharpness", 1.0, 16.0), Param("write_allocate_fraction", 0.02, 1.0),
              Param("exp_cycles_per_element", 0.02, 100.0),
              Param("reduce_cycles_per_element", 0.02, 100.0)]

    def __init__(self, config: CpuConfig) -> None:
        self.config = config

    def supports(self, r: Measurement) -> bool:
        return r.device.startswith("cpu") and r.op in ("matmul", "copy", "scale", "add", "triad", "softmax",
                                                       "layernorm", "attention") and r.dtype in ("float32", "float64")

    def active(self, rows: list[Measurement]) -> list[Param]:
        """Parameters the data can identify: thread fork/join only if some GEMM ran threaded."""
        cpu = Cpu(self.config)
        threaded = any(r.op in ("matmul", "attention") and cpu.gemm_threads(r.m, r.n, r.k, r.threads) > 1
                       for r in rows)
        return [p for p in self.params if threaded or p.name != "gemm_fork_join_s"]

    def initial(self) -> dict[str, float]:
        c = self.config
        out = {p.name: getattr(c, p.name) for p in self.params if "." not in p.name}
        out.update({f"bw_efficiency.{lv}": getattr(c.bw_efficiency, lv) for lv in ("l1", "l2", "l3", "dram")})
        return out

    def model(self, values: dict[str, float]) -> Cpu:
        flat = {k: v for k, v in values.items() if "." not in k}
        bw = self.config.bw_efficiency.model_copy(
            update={k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("bw_efficiency.")})
        return Cpu(self.config.model_copy(update={**flat, "bw_efficiency": bw}))

    def predict(self, values: dict[str, float], rows: list[Measurement]) -> np.ndarray:
        cpu = self.model(values)
        return np.array([cpu.kernel_s(r.op, r.dtype, r.m, r.n, r.k, r.batch, r.elements, r.threads) for r in rows])

    def overlay(self, values: dict[str, float]) -> dict[str, dict[str, Any]]:
        return {"device": nest(values, self.params)}


class RooflineAdapter:
    """The GPU roofline backend's compute/memory efficiencies and the GPU's launch overhead.

    Predictions use the same formula as ``hw_models.timing.roofline.RooflineBackend`` (vectorised
    here; ``tests/test_calibration.py`` checks the two agree): max(FLOPs / (peak x compute_eff),
    bytes / (bandwidth x memory_eff)) + launch overhead.
    """

    kind = "gpu"
    params = [Param("timing.compute_efficiency", 0.02, 1.0), Param("timing.memory_efficiency", 0.02, 1.0),
              Param("launch_overhead_s", 1e-8, 1e-4, "time")]

    def __init__(self, config: GpuConfig, timing: RooflineConfig | None = None) -> None:
        self.config = config
        self.timing = timing or RooflineConfig()

    def supports(self, r: Measurement) -> bool:
        return r.kernel_class == "gemm" and r.dtype in GPU_DTYPE_BYTES and bool(self.config.tensor_flops_per_s.get(
            r.dtype)) or r.kernel_class in ("stream", "elementwise") and r.device.startswith("cuda") and r.bytes > 0

    def active(self, rows: list[Measurement]) -> list[Param]:
        return list(self.params)

    def initial(self) -> dict[str, float]:
        return {"timing.compute_efficiency": self.timing.compute_efficiency,
                "timing.memory_efficiency": self.timing.memory_efficiency,
                "launch_overhead_s": self.config.launch_overhead_s}

    def predict(self, values: dict[str, float], rows: list[Measurement]) -> np.ndarray:
        c = self.config
        bw = c.memory_bw_bytes_per_s * values["timing.memory_efficiency"]
        out = np.empty(len(rows))
        for i, r in enumerate(rows):
            if r.kernel_class == "gemm":
                b = GPU_DTYPE_BYTES[r.dtype]
                flops = 2.0 * r.m * r.n * r.k
                nbytes = b * (r.m * r.k + r.k * r.n + r.m * r.n)
                peak = c.tensor_peak(r.dtype) * values["timing.compute_efficiency"]
                t = max(flops / peak, nbytes / bw) * max(r.batch, 1)
            else:
                t = r.bytes / bw
            out[i] = t + values["launch_overhead_s"]
        return out

    def overlay(self, values: dict[str, float]) -> dict[str, dict[str, Any]]:
        timing = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("timing.")}
        device = nest({k: v for k, v in values.items() if not k.startswith("timing.")}, self.params)
        return {"device": device, "timing": {"kind": "roofline", **timing}}


def nest(values: dict[str, float], params: list[Param]) -> dict[str, Any]:
    """Dotted names -> nested mapping; unit-typed values written with their unit (4 significant digits)."""
    units = {p.name: p.unit for p in params}
    out: dict[str, Any] = {}
    for name, v in values.items():
        v = float(f"{v:.4g}")
        value: Any = format_quantity(v, units[name]) if units.get(name) else v
        head, _, tail = name.partition(".")
        if tail:
            out.setdefault(head, {})[tail] = value
        else:
            out[head] = value
    return out


def find_hardware(name: str) -> Component:
    """A CPU or GPU preset by name (``generic-x86-2core``, ``A100-80GB``, or ``gpu:A100-80GB``)."""
    kinds = ("cpu", "gpu")
    if ":" in name and name.split(":", 1)[0] in kinds:
        kinds, name = (name.split(":", 1)[0],), name.split(":", 1)[1]
    known = []
    for kind in kinds:
        entry = reg.HARDWARE.get(kind)
        known += [f"{kind}:{p}" for p in entry.preset_names()]
        if name in entry.preset_names():
            return resolve_component({"kind": kind, "preset": name}, reg.HARDWARE, "--hardware")
    raise ConfigError(f"unknown hardware preset {name!r}; known: {', '.join(known)}", where="--hardware")


def adapter_for(component: Component, overlays: tuple[str, ...] = ()) -> CpuAdapter | RooflineAdapter:
    if overlays:
        block = {"kind": component.kind, "preset": [*component.presets, *overlays]}
        component = resolve_component(block, reg.HARDWARE, "--hardware")
    if component.kind == "cpu":
        return CpuAdapter(component.config)
    return RooflineAdapter(component.config)


def ape(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    return np.abs(pred - meas) / meas


def class_errors(rows: list[Measurement], pred: np.ndarray, idx: np.ndarray) -> dict[str, dict[str, float]]:
    meas = np.array([r.median_s for r in rows])
    classes = np.array([r.kernel_class for r in rows])
    out = {}
    for cls in sorted(set(classes[idx])):
        sel = idx[classes[idx] == cls]
        e = ape(pred[sel], meas[sel])
        out[cls] = {"n": int(sel.size), "median_ape": float(np.median(e)), "p90_ape": float(np.percentile(e, 90))}
    return out


@dataclass
class FitResult:
    kind: str
    initial: dict[str, float]
    fitted: dict[str, float]
    rows: list[Measurement]
    train: np.ndarray
    held_out: np.ndarray
    pred_before: np.ndarray
    pred_after: np.ndarray
    before: dict[str, dict[str, float]]
    after: dict[str, dict[str, float]]
    meta: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        lines = [f"{'class':<12} {'n':>5}  {'median APE before -> after':>28}  {'p90 APE before -> after':>26}"]
        for cls, a in self.after.items():
            b = self.before[cls]
            lines.append(f"{cls:<12} {a['n']:>5}  {b['median_ape']:>13.1%} -> {a['median_ape']:>8.1%}   "
                         f"{b['p90_ape']:>12.1%} -> {a['p90_ape']:>8.1%}")
        return "\n".join(lines)


def split(n: int, seed: int = 0, holdout: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_hold = max(1, int(round(holdout * n)))
    return np.sort(perm[n_hold:]), np.sort(perm[:n_hold])


def fit(rows: list[Measurement], adapter, seed: int = 0, holdout: float = 0.3, source: str = "") -> FitResult:
    """Fit ``adapter``'s parameters on a seeded training split; errors on the held-out split."""
    rows = [r for r in rows if adapter.supports(r)]
    if len(rows) < len(adapter.params) + 3:
        raise InputFileError(f"only {len(rows)} measurement(s) this {adapter.kind} model can time; need at least "
                             f"{len(adapter.params) + 3}", where=source or "capture")
    meas = np.array([r.median_s for r in rows])
    train, held = split(len(rows), seed, holdout)
    train_rows = [rows[i] for i in train]
    params = adapter.active(train_rows)
    names = [p.name for p in params]
    lo = np.log([p.lower for p in params])
    hi = np.log([p.upper for p in params])
    init = adapter.initial()
    x0 = np.clip(np.log([init[n] for n in names]), lo + 1e-9, hi - 1e-9)
    log_meas = np.log(meas[train])

    def residual(x: np.ndarray) -> np.ndarray:
        return np.log(adapter.predict({**init, **dict(zip(names, np.exp(x)))}, train_rows)) - log_meas

    sol = least_squares(residual, x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.05, x_scale=1.0, diff_step=1e-4,
                        max_nfev=400)
    fitted = {**init, **dict(zip(names, (float(v) for v in np.exp(sol.x))))}
    pred_before = adapter.predict(init, rows)
    pred_after = adapter.predict(fitted, rows)
    meta = {"source": source, "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "seed": seed, "holdout": holdout, "n_train": int(train.size), "n_held_out": int(held.size),
            "optimizer": f"scipy least_squares soft_l1: {sol.message} ({sol.nfev} evaluations)"}
    return FitResult(adapter.kind, init, fitted, rows, train, held, pred_before, pred_after,
                     class_errors(rows, pred_before, held), class_errors(rows, pred_after, held), meta)


def _yaml_lines(mapping: dict[str, Any], indent: str = "") -> list[str]:
    lines = []
    for k, v in mapping.items():
        if isinstance(v, dict):
            lines.append(f"{indent}{k}:")
            lines += _yaml_lines(v, indent + "  ")
        else:
            lines.append(f"{indent}{k}: {v}" + ("" if k == "kind" else "  # fitted"))
    return lines


def write_overlay(result: FitResult, adapter, hardware: str, out: Path, provenance: dict | None = None) -> list[Path]:
    """Write the preset overlay(s): ``out`` for the device, ``<out>.timing.yaml`` for backend params."""
    import simulator

    parts = adapter.overlay(result.fitted)
    errs = "; ".join(f"{c} {result.before[c]['median_ape']:.1%}/{result.before[c]['p90_ape']:.1%} -> "
                     f"{a['median_ape']:.1%}/{a['p90_ape']:.1%}" for c, a in result.after.items())
    cap_date = (provenance or {}).get("date", "unknown")
    head = [f"# hwsim calibration overlay for {result.kind} preset {hardware}",
            f"# fitted: capture={result.meta['source']} (taken {cap_date}); fitted {result.meta['date']}; "
            f"hwsim {simulator.__version__}",
            f"# fitted: seed={result.meta['seed']} train n={result.meta['n_train']} held-out "
            f"n={result.meta['n_held_out']}",
            f"# fitted: held-out APE median/p90 before -> after: {errs}"]
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    device_use = f"# use: hardware.device: {{kind: {result.kind}, preset: [{hardware}, {out}]}}"
    out.write_text("\n".join(head + [device_use] + _yaml_lines(parts["device"])) + "\n")
    written.append(out)
    if "timing" in parts:
        tpath = out.with_name(out.stem + ".timing.yaml")
        body = {k: v for k, v in parts["timing"].items() if k != "kind"}
        use = f"# use: hardware.timing: {{kind: {parts['timing']['kind']}, preset: [{tpath}]}}"
        tpath.write_text("\n".join(head + [use] + _yaml_lines(body)) + "\n")
        written.append(tpath)
    return written


def result_json(result: FitResult, hardware: str) -> dict[str, Any]:
    """Everything `calibrate report` plots: per-record measured/predicted and split membership."""
    held = set(result.held_out.tolist())
    return {"kind": result.kind, "hardware": hardware, "meta": result.meta, "initial": result.initial,
            "fitted": result.fitted, "before": result.before, "after": result.after,
            "records": [{"kernel_class": r.kernel_class, "op": r.op, "shape": r.shape(), "measured_s": r.median_s,
                         "before_s": float(b), "after_s": float(a), "held_out": i in held}
                        for i, (r, b, a) in enumerate(zip(result.rows, result.pred_before, result.pred_after))]}
