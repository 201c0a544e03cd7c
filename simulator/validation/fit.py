"""Refit the tile backend's library constants on Vidur-format tables (prints; never writes code).

    python -m simulator.validation.fit compute ../shared/validation/vidur_a100 [--quick]
    python -m simulator.validation.fit network ../shared/validation/vidur_a100
    python -m simulator.validation.fit scaled-mm ../shared/validation/aic/h200_sxm [--quick]
    python -m simulator.validation.fit decode-hbm ../shared/validation/aic/h200_sxm vllm [--quick]
    python -m simulator.validation.fit context-attention ../shared/validation/aic/h200_sxm [--quick]

compute: GEMM constants (mma efficiency, HBM efficiency, per-wave CTA overhead, kernel fixed cost,
fragment cost, L2 bytes per SM clock) by Nelder-Mead on median + 0.5 p90 APE of the train models'
GEMM rows (every 3rd row; ``--quick``: every 12th), then the memory-bound kernels' fixed cost and traffic multipliers
(median ratio start, Nelder-Mead on median + 0.3 p90). network, on the intra-node rows: NCCL's
reduce efficiency factor, chunk size, channel bandwidth cap, per-call cost and eager floor on all_reduce (grid
start, then Nelder-Mead on median + 0.3 p90), and the send/recv floor on send_recv (bounded 1-D
search, same objective; the p2p rate comes from the link presets). Train = Llama-2-7B and Llama-2-70B.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from simulator.core.errors import ConfigError

TRAIN = ("Llama-2-7b-hf", "Llama-2-70b-hf")


def fit_compute(directory: Path, stride: int = 3) -> None:
    from hw_models.gemm_tiles import plan_gemm
    from hw_models.timing.tile import mem_class
    from simulator.validation.kernels import gpu_config, load, make_backend
    from simulator.validation.vidur import GEMM_OPS, MEM_OPS

    compute, _ = load(directory)
    g = gpu_config("A100-80GB")
    gem = [r for r in compute if r.op in GEMM_OPS and r.source in TRAIN][::stride]

    def gemm_obj(x):
        if not (0.3 < x[0] <= 1 and 0.3 < x[1] <= 1 and x[2] >= 0 and x[3] >= 0 and x[4] >= 0 and x[5] > 0):
            return 1e9
        b = make_backend("tile", g, dict(mma_efficiency=x[0], hbm_efficiency=x[1], cta_overhead_cycles=x[2],
                                         kernel_fixed_s=f"{x[3]}us", frag_cost=x[4], l2_bytes_per_clk_sm=x[5]))
        p = b.gemm_params("fp16")
        e = np.array([abs(plan_gemm(r.item.m, r.item.n, r.item.k, 2.0, p).time_s - r.measured_s) / r.measured_s
                      for r in gem])
        return float(np.median(e) + 0.5 * np.percentile(e, 90))

    x0 = [0.787, 0.754, 1436.0, 3.7, 5.0, 33.3]
    res = minimize(gemm_obj, x0, method="Nelder-Mead", options=dict(maxiter=400, xatol=1e-3, fatol=1e-5))
    print("gemm: mma_efficiency, hbm_efficiency, cta_overhead_cycles, kernel_fixed_us, frag_cost, l2_B_per_clk_sm =",
          [round(float(v), 4) for v in res.x], "objective", round(res.fun, 4))
    mem = [r for r in compute if r.op in MEM_OPS and r.source in TRAIN]
    cls = np.array([mem_class(r.item.name) for r in mem])
    nbytes = np.array([r.item.bytes for r in mem], float)
    meas = np.array([r.measured_s for r in mem])
    tokens = np.array([r.x for r in mem])
    bw = g.memory_bw_bytes_per_s * res.x[1]
    names = sorted(set(cls))
    x = [float(np.median(meas[tokens <= 8])) * 1e6]
    for c in names:
        sel = (cls == c) & (tokens >= 1024)
        x.append(float(np.median((meas[sel] - x[0] * 1e-6) * bw / nbytes[sel])))

    def mem_obj(v):
        mult = dict(zip(names, v[1:]))
        e = np.abs(v[0] * 1e-6 + np.array([mult[c] for c in cls]) * nbytes / bw - meas) / meas
        return float(np.median(e) + 0.3 * np.percentile(e, 90))

    r2 = minimize(mem_obj, x, method="Nelder-Mead", options=dict(maxiter=3000, fatol=1e-6, xatol=1e-4))
    print("memory: fixed_us =", round(float(r2.x[0]), 3), "multipliers =",
          {c: round(float(v), 3) for c, v in zip(names, r2.x[1:])})
    print("memory: floor_us =", {c: round(float(np.median(meas[(cls == c) & (tokens <= 16)])) * 1e6, 2)
                                 for c in names})


def fit_network(directory: Path) -> None:
    from scipy.optimize import minimize_scalar

    from hw_models.collectives import NcclParams
    from simulator.validation.kernels import load, network_s

    _, network = load(directory)
    rows = [r for r in network if r.intra_node]
    meas = np.array([r.measured_s for r in rows])
    is_ar = np.array([r.op == "all_reduce" for r in rows])
    ar, sr = [r for r, a in zip(rows, is_ar) if a], [r for r, a in zip(rows, is_ar) if not a]

    def score(pr: NcclParams, sel: list, m: np.ndarray) -> float:
        e = np.abs(np.array([network_s(r, "tile", pr) for r in sel]) - m) / m
        return float(np.median(e) + 0.3 * np.percentile(e, 90))

    # all-reduce: reduce efficiency, chunk, channel cap, per-call cost. Coarse grid over the
    # channel cap (share of the NVLink rating) and the per-call cost (us), then Nelder-Mead.
    def obj(x):
        if min(x[:3]) <= 0 or min(x[3:]) < 0:
            return 1e9
        return score(NcclParams(reduce_eff=x[0], chunk_bytes=x[1] * 1e3, channel_share=x[2],
                                reduce_call_s=x[3] * 1e-6, reduce_floor_s=x[4] * 1e-6), ar, meas[is_ar])

    starts = [[1.0, 128.0, c, r, f] for c, r, f in itertools.product([0.6, 0.7], [10, 20], [0, 50, 60])]
    res = minimize(obj, min(starts, key=obj), method="Nelder-Mead",
                   options=dict(maxiter=400, xatol=1e-3, fatol=1e-5))
    print("nccl all_reduce: reduce_eff, chunk_kB, channel_share, reduce_call_us, reduce_floor_us =",
          [round(float(v), 3) for v in res.x], "objective", round(res.fun, 4))
    # send/recv: the rendezvous floor only (the p2p rate is the link preset's p2p_efficiency)
    r2 = minimize_scalar(lambda f: score(NcclParams(p2p_floor_s=f * 1e-6), sr, meas[~is_ar]),
                         bounds=(1.0, 40.0), method="bounded", options=dict(xatol=0.05))
    print("nccl send_recv: p2p_floor_us =", round(float(r2.x), 2), "objective", round(float(r2.fun), 4))


def _objective(rows: list, gpu, over: dict, q: float = 0.5) -> float:
    from simulator.validation.kernels import make_backend

    b = make_backend("tile", gpu, over)
    pred = np.array([sum(b.op_s(o) for o in r.item) if isinstance(r.item, list) else b.op_s(r.item) for r in rows])
    meas = np.array([r.measured_s for r in rows])
    e = np.abs(pred - meas) / meas
    return float(np.median(e) + q * np.percentile(e, 90))


def _nm(f, x0: list, iters: int = 150):
    return minimize(f, x0, method="Nelder-Mead", options=dict(maxiter=iters, xatol=1e-3, fatol=1e-5))


def fit_aic(directory: Path, stride: int = 4, gemm: bool = True) -> None:
    """Hopper-class GEMM (wgmma) and attention constants on an aic system directory's tables:
    wgmma_efficiency[bf16], wgmma_cta_overhead_cycles, wgmma_kernel_fixed_s on the bf16 GEMM rows;
    wgmma_efficiency[fp8] and the activation-quantize kernel (traffic multiplier, floor) on the fp8
    rows (then the quantize kernel per framework, fp8 efficiency held); the attention family's MMA
    efficiency, per-CTA cycles and prefill op cost on the context rows, the decode op cost on the
    generation rows. Nelder-Mead on median + 0.5 p90 APE of every ``stride``-th row. On an Ampere
    directory only the fa2 attention constants (its GEMM constants come from ``fit compute``)."""
    from hw_models.timing.tile import FIT_MEM_MULT
    from simulator.validation.aic import default_gpu, load_aic
    from simulator.validation.kernels import gpu_config

    rows, _ = load_aic(directory)
    g = gpu_config(default_gpu(directory))
    hopper = g.architecture in ("hopper", "blackwell")
    sel = {c: [r for r in rows if r.op == c][::stride] for c in ("gemm bf16", "gemm fp8", "context attention",
                                                                   "generation attention")}
    mult = dict(FIT_MEM_MULT)
    out: dict = {}
    if hopper and gemm:
        def bf16(x):
            if not (0.3 < x[0] <= 1 and x[1] >= 0 and x[2] >= 0):
                return 1e9
            return _objective(sel["gemm bf16"], g, dict(wgmma_efficiency={"bf16": x[0]}, wgmma_cta_overhead_cycles=x[1],
                                                        wgmma_kernel_fixed_s=f"{x[2]}us"))

        if "--fp8-only" in sys.argv:  # the bf16 constants as they stand
            from hw_models.timing.tile import TileConfig

            c = TileConfig()
            eff16, ovh, fixed = c.wgmma_efficiency["bf16"], c.wgmma_cta_overhead_cycles, c.wgmma_kernel_fixed_s * 1e6
        else:
            r = _nm(bf16, [0.75, 1000.0, 2.5])
            eff16, ovh, fixed = (float(v) for v in r.x)
            print(f"wgmma bf16: efficiency {eff16:.4f} cta_overhead_cycles {ovh:.1f} kernel_fixed_us {fixed:.3f} "
                  f"objective {r.fun:.4f}")
        base = dict(wgmma_cta_overhead_cycles=ovh, wgmma_kernel_fixed_s=f"{fixed}us")

        def fp8(x, rows8, eff=None):
            e, (m, fl, rb) = (x[0], x[1:]) if eff is None else (eff, x)
            if not (0.2 < e <= 1 and m > 0 and fl >= 0 and rb > 0):
                return 1e9
            return _objective(rows8, g, dict(base, wgmma_efficiency={"bf16": eff16, "fp8": e},
                                             mem_traffic_multiplier=dict(mult, quant=m),
                                             mem_kernel_floor_s={"quant": fl * 1e-6}, row_bytes_in_flight=rb))

        r = _nm(lambda x: fp8(x, sel["gemm fp8"]), [0.7, 2.0, 3.0, 4096.0], 250)
        eff8 = float(r.x[0])
        print(f"wgmma fp8: efficiency {eff8:.4f} quant multiplier {r.x[1]:.3f} quant floor_us {r.x[2]:.3f} "
              f"row_bytes_in_flight {r.x[3]:.0f} objective {r.fun:.4f}")
        for fw in sorted({x.source for x in sel["gemm fp8"]}):
            r2 = _nm(lambda x, fw=fw: fp8(x, [y for y in sel["gemm fp8"] if y.source == fw], eff8), list(r.x[1:]))
            print(f"  {fw}: quant multiplier {r2.x[0]:.3f} quant floor_us {r2.x[1]:.3f} row_bytes_in_flight "
                  f"{r2.x[2]:.0f} objective {r2.fun:.4f}")
        out = dict(base, wgmma_efficiency={"bf16": eff16, "fp8": eff8})
    if "--fp8-only" in sys.argv:
        return
    fam = "fa3" if hopper else "fa2"
    print(f"{fam} attention, all frameworks:", _fit_attention(sel, g, fam, out))
    for fw in sorted({x.source for x in sel["context attention"]}):
        part = {c: [x for x in v if x.source == fw] for c, v in sel.items()}
        # TRT-LLM decode: XQA serves up to 32 query heads per KV head, its MMHA kernel the rest
        print(f"  {fw}:", _fit_attention(part, g, fam, out, 32 if fw.startswith("trtllm") else 0))


def fit_scaled_mm(directory: Path, stride: int = 2) -> None:
    """Per framework whose ``FRAMEWORK_TIMING`` runs per-tensor fp8 GEMMs on CUTLASS scaled_mm
    (``fp8_gemm_kernel``: cutlass_sm90, sgl_kernel_sm90): its main-loop efficiency and per-wave cost and its
    activation-quantize kernel (traffic multiplier, floor, bytes in flight per row, cost per row) on
    the even ``gemm fp8`` rows (every ``stride``-th of them), Nelder-Mead on median + 0.5 p90 APE;
    prints the fit and the odd (held-out) rows' median / p90 APE and signed bias."""
    from simulator.validation.aic import FRAMEWORK_TIMING, default_gpu, framework_of, load_aic
    from simulator.validation.kernels import gpu_config, make_backend

    rows, _ = load_aic(directory)
    g = gpu_config(default_gpu(directory))
    fp8 = [r for r in rows if r.op == "gemm fp8"]
    for fw, base in sorted(FRAMEWORK_TIMING.items()):
        if base.get("fp8_gemm_kernel", "auto") == "auto":
            continue
        mine = [r for r in fp8 if framework_of(r) == fw]
        train, test = mine[0::2][::stride], mine[1::2]

        def over(x, base=base):
            return dict(base, scaled_mm_efficiency=x[0], scaled_mm_cta_overhead_cycles=x[1],
                        mem_traffic_multiplier={"quant": x[2]}, mem_kernel_floor_s={"quant": x[3] * 1e-6},
                        row_bytes_in_flight=x[4], row_cost_s={"quant": x[5] * 1e-9})

        def obj(x, train=train, over=over):
            if not (0.2 < x[0] <= 1 and x[1] >= 0 and x[2] > 0 and x[3] >= 0 and x[4] > 0 and x[5] >= 0):
                return 1e9
            return _objective(train, g, over(x))

        r = _nm(obj, [0.8, 1000.0, 1.5, 2.0, 4500.0, 500.0], 300)
        b = make_backend("tile", g, over(r.x))
        pred = np.array([sum(b.op_s(o) for o in x.item) for x in test])
        meas = np.array([x.measured_s for x in test])
        e = (pred - meas) / meas
        print(f"{fw}: scaled_mm_efficiency {r.x[0]:.4f} scaled_mm_cta_overhead_cycles {r.x[1]:.1f} quant multiplier "
              f"{r.x[2]:.3f} floor_us {r.x[3]:.3f} row_bytes_in_flight {r.x[4]:.0f} row_cost_ns {r.x[5]:.1f} "
              f"objective {r.fun:.4f}; odd rows ({len(test)}): median {np.median(abs(e)):.2%} p90 "
              f"{np.percentile(abs(e), 90):.2%} bias {np.median(e):+.2%}")


