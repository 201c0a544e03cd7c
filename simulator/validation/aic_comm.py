"""All-reduce rows of the aic comm tables (NCCL and the serving frameworks' own all-reduce).

    python -m simulator.validation.aic_comm report ../shared/validation/aic   (figures per impl, GPUs)
    python -m simulator.validation.aic_comm fit ../shared/validation/aic      (refit; prints, never writes)

Models: each row as an all-reduce of ``message_size`` elements (x the dtype's bytes) over
    ``num_gpus`` GPUs of the system's NVSwitch node: NCCL rows with ``collectives.allreduce_s``
    (in-graph per-call cost, NVLS on Hopper), vLLM / SGLang rows with ``custom_allreduce_s``
    ("custom", the framework's limits), TensorRT-LLM rows with "trtllm". The custom tables are
    CUDA-graph replays (``*_graph``); eager rows time the host launch + the copy into the
    registered buffer, a host cost, and are skipped with that reason.
Ignores: NCCL all_gather / reduce_scatter / alltoall rows, MoE all-to-all (DeepEP) tables.
Sources: aiconfigurator-core 0.12.0 systems data (../shared/validation/README.md); the
    frameworks' constants cited in ``hw_models.collectives``.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np

from simulator.validation.vidur import Row

DTYPE_BYTES = {"half": 2, "bfloat16": 2, "float16": 2, "int8": 1, "float32": 4, "fp8": 1}
NODES = {"h200_sxm", "a100_sxm"}


class NetItem(NamedTuple):
    """A network row's item: Vidur's (collective, bytes, workers, devices per node, node) plus, for
    an aic row, the framework implementation replayed in a CUDA graph (``"nccl"``,
    ``"custom/<limits>"``, ``"trtllm/<limits>"``; ``None``: an eager NCCL call, as Vidur's) and an
    explicit intra-node link preset (``None``: the node's)."""

    coll: str
    size: float
    p: int
    dpn: int
    node: str
    impl: str | None = None
    link: str | None = None


def _version_key(v: str) -> tuple:
    out = []
    for part in v.replace("rc", ".").replace("post", ".").split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def impl_of(framework: str, version: str) -> str:
    """The hwsim all-reduce setting a framework version runs with (what a profile sets)."""
    fw = framework.lower()
    if fw == "nccl":
        return "nccl"
    if fw == "trtllm":
        return "trtllm/trtllm"
    if fw == "vllm":  # symmetric-memory all-reduce on in the tables from 0.18 on (0.14: NCCL above the limit)
        return "custom/vllm-symm-mem" if _version_key(version) >= (0, 18) else "custom/vllm"
    return "custom/sglang"


def _frame(path: Path):
    import pandas as pd

    return pd.read_parquet(path)


def read_comm(system_dir: Path) -> tuple[list[Row], dict[str, int]]:
    """(all-reduce rows, {skip reason: count}) of ``system_dir/comm``. Duplicate measurements of
    one (table, dtype, GPUs, size) are merged into their median."""
    system_dir = Path(system_dir)
    node = system_dir.name
    rows: list[Row] = []
    skipped: Counter = Counter()
    for path in sorted((system_dir / "comm").glob("*/*/*.parquet")):
        folder_fw, version = path.parent.parent.name, path.parent.name
        if not path.name.startswith(("nccl_perf", "custom_allreduce_perf")):
            skipped["MoE all-to-all table (not modelled)"] += len(_frame(path))
            continue
        df = _frame(path)
        fw = str(df["framework"].iloc[0]).lower() if "framework" in df else folder_fw
        if path.name.startswith("nccl_perf"):
            fw = "nccl"
        if fw != folder_fw:
            skipped[f"{fw} table filed under {folder_fw}/ (a copy of {fw}'s own table)"] += len(df)
            continue
        if "op_name" in df:
            other = df["op_name"] != "all_reduce"
            for op, n in df[other]["op_name"].value_counts().items():
                skipped[f"NCCL {op} (only all-reduce is validated)"] += int(n)
            df = df[~other]
        if "backend" in df:
            eager = df["backend"].str.endswith("eager")
            if eager.any():
                skipped["eager custom all-reduce (host launch + buffer copy, not a device cost)"] += int(eager.sum())
            df = df[~eager]
        dcol = "nccl_dtype" if "nccl_dtype" in df else "allreduce_dtype"
        med = df.groupby([dcol, "num_gpus", "message_size"], as_index=False)["latency"].median()
        impl = impl_of(fw, version)
        label = impl.split("/")[0]
        for r in med.itertuples(index=False):
            dt, p, n, lat = getattr(r, dcol), int(r.num_gpus), int(r.message_size), float(r.latency)
            size = float(n * DTYPE_BYTES[dt])
            rows.append(Row(f"{fw} {version}", f"all_reduce {label}", p, size, lat * 1e-3,
                            NetItem("all_reduce", size, p, 8, node, impl)))
    return rows, dict(sorted(skipped.items()))


def predict_item(item: NetItem, fabric, architecture: str, nccl, kernels=None, nvls=None) -> float:
    """Time of one aic all-reduce item on ``fabric`` (in-graph NCCL per-call cost)."""
    import dataclasses

    from hw_models import collectives as co

    framework, _, limits = item.impl.partition("/")
    if kernels is None:  # the tables replay the call in a CUDA graph: no eager floor, in-graph call cost
        nccl = dataclasses.replace(nccl, reduce_call_s=co.NCCL_GRAPH_CALL_S, reduce_floor_s=0.0)
    kern = (kernels or co.AR_KERNELS).get(framework)
    return co.custom_allreduce_s(item.size, item.p, fabric, framework, co.AR_LIMITS.get(limits), kern, nccl,
                                 architecture, nvls)


def stats(pred: np.ndarray, meas: np.ndarray) -> tuple[float, float, float, int]:
    """(median APE %, p90 APE %, median signed error %, rows)."""
    err = (pred - meas) / meas
    return (100 * float(np.median(np.abs(err))), 100 * float(np.percentile(np.abs(err), 90)),
            100 * float(np.median(err)), len(err))


def _load(root: Path) -> list[Row]:
    rows: list[Row] = []
    for node in sorted(NODES):
        if (root / node / "comm").is_dir():
            rows += read_comm(root / node)[0]
    return rows


def report(root: Path) -> None:
    from simulator.validation.kernels import network_s

    rows = _load(root)
    pred = np.array([network_s(r, "tile") for r in rows])
    meas = np.array([r.measured_s for r in rows])
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        for key in ((r.item.node, r.op, "all"), (r.item.node, r.op, r.tp)):
            groups.setdefault(key, []).append(i)
    print(f"{'node':9s} {'implementation':18s} {'GPUs':>4s} {'median':>7s} {'p90':>7s} {'bias':>7s} {'rows':>5s}")
    for (node, op, p), idx in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        med, p90, bias, n = stats(pred[idx], meas[idx])
        print(f"{node:9s} {op:18s} {p!s:>4s} {med:6.1f}% {p90:6.1f}% {bias:+6.1f}% {n:5d}")


def fit(root: Path) -> None:
    """Refit the in-graph NCCL per-call cost and NVLS constants on the NCCL rows, then each custom
    kernel family's fixed costs, per-peer latency and P2P share on its rows (H200 + A100 together).
    Objective: median + 0.3 p90 APE; Nelder-Mead from the current constants."""
    import dataclasses

    from scipy.optimize import minimize

    from hw_models import collectives as co
    from simulator.validation.kernels import NODE_FABRIC, node_fabric

    rows = _load(root)
    fabs = {n: node_fabric(n) for n in NODE_FABRIC if n in NODES}
    meas = np.array([r.measured_s for r in rows])

    def score(sel, fn) -> float:
        pred = np.array([fn(rows[i]) for i in sel])
        e = np.abs(pred - meas[sel]) / meas[sel]
        return float(np.median(e) + 0.3 * np.percentile(e, 90))

    nccl_rows = [i for i, r in enumerate(rows) if r.item.impl == "nccl"]

    def nccl_obj(x):
        if min(x) < 0:
            return 1e9
        params = co.NcclParams(reduce_call_s=x[0] * 1e-6, reduce_floor_s=0.0)
        nv = dataclasses.replace(co.NVLS, nccl_s=x[1] * 1e-6, nccl_share=x[2])
        return score(nccl_rows, lambda r: predict_item(r.item, fabs[r.item.node][0], fabs[r.item.node][1],
                                                        params, {}, nv))

    r0 = minimize(nccl_obj, [co.NCCL_GRAPH_CALL_S * 1e6, 40.0, co.NVLS.nccl_share],
                  method="Nelder-Mead", options=dict(maxiter=200, xatol=1e-3, fatol=1e-5))
    print("nccl (in graph): call_us, nvls_us, nvls_share =", [round(float(v), 3) for v in r0.x],
          "objective", round(float(r0.fun), 4))
    nccl = co.NcclParams(reduce_call_s=max(0.0, r0.x[0]) * 1e-6, reduce_floor_s=0.0)
    nv = dataclasses.replace(co.NVLS, nccl_s=r0.x[1] * 1e-6, nccl_share=r0.x[2])
    for fam in ("custom", "trtllm"):
        sel = [i for i in range(len(rows)) if rows[i].item.impl.startswith(fam + "/")]
        k0 = co.AR_KERNELS[fam]
        x0 = [k0.oneshot_s * 1e6, k0.twoshot_s * 1e6, k0.peer_s * 1e6, k0.p2p_share]
        if fam == "custom":
            x0 += [co.NVLS.symm_s * 1e6, co.NVLS.symm_share]

        def obj(x, fam=fam, sel=sel):
            if min(x) < 0:
                return 1e9
            k = co.ArKernel(x[0] * 1e-6, x[1] * 1e-6, x[2] * 1e-6, x[3])
            nvx = dataclasses.replace(nv, symm_s=x[4] * 1e-6, symm_share=x[5]) if len(x) > 4 else nv

            def one(row: Row, k=k, nvx=nvx) -> float:
                fab, arch = fabs[row.item.node]
                return predict_item(row.item, fab, arch, nccl, {fam: k}, nvx)

            return score(sel, one)

        res = minimize(obj, x0, method="Nelder-Mead", options=dict(maxiter=600, xatol=1e-3, fatol=1e-5))
        names = "oneshot_us, twoshot_us, peer_us, p2p_share" + (", symm_us, symm_share" if fam == "custom" else "")
        print(f"{fam}: {names} =", [round(float(v), 3) for v in res.x], "objective", round(float(res.fun), 4))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("fit", "report"):
        sys.exit("usage: python -m simulator.validation.aic_comm fit|report AIC_DIR")
    {"fit": fit, "report": report}[sys.argv[1]](Path(sys.argv[2]))
