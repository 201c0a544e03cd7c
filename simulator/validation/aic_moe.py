"""MoE rows of the aic kernel tables: the frameworks' fused MoE op (grouped expert GEMMs) on one GPU.

    hwsim validate kernels ../shared/validation/aic/h200_sxm     (classes "moe bf16", "moe fp8")

Models: each ``moe/<framework>/<version>/moe_perf.parquet`` row as the ops ``workloads.llm.moe_ops``
    lowers one MoE layer to on the measured GPU -- the up grouped GEMM (gate+up; plain up for the
    ``nongated`` kernels), the activation, the down grouped GEMM and the weighted top-k sum -- for
    ``num_tokens`` tokens routed top-``topk`` over ``num_experts`` experts, ``moe_ep_size`` experts
    groups and ``moe_tp_size`` slices of each expert (the GPU holds E / ep experts of width
    inter / tp). Routing: ``balanced`` as hwsim's uniform popularity, ``power_law_<a>`` as its
    ``power_law`` popularity of exponent a (the table generator's law, at its expected order
    statistics), with the experts dealt round-robin over the EP ranks and the busiest rank timed.
    fp8 rows (per-tensor scales) run the grouped GEMMs on fp8 tensor cores with a per-token
    activation-quantize kernel first, as the dense fp8 GEMM rows do.
Ignores: the router GEMM and top-k kernel (not in the measured op), the token sort / align kernel
    (its cost is in the fixed cost of the grouped kernels), block-scaled fp8 ("fp8_block"),
    weight-only int4 and mxfp4 rows (listed as skipped with the reason), one random draw of the
    generator against its expectation.
Sources: aiconfigurator-core 0.12.0 systems data (../shared/validation/README.md).
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

from simulator.validation.vidur import Row

CLASSES = ("moe bf16", "moe fp8", "moe fp8_block", "moe all_to_all")
# experts over the EP ranks: popularity ranks dealt round-robin (the busiest rank holds the hottest expert
# and a fair share of the rest; an assumption, the tables do not say)
PLACEMENT = "interleaved"
DTYPES = {"bfloat16": ("moe bf16", "bf16", 2.0), "fp8": ("moe fp8", "fp8", 1.0),
          "fp8_block": ("moe fp8_block", "fp8", 1.0)}
SKIP = {"int4_wo": "MoE: weight-only int4 experts not mapped",
        "w4a16_mxfp4": "MoE: mxfp4 experts not mapped"}


def family_of(kernel_source: str) -> str | None:
    """hwsim's fused-MoE kernel family (``hw_models.timing.tile.FIT_MOE``) of a table's
    ``kernel_source``, or None when it has none (Marlin / mxfp4 weight-only kernels)."""
    k = kernel_source.lower()
    if "flashinfer_cutlass" in k:
        return "flashinfer_cutlass"
    if k.startswith("moe_torch_flow_cutlass") or k.startswith("moe_torch_flow_nongated"):
        return "cutlass"
    if k == "sglang_fused_moe_triton":
        return "triton_sglang"
    if k.startswith("vllm_") and ("triton" in k or k == "vllm_fused_moe") and "mxfp4" not in k:
        return "triton"
    return None


def config_set_of(source: str) -> str:
    """The Triton fused-MoE configuration set (``hw_models.moe_configs``) of a MoE row's source
    ("<framework> <version> <family>"), or "" when its family is not a Triton one or the version has none."""
    from hw_models.moe_configs import FAMILY_SETS, config_sets

    parts = source.split(" ")
    if len(parts) < 3 or parts[2] not in FAMILY_SETS:
        return ""
    name = f"{parts[0]}=={parts[1]}"
    return name if name in config_sets() else ""


def routing_of(dist: str):
    """hwsim routing of an aic ``distribution`` value, or None when it has no counterpart."""
    from workloads.moe import RoutingConfig

    if dist in ("balanced", "uniform"):
        return RoutingConfig()
    if dist.startswith("power_law_"):
        try:
            a = float(dist.rsplit("_", 1)[1])
        except ValueError:
            return None
        return RoutingConfig(dist="power_law", exponent=a, placement=PLACEMENT) if a > 1.0 else None
    return None


@functools.lru_cache(maxsize=1024)
def _model(hidden: int, inter: int, experts: int, topk: int, gated: bool, routing):
    from workloads.architectures.transformer import TransformerConfig

    return TransformerConfig(name="aic-moe", family="moe", num_layers=1, hidden_size=hidden, num_heads=1,
                             num_kv_heads=1, head_dim=1, intermediate_size=inter, gated_mlp=gated, vocab_size=1,
                             max_position=1, num_experts=experts, experts_per_token=topk, routing=routing)


@functools.lru_cache(maxsize=65536)
def item_of(tokens: int, hidden: int, inter: int, experts: int, topk: int, tp: int, ep: int, gated: bool,
            routing, dtype: str = "bf16", nbytes: float = 2.0, block: int = 0) -> tuple:
    """The ops of one measured MoE call (no router) on the busiest GPU."""
    from dataclasses import replace

    from workloads.llm import ELEMENTWISE, GROUPED, Op, moe_ops

    model = _model(hidden, inter, experts, topk, gated, routing)
    ops = [op for op in moe_ops(tokens, model, tp * ep, ep) if op.name != "moe_router"]
    if nbytes == 2.0:
        return tuple(ops)
    out = []
    for op in ops:
        if op.kind == GROUPED:  # per-token (block: per 1 x 128) quantize of the 16-bit input, then fp8 GEMMs
            scales = 4.0 / block if block else 0.0
            out.append(Op(ELEMENTWISE, f"{op.name}_quant", 1, m=op.m, bytes=int(op.m * op.k * (2.0 + nbytes + scales)),
                          scale_block_k=block))
            op = replace(op, dtype=dtype, dtype_bytes=nbytes + scales, out_bytes=2.0,
                         w_bytes=nbytes + (4.0 / (block * block) if block else 0.0), scale_block_k=block)
        out.append(op)
    return tuple(out)


def read_moe(system_dir: Path) -> tuple[list[Row], Counter]:
    """(rows, skip reasons) of an aic system directory's ``moe/*/*/moe_perf.parquet`` tables."""
    from simulator.validation.aic import _read, _tables

    rows: list[Row] = []
    skipped: Counter = Counter()
    for source, path in _tables(system_dir, "moe", "moe_perf.parquet"):
        for r in _read(path):
            dt = r["moe_dtype"]
            if dt not in DTYPES:
                skipped[SKIP.get(dt, f"MoE: dtype {dt!r} not mapped")] += 1
                continue
            routing = routing_of(str(r["distribution"]))
            if routing is None:
                skipped[f"MoE: distribution {r['distribution']!r} not mapped"] += 1
                continue
            tp, ep, experts = int(r["moe_tp_size"]), int(r["moe_ep_size"]), int(r["num_experts"])
            if experts % ep or int(r["inter_size"]) % tp:
                skipped["MoE: expert parallelism not dividing the experts"] += 1
                continue
            cls, dtype, nbytes = DTYPES[dt]
            ks = str(r.get("kernel_source", ""))
            family = family_of(ks)
            if family is None:
                skipped[f"MoE: kernel {ks!r} has no hwsim kernel family"] += 1
                continue
            gated = "nongated" not in ks
            item = item_of(int(r["num_tokens"]), int(r["hidden_size"]), int(r["inter_size"]), experts,
                           int(r["topk"]), tp, ep, gated, routing, dtype, nbytes, 128 if dt == "fp8_block" else 0)
            rows.append(Row(f"{source} {family}", cls, tp * ep, int(r["num_tokens"]), float(r["latency"]) * 1e-3,
                            list(item)))
    return rows, skipped


