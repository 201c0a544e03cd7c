"""README.md is checked as a user meets it: its code fences close, its first lines are the two
commands for a fresh machine, its speed sentence quotes BENCHMARKS.md, and the ``hwsim`` command
lines it shows run and exit 0."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^(\s*)(```|~~~)(.*)$")

# Command lines shown in the README that the test does not run, each with the reason.
NOT_RUN = {
    "hwsim capacity": "a bisection: eight full runs of 2,000 requests (about 15 s on two cores)",
    "hwsim validate kernels MEASURED_DIR": "MEASURED_DIR stands for the user's measured kernel tables",
    "hwsim validate serving BENCH.csv": "BENCH.csv stands for the user's benchmark file; every row is simulated",
    "hwsim calibrate capture": "times real kernels on this machine (a GPU where there is one); minutes",
}


def fences(text: str) -> list[tuple[int, str, str]]:
    """(line number, opening info string, body) of each fenced block; fails on a fence left open
    or on a fence marker that is not at the start of its line (text after a closing fence)."""
    blocks, open_at, info, body = [], None, "", []
    for i, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if open_at is None:
            if m:
                open_at, info, body = i, m.group(3).strip(), []
            else:
                assert "```" not in line, f"README.md:{i}: a code fence that is not at the start of its line"
        elif m:
            assert not m.group(3).strip(), f"README.md:{i}: text after a closing fence: {line!r}"
            blocks.append((open_at, info, "\n".join(body)))
            open_at = None
        else:
            body.append(line)
    assert open_at is None, f"README.md:{open_at}: code fence never closed"
    return blocks


def hwsim_commands(text: str) -> list[str]:
    """Every ``hwsim ...`` command of the README's bash blocks (comments dropped, ``a && hwsim b`` split)."""
    out = []
    for _, info, body in fences(text):
        if info != "bash":
            continue
        for line in body.splitlines():
            for part in line.split("&&"):
                cmd = re.sub(r"\s+#.*$", "", part).strip()
                if cmd.startswith("hwsim "):
                    out.append(cmd)
    return out


def test_every_code_fence_of_the_readme_closes_and_stands_on_its_own_line():
    blocks = fences(README)
    assert len(blocks) >= 6
    # the CLI section is prose and a bash block, not swallowed by an earlier block
    cli = next(b for b in blocks if "hwsim check" in b[2])
    assert cli[1] == "bash"
    assert README.index("### The CLI") < README.index(cli[2])


def test_the_first_lines_are_the_install_and_run_and_the_test_commands():
    first = fences(README)[0]
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in first[2].splitlines()]
    assert lines == ["pip install . && hwsim demo", "pip install -e '.[test]' && pytest -q -n 2 --dist loadfile"]
    assert README.index(first[2]) < 200


def test_the_readme_states_the_python_version_and_a_virtual_environment():
    assert "Python ≥ 3.11" in README and "python3 -m venv" in README
    assert 'requires-python = ">=3.11"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_the_readme_speed_sentence_quotes_the_target_case_of_benchmarks_md():
    bench = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    row = next(line for line in bench.splitlines() if "the target case" in line)
    wall = re.search(r"\*\*([\d.]+)\*\*", row).group(1)
    requests = re.search(r"\|\s*([\d,]+)\s*\|", row.split("**", 4)[-1]).group(1)
    sentence = README[README.index("in seconds:"):README.index("BENCHMARKS.md")]
    assert f"{wall} s" in sentence, (wall, sentence)
    assert requests in sentence, (requests, sentence)


def test_the_license_is_an_spdx_string_as_setuptools_now_requires():
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert isinstance(meta["project"]["license"], str)  # a {text = ...} table is deprecated
    assert "setuptools>=77" in meta["build-system"]["requires"]  # the first setuptools reading SPDX strings


def _skipped(cmd: str) -> str | None:
    return next((why for prefix, why in NOT_RUN.items() if cmd.startswith(prefix)), None)


COMMANDS = hwsim_commands(README)


def test_the_readme_shows_the_cli_examples_and_the_skip_list_names_only_shown_commands():
    assert len(COMMANDS) >= 12
    for prefix in NOT_RUN:
        assert any(c.startswith(prefix) for c in COMMANDS), f"{prefix!r} is no longer in the README"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A directory laid out as a user's checkout: scenarios/ and a trace.csv of their own."""
    d = tmp_path_factory.mktemp("readme")
    os.symlink(ROOT / "scenarios", d / "scenarios")
    shutil.copy(ROOT / "scenarios" / "traces" / "conv_sample.csv", d / "trace.csv")
    return d


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if _skipped(c) is None])
def test_each_hwsim_command_shown_in_the_readme_runs_and_exits_0(cmd, workdir):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", "-c", cmd], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert proc.stdout.strip() or (workdir / "scenario.schema.json").exists()


@pytest.mark.parametrize("override, upto", [("policies.scheduler.kind=vlm", "known:"),
                                            ("model.preset=Llama-2-70B", None)])
def test_the_error_lines_shown_in_the_readme_are_what_hwsim_prints(override, upto):
    from typer.testing import CliRunner

    from simulator.cli import app

    result = CliRunner().invoke(app, ["check", str(ROOT / "scenarios" / "quickstart.yaml"), "--set", override])
    assert result.exit_code == 2
    line = result.output.strip()
    shown = line[:line.index(upto)] if upto else line
    assert shown in README, line
