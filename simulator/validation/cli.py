"""CLI: ``hwsim validate kernels DIR`` and ``hwsim kernel gemm|prefill|decode``."""

from __future__ import annotations

from pathlib import Path

import typer

from simulator.cli_guard import guarded
from simulator.core.errors import ConfigError

validate_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Compare backends with measurements.")
kernel_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Time one kernel on a GPU model.")


@validate_app.callback()
def _validate() -> None:
    """Compare timing backends with measured kernel tables."""


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


@validate_app.command("kernels")
@guarded
def validate_kernels(directory: Path = typer.Argument(..., help="Vidur-format directory (compute/, network/), a "
                                                                 "calibration capture (capture.csv) or an aic system "
                                                                 "directory (gemm/, attention/ Parquet tables)"),
                     gpu: str = typer.Option(None, "--gpu", help="GPU preset the tables were measured on (default: "
                                                                 "from an aic directory's name, else A100-80GB)"),
                     backend: list[str] = typer.Option(["tile", "roofline"], "--backend", help="backend(s) to check"),
                     out: Path = typer.Option(Path("validation.html"), "--out", help="HTML report path"),
                     by_op: bool = typer.Option(False, "--by-op", help="also print per-operator figures (aic: per "
                                                                       "framework and version)"),
                     by: str = typer.Option(None, "--by", help="framework: also print figures per framework/version"),
                     csv_path: Path = typer.Option(None, "--csv", help="write one line per row (class, framework, "
                                                                       "version, shape, measured, predicted, error); "
                                                                       "aic default: rows.csv beside --out"),
                     link: str = typer.Option(None, "--link", help="intra-node link preset of the network rows "
                                                                   "(e.g. NVLink4, NVLink-bridge-H100); needed "
                                                                   "for a node name hwsim does not know")) -> None:
    """Predict every measured row and print median / p90 APE per op class and backend."""
    from simulator.validation.capture_rows import is_capture_dir, load_capture
    from simulator.validation.kernels import by_op as by_op_key
    from simulator.validation.kernels import format_summary, gpu_config, link_config, load, predict, with_link
    from simulator.validation.report import write_report

    if not directory.is_dir():
        _fail(f"{directory}: not a directory")
    if by not in (None, "framework"):
        _fail(f"--by {by}: unknown grouping (known: framework)")
    from simulator.validation.aic import is_aic_dir

    if is_aic_dir(directory):
        _validate_aic(directory, gpu, backend, out, by_op or by == "framework", csv_path)
        return
    gpu = gpu or "A100-80GB"
    try:
        if is_capture_dir(directory):  # a calibration capture (hwsim calibrate capture --device cuda)
            rows, skipped = load_capture(directory)
            for reason, n in skipped.items():
                typer.echo(f"skipped {n} record(s): {reason}")
        else:
            compute, network = load(directory)
            if not compute and not network:
                _fail(f"{directory}: no capture.csv, *.mlp.csv or network/*.csv tables found")
            rows = compute + network
        if link is not None:
            link_config(link)
        rows = with_link(rows, link)  # unknown node names without --link: ConfigError
        g = gpu_config(gpu)
        results = [predict(rows, b, g) for b in backend]
    except ConfigError as exc:
        _fail(str(exc))
    typer.echo(format_summary(results))
    if by_op:
        typer.echo(format_summary(results, by_op_key))
    typer.echo(f"report: {write_report(results, out)}")
    if csv_path is not None:
        from simulator.validation.report import write_rows_csv

        typer.echo(f"rows: {write_rows_csv(results, csv_path)}")