__all__ = ["CLASSES", "config_set_of", "read_moe", "read_a2a", "item_of", "routing_of", "fit", "fit_a2a", "fit_sample",
           "passes_rows", "row_passes"]


A2A_BYTES = {"fp8": 1.0 + 4.0 / 128, "bfloat16": 2.0, "default": 2.0, "nvfp4": 0.5 + 1.0 / 16}  # scales included


def read_a2a(system_dir: Path) -> tuple[list[Row], Counter]:
    """(rows, skip reasons) of the ``comm/*/*/moe_a2a_perf.parquet`` tables inside one node: each
    dispatch / combine as an all-to-all in which every GPU sends its ``num_tokens`` tokens' hidden
    states once per destination GPU among their top-k experts' (``workloads.moe.dispatch_copies``)."""
    from simulator.validation.aic import _read, _tables
    from simulator.validation.aic_comm import NetItem
    from workloads.moe import dispatch_copies

    rows: list[Row] = []
    skipped: Counter = Counter()
    node = Path(system_dir).resolve().name
    for source, path in _tables(system_dir, "comm", "moe_a2a_perf.parquet"):
        for r in _read(path):
            ep = int(r["ep_size"])
            if int(r.get("node_num", 1)) != 1 or ep > 8:
                skipped["MoE all-to-all: across nodes not mapped"] += 1
                continue
            # DeepEP combines in bf16 whatever the dispatch precision (DeepEP README: FP8 dispatch, BF16 combine)
            nbytes = 2.0 if r.get("phase") == "combine" else A2A_BYTES.get(str(r["comm_dtype"]))
            if nbytes is None:
                skipped[f"MoE all-to-all: dtype {r['comm_dtype']!r} not mapped"] += 1
                continue
            size = int(r["num_tokens"]) * dispatch_copies(int(r["topk"]), ep) * int(r["hidden_size"]) * nbytes \
                * (ep - 1) / ep
            rows.append(Row(source, "moe all_to_all", ep, size, float(r["latency"]) * 1e-6,
                            NetItem("alltoall", size, ep, 8, node, str(r["comm_backend"]))))
    return rows, skipped


