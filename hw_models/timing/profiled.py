"""Profiled timing backend: interpolates measured kernel tables (Vidur ``*.mlp.csv`` format, a
calibration capture ``capture.csv`` written by ``hwsim calibrate capture --device cuda``, or an
aic system directory of Parquet tables).

Models: each measured operator as a piecewise-linear function of its token count (GEMMs, keyed
    by their (n, k) shape) or of its bytes (memory-bound kernels, keyed by kernel name),
    interpolated between measured points and extrapolated linearly past the last two; ops the
    tables do not cover (attention, collectives, shapes never measured) go to a fallback
    backend (``tile`` by default).
    From a capture: its 16-bit CUDA GEMM records (key (n, k), variable m) and its ``layernorm``
    and ``add`` records (serving the lowering's norms and residual add, variable bytes).
    From an aic directory (``gemm/``, ``attention/``; needs pyarrow): bf16 GEMMs (key (n, k),
    variable m), prefill attention without a cached prefix (key heads, KV heads, head dim;
    bilinear in batch and prompt length) and decode attention (same key; bilinear in batch and
    context per sequence), bf16 KV and no sliding window only; ``framework`` picks one
    framework's tables (default: the median over all).
Ignores: dtype differences between the table and the op (the table's dtype is assumed); aic fp8
    GEMMs (they include the framework's activation quantization, which the lowering emits itself).
Sources: the user's measurements; Vidur (Agrawal et al., MLSys 2024) table format.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from hw_models.timing.base import TimingBackend
from simulator.config.quantities import StrictConfig
from simulator.core.registry import TIMING, register_timing


class ProfiledConfig(StrictConfig):
    tables: str = Field(description="directory of Vidur-format *.mlp.csv files (or one such file), or a "
                                    "calibration capture (capture.csv or its directory)")
    fallback: str = Field(default="tile", description="backend kind for ops the tables do not cover")
    launch_overhead: bool = Field(default=False, description="add the GPU's launch cost (tables hold kernel time)")
    framework: str = Field(default="", description="aic tables: the framework folder to read (vllm, sglang, "
                                                   "trtllm); empty: every framework, median per point")


def _aic_points(path: Path, framework: str, pts: dict) -> None:
    """bf16 GEMM and bf16 attention points of an aic system directory (Parquet; pyarrow needed)."""
    from simulator.core.errors import ConfigError

    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("reading Parquet tables needs pyarrow: pip install 'hwsim[validate]'",
                          where="hardware.timing.tables") from None
    fw = framework or "*"
    for f in sorted(path.glob(f"gemm/{fw}/*/gemm_perf.parquet")):
        for r in pq.read_table(f, columns=["gemm_dtype", "m", "n", "k", "latency"]).to_pylist():
            if r["gemm_dtype"] == "bfloat16":
                pts.setdefault(("gemm", r["n"], r["k"]), {}).setdefault(float(r["m"]), []).append(r["latency"] * 1e-3)
    for phase in ("context", "generation"):
        for f in sorted(path.glob(f"attention/{fw}/*/{phase}_attention_perf.parquet")):
            for r in pq.read_table(f).to_pylist():
                if r["attn_dtype"] != "bfloat16" or r["kv_cache_dtype"] != "bfloat16" or r.get("window_size", 0) \
                        or r.get("beam_width", 1) != 1:
                    continue
                ctx = r["isl"] + (r["step"] if phase == "generation" else 0)
                key = (phase, r["num_heads"], r["num_key_value_heads"], r["head_dim"], r["batch_size"])
                pts.setdefault(key, {}).setdefault(float(ctx), []).append(r["latency"] * 1e-3)


def _vidur_ops(r: dict[str, str]) -> list[tuple[str, str, tuple, float]]:
    """(vidur op, kind, key, x) for one Vidur row, with the shapes hwsim's lowering gives them."""
    h, nh, tp = int(r["n_embd"]), int(r["n_head"]), int(float(r["num_tensor_parallel_workers"]))
    t, b = int(float(r["num_tokens"])), 2.0
    hd, heads, kvh = h // nh, max(1, nh // tp), max(1, int(r["n_kv_head"]) // tp)
    inter = -(-int(r["n_expanded_embd"]) // tp)
    up = 2 * inter if r["use_gated_mlp"] == "True" else inter
    return [("attn_pre_proj", "gemm", ("gemm", (heads + 2 * kvh) * hd, h), t),
            ("attn_post_proj", "gemm", ("gemm", h, heads * hd), t),
            ("mlp_up_proj", "gemm", ("gemm", up, h), t), ("mlp_down_proj", "gemm", ("gemm", h, inter), t),
            ("emb", "elementwise", ("elementwise", "embed"), 2 * t * h * b),
            ("input_layernorm", "elementwise", ("elementwise", "input_norm"), 2 * t * h * b),
            ("post_attention_layernorm", "elementwise", ("elementwise", "post_attn_norm"), 2 * t * h * b),
            ("attn_rope", "elementwise", ("elementwise", "rope"), int(2 * t * (heads + kvh) * hd * b)),
            ("mlp_act", "elementwise", ("elementwise", "mlp_act"), int(t * (up + inter) * b)),
            ("add", "elementwise", ("elementwise", "residual_add"), 3 * t * h * b)]


# capture record (kernel class, op) -> the lowering's op names it times
CAPTURE_MEM = {("elementwise", "layernorm"): ("input_norm", "post_attn_norm"), ("stream", "add"): ("residual_add",)}
CAPTURE_COLUMNS = ("kernel_class", "op", "dtype", "device", "m", "n", "k", "batch", "bytes", "median_s")


def _capture_points(path: Path, pts: dict) -> None:
    """Add the usable GPU records of a calibration capture to ``pts``. (The full reader,
    ``simulator.calibration.records``, sits in the top layer, which a timing backend may not
    import; this one needs only the columns below.)"""
    from simulator.core.errors import ConfigError
    from simulator.core.files import read_text

    rows = list(csv.DictReader(read_text(path, "capture file").splitlines()))
    missing = [c for c in CAPTURE_COLUMNS if rows and c not in rows[0]]
    if missing:
        raise ConfigError(f"{path}: not a calibration capture (missing {', '.join(missing)})",
                          where="hardware.timing.tables")
    for i, r in enumerate(rows, start=2):
        if not r["device"].startswith("cuda"):
            continue
        try:
            cls, t = r["kernel_class"], float(r["median_s"])
            if cls == "gemm" and r["dtype"] in ("fp16", "bf16") and int(r["batch"]) == 1:
                key, x = ("gemm", int(r["n"]), int(r["k"])), float(r["m"])
                pts.setdefault(key, {}).setdefault(x, []).append(t)
            for name in CAPTURE_MEM.get((cls, r["op"]), ()):
                pts.setdefault(("elementwise", name), {}).setdefault(float(r["bytes"]), []).append(t)
        except ValueError:
            raise ConfigError(f"{path}:{i}: a shape or time column is not a number",
                              where="hardware.timing.tables") from None


def _load_points(path: Path, framework: str = "") -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
    pts: dict[tuple, dict[float, list[float]]] = {}
    capture = path / "capture.csv" if path.is_dir() else path
    if path.is_dir() and (any(path.glob("gemm/*/*/gemm_perf.parquet")) or any(path.glob("attention/*/*/*.parquet"))):
        _aic_points(path, framework, pts)
        files = []
    elif capture.name == "capture.csv" and capture.is_file():
        _capture_points(capture, pts)
        files = []
    else:
        files = [path] if path.is_file() else sorted(path.rglob("*.mlp.csv"))
    for f in files:
        with open(f, newline="") as fh:
            for r in csv.DictReader(fh):
                for vop, _kind, key, x in _vidur_ops(r):
                    v = r.get(f"time_stats.{vop}.median", "")
                    if v not in ("", "nan"):
                        pts.setdefault(key, {}).setdefault(float(x), []).append(float(v) * 1e-3)
    out = {}
    for key, d in pts.items():
        xs = np.array(sorted(d))
        out[key] = (xs, np.array([float(np.median(d[x])) for x in xs]))
    return out


@register_timing("profiled", config=ProfiledConfig)
class ProfiledBackend(TimingBackend):
    """Interpolates measured kernel tables (Vidur CSVs, calibration captures, aic Parquet)."""
    name = "profiled"
    share_memo = False  # its seconds come from a file read at construction (timing/base.py)

    def __init__(self, config: ProfiledConfig, device: Any, link: Any = None) -> None:
        super().__init__(config, device, link)
        path = Path(config.tables)
        if not path.exists():
            from simulator.core.errors import ConfigError

            raise ConfigError(f"profiled tables {config.tables!r} not found", where="hardware.timing.tables")
        self._points = _load_points(path, config.framework)
        # attention keys (phase, heads, kv heads, head dim) -> sorted batch sizes measured
        self._batches: dict[tuple, list[int]] = {}
        for key in self._points:
            if key[0] in ("context", "generation"):
                self._batches.setdefault(key[:4], []).append(key[4])
        for v in self._batches.values():
            v.sort()
        entry = TIMING.get(config.fallback, where="hardware.timing.fallback")
        self._fallback = entry.cls(entry.config.model_validate({}), device, link)
        self._launch = device.launch_overhead_s if config.launch_overhead else 0.0

    def _curve(self, key: tuple, x: float) -> float | None:
        pts = self._points.get(key)
        if pts is None or len(pts[0]) < 2:
            return None
        xs, ys = pts
        if x > xs[-1]:  # linear extrapolation from the last two points
            return float(ys[-1] + (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) * (x - xs[-1]))
        return float(np.interp(x, xs, ys))

    def _attention(self, phase: str, op: Any, ctx: float) -> float | None:
        """Bilinear in (batch, tokens per sequence) between the measured batch sizes around op.seqs."""
        batches = self._batches.get((phase, op.heads, op.kv_heads, op.head_dim))
        seqs = max(1, op.seqs)
        if not batches or not batches[0] <= seqs <= batches[-1]:
            return None
        i = int(np.searchsorted(batches, seqs))
        lo, hi = batches[max(0, i - 1) if batches[i] > seqs else i], batches[i]
        key = (phase, op.heads, op.kv_heads, op.head_dim)
        t_lo, t_hi = self._curve((*key, lo), ctx), self._curve((*key, hi), ctx)
        if t_lo is None or t_hi is None:
            return None
        return t_lo if hi == lo else t_lo + (t_hi - t_lo) * (seqs - lo) / (hi - lo)

    def _lookup(self, op: Any) -> float | None:
        if op.kind == "attn_prefill" and self._batches and op.kv_tokens == op.q_tokens:
            return self._attention("context", op, op.q_tokens / max(1, op.seqs))
        if op.kind == "attn_decode" and self._batches:
            return self._attention("generation", op, op.kv_tokens / max(1, op.seqs))
        if op.kind == "gemm":
            key, x = ("gemm", op.n, op.k), float(op.m)
        elif op.kind == "elementwise":
            key, x = ("elementwise", op.name), float(op.bytes)
        else:
            return None
        return self._curve(key, x)

    def _op_s(self, op: Any) -> float:
        t = self._lookup(op)
        if t is None:
            return self._fallback.op_s(op)
        return (t + self._launch) * op.count

    def decode_attention_s(self, op: Any, kv_tokens: np.ndarray) -> np.ndarray:
        if not self._batches:
            return self._fallback.decode_attention_s(op, kv_tokens)
        import dataclasses

        return np.array([self.op_s(dataclasses.replace(op, kv_tokens=int(k))) for k in kv_tokens])