def fit_decode_hbm(directory: Path, fw: str, stride: int = 2) -> None:
    """A framework's fa3 decode with its own share of HBM bandwidth (``attention_decode_hbm_efficiency``, the
    K/V tiles pipelined by TMA): that share, the decode op cost and the cycles per (sequence, KV head) CTA on
    the framework's even ``generation attention`` rows (every ``stride``-th), Nelder-Mead on median + 0.5 p90
    APE, its other constants as ``FRAMEWORK_TIMING`` holds them; prints the fit and the odd (held-out) rows'
    median / p90 APE and signed bias, before and after, over all rows and over the rows that stream at least
    256 MiB of K/V per layer (where the bandwidth is the bound)."""
    from simulator.validation.aic import FRAMEWORK_TIMING, default_gpu, framework_of, load_aic
    from simulator.validation.kernels import gpu_config, make_backend

    rows, _ = load_aic(directory)
    g = gpu_config(default_gpu(directory))
    base = dict(FRAMEWORK_TIMING[fw])
    mine = [r for r in rows if r.op == "generation attention" and framework_of(r) == fw]
    train, test = mine[0::2][::stride], mine[1::2]

    def over(x):
        return dict(base, attention_decode_fixed_s={"fa3": x[0] * 1e-6}, attention_decode_cta_cycles={"fa3": x[1]},
                    attention_decode_hbm_efficiency={"fa3": x[2]})

    def obj(x):
        if not (x[0] >= 0 and x[1] >= 0 and 0.3 < x[2] <= 1):
            return 1e9
        return _objective(train, g, over(x))

    def kv_bytes(r) -> float:
        op = r.item[-1] if isinstance(r.item, list) else r.item
        return op.kv_tokens * op.kv_heads * op.head_dim * 2.0 * op.dtype_bytes

    big = [r for r in test if kv_bytes(r) >= 2 ** 28]

    def figures(cfg: dict, sub: list) -> str:
        b = make_backend("tile", g, cfg)
        pred = np.array([sum(b.op_s(o) for o in r.item) if isinstance(r.item, list) else b.op_s(r.item) for r in sub])
        meas = np.array([r.measured_s for r in sub])
        e = (pred - meas) / meas
        return f"{np.median(abs(e)):.2%} / {np.percentile(abs(e), 90):.2%} / {np.median(e):+.2%} ({len(sub)} rows)"

    x0 = [base["attention_decode_fixed_s"]["fa3"] * 1e6, base["attention_decode_cta_cycles"]["fa3"], 0.9]
    r = _nm(obj, x0, 200)
    print(f"{fw}: attention_decode_hbm_efficiency fa3 {r.x[2]:.4f} attention_decode_fixed_s fa3 {r.x[0]:.3f} us "
          f"attention_decode_cta_cycles fa3 {r.x[1]:.1f} objective {r.fun:.4f}")
    print(f"  odd rows, median / p90 / bias: before {figures(base, test)}; after {figures(over(r.x), test)}")
    print(f"  odd rows with >= 256 MiB of K/V per layer: before {figures(base, big)}; after {figures(over(r.x), big)}")