def a2a_mode(impl: str) -> str:
    """DeepEP's kernel family of a table's ``comm_backend``: ``ll`` (low-latency, decode) or ``ht``
    (high-throughput "normal" kernels, prefill)."""
    return "ll" if "_ll" in impl or impl.endswith("ll") else "ht"


def fit_a2a(system_dir: Path) -> dict[tuple[str, str], tuple[float, float, float]]:
    """Per framework and DeepEP mode: (latency s, efficiency, median APE %) of ``Link.alltoall_s`` least-squares
    fitted to its all-to-all rows in relative error."""
    import numpy as np

    from simulator.validation.kernels import link_config

    rows, _ = read_a2a(system_dir)
    bw = link_config("NVLink4").bw_bytes_per_s
    out = {}
    for key in sorted({(r.source.split()[0], a2a_mode(r.item.impl)) for r in rows}):
        mine = [r for r in rows if (r.source.split()[0], a2a_mode(r.item.impl)) == key]
        size = np.array([r.x for r in mine])
        meas = np.array([r.measured_s for r in mine])
        A = np.vstack([1.0 / meas, size / meas]).T  # minimise sum ((lat + size * s) / meas - 1)^2
        (lat, slope), *_ = np.linalg.lstsq(A, np.ones(len(mine)), rcond=None)
        ape = np.abs(lat + slope * size - meas) / meas
        out[key] = (float(lat), float(1.0 / (slope * bw)), 100 * float(np.median(ape)))
    return out


HBM_GRID = (0.70, 0.75, 0.80, 0.85, 0.90, 0.95)
WEIGHT_ROWS = (8, 64)  # tokens per expert of the rows the HBM share is fitted on


def _weight_bound(r: Row) -> bool:
    up = next(op for op in r.item if op.name == "moe_up")
    return WEIGHT_ROWS[0] < max(up.groups) <= WEIGHT_ROWS[1]


