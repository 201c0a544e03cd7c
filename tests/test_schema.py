"""``hwsim schema`` is a JSON Schema an editor can use: valid draft 2020-12, it accepts every
shipped scenario (serving, ``type: mcu``, ``type: study``) and every resolved scenario hwsim
writes, and it still rejects what hwsim rejects (a bare number for a quantity, an unknown field,
an unknown type or study option)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli import app

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted(p for p in (ROOT / "scenarios").rglob("*") if p.suffix in (".yaml", ".yml", ".toml", ".json"))


def read(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        return tomllib.loads(text)
    if path.suffix == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator, data) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in validator.iter_errors(data)]


def test_scenarios_of_every_type_are_shipped():
    types = {read(p).get("type", "serving") for p in SCENARIOS}
    assert types == {"serving", "mcu", "study", "training", "sweep", "diffusion"} and len(SCENARIOS) >= 30


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: str(p.relative_to(ROOT / "scenarios")))
def test_the_schema_accepts_every_shipped_scenario(validator, path):
    assert errors(validator, read(path)) == []


@pytest.mark.parametrize("name", ["quickstart.yaml", "disaggregated.yaml", "trace_replay.yaml",
                                  "mcu/mcunet_f746.yaml", "papers/cachegen_llama2_7b.yaml"])
def test_the_schema_accepts_the_resolved_scenario_hwsim_writes(validator, name, tmp_path):
    out = tmp_path / "out"
    args = ["run", str(ROOT / "scenarios" / name), "--out", str(out), "-q", "--no-report"]
    if "mcu" in name or "papers" in name:
        args.remove("--no-report")
    else:
        args += ["--set", "run.warmup_requests=0", "--set", "outputs.chrome_trace=false"]
        args += ["--set", "workload.max_requests=40"] if "trace" in name else ["--set", "workload.num_requests=40"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert errors(validator, yaml.safe_load((out / "scenario.resolved.yaml").read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize("change, where", [
    (lambda s: s["engine"].update(activation_reserve=2), "engine.activation_reserve"),  # a bare number: no unit
    (lambda s: s["engine"].update(activation_reserve="2 parsecs"), "engine.activation_reserve"),
    (lambda s: s.update(hardwear={}), "<top>"),  # an unknown top-level field
    (lambda s: s["slo"].update(ttft="fast"), "slo.ttft"),
    (lambda s: s.update(type="serving-ish"), "type"),
])
def test_the_schema_rejects_what_hwsim_rejects_in_a_serving_scenario(validator, change, where):
    scenario = read(ROOT / "scenarios" / "quickstart.yaml")
    assert errors(validator, scenario) == []
    change(scenario)
    found = errors(validator, scenario)
    assert found and any(e.startswith(where) for e in found), found


def test_the_schema_rejects_an_unknown_study_option_and_an_unknown_study(validator):
    study = read(ROOT / "scenarios" / "papers" / "cachegen_llama2_7b.yaml")
    assert errors(validator, {**study, "compresion_ratio": 3.9})
    assert errors(validator, {**study, "study": "cachegem"})
    assert errors(validator, {**study, "link_bw": 3})  # a bandwidth needs its unit


def test_the_schema_rejects_an_mcu_scenario_without_its_schedule(validator):
    mcu = read(ROOT / "scenarios" / "mcu" / "mcunet_f746.yaml")
    mcu.pop("schedule")
    assert any("schedule" in e for e in errors(validator, mcu))


def test_the_schema_of_one_kind_validates_a_block_of_that_kind():
    result = CliRunner().invoke(app, ["schema", "vllm"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    jsonschema.Draft202012Validator.check_schema(schema)
    v = jsonschema.Draft202012Validator(schema)
    assert not list(v.iter_errors({"block_size": 16, "max_num_seqs": 64}))
    assert list(v.iter_errors({"block_sise": 16}))


@pytest.mark.parametrize("name", ["quickstart.yaml", "mcu/mcunet_f746.yaml", "papers/cachegen_llama2_7b.yaml"])
def test_a_scenario_may_point_its_editor_at_the_schema_with_a_schema_key(validator, name, tmp_path):
    data = {"$schema": "./scenario.schema.json", **read(ROOT / "scenarios" / name)}
    assert errors(validator, data) == []
    path = tmp_path / "with_schema.json"  # JSON editors read the $schema key
    path.write_text(json.dumps(data), encoding="utf-8")
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
