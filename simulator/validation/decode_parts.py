"""A decode step by parts: each kernel class of one step against its own kernel table.

    python -m simulator.validation.decode_parts parts ../shared/validation/aic   (vLLM 0.12 70B c4 rows)
    python -m simulator.validation.decode_parts fit-hbm ../shared/validation/aic/h200_sxm

Models: ``parts`` builds each vLLM Llama-3.1-70B fp8 row at 4 clients and 1024-token prompts as
    ``validate serving`` does (``serving.classify``), lowers one decode step of 4 rows at isl + osl / 2
    tokens of context each and prints, per part, hwsim's time (the row's profile, tile backend), the H200
    table's time at the same shape (fp8 GEMM rows at M = 4, linear between the two nearest table
    shapes where the exact one is absent, less the table's dynamic per-token quantize of the GEMM
    input where the profile fuses it into the producer; FA3 generation rows at the nearest contexts;
    the custom all-reduce replayed in a CUDA graph), the count per step, the sum, the measured TPOT
    and what remains (host, gaps, sampling: what no kernel table measures).
    ``fit-hbm`` fits ``scaled_mm_hbm_efficiency`` (the share of HBM bandwidth CUTLASS scaled_mm's
    sm90 kernels reach streaming weights) and ``scaled_mm_hbm_latency_s`` (the loaded latency one
    CTA sees: its bytes in flight over it cap a small grid's bandwidth) on the GEMM alone of vLLM's
    fp8 GEMM rows at decode sizes (M <= 16, ``--max-m N``: M <= N; each row less the quantize table's dynamic per-token
    quantize; ``--static-quant``: its static per-tensor kernel alone): even rows, odd rows held out,
    the other constants as fitted (``aic.FRAMEWORK_TIMING``);
    prints the fit, the held-out rows (also by weight size) and all fp8 rows before / after.
    ``parts AIC_DIR trtllm``: the TensorRT-LLM rows the same way (its fp8 GEMM rows hold the dynamic
    quantize too: their floor is the bf16 row's plus static kernel plus scale computation; fp8 K/V
    generation rows; its all-reduce table). ``fit-hbm SYSTEM_DIR trtllm``: the same two settings on its
    rows (cuBLASLt's kernel, the auto family); ``--refit-quant`` then refits the kernel check's quantize
    constants (traffic multiplier, floor, bytes in flight per row) with the GEMM held.
Ignores: the LM head, embedding and final norm (one kernel each per step; hwsim's times shown).
Sources: aiconfigurator H200 tables (../shared/validation/aic/h200_sxm: gemm/vllm/0.24.0,
    attention/vllm/0.24.0, comm/vllm/0.14.0 custom_allreduce (graph), quantize/vllm/0.24.0; the trtllm
    1.3.0rc20 folders); silicon_e2e_h200_sxm.csv for the measured TPOT.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np


def _interp(table: dict, n: int, k: int) -> float:
    """The table's time at (n, k), linear in n (or k) between the nearest table shapes."""
    if (n, k) in table:
        return table[(n, k)]
    ns = sorted({a for a, b in table if b == k})
    if n not in ns and ns and ns[0] < n < ns[-1]:
        lo, hi = max(x for x in ns if x < n), min(x for x in ns if x > n)
        return table[(lo, k)] + (table[(hi, k)] - table[(lo, k)]) * (n - lo) / (hi - lo)
    ks = sorted({b for a, b in table if a == n})
    lo, hi = max(x for x in ks if x < k), min(x for x in ks if x > k)
    return table[(n, lo)] + (table[(n, hi)] - table[(n, lo)]) * (k - lo) / (hi - lo)


def _nearest_ctx(df, heads: int, kv: int, ctx: int) -> float:
    sub = df[(df.num_heads == heads) & (df.num_key_value_heads == kv)].groupby("step").latency.median()
    steps = np.array(sub.index)
    lo, hi = steps[steps <= ctx].max(), steps[steps >= ctx].min()
    if lo == hi:
        return float(sub[lo])
    return float(sub[lo] + (sub[hi] - sub[lo]) * (ctx - lo) / (hi - lo))