def fit_sample(rows: list[Row], sample: int = 4000, seed: int = 0) -> dict[tuple[str, str], list[Row]]:
    """``fit``'s rows per (family, quantization): a seeded random ``sample`` of each; its even-numbered
    rows fit, its odd-numbered ones are held out."""
    import random

    def key(r: Row) -> tuple[str, str]:
        return r.source.split(" ")[2], r.op.split(" ")[1]

    groups: dict[tuple[str, str], list[Row]] = {}
    for k in sorted({key(r) for r in rows}):
        mine = [r for r in rows if key(r) == k]
        random.Random(seed).shuffle(mine)
        groups[k] = mine[:sample]
    return groups


def passes_rows(rows: list[Row], family: str) -> list[Row]:
    """The rows ``row_passes`` measures ``family``'s passes on: its 16-bit rows of the largest token count
    with per-GPU expert width <= ``NARROW_WIDTH``, less ``fit``'s held-out rows (odd-numbered of
    ``fit_sample``), so that no held-out row informs a constant."""
    mine = [r for r in rows if r.source.split(" ")[2] == family and r.op == "moe bf16"]
    if not mine:
        return []
    held = {id(r) for r in fit_sample(mine).get((family, "bf16"), [])[1::2]}
    top = max(r.x for r in mine)
    return [r for r in mine if r.x == top and id(r) not in held
            and next(op for op in r.item if op.name == "moe_down").k <= NARROW_WIDTH]


def fit(system_dir: Path, sample: int = 4000, seed: int = 0,
        families: tuple[str, ...] = ()) -> dict[str, tuple[float, float, float, float, float]]:
    """Per fused-MoE kernel family and quantization (``bf16``: 16-bit rows; ``fp8``: per-tensor fp8;
    ``fp8_block``: block-scaled fp8; each runs its own kernels and tuned tile configurations):
    (efficiency, fixed_s, median APE on the fitted half, median APE on the held-out half, hbm_efficiency)
    on a random ``sample`` of its rows (every framework running it); even-numbered sampled rows fit,
    odd-numbered ones check. First the family's share of the HBM bandwidth (``HBM_GRID``, one per
    family: its grouped kernels stream the expert weights) is chosen at its current efficiencies and
    fixed costs (``hw_models.timing.tile.FIT_MOE``), minimising the median APE of its fitted
    weight-streaming rows (``WEIGHT_ROWS`` tokens per expert on the busiest GPU);
    then each quantization's efficiency and fixed cost minimise the median APE of its fitted rows at
    that share (``families``: only these, default all). Keys ``"<family> <dtype>"``; the values go to
    ``efficiency`` / ``fixed_s`` (bf16),
    ``efficiency_fp8`` / ``fixed_s_fp8``, ``efficiency_fp8_block`` / ``fixed_s_fp8_block`` and
    ``hbm_efficiency`` of ``FIT_MOE``."""
    import numpy as np

    from hw_models.timing.tile import FIT_MOE
    from simulator.validation.aic import FRAMEWORK_TIMING, _merged, framework_of
    from simulator.validation.kernels import gpu_config, predict

    rows, _ = read_moe(system_dir)
    gpu = gpu_config("H200")
    groups = fit_sample(rows, sample, seed)

    def run(family: str, mine: list[Row], kern: dict) -> np.ndarray:
        out = np.empty(len(mine))
        keys = sorted({(framework_of(r), config_set_of(r.source)) for r in mine})
        for fw, cset in keys:  # each framework's other constants stay its own; each version its tile configs
            idx = [i for i, r in enumerate(mine) if (framework_of(r), config_set_of(r.source)) == (fw, cset)]
            over = _merged({**FRAMEWORK_TIMING.get(fw, {}), "moe_kernel": family, "moe_config_set": cset})
            over["moe_kernels"] = {**FIT_MOE, family: kern}
            out[idx] = predict([mine[i] for i in idx], "tile", gpu, over).predicted
        return out

    out = {}
    for family in sorted({f for f, _ in groups if not families or f in families}):
        mine = [(d, rs) for (f, d), rs in groups.items() if f == family]
        # the HBM share on the rows it describes: the weight-streaming ones (the busiest GPU's experts
        # get WEIGHT_ROWS tokens each at most: the expert weights dominate the traffic, the MMAs are short)
        stream = [(d, [r for r in rs[0::2] if _weight_bound(r)]) for d, rs in mine]
        scores = []
        for hbm in HBM_GRID:
            ape = [np.abs(run(family, rs, {**FIT_MOE[family], "hbm_efficiency": hbm}) /
                          np.array([r.measured_s for r in rs]) - 1) for _, rs in stream if rs]
            scores.append(float(np.median(np.concatenate(ape))))
        hbm = HBM_GRID[int(np.argmin(scores))]
        for dtype, rs in mine:
            meas = np.array([r.measured_s for r in rs])
            sfx = "" if dtype == "bf16" else f"_{dtype}"
            best = None
            for eff in np.arange(0.05, 1.51, 0.05):
                kern = {**FIT_MOE[family], "hbm_efficiency": hbm, f"efficiency{sfx}": float(eff), f"fixed_s{sfx}": 0.0}
                base = run(family, rs, kern)
                for fixed in np.arange(0.0, 1000.01e-6, 1e-6):
                    ape = np.abs(base + fixed - meas) / meas
                    score = float(np.median(ape[0::2]))
                    if best is None or score < best[0]:
                        best = (score, float(eff), float(fixed), float(np.median(ape[1::2])))
            out[f"{family} {dtype}"] = (round(best[1], 2), best[2], 100 * best[0], 100 * best[3], hbm)
    return out