def _validate_aic(directory: Path, gpu: str | None, backend: list[str], out: Path, by_fw: bool,
                  csv_path: Path | None) -> None:
    """An aic system directory: GEMM and attention tables (and what load_aic appends), per class."""
    from simulator.validation.aic import by_framework, default_gpu, load_aic, predict_aic
    from simulator.validation.kernels import format_summary, gpu_config
    from simulator.validation.report import write_report, write_rows_csv

    try:
        gpu = gpu or default_gpu(directory)
        rows, skipped = load_aic(directory)
        if not rows:
            _fail(f"{directory}: no GEMM or attention rows found")
        g = gpu_config(gpu)
        results = [predict_aic(rows, b, g) for b in backend]
    except ConfigError as exc:
        _fail(str(exc))
    for reason, n in skipped.items():
        typer.echo(f"skipped {n} row(s): {reason}")
    typer.echo(f"{directory.resolve().name} on {gpu}: {len(rows)} rows")
    typer.echo(format_summary(results, bias=True))
    if by_fw:
        typer.echo(format_summary(results, by_framework, bias=True))
    typer.echo(f"report: {write_report(results, out, title=f'hwsim kernel validation: {directory.name} on {gpu}')}")
    typer.echo(f"rows: {write_rows_csv(results, csv_path or Path(out).with_name('rows.csv'))}")


def _backend(kind: str, gpu: str):
    from simulator.validation.kernels import gpu_config, make_backend

    try:
        return make_backend(kind, gpu_config(gpu))
    except ConfigError as exc:
        _fail(str(exc))


@kernel_app.command("gemm")
@guarded
def kernel_gemm(m: int, n: int, k: int, gpu: str = typer.Option("A100-80GB", "--gpu"),
                backend: str = typer.Option("tile", "--backend", help="tile | detailed | roofline"),
                dtype: str = typer.Option("bf16", "--dtype")) -> None:
    """Time C[m,n] = A[m,k] @ B[k,n]: time, TFLOP/s, waves and the tile chosen."""
    from workloads.llm import Op

    if min(m, n, k) <= 0:
        _fail("M, N and K must be > 0")
    b = _backend(backend, gpu)
    nbytes = 1.0 if dtype in ("fp8", "int8") else 2.0
    op = Op("gemm", "gemm", 1, m=m, n=n, k=k, dtype=dtype, dtype_bytes=nbytes)
    t = b.op_s(op)
    typer.echo(f"{backend} on {gpu}: {t * 1e6:.2f} us  {2.0 * m * n * k / t / 1e12:.1f} TFLOP/s")
    plan_of = getattr(b, "gemm_plan", None)
    if plan_of is not None:
        p = plan_of(m, n, k, dtype, nbytes)
        typer.echo(f"tile {p.tile_name}  CTAs {p.ctas}  CTAs/SM {p.ctas_per_sm}  waves {p.waves}  "
                   f"compute {p.compute_s * 1e6:.2f} us  memory {p.memory_s * 1e6:.2f} us")


@kernel_app.command("attention")
@guarded
def kernel_attention(tokens: int, heads: int = typer.Option(32), kv_heads: int = typer.Option(32),
                     head_dim: int = typer.Option(128), batch: int = typer.Option(1),
                     decode: bool = typer.Option(False, "--decode", help="one query per sequence, context=tokens"),
                     gpu: str = typer.Option("A100-80GB", "--gpu"), backend: str = typer.Option("tile", "--backend"),
                     decode_kernel: str = typer.Option("split_kv", "--decode-kernel")) -> None:
    """Time causal prefill (FlashAttention-2) or decode attention of ``batch`` sequences."""
    from simulator.validation.kernels import gpu_config, make_backend
    from workloads.llm import Op

    over = {"decode_kernel": decode_kernel} if backend == "tile" else {}
    try:
        b = make_backend(backend, gpu_config(gpu), over)
    except ConfigError as exc:
        _fail(str(exc))
    if decode:
        op = Op("attn_decode", "attn_decode", 1, seqs=batch, q_tokens=batch, kv_tokens=batch * tokens, heads=heads,
                kv_heads=kv_heads, head_dim=head_dim)
    else:
        op = Op("attn_prefill", "attn_prefill", 1, seqs=batch, q_tokens=batch * tokens, kv_tokens=batch * tokens,
                pairs=batch * tokens * (tokens + 1) // 2, heads=heads, kv_heads=kv_heads, head_dim=head_dim)
    t = b.op_s(op)
    typer.echo(f"{backend} on {gpu}: {t * 1e6:.2f} us  {op.flops() / t / 1e12:.1f} TFLOP/s")