# each framework's tables: GEMM, attention (generation rows of the profile's K/V dtype), all-reduce
TABLES = {
    "vllm": dict(gemm="gemm/vllm/0.24.0", attn="attention/vllm/0.24.0", attn_source="vllm_flash_attn_fa3",
                 kv="bfloat16", comm="comm/vllm/0.14.0", comm_backend="vllm_graph", quant="quantize/vllm/0.24.0"),
    "trtllm": dict(gemm="gemm/trtllm/1.3.0rc20", attn="attention/trtllm/1.3.0rc20", attn_source="",
                   kv="fp8", comm="comm/trtllm/1.3.0rc20", comm_backend="", quant="quantize/trtllm/1.3.0rc20"),
}


def parts(root: Path, fw: str = "vllm", out=None) -> list[dict]:
    """Prints (and returns, one dict per part and row) the decode step by parts of ``fw``'s 70B c4 rows."""
    import pandas as pd

    from simulator.config.loader import load_scenario
    from simulator.runner import build_link, build_quantization
    from simulator.serving.moe_layout import pool_timing
    from simulator.validation.serving import classify, read_rows
    from workloads.llm import BatchShape, lower

    out = out or sys.stdout
    tb = TABLES[fw]
    sysd = root / "h200_sxm"
    g = pd.read_parquet(sysd / tb["gemm"] / "gemm_perf.parquet")
    g = g[(g.gemm_dtype == "fp8") & (g.m == 4)]
    gemm = (g.groupby(["n", "k"]).latency.median() * 1e3).to_dict()  # us
    a = pd.read_parquet(sysd / tb["attn"] / "generation_attention_perf.parquet")
    a = a[(a.batch_size == 4) & (a.head_dim == 128) & (a.kv_cache_dtype == tb["kv"])]
    if tb["attn_source"]:
        a = a[a.kernel_source == tb["attn_source"]]
    if "window_size" in a:
        a = a[a.window_size == 0]
    a = a.assign(latency=a.latency * 1e3)
    c = pd.read_parquet(sysd / tb["comm"] / "custom_allreduce_perf.parquet")
    if tb["comm_backend"]:
        c = c[c.backend == tb["comm_backend"]]
    ar = (c.groupby(["num_gpus", "message_size"]).latency.median() * 1e3).to_dict()
    quant = {}
    for f in ("scale_matrix_perf", "computescale_perf"):  # dynamic per-tensor / per-token = static + scale
        q = pd.read_parquet(sysd / tb["quant"] / f"{f}.parquet")
        q = q[q.m == 4].groupby("k").latency.median() * 1e3
        for k, v in q.items():
            quant[int(k)] = quant.get(int(k), 0.0) + float(v)
    qk = sorted(quant)

    def dyn_quant(k: int) -> float:
        return float(np.interp(k, qk, [quant[x] for x in qk]))

    rows = [r for r in read_rows(root / "silicon_e2e_h200_sxm.csv")
            if r.framework == fw and r.concurrency == 4 and r.isl == 1024 and "70B" in r.model]
    res: list[dict] = []
    print(f"{fw}: {'row':>5s} {'tp':>2s} {'part':14s} {'count':>5s} {'hwsim us':>9s} {'table us':>9s} {'err':>7s}",
          file=out)
    for r in sorted(rows, key=lambda r: (r.osl, r.tp)):
        sc = load_scenario(classify(r)[0])
        tp, pool, model = r.tp, sc.pools[0], sc.model.config
        be = sc.timing.cls(pool_timing(sc.timing.config, pool), pool.device.config, build_link(sc, pool))
        ctx = r.isl + r.osl // 2  # the mean context of a request's decode steps
        shape = BatchShape(decode_rows=4, decode_kv=4 * ctx, emitting=4)
        ops = lower(shape, model, tp, build_quantization(sc), sc.framework.fusion)
        sum_h = sum_t = 0.0
        for op in ops:
            h = be.op_s(op) * 1e6 / op.count
            if op.kind == "allreduce":
                # table: bf16 elements; TRT-LLM's table is the plain all-reduce, the step's fuses the
                # residual add and RMSNorm (allreduce_norm)
                t = ar[(op.workers, op.bytes // 2)] if op.workers > 1 else 0.0
            elif op.kind == "gemm" and op.dtype == "fp8":
                # the table's row runs a dynamic quantize of the GEMM input first (both frameworks' rows:
                # the row's floor is the GEMM's plus the static kernel plus the scale computation); the
                # step fuses a static one into the producer (act_quant_in_producer), or runs the O
                # projection's own kernel (o_proj_quant, its own line)
                t = _interp(gemm, op.n, op.k) - dyn_quant(op.k)
            elif op.kind == "attn_decode":
                t = _nearest_ctx(a, model.num_heads // tp, max(1, model.num_kv_heads // tp), ctx)
            else:
                t = h  # elementwise: the profile's floor is the quantize table's; lm head: bf16, not compared
            sum_h += h * op.count
            sum_t += t * op.count
            res.append(dict(line=r.line, tp=tp, part=op.name, kind=op.kind, count=op.count, hwsim_us=h, table_us=t))
            print(f"{fw}: {r.line:5d} {tp:2d} {op.name:14s} {op.count:5d} {h:9.2f} {t:9.2f} "
                  f"{100 * (h - t) / t:+6.1f}%", file=out)
        host = (sc.framework.host.step_s + 4 * sc.framework.host.per_seq_s) * 1e3
        res.append(dict(line=r.line, tp=tp, part="step", kind="step", count=1, hwsim_us=sum_h, table_us=sum_t,
                        tpot_ms=r.tpot_ms))
        print(f"{fw}: {r.line:5d} {tp:2d} step: hwsim kernels {sum_h / 1e3:.2f} ms (+ host {host:.2f}), "
              f"tables {sum_t / 1e3:.2f} ms, measured TPOT {r.tpot_ms:.2f} ms, "
              f"remainder {r.tpot_ms - sum_t / 1e3:+.2f} ms", file=out)
    return res


def quant_table(sysd: Path, fw: str = "vllm", static: bool = False):
    """f(m, k) -> seconds of the framework's dynamic per-token fp8 quantize of an m x k input (its
    quantize tables: the static per-tensor kernel plus the scale computation), linear in k at the
    nearest m measured."""
    import pandas as pd

    frames = []
    for f in ("scale_matrix_perf",) if static else ("scale_matrix_perf", "computescale_perf"):
        paths = sorted((sysd / "quantize" / fw).glob(f"*/{f}.parquet"))
        if not paths:
            raise FileNotFoundError(f"no {fw} {f} table under {sysd / 'quantize'}")
        path = paths[0]
        frames.append(pd.read_parquet(path).groupby(["m", "k"]).latency.median())
    both = (frames[0] if static else (frames[0] + frames[1]).dropna()) * 1e-3
    ms = np.array(sorted({m for m, _ in both.index}))

    def f(m: int, k: int) -> float:
        mm = int(ms[np.argmin(abs(ms - m))])
        sub = both[mm]
        return float(np.interp(k, np.array(sub.index, float), np.array(sub.values)))
    return f


def fit_hbm(directory: Path, fw: str = "vllm", static: bool = False, refit_quant: bool = False,
            max_m: int = 16) -> None:
    from scipy.optimize import minimize

    from simulator.validation.aic import FRAMEWORK_TIMING, _gemm_rows, _merged, default_gpu, framework_of
    from simulator.validation.kernels import gpu_config, make_backend

    g = gpu_config(default_gpu(directory))
    q = quant_table(directory, fw, static)
    rows = [r for r in _gemm_rows(directory, Counter()) if r.op == "gemm fp8" and framework_of(r) == fw]
    # the GEMM alone: the row (quantize + scaled_mm) less the quantize table's time at its m x k
    alone = [(r.item[-1], r.measured_s - q(r.item[-1].m, r.item[-1].k)) for r in rows if r.item[-1].m <= max_m]
    alone = [x for x in alone if x[1] > 0]
    train, test = alone[0::2], alone[1::2]
    fitted = ("scaled_mm_hbm_efficiency", "scaled_mm_hbm_latency_s")
    base = {k: v for k, v in _merged(FRAMEWORK_TIMING[fw]).items() if k not in fitted}

    def errs(sub, over) -> np.ndarray:
        b = make_backend("tile", g, over)
        pred = np.array([b.op_s(op) for op, _ in sub])
        meas = np.array([m for _, m in sub])
        return (pred - meas) / meas

    def over(x) -> dict:
        return dict(base, scaled_mm_hbm_efficiency=float(x[0]), scaled_mm_hbm_latency_s=float(x[1]) * 1e-6)

    def obj(x) -> float:
        if not (0.5 < x[0] <= 1.0 and x[1] > 0):
            return 1e9
        e = np.abs(errs(train, over(x)))
        return float(np.median(e) + 0.5 * np.percentile(e, 90))

    lat0 = g.hbm_latency_cycles / g.clock_hz * 1e6
    # the latency's objective is flat near the GPU's (the cap does not bind there): start from a coarse grid
    x0 = min(([0.8, lat0 * f] for f in (1, 2, 3, 4, 5, 6, 8)), key=obj)
    r = minimize(obj, x0, method="Nelder-Mead", options=dict(maxiter=80, xatol=1e-3, fatol=1e-5))
    after = over([round(float(r.x[0]), 4), round(float(r.x[1]), 3)])

    def fig(e: np.ndarray) -> str:
        return (f"median {100 * np.median(abs(e)):.2f} % p90 {100 * np.percentile(abs(e), 90):.2f} % "
                f"bias {100 * np.median(e):+.2f} % ({len(e)} rows)")

    print(f"{fw}: scaled_mm_hbm_efficiency {r.x[0]:.4f} scaled_mm_hbm_latency_s {r.x[1]:.3f} us (the GPU's "
          f"{lat0:.3f} us; train objective {r.fun:.4f}); the GEMM alone (each row less the quantize table's "
          f"{'static per-tensor' if static else 'dynamic per-token'} quantize at its m x k), M <= {max_m}")
    for name, sub in (("even (fit)", train), ("odd (held out)", test)):
        print(f"  {name}: before {fig(errs(sub, base))}; after {fig(errs(sub, after))}")
    for lo, hi in ((0, 1), (1, 4), (4, 16), (16, 64), (64, 256), (256, 1 << 20)):
        sub = [x for x in test if lo << 20 <= x[0].n * x[0].k < hi << 20]
        print(f"  odd, {lo}-{hi} MiB of weights: before {fig(errs(sub, base))}; after {fig(errs(sub, after))}")
    # every fp8 row as the kernel check runs it (the framework's fitted quantize kernel + the GEMM)
    e = []
    for o in (base, after):
        b = make_backend("tile", g, o)
        pred = np.array([sum(b.op_s(op) for op in x.item) for x in rows])
        meas = np.array([x.measured_s for x in rows])
        e.append((pred - meas) / meas)
    print(f"  all {fw} fp8 rows as `validate kernels` runs them: before {fig(e[0])}; after {fig(e[1])}")
    if refit_quant:
        refit_quant_kernel(rows, g, base, after, fig)


def refit_quant_kernel(rows, g, base: dict, after: dict, fig) -> dict:
    """The kernel check's quantize constants (traffic multiplier, floor, bytes in flight per row) were
    fitted on the fp8 GEMM rows with the GEMM as it was: refit them on the even rows as `validate kernels`
    runs them (quantize + GEMM, all M), the GEMM settings held; odd rows held out."""
    from scipy.optimize import minimize

    from simulator.validation.kernels import make_backend

    meas = np.array([x.measured_s for x in rows])

    def errs(o: dict, sl: slice) -> np.ndarray:
        b = make_backend("tile", g, o)
        pred = np.array([sum(b.op_s(op) for op in x.item) for x in rows[sl]])
        return (pred - meas[sl]) / meas[sl]

    def over(x) -> dict:
        return dict(after, mem_traffic_multiplier=dict(after["mem_traffic_multiplier"], quant=float(x[0])),
                    mem_kernel_floor_s=dict(after["mem_kernel_floor_s"], quant=float(x[1]) * 1e-6),
                    row_bytes_in_flight=float(x[2]))

    def obj(x) -> float:
        if not (x[0] > 0 and x[1] >= 0 and x[2] > 0):
            return 1e9
        e = np.abs(errs(over(x), slice(0, None, 2)))
        return float(np.median(e) + 0.5 * np.percentile(e, 90))

    x0 = [after["mem_traffic_multiplier"]["quant"], after["mem_kernel_floor_s"]["quant"] * 1e6,
          after["row_bytes_in_flight"]]
    r = minimize(obj, x0, method="Nelder-Mead", options=dict(maxiter=150, xatol=1e-3, fatol=1e-5))
    new = over([round(float(r.x[0]), 3), round(float(r.x[1]), 3), round(float(r.x[2]))])
    print(f"  quantize kernel refit (GEMM settings held): mem_traffic_multiplier quant {r.x[0]:.3f} "
          f"mem_kernel_floor_s quant {r.x[1]:.3f} us row_bytes_in_flight {r.x[2]:.0f} (were {x0[0]:.3f}, "
          f"{x0[1]:.3f} us, {x0[2]:.0f}; train objective {r.fun:.4f})")
    for name, sl in (("even (fit)", slice(0, None, 2)), ("odd (held out)", slice(1, None, 2))):
        print(f"  {name} rows as `validate kernels` runs them: before {fig(errs(base, sl))}; GEMM fit "
              f"{fig(errs(after, sl))}; GEMM fit + quantize refit {fig(errs(new, sl))}")
    return new


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] not in ("parts", "fit-hbm"):
        print("usage: python -m simulator.validation.decode_parts parts AIC_DIR [FRAMEWORK] | fit-hbm SYSTEM_DIR "
              "[FRAMEWORK] [--static-quant] [--refit-quant] [--max-m N]",
              file=sys.stderr)
        sys.exit(2)
    path = Path(argv[1])
    if not path.is_dir():
        print(f"decode_parts: {path} is not a directory", file=sys.stderr)
        sys.exit(2)
    known = ("--static-quant", "--refit-quant", "--max-m N") if argv[0] == "fit-hbm" else ()
    args, max_m = list(argv[2:]), 16
    if argv[0] == "fit-hbm" and "--max-m" in args:
        i = args.index("--max-m")
        v = args[i + 1] if i + 1 < len(args) else ""
        if not v.isdigit() or int(v) < 1:
            print(f"decode_parts fit-hbm: --max-m takes a positive row count, got {v!r}", file=sys.stderr)
            sys.exit(2)
        max_m = int(v)
        del args[i:i + 2]
    flags = [a for a in args if a.startswith("-")]
    rest = [a for a in args if not a.startswith("-")]
    bad = [a for a in flags if a not in known[:2]]
    if bad or len(rest) > 1:
        what = f"unknown option {bad[0]!r}" if bad else f"unexpected argument {rest[1]!r}"
        print(f"decode_parts {argv[0]}: {what} (takes {'AIC_DIR' if argv[0] == 'parts' else 'SYSTEM_DIR'} [FRAMEWORK]"
              + (f" [{'] ['.join(known)}]" if known else "") + ")", file=sys.stderr)
        sys.exit(2)
    fw = rest[0] if rest else "vllm"
    if argv[0] == "parts":
        if fw not in TABLES:
            print(f"decode_parts: framework {fw!r} has no tables here (known: {', '.join(TABLES)})", file=sys.stderr)
            sys.exit(2)
        parts(path, fw)
    else:
        fit_hbm(path, fw, "--static-quant" in flags, "--refit-quant" in flags, max_m)


if __name__ == "__main__":
    from simulator.core.errors import ConfigError

    try:
        main(sys.argv[1:])
    except (ConfigError, FileNotFoundError) as e:  # a table or system folder the command needs is not there
        print(f"decode_parts: {e}", file=sys.stderr)
        sys.exit(2)
