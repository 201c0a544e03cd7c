"""``hwsim validate variants DIR``: the attention-variant, linear-attention and encoder kernel tables of
an aic system directory through hwsim's lowering (``aic_window``, ``aic_linear``, ``aic_encoder``)."""

from __future__ import annotations

from pathlib import Path

import typer


def validate_variants(directory: Path = typer.Argument(..., help="an aic system directory, e.g. "
                                                                 "../shared/validation/aic/h200_sxm"),
                      backend: str = typer.Option("tile", "--backend", help="tile, roofline or detailed"),
                      gpu: str = typer.Option(None, "--gpu", help="GPU preset (default: the system's)")) -> None:
    """Sliding-window, linear-attention (GDN, Mamba-2 conv) and ViT encoder-attention rows: median / p90
    APE and bias per class and framework."""
    from simulator.core.errors import ConfigError
    from simulator.validation import aic_encoder, aic_linear, aic_window
    from simulator.validation.kernels import format_summary

    if not Path(directory).is_dir():
        raise ConfigError(f"{directory}: not a directory", where="validate variants")

    def key(r):
        return f"{r.op} | {r.source}"

    results = [aic_window.validate(directory, backend, gpu)[0], aic_linear.validate(directory, backend, gpu)[0],
               aic_encoder.validate(directory, backend, gpu)]
    results = [r for r in results if r.rows]
    if not results:
        raise ConfigError(f"{directory}: no windowed attention, linear_attention or encoder_attention tables",
                          where="validate variants")
    typer.echo(format_summary(results, key=key, bias=True))
