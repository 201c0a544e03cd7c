"""``hwsim calibrate``: capture real kernel timings, fit a hardware model, report the error.

    hwsim calibrate capture --device cpu [--quick] [--threads 1] -o capture/
    hwsim calibrate fit capture/ --hardware generic-x86-2core -o calibrated.yaml
    hwsim calibrate fit ../shared/validation/vidur_a100/compute --hardware A100-80GB -o a100.yaml
    hwsim calibrate report calibrated.fit.json -o calibration.html

User errors print one line (``error: <where>: <what>``) and exit 2, as in the main CLI.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import typer

from simulator.cli_guard import guarded
from simulator.core.errors import HwsimError, InputFileError

calibrate_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                            help="Calibrate hardware models against kernels timed on this machine.")




@calibrate_app.command()
@guarded
def capture(out: Path = typer.Option(..., "--out", "-o", help="output directory (capture.csv + capture.json)"),
            device: str = typer.Option("cpu", "--device", help="cpu (numpy) or cuda (torch)"),
            quick: bool = typer.Option(False, "--quick", help="small grid for CI (< 20 s on 2 cores)"),
            threads: int = typer.Option(1, "--threads", help="BLAS threads to pin and record")) -> None:
    """Time GEMMs, memory sweeps, elementwise kernels and attention on this machine."""
    from simulator.calibration import capture as cap

    if device not in ("cpu", "cuda"):
        raise HwsimError(f"unknown device {device!r}; use cpu or cuda", where="--device")
    if threads < 1:
        raise HwsimError(f"must be >= 1, got {threads}", where="--threads")
    if device == "cuda" and importlib.util.find_spec("torch") is None:
        raise HwsimError("--device cuda needs torch, which is not installed here; copy "
                         f"{Path(cap.__file__).name} to a GPU machine with numpy + torch and run it there",
                         where="--device")
    if out.exists() and not out.is_dir():
        raise HwsimError("the output path is an existing file", where=str(out))
    env = dict(os.environ, **{v: str(threads) for v in cap.THREAD_VARS}, **{cap.PIN_FLAG: str(threads)})
    argv = [sys.executable, str(Path(cap.__file__).resolve()), "--device", device, "--threads", str(threads),
            "-o", str(out)] + (["--quick"] if quick else [])
    proc = subprocess.run(argv, env=env, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise HwsimError(f"capture failed (exit {proc.returncode}): {last}",
                         where=f"calibrate capture --device {device}")
    rows = sum(1 for _ in (out / "capture.csv").open()) - 1
    typer.echo(f"wrote {rows} measurements to {out / 'capture.csv'} (provenance: {out / 'capture.json'})")


def load_inputs(paths: list[Path]):
    """Capture files/directories and Vidur tables/directories, merged into one Capture."""
    from simulator.calibration.records import Capture, read_capture
    from simulator.calibration.vidur import is_vidur_csv, read_vidur, read_vidur_dir

    caps = []
    for p in paths:
        if p.is_dir():
            caps.append(read_capture(p) if (p / "capture.csv").exists() or not list(p.glob("*.mlp.csv"))
                        else read_vidur_dir(p))
        elif p.exists() and is_vidur_csv(p):
            caps.append(read_vidur(p))
        else:
            caps.append(read_capture(p))
    if not caps:
        raise InputFileError("no capture given", where="calibrate fit")
    return Capture(", ".join(c.path for c in caps), [r for c in caps for r in c.rows], caps[0].provenance)


@calibrate_app.command()
@guarded
def fit(captures: list[Path] = typer.Argument(..., help="capture dir/CSV, or Vidur *.mlp.csv file/dir"),
        hardware: str = typer.Option(..., "--hardware", help="preset to start from, e.g. generic-x86-2core"),
        out: Path = typer.Option(..., "--out", "-o", help="overlay YAML to write (a preset file)"),
        seed: int = typer.Option(0, "--seed", help="seed of the train/held-out shuffle"),
        holdout: float = typer.Option(0.3, "--holdout", help="share of measurements held out")) -> None:
    """Fit the model's free parameters; print held-out error before/after; write a preset overlay."""
    from simulator.calibration.fit import adapter_for, find_hardware, result_json, write_overlay
    from simulator.calibration.fit import fit as run_fit

    if not 0.05 <= holdout <= 0.9:
        raise HwsimError(f"must be within [0.05, 0.9], got {holdout}", where="--holdout")
    data = load_inputs(captures)
    component = find_hardware(hardware)
    adapter = adapter_for(component)
    result = run_fit(data.rows, adapter, seed=seed, holdout=holdout, source=data.path)
    written = write_overlay(result, adapter, hardware, out, data.provenance)
    fit_json = out.with_name(out.stem + ".fit.json")
    fit_json.write_text(json.dumps(result_json(result, hardware), indent=1) + "\n")
    typer.echo(f"{component.kind} {hardware}: {len(result.rows)} measurements, train {result.meta['n_train']}, "
               f"held-out {result.meta['n_held_out']} (seed {seed})")
    typer.echo(result.table())
    for name, v in result.fitted.items():
        typer.echo(f"  {name:<28} {result.initial[name]:>11.4g} -> {v:.4g}")
    typer.echo("wrote " + ", ".join(str(p) for p in [*written, fit_json]))


@calibrate_app.command()
@guarded
def report(fit_json: Path = typer.Argument(..., help="the *.fit.json written by `calibrate fit`"),
           out: Path = typer.Option(Path("calibration.html"), "--out", "-o", help="HTML file to write")) -> None:
    """Self-contained HTML: predicted vs measured per kernel class (plotly)."""
    from simulator.calibration.report import write_report

    typer.echo(f"wrote {write_report(fit_json, out)}")
