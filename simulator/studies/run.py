"""Run a study scenario (``type: study``): ``{type: study, study: <name>, <the study's options>}``.

Writes ``summary.json``, ``scenario.resolved.yaml``, ``report.html`` and ``run_info.json`` to ``out``;
prints the figures unless quiet.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import typer
import yaml
from pydantic import ValidationError

from simulator.config.errors import config_error
from simulator.config.loader import apply_overrides, read_mapping
from simulator.core.errors import ConfigError

STUDIES = {"cachegen": ("simulator.studies.cachegen", "CacheGenConfig")}


def known_studies() -> dict[str, tuple[str, str]]:
    """Every study: the table above plus each module ``simulator/studies/<name>.py`` that defines a
    pydantic ``Config`` and a ``run(config) -> dict`` (a new study is one such file)."""
    import pkgutil

    import simulator.studies as pkg

    out = dict(STUDIES)
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name not in out and info.name not in ("run",) and not info.name.startswith("_"):
            out[info.name] = (f"simulator.studies.{info.name}", "Config")
    return out


def load_study(path: Path | dict, overrides: list[str] | tuple[str, ...] = ()):
    raw = apply_overrides(read_mapping(Path(path)) if not isinstance(path, dict) else path, overrides)
    raw = dict(raw)
    raw.pop("type", None)
    for key in ("name", "description"):
        raw.pop(key, None)
    name = raw.pop("study", None)
    studies = known_studies()
    if name not in studies:
        raise ConfigError(f"unknown study {name!r}; known: {', '.join(sorted(studies))}", where="study")
    mod_name, cfg_name = studies[name]
    mod = importlib.import_module(mod_name)
    if not hasattr(mod, cfg_name) or not hasattr(mod, "run"):
        raise ConfigError(f"module {mod_name} is not a study (needs {cfg_name} and run)", where="study")
    try:
        cfg = getattr(mod, cfg_name).model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, "", getattr(mod, cfg_name)) from None
    return name, mod, cfg


def study_name(path: Path | dict, study: str) -> str:
    """The run's name: the file's ``name``, else the study's."""
    raw = read_mapping(Path(path)) if not isinstance(path, dict) else path
    return str(raw.get("name") or study)


def run_study(path: Path, overrides: list[str] | None, out: Path | None, quiet: bool) -> dict:
    """Run a study; write summary.json, scenario.resolved.yaml, report.html and run_info.json to
    ``out``; print the same header and ``results:`` line as a serving run unless quiet."""
    import platform
    import time

    from simulator import __version__
    from simulator.studies.report import render_study_report

    name, mod, cfg = load_study(path, overrides or [])
    raw = read_mapping(Path(path)) if not isinstance(path, dict) else path
    title, description = study_name(path, name), str(raw.get("description") or "").strip()
    t0 = time.perf_counter()
    result = mod.run(cfg)
    wall = time.perf_counter() - t0
    options = cfg.model_dump(mode="json")
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps({"study": name, **result}, indent=2))
        (out / "scenario.resolved.yaml").write_text(
            yaml.safe_dump({"type": "study", "study": name, **options}, sort_keys=False))
        (out / "report.html").write_text(render_study_report(title, name, description, result, options,
                                                             __version__), encoding="utf-8")
        info = {"wall_s": wall, "hwsim": __version__, "python": platform.python_version(),
                "platform": platform.platform(), "study": name}
        (out / "run_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if not quiet:
        leaves = list(_flat(result))
        typer.echo(f"hwsim: {title}  (study {name}: {len(leaves)} figures, computed in {wall:.2f} s)")
        for k, v in leaves:
            typer.echo(f"  {k:40s} {v:.4g}" if isinstance(v, float) else f"  {k:40s} {v}")
        if out is not None:
            typer.echo(f"results: {out}/ (open {out / 'report.html'})")
    return result


def _flat(d: dict, prefix: str = ""):
    """(dotted key, value) of a nested result, one line per leaf."""
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v
