"""Per-op breakdown of one serving iteration: ``hwsim ops SCENARIO``.

Lowers one iteration (``--tokens`` prefill tokens of one fresh sequence plus ``--decode-rows``
decode rows at ``--context`` tokens each) of the scenario's model, under its quantization scheme,
and prints each kernel with its shape, HBM bytes, FLOPs, CUDA-core dequantization instructions
and time on the scenario's timing backend (first pool's device). Times are per iteration (all
layers: an op's ``count``).
"""

from __future__ import annotations

from pathlib import Path

import typer

from workloads.llm import ALLREDUCE, ATTN_DECODE, ATTN_PREFILL, GEMM, GEMM_KINDS, GROUPED, BatchShape, Op, lower


def shape_of(op: Op) -> str:
    if op.kind == GEMM:
        return f"{op.m}x{op.n}x{op.k}"
    if op.kind == GROUPED:
        return f"{len(op.groups)}e x (max {max(op.groups)})x{op.n}x{op.k}"
    if op.kind == ATTN_PREFILL:
        return f"seqs={op.seqs} q={op.q_tokens} kv={op.kv_tokens}"
    if op.kind == ATTN_DECODE:
        return f"rows={op.seqs} kv={op.kv_tokens}"
    if op.kind == ALLREDUCE:
        return f"{op.bytes}B x{op.workers}"
    return f"{op.bytes}B"


def precision_of(op: Op) -> str:
    if op.kind in GEMM_KINDS:
        w = (op.w_bytes or op.dtype_bytes) * 8
        return f"{op.dtype} a{op.dtype_bytes * 8:g} w{w:.3g}"
    if op.kind in (ATTN_PREFILL, ATTN_DECODE) and op.kv_bytes:
        return f"{op.dtype} kv{op.kv_bytes * 8:.3g}"
    return op.dtype


def breakdown(scenario, tokens: int = 0, decode_rows: int = 1, context: int = 1024) -> list[dict]:
    """Rows (name, kind, shape, precision, count, bytes, flops, dequant_ops, time_s) of one iteration."""
    from simulator.runner import build_link, build_quantization, check_parallelism
    from simulator.serving.moe_layout import pool_timing

    pool = scenario.pools[0]
    model = scenario.model.config
    check_parallelism(model, pool.tensor_parallel, ep=pool.expert_parallel, dp=pool.attention_data_parallel)
    quant = build_quantization(scenario)
    dev = pool.device.config
    if quant is not None:
        quant.check_device(dev, model.dtype)
    backend = scenario.timing.cls(pool_timing(scenario.timing.config, pool), dev, build_link(scenario, pool))
    shape = BatchShape(prefill=((tokens, 0),) if tokens else (), decode_rows=decode_rows,
                       decode_kv=decode_rows * context, emitting=decode_rows + (1 if tokens else 0))
    rows = []
    fusion = scenario.framework.fusion if scenario.framework is not None else None
    for op in lower(shape, model, pool.tensor_parallel, quant, fusion, pool.expert_parallel,
                    pool.attention_data_parallel):
        rows.append({"name": op.name, "kind": op.kind, "shape": shape_of(op), "precision": precision_of(op),
                     "count": op.count, "bytes": op.bytes_moved() if op.kind != ALLREDUCE else op.bytes * op.count,
                     "flops": op.flops(), "dequant_ops": op.dequant_ops() * op.count, "time_s": backend.op_s(op)})
    return rows


def ops(scenario: Path = typer.Argument(..., help="scenario YAML/TOML"),
        tokens: int = typer.Option(0, "--tokens", help="prefill tokens (one fresh sequence)"),
        decode_rows: int = typer.Option(1, "--decode-rows", help="decode rows in the iteration"),
        context: int = typer.Option(1024, "--context", help="context of each decode row, tokens"),
        set_: list[str] = typer.Option(None, "--set", help="override a.b.c=value (repeatable)"),
        images: int = typer.Option(1, "--images", help="type: diffusion: images in the denoising pass")) -> None:
    """Print the kernels of one iteration: shape, precision, bytes, FLOPs, dequantization, time."""
    from simulator.config.loader import load_scenario, read_mapping

    if scenario.suffix in (".yaml", ".yml") and (read_mapping(scenario) or {}).get("type") == "diffusion":
        from simulator.serving.diffusion_run import print_pass_ops

        print_pass_ops(scenario, set_ or (), images)  # one denoising pass (simulator.serving.diffusion_run)
        return

    sc = load_scenario(scenario, set_ or ())  # user errors: the CLI's guard prints one line, exit 2
    rows = breakdown(sc, tokens, decode_rows, context)
    total = sum(r["time_s"] for r in rows) or 1.0
    q = sc.quantization.config.name if sc.quantization is not None else "unquantized"
    fw = f", {sc.framework.name} (its fusions; kernel times without host launches)" if sc.framework else ""
    typer.echo(f"{sc.model.config.name} on {sc.pools[0].device.config.name}, {sc.timing.kind} timing, {q}{fw}; "
               f"prefill {tokens} tokens, {decode_rows} decode rows x {context} context")
    head = f"{'op':<22}{'kind':<13}{'shape':<28}{'precision':<20}{'x':>4}{'MB':>10}{'GFLOP':>10}{'deq Gop':>9}" \
           f"{'us':>10}{'%':>6}"
    typer.echo(head)
    typer.echo("-" * len(head))
    for r in rows:
        typer.echo(f"{r['name']:<22}{r['kind']:<13}{r['shape']:<28}{r['precision']:<20}{r['count']:>4}"
                   f"{r['bytes'] / 1e6:>10.2f}{r['flops'] / 1e9:>10.2f}{r['dequant_ops'] / 1e9:>9.3f}"
                   f"{r['time_s'] * 1e6:>10.1f}{100 * r['time_s'] / total:>6.1f}")
    typer.echo("-" * len(head))
    typer.echo(f"{'total':<87}{sum(r['bytes'] for r in rows) / 1e6:>10.2f}"
               f"{sum(r['flops'] for r in rows) / 1e9:>10.2f}{sum(r['dequant_ops'] for r in rows) / 1e9:>9.3f}"
               f"{total * 1e6:>10.1f}")
