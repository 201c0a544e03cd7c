"""Encoder-attention rows of the aic kernel tables: a ViT's bidirectional attention on one GPU.

    python -m simulator.validation.aic_encoder ../shared/validation/aic/h200_sxm [--backend tile]

Models: each ``encoder_attention/<framework>/<version>/encoder_attention_perf.parquet`` row
    (``batch_size`` images of ``isl`` patches, ``num_heads`` heads of ``head_dim``, bf16) as the
    ``encoder_attention`` op ``workloads.vision`` lowers a ViT layer's attention to: an
    ``attn_prefill`` over ``batch_size`` sequences whose every query reads every key of its image
    (isl^2 pairs each, no causal mask; MHA, K/V heads = heads). Each framework's rows run under its
    ``FRAMEWORK_TIMING`` settings; nothing is fitted here.
Ignores: the causal-mask diagonal saving the kernel model assumes for prefill tiles (an encoder has
    none: its diagonal tiles are full, so the model's half-diagonal term undercounts by at most one
    tile row per sequence).
Sources: aiconfigurator-core 0.12.0 systems data (../shared/validation/README.md).
"""

from __future__ import annotations

from pathlib import Path

import typer

from simulator.validation.vidur import Row
from workloads.llm import ATTN_PREFILL, Op

CLASS = "encoder attention"


def op_of(r: dict) -> Op:
    B, S, H, D = int(r["batch_size"]), int(r["isl"]), int(r["num_heads"]), int(r["head_dim"])
    return Op(ATTN_PREFILL, "encoder_attention", 1, seqs=B, q_tokens=B * S, kv_tokens=B * S, pairs=B * S * S,
              heads=H, kv_heads=H, head_dim=D, dtype="bf16", dtype_bytes=2.0)


def load_encoder(system_dir: Path) -> list[Row]:
    from simulator.validation.aic import _read, _tables

    rows: list[Row] = []
    for source, path in _tables(system_dir, "encoder_attention", "encoder_attention_perf.parquet"):
        for r in _read(path):
            rows.append(Row(source, CLASS, 1, float(r["batch_size"] * r["isl"]), float(r["latency"]) * 1e-3, op_of(r)))
    return rows


def validate(system_dir: Path, backend: str = "tile", gpu: str | None = None):
    from simulator.validation.aic import default_gpu, predict_aic
    from simulator.validation.kernels import gpu_config

    return predict_aic(load_encoder(system_dir), backend, gpu_config(gpu or default_gpu(system_dir)))


def main(system_dir: Path = typer.Argument(..., help="an aic system directory, e.g. ../shared/validation/aic/h200_sxm"),
         backend: str = typer.Option("tile", "--backend"), gpu: str = typer.Option(None, "--gpu")) -> None:
    from simulator.validation.kernels import format_summary

    res = validate(system_dir, backend, gpu)
    typer.echo(format_summary([res], key=lambda r: f"{r.op} | {r.source}", bias=True))


if __name__ == "__main__":
    typer.run(main)
