"""Predict every measured row with a timing backend and summarise the error per op class.

Models: kernel-only times (the tables time kernels on the GPU, so host launch overhead is left
    out: ``tile`` runs with ``cuda_graphs=true``, ``roofline`` with ``launch_overhead=false``);
    collectives over the fabric of the measured node (``tile``: NCCL ring/tree model of
    ``hw_models.collectives``; ``roofline``: the link preset's alpha-beta ring).
Ignores: rows whose op hwsim's lowering does not emit (e.g. a post-attention norm of a
    parallel-attention model).
Sources: error metric = absolute percentage error |pred - meas| / meas, median and p90.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import simulator.core.registry as reg
from hw_models.collectives import NVLS_ARCHS, Fabric, NcclParams, allreduce_s, send_recv_s
from hw_models.link import Link
from simulator.config.loader import resolve_component
from simulator.core.errors import ConfigError
from simulator.validation.aic_comm import NetItem, predict_item
from simulator.validation.vidur import GEMM_OPS, Row

AIC_CLASSES = ("gemm bf16", "gemm fp8", "context attention", "generation attention",  # = aic.CLASSES
               "gemm fp8_block", "context mla", "generation mla",  # + aic.BLOCK_GEMM_DTYPES, aic.MLA_CLASSES
               "moe bf16", "moe fp8", "moe fp8_block", "moe all_to_all")  # + aic_moe.CLASSES

# node name of a network table -> (intra-node link preset, GPUs per intra group, inter link, GPU architecture)
NODE_FABRIC = {"a100_dgx": ("NVLink3", 8, "IB-HDR", "ampere"),
               "a100_pairwise_nvlink": ("NVLink-bridge-A100", 2, "PCIe4", "ampere"),
               "a100_sxm": ("NVLink3", 8, "IB-HDR", "ampere"),  # aic: HGX A100 SXM4 8-GPU
               "h200_sxm": ("NVLink4", 8, "IB-NDR", "hopper")}  # aic: HGX H200 8-GPU (NVSwitch with NVLS)


def gpu_config(preset: str) -> Any:
    return resolve_component({"kind": "gpu", "preset": preset}, reg.HARDWARE, "--gpu").config


@functools.cache
def link_config(preset: str) -> Any:
    return resolve_component({"kind": "link", "preset": preset}, reg.HARDWARE, "link").config


def make_backend(kind: str, gpu: Any, overrides: dict | None = None) -> Any:
    block = {"kind": kind, **(overrides or {})}
    if kind == "tile":
        block.setdefault("cuda_graphs", True)
    elif kind == "roofline":
        block.setdefault("launch_overhead", False)
    comp = resolve_component(block, reg.TIMING, "--backend")
    return comp.cls(comp.config, gpu, None)


def op_class(row: Row) -> str:
    if row.op in AIC_CLASSES or row.op.startswith("all_reduce "):  # an aic table row: the class is its op
        return row.op
    if "." in row.op:  # a calibration record: "<kernel class>.<op>"
        cls = row.op.split(".", 1)[0]
        return cls if cls in ("gemm", "attention") else "memory"
    if row.op in GEMM_OPS:
        return "gemm"
    if row.op in ("all_reduce", "send_recv"):
        return row.op if row.intra_node else f"{row.op} (inter-node)"
    return "memory"


def node_fabric(node: str, link: str | None = None, dpn: int | None = None) -> tuple[Fabric, str]:
    """(fabric, GPU architecture) of a table's node; ``link`` replaces the intra-node link preset.
    An unknown node needs ``link`` (ConfigError naming the node and the known ones otherwise)."""
    if node not in NODE_FABRIC and link is None:
        raise ConfigError(f"network table node {node!r} is unknown (known: {', '.join(sorted(NODE_FABRIC))}); "
                          "name its link with --link PRESET")
    intra, group, inter, arch = NODE_FABRIC.get(node, (link, 1 << 30, None, "unknown"))
    intra = link or intra
    if node == "a100_dgx" and dpn:
        group = dpn
    lc = link_config(intra)
    nvls = arch in NVLS_ARCHS and lc.technology == "nvswitch"
    return Fabric(lc, group, link_config(inter) if inter else None, nvls), arch


def with_link(rows: list[Row], link: str | None) -> list[Row]:
    """Check every network row's node (ConfigError on an unknown one without ``link``) and pin
    ``link`` as their intra-node link preset."""
    out = []
    for r in rows:
        if not isinstance(r.item, tuple):
            out.append(r)
            continue
        item = NetItem(*r.item)
        node_fabric(item.node, link)
        out.append(dataclasses.replace(r, item=item._replace(link=link)) if link else r)
    return out


def network_s(row: Row, backend_kind: str, nccl: NcclParams = NcclParams()) -> float:
    item = NetItem(*row.item)
    fab, arch = node_fabric(item.node, item.link, item.dpn)
    coll, size, p = item.coll, item.size, item.p
    if fab.inter is None:
        fab = dataclasses.replace(fab, inter=fab.intra)
    if coll == "alltoall":  # MoE dispatch / combine inside one node: each GPU's bytes over its own link
        link = Link(fab.intra)
        if backend_kind != "tile":
            return link.alltoall_s(size, p)
        from hw_models.timing.tile import TileConfig
        from simulator.validation.aic import FRAMEWORK_TIMING, _merged
        from simulator.validation.aic_moe import a2a_mode

        c = TileConfig(**_merged(FRAMEWORK_TIMING.get(row.source.split()[0], {})))
        mode = a2a_mode(item.impl)
        return link.alltoall_s(size, p, c.alltoall_efficiency[mode], c.alltoall_latency_s[mode])
    if backend_kind != "tile":  # the link preset's alpha-beta model on the bottleneck link
        link = Link(fab.bottleneck(p) if coll == "all_reduce" else (fab.intra if row.intra_node else fab.inter))
        return link.allreduce_s(size, p) if coll == "all_reduce" else link.send_s(size)
    if item.impl is not None:  # an aic row: the framework's all-reduce, replayed in a CUDA graph
        return predict_item(item, fab, arch, nccl)
    if coll == "all_reduce":
        return allreduce_s(size, p, dataclasses.replace(fab, nvls=False), nccl)
    return send_recv_s(size, fab, nccl, same_group=row.intra_node)


@dataclass
class Result:
    backend: str
    rows: list[Row]
    predicted: np.ndarray

    @property
    def measured(self) -> np.ndarray:
        return np.array([r.measured_s for r in self.rows])

    def ape(self) -> np.ndarray:
        return np.abs(self.predicted - self.measured) / self.measured

    def bias(self, key=op_class) -> dict[str, float]:
        """{class: median signed error %} (> 0: predicted slower than measured)."""
        err = (self.predicted - self.measured) / self.measured
        groups: dict[str, list[float]] = {}
        for r, e in zip(self.rows, err):
            groups.setdefault(key(r), []).append(e)
        return {k: 100 * float(np.median(v)) for k, v in sorted(groups.items())}

    def summary(self, key=op_class) -> dict[str, tuple[float, float, int]]:
        """{class: (median APE %, p90 APE %, rows)}."""
        ape = self.ape()
        groups: dict[str, list[float]] = {}
        for r, e in zip(self.rows, ape):
            groups.setdefault(key(r), []).append(e)
        return {k: (100 * float(np.median(v)), 100 * float(np.percentile(v, 90)), len(v))
                for k, v in sorted(groups.items())}


def predict(rows: list[Row], backend_kind: str, gpu: Any, overrides: dict | None = None) -> Result:
    backend = make_backend(backend_kind, gpu, overrides)
    nccl = NcclParams(getattr(backend.config, "nccl_reduce_eff", NcclParams().reduce_eff),
                      getattr(backend.config, "nccl_copy_eff", NcclParams().copy_eff))
    out = np.empty(len(rows))
    for i, r in enumerate(rows):
        if isinstance(r.item, tuple):
            out[i] = network_s(r, backend_kind, nccl)
        elif isinstance(r.item, list):  # a framework op run as several kernels (e.g. quantize + fp8 GEMM)
            out[i] = sum(backend.op_s(o) for o in r.item)
        else:
            out[i] = backend.op_s(r.item)
    return Result(backend_kind, rows, out)


def format_summary(results: list[Result], key=op_class, bias: bool = False) -> str:
    """One line per class and backend: median and p90 APE, rows (``bias``: and the median signed error)."""
    head = f"{'class':34s} {'backend':10s} {'median APE':>11s} {'p90 APE':>9s}"
    lines = [head + (f" {'bias':>8s}" if bias else "") + f" {'rows':>7s}"]
    for res in results:
        signed = res.bias(key) if bias else {}
        for cls, (med, p90, n) in res.summary(key).items():
            b = f" {signed[cls]:+7.1f}%" if bias else ""
            lines.append(f"{cls:34s} {res.backend:10s} {med:10.1f}% {p90:8.1f}%{b} {n:7d}")
    return "\n".join(lines)


def by_op(row: Row) -> str:
    return row.op


def models_of(rows: list[Row]) -> list[str]:
    return sorted({r.source for r in rows})


def load(directory: Path) -> tuple[list[Row], list[Row]]:
    from simulator.validation.vidur import read_dir

    return read_dir(directory)
