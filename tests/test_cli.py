"""The `hwsim` command line: bad input gets one line naming what and where, and exit code 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli import app

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *needles: str) -> str:
    out = result.output
    assert result.exit_code == 2, f"exit code {result.exit_code}, output: {out!r}"
    assert "Traceback" not in out
    assert out.endswith("\n") and out.count("\n") == 1, f"expected exactly one line, got: {out!r}"
    assert out.startswith("error:"), out
    for needle in needles:
        assert needle in out, f"{needle!r} not in {out!r}"
    return out


def quickstart_with(tmp_path: Path, name: str = "scenario.yaml", **sections) -> Path:
    raw = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    raw.update(sections)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


# -------------------------------------------------------------------------------------------
# bad input, through `check` and `run` alike


@pytest.fixture(params=["check", "run"])
def command(request, tmp_path) -> list[str]:
    """The command words; `run` also gets an --out so nothing is written into the repository."""
    return ["check"] if request.param == "check" else ["run", "--out", str(tmp_path / "out"), "-q"]


def test_malformed_yaml_names_the_file_and_line(command, tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\nseed: 1\nhardware:\n  device: {kind: gpu\n  timing: [\n", encoding="utf-8")
    out = assert_one_line_error(invoke(*command, bad), "broken.yaml:", "malformed YAML")
    assert "broken.yaml:4:" in out or "broken.yaml:5:" in out, out


def test_an_unknown_scheduler_kind_suggests_the_closest_one(command):
    assert_one_line_error(invoke(*command, QUICKSTART, "--set", "policies.scheduler.kind=vlm"),
                          "policies.scheduler.kind", "'vlm'", "did you mean 'vllm'")


def test_an_unknown_preset_names_it_and_lists_the_known_ones(command):
    assert_one_line_error(invoke(*command, QUICKSTART, "--set", "hardware.device.preset=H300"),
                          "hardware.device.preset", "'H300'", "H100-SXM")


def test_an_unknown_field_names_its_dotted_path_and_suggests_the_right_one(command):
    assert_one_line_error(invoke(*command, QUICKSTART, "--set", "policies.scheduler.blok_size=16"),
                          "policies.scheduler.blok_size", "did you mean 'block_size'")


def test_a_bare_number_for_a_unit_field_names_the_unit_to_give(command):
    out = assert_one_line_error(invoke(*command, QUICKSTART, "--set", "hardware.device.memory_bw_bytes_per_s=3"),
                                "hardware.device.memory_bw_bytes_per_s", "unit")
    assert "B/s" in out, out


def test_a_negative_size_is_refused_naming_the_field(command):
    assert_one_line_error(invoke(*command, QUICKSTART, "--set", "engine.activation_reserve=-1GiB"),
                          "engine.activation_reserve", ">= 0")


def test_a_trace_missing_a_column_names_the_column_and_the_file(command, tmp_path):
    trace = tmp_path / "short.csv"
    trace.write_text("arrived_at,num_prefill_tokens\n0.0,12\n1.0,30\n", encoding="utf-8")
    scenario = quickstart_with(tmp_path, workload={"kind": "trace", "path": "short.csv"})
    assert_one_line_error(invoke(*command, scenario), "short.csv", "missing column", "'num_decode_tokens'")


def test_a_trace_file_that_does_not_exist_is_named(command, tmp_path):
    scenario = quickstart_with(tmp_path, workload={"kind": "trace", "path": "no_such_trace.csv"})
    assert_one_line_error(invoke(*command, scenario), "no_such_trace.csv", "not found")


def test_a_model_that_does_not_fit_the_gpu_names_the_model(command):
    out = assert_one_line_error(invoke(*command, QUICKSTART, "--set", "hardware.device.preset=L4",
                                       "--set", "model.preset=Llama-2-70B"), "Llama-2-70B")
    assert out.startswith("error: model:"), out


@pytest.mark.parametrize("override, needle", [
    ("name.first=3", "name.first"),  # through a value that is not a mapping
    ("no_equals_sign", "no_equals_sign"),  # not a.b.c=value
    ("nosuch.field=3", "nosuch"),  # a section the scenario does not have
    ("policies.scheduler..kind=vllm", "policies.scheduler..kind"),  # an empty key
])
def test_a_bad_set_path_is_named(command, override, needle):
    assert_one_line_error(invoke(*command, QUICKSTART, "--set", override), needle)


def test_a_scenario_file_that_does_not_exist_is_named(command, tmp_path):
    assert_one_line_error(invoke(*command, tmp_path / "nowhere.yaml"), "nowhere.yaml", "not found")


def test_an_out_directory_that_is_an_existing_file_is_refused(tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("", encoding="utf-8")
    assert_one_line_error(invoke("run", QUICKSTART, "--set", "workload.num_requests=5", "--out", blocker, "-q"),
                          str(blocker))


def test_unknown_kinds_for_presets_and_schema_suggest_the_closest_one():
    assert_one_line_error(invoke("presets", "gpx"), "'gpx'", "did you mean 'gpu'")
    assert_one_line_error(invoke("schema", "vlm"), "'vlm'", "did you mean 'vllm'")


# -------------------------------------------------------------------------------------------
# good input


def test_plugins_lists_the_builtin_schedulers_routers_and_backends():
    result = invoke("plugins")
    assert result.exit_code == 0, result.output
    kinds = {line.split()[0] for line in result.output.splitlines() if line.startswith("  ")}
    assert {"vllm", "orca", "static", "round_robin", "least_outstanding", "roofline", "gpu"} <= kinds


def test_presets_gpu_lists_the_eight_required_gpus():
    result = invoke("presets", "gpu")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("gpu: ")
    names = {n.strip() for n in result.output.split(":", 1)[1].split(",")}
    assert {"A100-40GB", "A100-80GB", "H100-SXM", "H200", "A40", "L4", "L40S", "RTX-4090"} <= names


def test_schema_prints_a_json_schema_with_properties():
    result = invoke("schema")
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    assert "hardware" in schema["$defs"]["ScenarioFile"]["properties"]


def test_schema_of_one_kind_prints_that_plugins_config():
    result = invoke("schema", "vllm")
    assert result.exit_code == 0, result.output
    assert "block_size" in json.loads(result.output)["properties"]


def test_check_accepts_the_quickstart():
    result = invoke("check", QUICKSTART)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: ")


def test_set_changes_the_resolved_scenario():
    def resolved(*extra: str) -> dict:
        result = invoke("check", QUICKSTART, "--show", *extra)
        assert result.exit_code == 0, result.output
        return yaml.safe_load(result.output[result.output.index("# hwsim resolved scenario"):])

    assert resolved()["cluster"]["replicas"] == 1
    assert resolved("--set", "cluster.replicas=2")["cluster"]["replicas"] == 2


def test_run_writes_a_resolved_scenario_that_carries_the_overrides(tmp_path):
    out = tmp_path / "res"
    result = invoke("run", QUICKSTART, "--set", "workload.num_requests=20", "--set", "cluster.replicas=2",
                    "--set", "run.warmup_requests=0", "--out", out, "-q", "--no-report")
    assert result.exit_code == 0, result.output
    assert result.output == ""  # -q prints nothing on success
    written = yaml.safe_load((out / "scenario.resolved.yaml").read_text(encoding="utf-8"))
    assert written["cluster"]["replicas"] == 2 and written["workload"]["num_requests"] == 20
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["requests_finished"] == 20


def hwsim_executable() -> str:
    beside = Path(sys.executable).with_name("hwsim")
    exe = str(beside) if beside.exists() else shutil.which("hwsim")
    assert exe, "the hwsim entry point is not installed (pip install -e .)"
    return exe


def test_the_installed_hwsim_demo_writes_a_complete_results_directory(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([hwsim_executable(), "demo", "--out", str(out), "-q"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    for name in ("summary.json", "requests.csv", "events.csv", "batches.csv", "scenario.resolved.yaml",
                 "trace.json", "report.html"):
        assert (out / name).is_file(), f"{name} missing from {out}"
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["requests_finished"] == summary["requests_total"] > 0


def test_the_installed_hwsim_reports_bad_input_in_one_line_with_exit_code_2(tmp_path):
    proc = subprocess.run([hwsim_executable(), "check", str(tmp_path / "nowhere.yaml")], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("error:") and proc.stderr.count("\n") == 1 and "nowhere.yaml" in proc.stderr
