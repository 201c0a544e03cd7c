"""Run a study scenario (``type: study``): ``{type: study, study: <name>, <the study's options>}``.

Writes ``summary.json`` and ``scenario.resolved.yaml`` to ``out``; prints the figures unless quiet.
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


def load_study(path: Path | dict, overrides: list[str] | tuple[str, ...] = ()):
    raw = apply_overrides(read_mapping(Path(path)) if not isinstance(path, dict) else path, overrides)
    raw = dict(raw)
    raw.pop("type", None)
    for key in ("name", "description"):
        raw.pop(key, None)
    name = raw.pop("study", None)
    if name not in STUDIES:
        raise ConfigError(f"unknown study {name!r}; known: {', '.join(sorted(STUDIES))}", where="study")
    mod_name, cfg_name = STUDIES[name]
    mod = importlib.import_module(mod_name)
    try:
        cfg = getattr(mod, cfg_name).model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, "", getattr(mod, cfg_name)) from None
    return name, mod, cfg


def run_study(path: Path, overrides: list[str] | None, out: Path | None, quiet: bool) -> dict:
    name, mod, cfg = load_study(path, overrides or [])
    result = mod.run(cfg)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps({"study": name, **result}, indent=2))
        (out / "scenario.resolved.yaml").write_text(
            yaml.safe_dump({"type": "study", "study": name, **cfg.model_dump(mode="json")}, sort_keys=False))
    if not quiet:
        for k, v in result.items():
            typer.echo(f"{k:32s} {v:.4g}" if isinstance(v, float) else f"{k:32s} {v}")
    return result
