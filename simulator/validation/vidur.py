"""Reader of Vidur-format measurement tables (compute ``*.mlp.csv``, network ``<node>.<coll>.csv``).

Models: each compute row as the ops hwsim's own lowering (``workloads.llm.dense_ops``) produces
    for one layer of a model with the row's shape columns, so validation checks the lowering and
    the timing backend together; each network row as a collective over the node's fabric
    (``a100_dgx``: NVSwitch NVLink3 inside a node; ``a100_pairwise_nvlink``: NVLink-bridged pairs
    joined over PCIe 4; rows spanning nodes cross ``IB-HDR``).
Ignores: the min/max/mean columns (the median is the measurement), Vidur's per-op std.
Sources: Vidur (Agrawal et al., MLSys 2024) profiling tables, ../shared/validation/README.md.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workloads.architectures.transformer import TransformerConfig
from workloads.llm import dense_ops

# Vidur operator -> name of the op hwsim's lowering emits for it
OP_NAMES = {"emb": "embed", "input_layernorm": "input_norm", "attn_pre_proj": "qkv_proj", "attn_rope": "rope",
            "attn_post_proj": "o_proj", "post_attention_layernorm": "post_attn_norm", "mlp_up_proj": "mlp_up",
            "mlp_act": "mlp_act", "mlp_down_proj": "mlp_down", "add": "residual_add"}
GEMM_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
MEM_OPS = ("emb", "input_layernorm", "attn_rope", "post_attention_layernorm", "mlp_act", "add")


@dataclass(frozen=True, slots=True)
class Row:
    source: str  # model or node name
    op: str  # Vidur operator or collective
    tp: int  # tensor-parallel degree / workers
    x: float  # num_tokens or message bytes
    measured_s: float
    item: Any  # an Op (compute) or a (collective, size, workers, devices_per_node, node) tuple
    intra_node: bool = True


def _model(r: dict[str, str], name: str) -> TransformerConfig:
    h, nh = int(r["n_embd"]), int(r["n_head"])
    parallel = r.get("time_stats.post_attention_layernorm.median", "") in ("", "nan")
    return TransformerConfig(name=name, family="vidur", num_layers=1, hidden_size=h, num_heads=nh,
                             num_kv_heads=int(r["n_kv_head"]), head_dim=h // nh,
                             intermediate_size=int(r["n_expanded_embd"]), gated_mlp=r["use_gated_mlp"] == "True",
                             vocab_size=int(r["vocab_size"]), max_position=1 << 20, parallel_attn_mlp=parallel,
                             norm="layernorm" if parallel else "rmsnorm", dtype="fp16")


def read_compute(path: Path) -> list[Row]:
    name = path.name.split("__")[-1].removesuffix(".mlp.csv")
    rows: list[Row] = []
    models: dict[tuple, TransformerConfig] = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            key = (r["n_head"], r["n_kv_head"], r["n_embd"], r["n_expanded_embd"], r["vocab_size"], r["use_gated_mlp"])
            model = models.get(key) or models.setdefault(key, _model(r, name))
            tokens, tp = int(float(r["num_tokens"])), int(float(r["num_tensor_parallel_workers"]))
            ops = {}
            for op in dense_ops(tokens, 0, model, tp):
                ops.setdefault(op.name, op)
            for vop, ours in OP_NAMES.items():
                v = r.get(f"time_stats.{vop}.median", "")
                if v in ("", "nan") or ours not in ops:
                    continue
                rows.append(Row(name, vop, tp, tokens, float(v) * 1e-3, ops[ours]))
    return rows


def read_network(path: Path) -> list[Row]:
    node, coll = path.name.removesuffix(".csv").split(".")
    rows: list[Row] = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            p, dpn, size = int(r["num_workers"]), int(r["devices_per_node"]), float(r["size"])
            intra = dpn >= p if coll == "all_reduce" else dpn >= 2
            t = float(r[f"time_stats.{coll}.median"]) * 1e-3
            rows.append(Row(node, coll, p, size, t, (coll, size, p, dpn, node), intra))
    return rows


def read_dir(directory: Path) -> tuple[list[Row], list[Row]]:
    """(compute rows, network rows) of a Vidur-format directory (``compute/``, ``network/``)."""
    directory = Path(directory)
    comp_dir = directory / "compute" if (directory / "compute").is_dir() else directory
    compute = [r for p in sorted(comp_dir.glob("*.mlp.csv")) for r in read_compute(p)]
    net_dir = directory / "network"
    network = [r for p in sorted(net_dir.glob("*.csv")) for r in read_network(p)] if net_dir.is_dir() else []
    return compute, network
