"""Sliding-window attention rows of the aic kernel tables, through hwsim's attention-variant lowering.

    python -m simulator.validation.aic_window ../shared/validation/aic/h200_sxm [--backend tile]

Models: each bf16 row of ``attention/<framework>/<version>/{context,generation}_attention_perf.parquet``
    with a ``window_size`` (128, 1,024 or 8,192 tokens) as one layer of a model whose only layer is a
    ``W`` layer of that window (``model.attention``), lowered by ``workloads.variant_ops``: context
    rows (``batch_size`` prompts of ``isl`` tokens) as the windowed prefill op -- one sequence per
    128-query tile holding its keys once the window cuts the prompt -- and generation rows
    (``batch_size`` rows at ``isl + step`` context) as a decode over min(context, window) keys.
    Each framework's rows run under its ``FRAMEWORK_TIMING`` settings; nothing is fitted here.
    The same rows without their window are the dense ``context attention`` / ``generation
    attention`` classes of ``hwsim validate kernels`` (FIDELITY.md), for comparison.
Ignores: fp8 KV-cache / fp8 attention rows and beam search rows (counted as skipped).
Sources: aiconfigurator-core 0.12.0 systems data (../shared/validation/README.md).
"""

from __future__ import annotations

import functools
from pathlib import Path

import typer

from simulator.validation.vidur import Row
from workloads.llm import BatchShape

CLASSES = ("window context attention", "window generation attention")


@functools.cache
def _model(heads: int, kv_heads: int, head_dim: int, window: int):
    from simulator.config.loader import resolve_component
    from simulator.core import registry as reg

    return resolve_component({"kind": "transformer", "name": f"w{window}", "family": "aic", "num_layers": 1,
                              "hidden_size": heads * head_dim, "num_heads": heads, "num_kv_heads": kv_heads,
                              "head_dim": head_dim, "intermediate_size": 1, "vocab_size": 1, "max_position": 1 << 20,
                              "attention": {"layer_pattern": "W", "window_tokens": window}},
                             reg.MODELS, "aic window").config


def ops_of(phase: str, r: dict) -> list:
    from workloads.variant_ops import attention_ops

    b, h, kvh, hd = int(r["batch_size"]), int(r["num_heads"]), int(r["num_key_value_heads"]), int(r["head_dim"])
    m = _model(h, kvh, hd, int(r["window_size"]))
    if phase == CLASSES[0]:
        s = int(r["isl"])
        return attention_ops(BatchShape(prefill=((s, 0),) * b), m)
    s = int(r["isl"]) + int(r["step"])
    return attention_ops(BatchShape(decode_rows=b, decode_kv=b * s), m)


def load_window(system_dir: Path, stride: int = 1) -> tuple[list[Row], dict[str, int]]:
    """Rows of the windowed bf16 attention tables (every ``stride``-th of them) and {reason: count} skipped."""
    from simulator.validation.aic import _read, _tables

    rows: list[Row] = []
    skipped: dict[str, int] = {}
    for phase, fname in zip(CLASSES, ("context_attention_perf.parquet", "generation_attention_perf.parquet")):
        for source, path in _tables(system_dir, "attention", fname):
            windowed = [r for r in _read(path) if r.get("window_size", 0)]
            for r in windowed[::stride]:
                if r["attn_dtype"] != "bfloat16" or r["kv_cache_dtype"] != "bfloat16" or r.get("beam_width", 1) != 1:
                    key = f"{phase}: fp8 or beam-search row"
                    skipped[key] = skipped.get(key, 0) + 1
                    continue
                s = int(r["isl"]) + (int(r["step"]) if phase == CLASSES[1] else 0)
                rows.append(Row(source, phase, 1, float(r["batch_size"] * s), float(r["latency"]) * 1e-3,
                                ops_of(phase, r)))
    return rows, skipped


def validate(system_dir: Path, backend: str = "tile", gpu: str | None = None):
    from simulator.validation.aic import default_gpu, predict_aic
    from simulator.validation.kernels import gpu_config

    rows, skipped = load_window(system_dir)
    return predict_aic(rows, backend, gpu_config(gpu or default_gpu(system_dir))), skipped


def main(system_dir: Path = typer.Argument(..., help="an aic system directory, e.g. ../shared/validation/aic/h200_sxm"),
         backend: str = typer.Option("tile", "--backend"), gpu: str = typer.Option(None, "--gpu")) -> None:
    from simulator.validation.kernels import format_summary

    res, skipped = validate(system_dir, backend, gpu)
    typer.echo(format_summary([res], key=lambda r: r.op, bias=True))
    typer.echo(format_summary([res], key=lambda r: f"{r.op} | {r.source}", bias=True))
    for k, n in sorted(skipped.items()):
        typer.echo(f"skipped {n} rows: {k}")


if __name__ == "__main__":
    typer.run(main)
