"""Capture runner: time small real kernels on this machine and write a calibration record.

This file imports only the standard library and numpy (torch lazily, inside the CUDA functions),
and nothing else of hwsim, so it can be copied to a bare GPU machine and run on its own::

    python capture.py --device cpu [--quick] [--threads N] -o capture/
    python capture.py --device cuda [--quick] -o capture/

It writes ``capture.csv`` (one row per measurement, columns in ``COLUMNS``) and ``capture.json``
(provenance: CPU/GPU model, cores, caches, BLAS, library versions, threads pinned, timer, date,
command). BLAS threads are pinned through OMP/OPENBLAS/MKL_NUM_THREADS, set before numpy loads
(the script re-executes itself with them set when they are not).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
# kernel_class: gemm | stream | elementwise | attention | copy | collective
# op: matmul, copy/scale/add/triad, softmax, layernorm, attention, sdpa_prefill, sdpa_decode,
#     paged_gather, d2d/h2d/d2h, all_reduce, or a Vidur operator name
# shape: m, n, k, batch (GEMM C[m,n] = A[m,k] B[k,n], batch of them; softmax/layernorm rows=m,
#     cols=n; attention heads=batch, q_len=m, kv_len=n, head_dim=k), elements per array, bytes
#     moved in STREAM convention; times in seconds per call over `repeats` samples of `number` calls.
COLUMNS = ["kernel_class", "op", "dtype", "device", "threads", "m", "n", "k", "batch", "elements", "bytes",
           "median_s", "p10_s", "p90_s", "repeats", "number", "label"]
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
PIN_FLAG = "HWSIM_CAPTURE_PINNED"


# --------------------------------------------------------------------------------------------
# timing harness


class WallTimer:
    """Host-clock timer; ``sync`` (e.g. torch.cuda.synchronize) runs before reading the clock.

    ``clock`` is time.perf_counter (wall) by default; a single-threaded CPU capture uses
    time.thread_time, which counts only the time this thread ran, so time the scheduler gave to
    other processes on a shared machine does not inflate the kernel's time.
    """

    def __init__(self, sync: Callable[[], None] | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.sync = sync or (lambda: None)
        self.clock = clock
        self._t0 = 0.0

    def start(self) -> None:
        self.sync()
        self._t0 = self.clock()

    def stop(self) -> float:
        self.sync()
        return self.clock() - self._t0


class CudaEventTimer:
    """CUDA-event timer: events recorded on the current stream, elapsed time read after sync."""

    def __init__(self, torch) -> None:
        self.torch = torch
        self._start = None

    def start(self) -> None:
        self._start = self.torch.cuda.Event(enable_timing=True)
        self._start.record()

    def stop(self) -> float:
        end = self.torch.cuda.Event(enable_timing=True)
        end.record()
        end.synchronize()
        return self._start.elapsed_time(end) / 1e3


def calls_per_sample(fn: Callable[[], object], timer, min_sample_s: float, max_number: int = 100000) -> int:
    """Calls per sample so one sample lasts >= ``min_sample_s``: double the count until a timed
    batch is long enough (one call's time alone is too noisy to size a sub-microsecond kernel)."""
    number = 1
    while True:
        timer.start()
        for _ in range(number):
            fn()
        elapsed = timer.stop()
        if elapsed >= min_sample_s or number >= max_number:
            return number
        number = min(max_number, number * 2 if elapsed <= 0 else max(number * 2, math.ceil(
            1.2 * number * min_sample_s / elapsed)))


def time_fn(fn: Callable[[], object], warmup: int = 2, repeats: int = 7, sync: Callable[[], None] | None = None,
            timer=None, number: int | None = None, min_sample_s: float = 1e-4, max_number: int = 100000) -> dict:
    """Time ``fn``: warm up, pick ``number`` calls per sample so a sample lasts >= min_sample_s
    (well above the timer resolution), take ``repeats`` samples; per-call median/p10/p90."""
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    timer = timer or WallTimer(sync)
    for _ in range(warmup):
        fn()
    if number is None:
        number = calls_per_sample(fn, timer, min_sample_s, max_number)
    samples = []
    for _ in range(repeats):
        timer.start()
        for _ in range(number):
            fn()
        samples.append(timer.stop() / number)
    arr = np.asarray(samples)
    return {"median_s": float(np.median(arr)), "p10_s": float(np.percentile(arr, 10)),
            "p90_s": float(np.percentile(arr, 90)), "repeats": repeats, "number": number}


def time_interleaved(fns: dict[str, Callable[[], object]], warmup: int = 2, repeats: int = 7, timer=None,
                     min_sample_s: float = 1e-4, max_number: int = 100000) -> dict[str, dict]:
    """Time several kernels round-robin: sample r of every kernel is taken before sample r + 1 of
    any, so a burst of other load on a shared machine spreads over all kernels instead of hitting
    all samples of one. Each sample is preceded by one untimed call of the same kernel, so the
    caches hold what that kernel leaves behind when it runs back to back (its steady state), not
    what the previous kernel left. Per kernel: per-call median/p10/p90 over ``repeats`` samples."""
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    timer = timer or WallTimer()
    numbers, samples = {}, {name: [] for name in fns}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        numbers[name] = calls_per_sample(fn, timer, min_sample_s, max_number)
    for _ in range(repeats):
        for name, fn in fns.items():
            fn()
            timer.start()
            for _ in range(numbers[name]):
                fn()
            samples[name].append(timer.stop() / numbers[name])
    out = {}
    for name, vals in samples.items():
        arr = np.asarray(vals)
        out[name] = {"median_s": float(np.median(arr)), "p10_s": float(np.percentile(arr, 10)),
                     "p90_s": float(np.percentile(arr, 90)), "repeats": repeats, "number": numbers[name]}
    return out


def timer_resolution_s(clock: Callable[[], float] = time.perf_counter, trials: int = 2000) -> float:
    """Smallest non-zero step of ``clock`` seen in back-to-back reads."""
    best = math.inf
    for _ in range(trials):
        t0 = clock()
        t1 = clock()
        while t1 == t0:
            t1 = clock()
        best = min(best, t1 - t0)
    return best


def record(kernel_class: str, op: str, dtype: str, device: str, stats: dict, threads: int = 0, m: int = 0,
           n: int = 0, k: int = 0, batch: int = 1, elements: int = 0, nbytes: int = 0, label: str = "") -> dict:
    return {"kernel_class": kernel_class, "op": op, "dtype": dtype, "device": device, "threads": threads,
            "m": m, "n": n, "k": k, "batch": batch, "elements": elements, "bytes": nbytes,
            "median_s": stats["median_s"], "p10_s": stats["p10_s"], "p90_s": stats["p90_s"],
            "repeats": stats["repeats"], "number": stats["number"], "label": label}


# --------------------------------------------------------------------------------------------
# CPU kernels (numpy); hw_models/cpu.py models exactly these call sequences


def softmax_(x: np.ndarray, y: np.ndarray) -> None:
    mx = x.max(axis=-1, keepdims=True)
    np.subtract(x, mx, out=y)
    np.exp(y, out=y)
    s = y.sum(axis=-1, keepdims=True)
    np.divide(y, s, out=y)


def layernorm_(x: np.ndarray, y: np.ndarray, t: np.ndarray, g: np.ndarray, b: np.ndarray) -> None:
    inv = 1.0 / x.shape[-1]
    mu = x.sum(axis=-1, keepdims=True)
    mu *= inv
    np.subtract(x, mu, out=y)
    np.multiply(y, y, out=t)
    var = t.sum(axis=-1, keepdims=True)
    var *= inv
    np.add(var, 1e-5, out=var)
    np.sqrt(var, out=var)
    np.divide(y, var, out=y)
    np.multiply(y, g, out=y)
    np.add(y, b, out=y)


def cpu_grid(quick: bool) -> dict:
    if quick:
        dims = (16, 96, 384, 1024)
        skinny = [(1, 2048, 2048), (8, 2048, 2048), (1, 4096, 1024)]
        stream_kib = [2 ** i for i in range(0, 17)]  # 1 KiB .. 64 MiB per array, x2 steps
        stream_dtypes = ("float64",)
        rows_cols = [(64, 256), (512, 1024), (2048, 2048)]
        attn = [(8, 128, 128, 64), (4, 512, 512, 64), (32, 1, 2048, 128)]
    else:
        dims = (16, 48, 128, 320, 768, 1536)
        skinny = [(1, 4096, 4096), (4, 4096, 4096), (16, 4096, 4096), (1, 8192, 2048), (2, 1024, 1024)]
        stream_kib = [int(2 ** (i / 2)) for i in range(0, 36)]  # 1 KiB .. 181 MiB, sqrt(2) steps
        stream_dtypes = ("float64", "float32")
        rows_cols = [(64, 256), (256, 1024), (1024, 1024), (512, 4096), (4096, 4096), (128, 32768)]
        attn = [(8, 128, 128, 64), (8, 512, 512, 64), (16, 256, 256, 128), (32, 1, 1024, 128),
                (32, 1, 4096, 128), (8, 1, 256, 64)]
    gemms = [(m, n, k) for m in dims for n in dims for k in dims] + skinny
    return {"gemms": gemms, "gemm_dtypes": ("float32", "float64"), "stream_kib": stream_kib,
            "stream_dtypes": stream_dtypes, "rows_cols": rows_cols, "attn": attn,
            "repeats": 7 if quick else 9, "warmup": 1 if quick else 2, "min_sample_s": 1e-4 if quick else 2e-4}


def cpu_clock(threads: int) -> Callable[[], float]:
    """The thread's CPU clock when BLAS runs on this one thread, else wall time."""
    return time.thread_time if threads == 1 else time.perf_counter


def capture_cpu(quick: bool, threads: int, progress: Callable[[str], None] = lambda s: None) -> list[dict]:
    g = cpu_grid(quick)
    rng = np.random.default_rng(0)
    kw = {"warmup": g["warmup"], "repeats": g["repeats"], "min_sample_s": g["min_sample_s"],
          "timer": WallTimer(clock=cpu_clock(threads))}
    out: list[dict] = []
    dev = "cpu"
    for dtype in g["gemm_dtypes"]:
        for m, n, k in g["gemms"]:
            a = rng.standard_normal((m, k)).astype(dtype)
            b = rng.standard_normal((k, n)).astype(dtype)
            c = np.empty((m, n), dtype)
            st = time_fn(lambda a=a, b=b, c=c: np.matmul(a, b, out=c), **kw)
            nbytes = a.itemsize * (m * k + k * n + m * n)
            out.append(record("gemm", "matmul", dtype, dev, st, threads, m, n, k, nbytes=nbytes))
    progress(f"gemm: {len(out)} measurements")
    for dtype in g["stream_dtypes"]:
        for kib in g["stream_kib"]:
            n = max(1, kib * 1024 // np.dtype(dtype).itemsize)
            a, b, c = (np.full(n, v, dtype) for v in (1.0, 2.0, 0.0))
            # triad is c = a + s*b computed in place in two ufunc calls (no temporary array, so no
            # allocation or page faults are timed); hw_models/cpu.py models exactly these calls.
            kernels = {"copy": (lambda a=a, c=c: np.copyto(c, a), 2),
                       "scale": (lambda a=a, c=c: np.multiply(a, 3.0, out=c), 2),
                       "add": (lambda a=a, b=b, c=c: np.add(a, b, out=c), 3),
                       "triad": (lambda a=a, b=b, c=c: (np.multiply(b, 3.0, out=c), np.add(c, a, out=c)), 3)}
            stats = time_interleaved({name: fn for name, (fn, _) in kernels.items()}, **kw)
            for name, (_, arrays) in kernels.items():
                out.append(record("stream", name, dtype, dev, stats[name], threads, elements=n,
                                  nbytes=arrays * n * a.itemsize))
    progress(f"stream: {len(out)} measurements")
    for dtype in ("float32", "float64"):
        for rows, cols in g["rows_cols"]:
            x = rng.standard_normal((rows, cols)).astype(dtype)
            y, t = np.empty_like(x), np.empty_like(x)
            gam, bet = np.ones(cols, dtype), np.zeros(cols, dtype)
            st = time_fn(lambda x=x, y=y: softmax_(x, y), **kw)
            out.append(record("elementwise", "softmax", dtype, dev, st, threads, rows, cols,
                              elements=rows * cols, nbytes=2 * x.nbytes))
            st = time_fn(lambda x=x, y=y, t=t, gam=gam, bet=bet: layernorm_(x, y, t, gam, bet), **kw)
            out.append(record("elementwise", "layernorm", dtype, dev, st, threads, rows, cols,
                              elements=rows * cols, nbytes=2 * x.nbytes))
        for h, sq, skv, d in g["attn"]:
            q = rng.standard_normal((h, sq, d)).astype(dtype)
            kt = rng.standard_normal((h, skv, d)).astype(dtype).transpose(0, 2, 1)
            v = rng.standard_normal((h, skv, d)).astype(dtype)
            s, p, o = np.empty((h, sq, skv), dtype), np.empty((h, sq, skv), dtype), np.empty((h, sq, d), dtype)

            def attention(q=q, kt=kt, v=v, s=s, p=p, o=o, h=h, sq=sq, skv=skv):
                np.matmul(q, kt, out=s)
                softmax_(s.reshape(h * sq, skv), p.reshape(h * sq, skv))
                np.matmul(p, v, out=o)

            st = time_fn(attention, **kw)
            nbytes = q.itemsize * (q.size + 2 * v.size + o.size)
            out.append(record("attention", "attention", dtype, dev, st, threads, sq, skv, d, batch=h,
                              nbytes=nbytes))
    progress(f"elementwise+attention: {len(out)} measurements")
    return out


# --------------------------------------------------------------------------------------------
# CUDA kernels (torch, imported lazily)


def capture_cuda(quick: bool, progress: Callable[[str], None] = lambda s: None) -> list[dict]:
    import torch  # noqa: PLC0415 - only the CUDA path needs torch

    if not torch.cuda.is_available():
        raise RuntimeError("--device cuda: torch sees no CUDA device")
    cuda = torch.device("cuda")
    dev = f"cuda:{torch.cuda.get_device_name()}"
    timer = CudaEventTimer(torch)
    kw = {"warmup": 3, "repeats": 5 if quick else 11, "timer": timer, "min_sample_s": 2e-4}
    out: list[dict] = []
    cap = torch.cuda.get_device_capability()
    dims = (64, 512, 2048, 8192) if quick else (16, 64, 256, 1024, 2048, 4096, 8192, 16384)
    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16}
    for name, dt in dtypes.items():
        for m in dims:
            for n in dims:
                for k in dims:
                    a, b = torch.randn(m, k, device=cuda, dtype=dt), torch.randn(k, n, device=cuda, dtype=dt)
                    st = time_fn(lambda a=a, b=b: torch.matmul(a, b), **kw)
                    out.append(record("gemm", "matmul", name, dev, st, 0, m, n, k, nbytes=2 * (m * k + k * n + m * n)))
    if hasattr(torch, "float8_e4m3fn") and hasattr(torch, "_scaled_mm") and cap >= (8, 9):
        one = torch.ones((), device=cuda)
        for m in dims:
            for n in dims:
                k = n
                a = torch.randn(m, k, device=cuda).to(torch.float8_e4m3fn)
                b = torch.randn(n, k, device=cuda).to(torch.float8_e4m3fn).t()
                try:
                    st = time_fn(lambda a=a, b=b: torch._scaled_mm(a, b, scale_a=one, scale_b=one,
                                                                   out_dtype=torch.bfloat16), **kw)
                except (RuntimeError, TypeError) as exc:  # shape or build without fp8 support
                    progress(f"fp8 gemm skipped: {exc}")
                    break
                out.append(record("gemm", "matmul", "fp8", dev, st, 0, m, n, k, nbytes=m * k + k * n + 2 * m * n))
    progress(f"gemm: {len(out)}")
    sdpa = torch.nn.functional.scaled_dot_product_attention
    heads, d = 32, 128
    for bsz, s in ((1, 512), (1, 2048), (4, 1024)) + (() if quick else ((1, 8192), (8, 512))):
        q, kk, v = (torch.randn(bsz, heads, s, d, device=cuda, dtype=torch.bfloat16) for _ in range(3))
        st = time_fn(lambda q=q, kk=kk, v=v: sdpa(q, kk, v, is_causal=True), **kw)
        out.append(record("attention", "sdpa_prefill", "bf16", dev, st, 0, s, s, d, batch=bsz * heads))
    for bsz, ctx in ((1, 1024), (16, 1024), (64, 2048)) + (() if quick else ((1, 16384), (128, 4096))):
        q = torch.randn(bsz, heads, 1, d, device=cuda, dtype=torch.bfloat16)
        kk, v = (torch.randn(bsz, heads, ctx, d, device=cuda, dtype=torch.bfloat16) for _ in range(2))
        st = time_fn(lambda q=q, kk=kk, v=v: sdpa(q, kk, v), **kw)
        out.append(record("attention", "sdpa_decode", "bf16", dev, st, 0, 1, ctx, d, batch=bsz * heads,
                          nbytes=2 * kk.numel() * 2))
    block, kvh = 16, 8
    for seqs, ctx in ((8, 1024), (64, 2048)):
        nblocks = seqs * ctx // block
        cache = torch.randn(nblocks * 2, block, kvh, d, device=cuda, dtype=torch.bfloat16)
        table = torch.randperm(nblocks * 2, device=cuda)[:nblocks]
        st = time_fn(lambda cache=cache, table=table: cache.index_select(0, table), **kw)
        out.append(record("attention", "paged_gather", "bf16", dev, st, 0, seqs, ctx, d, batch=kvh,
                          elements=nblocks * block * kvh * d, nbytes=2 * 2 * nblocks * block * kvh * d))
    progress(f"attention: {len(out)}")
    for mib in (1, 16, 256) if quick else (1, 4, 16, 64, 256, 1024):
        n = mib * 2 ** 20 // 4
        a, b, c = (torch.randn(n, device=cuda) for _ in range(3))
        host = torch.empty(n, pin_memory=True)
        kernels = (("d2d", lambda a=a, c=c: c.copy_(a), "copy", 2 * 4 * n),
                   ("h2d", lambda c=c, host=host: c.copy_(host, non_blocking=True), "copy", 4 * n),
                   ("d2h", lambda a=a, host=host: host.copy_(a, non_blocking=True), "copy", 4 * n),
                   ("scale", lambda a=a, c=c: torch.mul(a, 3.0, out=c), "stream", 2 * 4 * n),
                   ("add", lambda a=a, b=b, c=c: torch.add(a, b, out=c), "stream", 3 * 4 * n),
                   ("triad", lambda a=a, b=b, c=c: torch.add(a, b, alpha=3.0, out=c), "stream", 3 * 4 * n))
        for name, fn, cls, nb in kernels:
            st = time_fn(fn, **kw)
            out.append(record(cls, name, "fp32", dev, st, 0, elements=n, nbytes=nb))
    for rows, cols in ((4096, 4096), (16384, 8192)):
        x = torch.randn(rows, cols, device=cuda, dtype=torch.bfloat16)
        st = time_fn(lambda x=x: torch.softmax(x, dim=-1), **kw)
        out.append(record("elementwise", "softmax", "bf16", dev, st, 0, rows, cols, elements=x.numel(),
                          nbytes=4 * x.numel()))
        st = time_fn(lambda x=x, cols=cols: torch.nn.functional.layer_norm(x, (cols,)), **kw)
        out.append(record("elementwise", "layernorm", "bf16", dev, st, 0, rows, cols, elements=x.numel(),
                          nbytes=4 * x.numel()))
    ngpu = torch.cuda.device_count()
    if ngpu > 1:
        from torch.cuda import nccl  # noqa: PLC0415

        def sync_all():
            for i in range(ngpu):
                torch.cuda.synchronize(i)

        for mib in (1, 16, 256):
            n = mib * 2 ** 20 // 2
            ts = [torch.ones(n, device=f"cuda:{i}", dtype=torch.bfloat16) for i in range(ngpu)]
            st = time_fn(lambda ts=ts: nccl.all_reduce(ts), warmup=3, repeats=kw["repeats"], sync=sync_all)
            out.append(record("collective", "all_reduce", "bf16", dev, st, 0, batch=ngpu, elements=n, nbytes=2 * n))
    progress(f"total: {len(out)}")
    return out


# --------------------------------------------------------------------------------------------
# provenance and output


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _timer_info(device: str, threads: int) -> dict:
    if device == "cuda":
        return {"clock": "CUDA events (torch.cuda.Event elapsed_time), host perf_counter for collectives",
                "host_resolution_s": timer_resolution_s()}
    name = "thread_time" if threads == 1 else "perf_counter"
    return {"clock": name, "info": str(time.get_clock_info(name)),
            "resolution_s": timer_resolution_s(cpu_clock(threads))}


def _loadavg() -> list[float] | None:
    """1/5/15-minute load: other work on the machine during a capture shows up here."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def cpu_provenance() -> dict:
    model = platform.processor()
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    caches = []
    for idx in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        caches.append({f: _read(str(idx / f)) for f in ("level", "type", "size", "shared_cpu_list")})
    lscpu = {}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        keep = ("Model name", "CPU family", "Model", "CPU(s)", "Thread(s) per core", "Core(s) per socket",
                "L1d cache", "L2 cache", "L3 cache", "Hypervisor vendor", "CPU max MHz")
        pairs = (ln.partition(":") for ln in text.splitlines())
        lscpu = {k.strip(): v.strip() for k, _, v in pairs if k.strip() in keep}
    except (OSError, subprocess.SubprocessError):
        pass
    blas = {}
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
    except TypeError:  # numpy < 1.26 has no mode=
        blas = {"name": "unknown (numpy < 1.26)"}
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"cpu_model": model, "logical_cpus": os.cpu_count(), "cpus_usable": affinity, "caches": caches,
            "lscpu": lscpu, "blas": blas, "numpy": np.__version__}
    try:
        import threadpoolctl  # noqa: PLC0415 - optional; reports the BLAS pools actually in use

        info["threadpools"] = threadpoolctl.threadpool_info()
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed; threads pinned through the environment only"
    return info


def cuda_provenance() -> dict:
    import torch  # noqa: PLC0415

    props = torch.cuda.get_device_properties(0)
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": props.name,
            "capability": list(torch.cuda.get_device_capability()), "gpu_memory_bytes": props.total_memory,
            "sm_count": props.multi_processor_count, "gpu_count": torch.cuda.device_count()}


def write_capture(out_dir: Path, rows: list[dict], provenance: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "capture.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({c: (repr(r[c]) if isinstance(r[c], float) else r[c]) for c in COLUMNS})
    (out_dir / "capture.json").write_text(json.dumps(provenance, indent=2, default=str) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description="time small real kernels and write a calibration record")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--quick", action="store_true", help="small grid for CI (< 20 s on 2 cores)")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS threads to pin (default 1: timings that do not depend on other load)")
    ap.add_argument("-o", "--out", type=Path, required=True, help="output directory")
    args = ap.parse_args(argv)
    if os.environ.get(PIN_FLAG) != str(args.threads):  # pin BLAS threads before numpy loads: re-exec
        env = dict(os.environ, **{v: str(args.threads) for v in THREAD_VARS}, **{PIN_FLAG: str(args.threads)})
        return subprocess.call([sys.executable, str(Path(__file__).resolve()), *argv], env=env)
    t0 = time.perf_counter()
    say = lambda s: print(f"[{time.perf_counter() - t0:6.1f}s] {s}", file=sys.stderr, flush=True)  # noqa: E731
    prov = {"format_version": FORMAT_VERSION, "device": args.device, "quick": args.quick,
            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "command": shlex.join([Path(sys.argv[0]).name, *argv]), "python": platform.python_version(),
            "platform": platform.platform(), "threads_pinned": {v: os.environ.get(v) for v in THREAD_VARS},
            "timer": _timer_info(args.device, args.threads),
            "columns": COLUMNS, "host": cpu_provenance(), "loadavg_before": _loadavg()}
    if args.device == "cpu":
        rows = capture_cpu(args.quick, args.threads, say)
    else:
        prov["gpu"] = cuda_provenance()
        rows = capture_cuda(args.quick, say)
    prov["duration_s"] = round(time.perf_counter() - t0, 2)
    prov["loadavg_after"] = _loadavg()
    path = write_capture(args.out, rows, prov)
    say(f"wrote {len(rows)} rows to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