NARROW_WIDTH = 96  # per-GPU expert width at or below which a row's time is its [pairs x hidden] row traffic


def row_passes(system_dir: Path) -> dict[str, tuple[float, int]]:
    """Per fused-MoE kernel family: (passes, rows) -- the median number of passes over the GPU's routed
    [pairs x hidden] 16-bit rows, beyond those the op list counts, that its 16-bit rows of the largest
    token count with the narrowest experts (per-GPU width <= ``NARROW_WIDTH``, where the expert weights
    and the MMAs are small) take: (measured - predicted without row passes) / the time of one pass at the
    family's HBM share. The value goes to ``row_passes`` of ``FIT_MOE``."""
    import numpy as np

    from hw_models.timing.tile import FIT_MOE
    from simulator.validation.aic import FRAMEWORK_TIMING, _merged, framework_of
    from simulator.validation.kernels import gpu_config, make_backend

    rows, _ = read_moe(system_dir)
    gpu = gpu_config("H200")
    out = {}
    for family in sorted(FIT_MOE):
        passes = []
        for r in passes_rows(rows, family):
            up = next(op for op in r.item if op.name == "moe_up")
            over = _merged({**FRAMEWORK_TIMING.get(framework_of(r), {}), "moe_kernel": family,
                            "moe_config_set": config_set_of(r.source)})
            over["moe_kernels"] = {**FIT_MOE, family: {**FIT_MOE[family], "row_passes": 0.0}}
            be = make_backend("tile", gpu, over)
            fam = be._moe_family()
            one = up.m * up.k * 2.0 / (gpu.memory_bw_bytes_per_s * fam["hbm_efficiency"])
            passes.append((r.measured_s - sum(be.op_s(op) for op in r.item)) / one)
        if passes:
            out[family] = (float(np.median(passes)), len(passes))
    return out


TOKEN_BINS = ((1, 4), (5, 16), (17, 64), (65, 256), (257, 1024), (1025, 4096), (4097, 1 << 30))


