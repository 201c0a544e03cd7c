"""What a user meets in the first hour of the CLI: the version, help text, plug-in descriptions, and
clear one-line refusals (an unwritable results directory, every request rejected, a warm-up that
swallows the workload, an unknown or missing scenario type, a run too big for the machine), the
size of a run before it runs, progress with the time left, study outputs, and a resolved scenario
that re-runs from any directory."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from simulator import __version__
from simulator.cli import app, plugin_description
from simulator.config.loader import load_scenario
from simulator.core.registry import ALL_REGISTRIES
from simulator.run_size import LONG_RUN_S, estimate, physical_memory_bytes

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "scenarios" / "quickstart.yaml")
SMALL = ["--set", "workload.num_requests=40", "--set", "run.warmup_requests=0"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result, *needles: str, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_version_prints_the_package_version_which_matches_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["project"]["version"] == __version__
    for flag in ("--version", "-V"):
        result = invoke(flag)
        assert result.exit_code == 0 and result.output.strip() == f"hwsim {__version__}"


def _commands(cmd, path=()):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_no_help_page_shows_a_type_beside_an_on_off_flag_and_value_options_keep_theirs():
    root = typer.main.get_command(app)
    pages = 0
    for path, _ in _commands(root):
        result = invoke(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, path
        pages += 1
    assert pages >= 20
    assert "<path>" in invoke("run", "--help").output  # options that take a value still say which


def test_every_command_has_a_one_sentence_description_starting_with_a_capital():
    for path, cmd in _commands(typer.main.get_command(app)):
        if not path:
            continue
        text = cmd.get_short_help_str(limit=400)
        assert text and text[0].isupper() and text.endswith("."), (path, text)


def test_every_plugin_of_every_registry_has_a_one_line_description():
    seen = 0
    for reg in ALL_REGISTRIES:
        for e in reg.entries():
            text = plugin_description(e.cls)
            assert len(text) > 10 and "\n" not in text, (reg.name, e.kind, text)
            seen += 1
    assert seen >= 38
    listed = [line for line in invoke("plugins").output.splitlines() if line.startswith("  ")]
    assert len(listed) == seen and all(len(line.split()) >= 4 for line in listed)


def test_an_existing_directory_that_cannot_be_written_is_refused_before_the_run():
    # /proc accepts no new files, even from root; the check comes before any simulating
    result = invoke("run", QUICKSTART, *SMALL, "--out", "/proc", "-q")
    one_line_error(result, "/proc", "not writable")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_results_directory_is_refused_in_one_line(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        one_line_error(invoke("run", QUICKSTART, *SMALL, "--out", ro, "-q"), str(ro), "not writable")
    finally:
        ro.chmod(0o755)


REJECT_ALL = [*SMALL, "--set", "engine.max_model_len=512", "--set", "workload.prompt_tokens={dist: fixed, value: 1000}"]


def test_a_run_whose_every_request_is_rejected_says_why_and_exits_non_zero(tmp_path):
    line = one_line_error(invoke("run", QUICKSTART, *REJECT_ALL, "--out", tmp_path / "r", "-q"),
                          "all 40 requests were rejected", "40 prompts exceed max_model_len 512", "--allow-rejected")
    assert "engine.max_model_len" in line
    assert not (tmp_path / "r" / "summary.json").exists()


def test_allow_rejected_writes_the_results_of_a_run_that_rejects_everything(tmp_path):
    result = invoke("run", QUICKSTART, *REJECT_ALL, "--out", tmp_path / "r", "-q", "--no-report", "--allow-rejected")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r" / "summary.json").read_text(encoding="utf-8"))
    assert summary["requests_rejected"] == 40 and summary["requests_finished"] == 0


@pytest.mark.parametrize("command", ["run", "check"])
def test_warmup_requests_covering_the_whole_workload_is_an_error(command, tmp_path):
    args = ["--set", "workload.num_requests=40", "--set", "run.warmup_requests=40"]
    out = ["--out", tmp_path / "w", "-q"] if command == "run" else []
    one_line_error(invoke(command, QUICKSTART, *args, *out), "run.warmup_requests", "40 requests")


@pytest.mark.parametrize("command", ["run", "check"])
def test_an_unknown_scenario_type_names_type_and_the_known_ones(command, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("type: studdy\nstudy: cachegen\n", encoding="utf-8")
    one_line_error(invoke(command, path), "type", "'studdy'", "did you mean 'study'", "mcu, study")


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize("text", ["", "# nothing but a comment\n"])
def test_an_empty_scenario_file_names_type(command, text, tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text(text, encoding="utf-8")
    one_line_error(invoke(command, path), str(path), "type", "empty")


def test_check_sizes_a_billion_request_run_without_generating_it():
    result = invoke("check", QUICKSTART, "--set", "workload.num_requests=1000000000")
    assert result.exit_code == 0, result.output
    size = result.output.splitlines()[-1]
    assert "1,000,000,000 requests" in size and "iterations" in size and "to simulate" in size
    assert "e11 output tokens" in size or "e12 output tokens" in size  # ~220 output tokens per request


def test_a_run_too_big_for_this_machine_is_refused_with_its_size_before_it_starts(tmp_path):
    mem = physical_memory_bytes()
    if mem is None or mem > 1e13:
        pytest.skip("this machine has room for a billion requests")
    line = one_line_error(invoke("run", QUICKSTART, "--set", "workload.num_requests=1000000000",
                                 "--out", tmp_path / "big"), "1,000,000,000 requests", "memory")
    assert " GB " in line or " TB " in line  # streaming metrics: about 230 bytes per request


def test_the_size_estimate_scales_with_the_requests_and_flags_long_runs():
    small = estimate(load_scenario(QUICKSTART, ["workload.num_requests=1000"]))
    big = estimate(load_scenario(QUICKSTART, ["workload.num_requests=10000000"]))
    assert small.requests == 1000 and not small.sampled and not small.long
    assert big.requests == 10_000_000 and big.sampled and big.wall_s > LONG_RUN_S
    # the sample keeps the mean lengths: tokens per request agree within a few per cent
    assert big.output_tokens / big.requests == pytest.approx(small.output_tokens / small.requests, rel=0.1)
    assert big.iterations_low <= big.iterations_high


def test_progress_prints_the_share_done_and_the_time_left(tmp_path):
    result = invoke("run", QUICKSTART, "--set", "workload.num_requests=400", "--set", "run.warmup_requests=0",
                    "--progress", "--no-report", "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("simulating: ")]
    assert len(lines) >= 5 and all("left" in line and "requests" in line for line in lines)
    assert "simulating: 50% (200/400 requests)" in result.output


def test_a_study_run_writes_report_and_run_info_and_prints_the_header_and_results_line(tmp_path):
    out = tmp_path / "study"
    result = invoke("run", ROOT / "scenarios" / "papers" / "cachegen_llama2_7b.yaml", "--out", out)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("hwsim: ") and "study cachegen" in lines[0]
    assert lines[-1] == f"results: {out}/ (open {out / 'report.html'})"
    for name in ("summary.json", "scenario.resolved.yaml", "report.html", "run_info.json"):
        assert (out / name).is_file(), name
    info = json.loads((out / "run_info.json").read_text(encoding="utf-8"))
    assert info["hwsim"] == __version__ and info["wall_s"] >= 0
    page = (out / "report.html").read_text(encoding="utf-8")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert "delay_gain_vs_quantized" in page and summary["delay_gain_vs_quantized"] > 1


def test_the_resolved_trace_replay_scenario_reruns_from_another_directory(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    args = ["--set", "workload.max_requests=60", "-q", "--no-report"]
    assert invoke("run", ROOT / "scenarios" / "trace_replay.yaml", *args, "--out", first).exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # neither the scenario's folder nor the repository
    result = invoke("run", first / "scenario.resolved.yaml", "-q", "--no-report", "--out", second)
    assert result.exit_code == 0, result.output
    assert (first / "summary.json").read_bytes() == (second / "summary.json").read_bytes()
    assert (first / "requests.csv").read_bytes() == (second / "requests.csv").read_bytes()


def test_a_run_estimated_long_prints_its_size_and_progress_without_being_asked(tmp_path, monkeypatch):
    import simulator.run_size as run_size

    monkeypatch.setattr(run_size, "LONG_RUN_S", 0.0)  # every run counts as long; the run itself is real
    result = invoke("run", QUICKSTART, "--set", "workload.num_requests=200", "--set", "run.warmup_requests=0",
                    "--no-report", "--out", tmp_path / "long")
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith("hwsim: a long run: 200 requests") and "to simulate" in first
    assert "simulating: 50% (100/200 requests)" in result.output


@pytest.mark.parametrize("command", [["capacity", "--slo-ttft", "2s"], ["ops"]])
def test_commands_that_take_only_serving_scenarios_name_type_for_an_mcu_or_empty_file(command, tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    mcu = ROOT / "scenarios" / "mcu" / "mcunet_f746.yaml"
    one_line_error(invoke(command[0], empty, *command[1:]), "type", "empty")
    one_line_error(invoke(command[0], mcu, *command[1:]), "type", "'mcu'", "hwsim run")


def test_check_foresees_rejections_a_run_would_make():
    every = invoke("check", QUICKSTART, *REJECT_ALL)
    one_line_error(every, "engine.max_model_len", "every prompt exceeds max_model_len 512", "40 requests")
    some = invoke("check", QUICKSTART, *SMALL, "--set", "engine.max_model_len=1024",
                  "--set", "workload.prompt_tokens={dist: uniform, low: 1, high: 2048}")
    assert some.exit_code == 0, some.output
    warning = some.output.splitlines()[-1]
    assert warning.startswith("  warning: ") and "exceed max_model_len 1024" in warning