def fit_context_attention(directory: Path, stride: int = 2) -> None:
    """Per framework, its fa3 prefill as a persistent kernel (``attention_persistent``: the SMs share the causal
    tiles longest first) with the softmax partly overlapped with the MMAs: the MMA efficiency, the cycles per
    (Q tile, head) tile, the prefill op cost and the overlapped share (``attention_softmax_overlap``) on the
    framework's even ``context attention`` rows (every ``stride``-th), Nelder-Mead on median + 0.5 p90 APE, its
    other constants as ``FRAMEWORK_TIMING`` holds them; prints the fit and the odd (held-out) rows' median / p90
    APE and signed bias before and after, over all rows and by batch / sequence length."""
    from simulator.validation.aic import FRAMEWORK_TIMING, default_gpu, framework_of, load_aic
    from simulator.validation.kernels import gpu_config, make_backend

    rows, _ = load_aic(directory)
    g = gpu_config(default_gpu(directory))
    for fw, base in sorted(FRAMEWORK_TIMING.items()):
        base = {k: v for k, v in base.items() if k not in ("attention_softmax_overlap", "attention_persistent")}
        mine = [r for r in rows if r.op == "context attention" and framework_of(r) == fw]
        train, test = mine[0::2][::stride], mine[1::2]

        def over(x, base=base):
            return dict(base, fa3_mma_efficiency=x[0], attention_cta_cycles={"fa3": x[1]},
                        attention_prefill_fixed_s={"fa3": x[2] * 1e-6}, attention_softmax_overlap={"fa3": x[3]},
                        attention_persistent={"fa3": True})

        def obj(x, train=train, over=over):
            if not (0.1 < x[0] <= 1 and x[1] >= 0 and x[2] >= 0 and 0.0 <= x[3] <= 1.0):
                return 1e9
            return _objective(train, g, over(x))

        x0 = [base["fa3_mma_efficiency"], base["attention_cta_cycles"]["fa3"],
              base["attention_prefill_fixed_s"]["fa3"] * 1e6, 0.5]
        r = _nm(obj, x0, 300)
        meas = np.array([x.measured_s for x in test])
        bs = np.array([x.item.seqs for x in test])
        s = np.array([x.item.q_tokens / x.item.seqs for x in test])

        def errs(cfg, test=test, meas=meas):
            b = make_backend("tile", g, cfg)
            return (np.array([b.op_s(x.item) for x in test]) - meas) / meas

        e0, e1 = errs(base), errs(over(r.x))
        print(f"{fw}: fa3_mma_efficiency {r.x[0]:.4f} attention_cta_cycles fa3 {r.x[1]:.1f} attention_prefill_fixed_s "
              f"fa3 {r.x[2]:.3f} us attention_softmax_overlap fa3 {r.x[3]:.4f} objective {r.fun:.4f}")
        for name, m in [("all", np.ones(len(test), bool))] + [
                (f"batch {lo}-{hi} seq {sl}-{sh}", (bs >= lo) & (bs <= hi) & (s >= sl) & (s <= sh))
                for lo, hi in ((1, 1), (2, 4), (5, 16), (17, 1 << 20))
                for sl, sh in ((1, 512), (513, 2048), (2049, 8191), (8192, 1 << 20))]:
            if m.any():
                print(f"  odd rows {name} ({int(m.sum())}), median / p90 / bias: before "
                      f"{np.median(abs(e0[m])):.2%} / {np.percentile(abs(e0[m]), 90):.2%} / {np.median(e0[m]):+.2%}; "
                      f"after {np.median(abs(e1[m])):.2%} / {np.percentile(abs(e1[m]), 90):.2%} / "
                      f"{np.median(e1[m]):+.2%}")


