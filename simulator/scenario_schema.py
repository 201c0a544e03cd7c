"""The JSON Schema of a scenario file, for editors and validators (``hwsim schema``).

One schema covers the kinds of scenario file: a serving scenario (no ``type``), an MCU run
(``type: mcu``), a study (``type: study``, one branch per study, chosen by ``study``) and a training
step (``type: training``). Quantity
fields are strings with a unit (``"80GiB"``, ``"2s"``, ``"8/s"``). Component blocks
(``{kind, preset, <overrides>}``) stay open objects, because their fields depend on the kind and on
the preset; the config of every plug-in kind is under ``$defs`` as ``<registry>.<kind>``.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic.json_schema import models_json_schema

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCENARIO_TYPES = ("mcu", "study", "training", "sweep", "diffusion")  # besides a serving scenario (no type key)
_HEADER = {"name": {"type": "string"}, "description": {"type": "string"}}
_SCHEMA_KEY = {"$schema": {"type": "string", "description": "where an editor finds this schema (ignored by hwsim)"}}


def _study_models() -> list[tuple[str, type]]:
    from simulator.studies.run import known_studies

    out = []
    for name, (mod_name, cfg_name) in sorted(known_studies().items()):
        mod = importlib.import_module(mod_name)
        cfg = getattr(mod, cfg_name, None)
        if cfg is not None and hasattr(mod, "run"):
            out.append((name, cfg))
    return out


def scenario_schema() -> dict[str, Any]:
    """The whole scenario-file schema (JSON Schema draft 2020-12)."""
    from simulator.config.scenario import ScenarioFile
    from simulator.core.registry import ALL_REGISTRIES
    from simulator.mcu.run import McuScenario
    from simulator.serving.diffusion_run import DiffusionScenario
    from simulator.sweep_spec import SweepFile
    from simulator.training.config import TrainingScenario

    studies = _study_models()
    models = [ScenarioFile, McuScenario, TrainingScenario, SweepFile, DiffusionScenario] + [cfg for _, cfg in studies]
    refs, top = models_json_schema([(m, "validation") for m in models], ref_template="#/$defs/{model}")
    defs: dict[str, Any] = dict(top.get("$defs", {}))
    ref = {m: refs[(m, "validation")]["$ref"] for m in models}

    branches = []
    for name, cfg in studies:
        key = ref[cfg].rsplit("/", 1)[-1]
        body = dict(defs[key])
        # a study file carries type, study, name and description beside the study's own options
        body["properties"] = {**_SCHEMA_KEY, "type": {"const": "study"}, "study": {"const": name}, **_HEADER,
                              **body.get("properties", {})}
        body["required"] = ["type", "study", *body.get("required", [])]
        defs[key] = body
        branches.append({"if": {"properties": {"study": {"const": name}}, "required": ["study"]},
                         "then": {"$ref": ref[cfg]}})
    for model in (ScenarioFile, McuScenario, TrainingScenario, SweepFile):  # a file may point its editor here
        key = ref[model].rsplit("/", 1)[-1]
        defs[key] = {**defs[key], "properties": {**_SCHEMA_KEY, **defs[key].get("properties", {})}}
    key = ref[DiffusionScenario].rsplit("/", 1)[-1]  # a diffusion file carries its type
    defs[key] = {**defs[key], "properties": {**_SCHEMA_KEY, "type": {"const": "diffusion"},
                                             **defs[key].get("properties", {})}}
    defs["Study"] = {"type": "object", "title": "Study scenario (type: study)", "required": ["type", "study"],
                     "properties": {"type": {"const": "study"},
                                    "study": {"enum": [n for n, _ in studies],
                                              "description": "which study to run"}},
                     "allOf": branches}
    for reg in ALL_REGISTRIES:
        for e in reg.entries():
            if e.config is not None:
                defs[f"{reg.name.replace(' ', '_')}.{e.kind}"] = e.config.model_json_schema(
                    ref_template=f"#/$defs/{reg.name.replace(' ', '_')}.{e.kind}/$defs/{{model}}")
    out = {
        "$schema": SCHEMA_DIALECT,
        "title": "hwsim scenario",
        "description": "A serving scenario (no type), an MCU run (type: mcu), a study (type: study) or a "
                       "training step (type: training).",
        "type": "object",
        "properties": {"type": {"enum": list(SCENARIO_TYPES),
                                "description": "leave out for a serving scenario; mcu, study or training otherwise"}},
        "allOf": [
            {"if": {"properties": {"type": {"const": "mcu"}}, "required": ["type"]},
             "then": {"$ref": ref[McuScenario]}},
            {"if": {"properties": {"type": {"const": "study"}}, "required": ["type"]},
             "then": {"$ref": "#/$defs/Study"}},
            {"if": {"properties": {"type": {"const": "training"}}, "required": ["type"]},
             "then": {"$ref": ref[TrainingScenario]}},
            {"if": {"properties": {"type": {"const": "sweep"}}, "required": ["type"]},
             "then": {"$ref": ref[SweepFile]}},
            {"if": {"properties": {"type": {"const": "diffusion"}}, "required": ["type"]},
             "then": {"$ref": ref[DiffusionScenario]}},
            {"if": {"not": {"required": ["type"]}}, "then": {"$ref": ref[ScenarioFile]}},
        ],
        "$defs": defs,
    }
    return _numbers_as_written(out)


_NUMBER = r"^\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\s*$"


def _numbers_as_written(node: Any) -> Any:
    """A float field also takes a numeric string, as the loader does: YAML 1.1 reads ``312e12``
    (no dot) as a string, which the config turns into the number."""
    if isinstance(node, dict):
        out = {k: _numbers_as_written(v) for k, v in node.items()}
        if out.get("type") == "number" and "pattern" not in out:
            out["type"] = ["number", "string"]
            out["pattern"] = _NUMBER
        return out
    if isinstance(node, list):
        return [_numbers_as_written(v) for v in node]
    return node


def kind_schema(config: type | None) -> dict[str, Any]:
    """The schema of one plug-in kind's config (an empty object schema for a kind without options)."""
    if config is None:
        return {"$schema": SCHEMA_DIALECT, "type": "object", "properties": {"kind": {"type": "string"}},
                "additionalProperties": False}
    return _numbers_as_written({"$schema": SCHEMA_DIALECT, **config.model_json_schema()})
