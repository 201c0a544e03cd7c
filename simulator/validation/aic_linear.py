"""Linear-attention rows of the aic kernel tables: gated delta net and Mamba-2 kernels on one GPU.

    python -m simulator.validation.aic_linear ../shared/validation/aic/h200_sxm [--backend tile]

Models: each ``linear_attention/<framework>/<version>/{gdn,mamba2}_perf.parquet`` row as the ops
    ``workloads.variant_ops`` lowers a state-space layer's kernel to, for the row's heads (the table's
    per-GPU head counts, so tensor parallelism 1): ``causal_conv1d_fn`` (context: ``batch_size``
    sequences of ``seq_len`` tokens) as the ``ssm_conv`` pass over the x / v, B / k and C / q
    channels; ``causal_conv1d_update`` (generation) as one read and write of each row's conv state
    and its new token; ``chunk_gated_delta_rule*`` as ``ssm_chunk_scan`` + ``ssm_chunk_state`` with
    64-token chunks (FLA's chunk size); ``fused_recurrent_gated_delta_rule*`` as ``ssm_update``
    (read and write each row's state). Classes: ``linear conv context``, ``linear conv generation``,
    ``gdn chunk context``, ``gdn recurrent generation``. Each framework's rows run under its
    ``FRAMEWORK_TIMING`` settings (as the other aic tables do); no constant is fitted here.
Ignores: the gates' and norms' small kernels inside the framework's op (not in the table); the
    delta rule's extra products (``workloads.linear_attention``).
Sources: aiconfigurator-core 0.12.0 systems data (../shared/validation/README.md).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import typer

from simulator.validation.vidur import Row
from workloads.linear_attention import LinearLayerConfig
from workloads.llm import ELEMENTWISE, BatchShape, Op

CLASSES = ("linear conv context", "linear conv generation", "gdn chunk context", "gdn recurrent generation")


def _layer(r: dict, kind: str) -> LinearLayerConfig:
    if kind == "gdn":
        return LinearLayerConfig(kind="gated_delta_net", num_heads=int(r["num_v_heads"]), head_dim=int(r["head_v_dim"]),
                                 state_dim=int(r["head_k_dim"]), num_groups=int(r["num_k_heads"]),
                                 conv_kernel=int(r["d_conv"]), chunk_size=64)
    return LinearLayerConfig(kind="mamba2", num_heads=int(r["nheads"]), head_dim=int(r["head_dim"]),
                             state_dim=int(r["d_state"]), num_groups=int(r["n_groups"]), conv_kernel=int(r["d_conv"]),
                             chunk_size=int(r["chunk_size"]))


def ops_of(r: dict, kind: str) -> tuple[str, list[Op]] | None:
    """(class, ops) of one table row, or None for a kernel not mapped."""
    from workloads.variant_ops import mixer_ops

    lin = _layer(r, kind)
    b = 2.0
    src = r["kernel_source"]
    B, S = int(r["batch_size"]), int(r["seq_len"])
    if src == "causal_conv1d_fn":
        return CLASSES[0], [Op(ELEMENTWISE, "ssm_conv", 1, bytes=int(2 * B * S * lin.conv_dim * b), dtype="bf16",
                               dtype_bytes=b)]
    if src == "causal_conv1d_update":
        nbytes = B * lin.conv_dim * (2 + 2 * (lin.conv_kernel - 1)) * b
        return CLASSES[1], [Op(ELEMENTWISE, "ssm_conv", 1, bytes=int(nbytes), dtype="bf16", dtype_bytes=b)]
    model = SimpleNamespace(linear=lin, attention=SimpleNamespace(layer_pattern="S"), dtype="bf16", dtype_bytes=b)
    if src.startswith("chunk_gated_delta_rule"):
        return CLASSES[2], mixer_ops(BatchShape(prefill=((S, 0),) * B), model)
    if src.startswith("fused_recurrent_gated_delta_rule"):
        return CLASSES[3], mixer_ops(BatchShape(decode_rows=B), model)
    return None


def load_linear(system_dir: Path, phase: str | None = None) -> tuple[list[Row], dict[str, int]]:
    """Rows of every linear-attention table under ``system_dir`` (``phase``: only its rows, context or
    generation) and {reason: count} of those skipped."""
    from simulator.validation.aic import _read, _tables

    rows: list[Row] = []
    skipped: dict[str, int] = {}
    for kind in ("gdn", "mamba2"):
        for source, path in _tables(system_dir, "linear_attention", f"{kind}_perf.parquet"):
            for r in _read(path):
                if phase is not None and r["phase"] != phase:
                    continue
                got = ops_of(r, kind)
                if got is None:
                    key = f"{kind} {r['kernel_source']}: kernel not mapped"
                    skipped[key] = skipped.get(key, 0) + 1
                    continue
                cls, ops = got
                rows.append(Row(source, cls, 1, float(r["num_tokens"]), float(r["latency"]) * 1e-3, ops))
    return rows, skipped


def validate(system_dir: Path, backend: str = "tile", gpu: str | None = None):
    """(kernels.Result, skipped) of the linear-attention rows on the system's GPU."""
    from simulator.validation.aic import default_gpu, predict_aic
    from simulator.validation.kernels import gpu_config

    rows, skipped = load_linear(system_dir)
    return predict_aic(rows, backend, gpu_config(gpu or default_gpu(system_dir))), skipped


def by_class_source(row: Row) -> str:
    return f"{row.op} | {row.source}"


def main(system_dir: Path = typer.Argument(..., help="an aic system directory, e.g. ../shared/validation/aic/h200_sxm"),
         backend: str = typer.Option("tile", "--backend"), gpu: str = typer.Option(None, "--gpu")) -> None:
    from simulator.validation.kernels import format_summary

    res, skipped = validate(system_dir, backend, gpu)
    typer.echo(format_summary([res], key=lambda r: r.op, bias=True))
    typer.echo(format_summary([res], key=by_class_source, bias=True))
    for k, n in sorted(skipped.items()):
        typer.echo(f"skipped {n} rows: {k}")


if __name__ == "__main__":
    typer.run(main)