def _fit_attention(sel: dict, g, fam: str, out: dict, max_group: int = 0) -> dict:
    """The attention family's constants on ``sel``'s context rows (MMA efficiency, cycles per Q-tile
    CTA, prefill op cost) and generation rows (decode op cost, cycles per (sequence, KV head) CTA, and
    the decode kernel: split_kv or lean, the better fit)."""
    eff_key = "fa3_mma_efficiency" if fam == "fa3" else "attention_mma_efficiency"

    def prefill(x):
        if not (0.1 < x[0] <= 1 and x[1] >= 0 and x[2] >= 0):
            return 1e9
        return _objective(sel["context attention"], g, dict(out, **{eff_key: x[0]}, attention_cta_cycles={fam: x[1]},
                                                            attention_prefill_fixed_s={fam: x[2] * 1e-6}))

    def decode(x, mode):
        if min(x) < 0:
            return 1e9
        return _objective(sel["generation attention"], g, dict(out, attention_decode_fixed_s={fam: x[0] * 1e-6},
                                                               attention_decode_cta_cycles={fam: x[1]},
                                                               decode_kernel=mode, decode_max_group=max_group))

    r = _nm(prefill, [0.6, 2000.0, 6.0], 200)
    fits = {mode: _nm(lambda x, mode=mode: decode(x, mode), [4.0, 4000.0]) for mode in ("split_kv", "lean")}
    mode = min(fits, key=lambda k: fits[k].fun)
    r3 = fits[mode]
    return {eff_key: round(float(r.x[0]), 4), "attention_cta_cycles": {fam: round(float(r.x[1]), 1)},
            "attention_prefill_fixed_s": {fam: round(float(r.x[2]) * 1e-6, 9)},
            "attention_decode_fixed_s": {fam: round(float(r3.x[0]) * 1e-6, 9)},
            "attention_decode_cta_cycles": {fam: round(float(r3.x[1]), 1)}, "decode_kernel": mode,
            "objective": (round(float(r.fun), 4), round(float(r3.fun), 4))}