def by_ep(system_dir: Path, source: str, cls: str = "moe bf16", sample: int = 2000, seed: int = 0) -> list[str]:
    """Lines of median |error| and signed median per expert-parallel group (EP 1: every (token, expert) pair
    on the GPU; EP > 1) and token-count bin, on a seeded ``sample`` of one source's rows (``source``:
    "<framework> <version> <family>", e.g. "sglang 0.5.10 triton_sglang") at the shipped constants."""
    import random

    import numpy as np

    from simulator.validation.aic import predict_aic
    from simulator.validation.kernels import gpu_config

    rows, _ = read_moe(system_dir)
    rows = [r for r in rows if r.source == source and r.op == cls]
    random.Random(seed).shuffle(rows)
    rows = rows[:sample]
    if not rows:
        return [f"no {cls} rows of {source!r}"]
    err = np.asarray(predict_aic(rows, "tile", gpu_config("H200")).predicted) / np.array(
        [r.measured_s for r in rows]) - 1
    x = np.array([r.x for r in rows])
    up = [next(op for op in r.item if op.name == "moe_up") for r in rows]
    ep1 = np.array([u.m >= u.pairs for u in up])
    out = [f"{source} {cls}: {len(rows)} rows, median |error| {100 * np.median(np.abs(err)):.1f} %"]
    for name, sel in (("EP 1", ep1), ("EP > 1", ~ep1)):
        if not sel.any():
            continue
        e = err[sel]
        out.append(f"{name}: {sel.sum()} rows, median |error| {100 * np.median(np.abs(e)):.1f} %, "
                   f"signed {100 * np.median(e):+.1f} %")
        for lo, hi in TOKEN_BINS:
            b = sel & (x >= lo) & (x <= hi)
            if b.any():
                out.append(f"  tokens {lo}-{min(hi, int(x.max()))}: {b.sum()} rows, "
                           f"signed {100 * np.median(err[b]):+.1f} %, |error| {100 * np.median(np.abs(err[b])):.1f} %")
    return out


if __name__ == "__main__":  # python -m simulator.validation.aic_moe fit ../shared/validation/aic/h200_sxm
    import sys

    if len(sys.argv) >= 5 and sys.argv[1] == "by-ep":  # by-ep DIR FRAMEWORK VERSION FAMILY [CLASS]
        src = " ".join(sys.argv[3:6])
        print("\n".join(by_ep(Path(sys.argv[2]), src, " ".join(sys.argv[6:]) or "moe bf16")))
        sys.exit(0)
    if len(sys.argv) < 3 or sys.argv[1] not in ("fit", "fit-a2a", "passes") or \
            (len(sys.argv) > 3 and sys.argv[1] != "fit"):
        print("usage: python -m simulator.validation.aic_moe fit|fit-a2a|passes SYSTEM_DIR [FAMILY ...] "
              "(families: fit only) | by-ep SYSTEM_DIR FRAMEWORK VERSION FAMILY [CLASS]", file=sys.stderr)
        sys.exit(2)
    from hw_models.timing.tile import FIT_MOE as _KNOWN

    unknown = [f for f in sys.argv[3:] if f not in _KNOWN]
    if unknown:
        print(f"aic_moe fit: unknown kernel family {unknown[0]!r}; known: {', '.join(sorted(_KNOWN))}", file=sys.stderr)
        sys.exit(2)
    if sys.argv[1] == "passes":
        for family, (n, count) in row_passes(Path(sys.argv[2])).items():
            print(f"{family:20s} row_passes={n:.2f} ({count} rows)")
        sys.exit(0)
    if sys.argv[1] == "fit-a2a":
        for (fw, mode), (lat, eff, ape) in fit_a2a(Path(sys.argv[2])).items():
            print(f"{fw} {mode}: alltoall_latency_s={lat * 1e6:.1f}us alltoall_efficiency={eff:.3f} "
                  f"median APE {ape:.1f}%")
        sys.exit(0)
    for family, (eff, fixed, train, held, hbm) in fit(Path(sys.argv[2]), families=tuple(sys.argv[3:])).items():
        print(f"{family:28s} hbm_efficiency={hbm:.2f} efficiency={eff:.2f} fixed_s={fixed * 1e6:.1f}us "
              f"median APE fitted {train:.1f}% held-out {held:.1f}%")