COMMANDS = ("compute", "network", "aic", "scaled-mm", "decode-hbm", "context-attention")
USAGE = ("usage: python -m simulator.validation.fit compute|network|aic|scaled-mm|decode-hbm|context-attention "
         "DIR [FRAMEWORK] [--quick] [--attention-only]")


def main(argv: list[str]) -> None:
    """Bad input (a command, folder, framework or option it does not know) prints one line and exits 2."""
    def bad(msg: str) -> None:
        print(f"fit: {msg}", file=sys.stderr)
        sys.exit(2)

    if len(argv) < 2 or argv[0] not in COMMANDS:
        bad(USAGE)
    what, directory = argv[0], Path(argv[1])
    flags = [a for a in argv[2:] if a.startswith("-")]
    rest = [a for a in argv[2:] if not a.startswith("-")]
    known = {"aic": ("--quick", "--attention-only"), "network": ()}.get(what, ("--quick",))
    unknown = [a for a in flags if a not in known]
    if unknown:
        bad(f"{what}: unknown option {unknown[0]!r} (known: {', '.join(known) or 'none'})")
    takes = "DIR FRAMEWORK" if what == "decode-hbm" else "DIR"
    if len(rest) != len(takes.split()) - 1:
        bad(f"{what}: takes {takes}, got {len(rest) + 1} argument(s)")
    if not directory.is_dir():
        bad(f"{directory} is not a directory")
    if what == "decode-hbm":
        from simulator.validation.aic import FRAMEWORK_TIMING

        if rest[0] not in FRAMEWORK_TIMING:
            bad(f"decode-hbm: unknown framework {rest[0]!r} (known: {', '.join(sorted(FRAMEWORK_TIMING))})")
    quick = "--quick" in flags
    try:
        if what == "compute":
            fit_compute(directory, 12 if quick else 3)
        elif what == "network":
            fit_network(directory)
        elif what == "scaled-mm":
            fit_scaled_mm(directory, 8 if quick else 2)
        elif what == "decode-hbm":
            fit_decode_hbm(directory, rest[0], 8 if quick else 2)
        elif what == "context-attention":
            fit_context_attention(directory, 8 if quick else 2)
        else:
            fit_aic(directory, 16 if quick else 4, "--attention-only" not in flags)
    except (ConfigError, FileNotFoundError) as e:  # a folder without the tables it needs
        bad(f"{what} {directory}: {e}")


if __name__ == "__main__":
    main(sys.argv[1:])
