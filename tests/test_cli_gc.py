"""The collector settings of the ``hwsim`` command (simulator/cli.py ``main``, ``quiet_gc``): the
command's own process raises the young-generation threshold and freezes what was allocated before
a run; a program that imports the CLI or invokes a command in-process (tests, notebooks, the
typer test runner) keeps its collector as it was, and garbage made before a run is still
collected after it (a frozen object is never collected, so a freeze in a long-lived process
would keep every cycle that was garbage at that moment for the rest of the process)."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref
from pathlib import Path

from typer.testing import CliRunner

from simulator.cli import GC_YOUNG_THRESHOLD, app

ROOT = Path(__file__).resolve().parents[1]
RUN = ["run", str(ROOT / "scenarios" / "quickstart.yaml"), "--set", "workload.num_requests=300", "-q", "--no-report"]


class _Node:
    pass


def _old_garbage_cycle() -> weakref.ref:
    """A reference cycle that reached the oldest generation while alive, then became garbage."""
    node = _Node()
    node.self = node
    ref = weakref.ref(node)
    gc.collect()
    del node
    return ref


def test_a_command_run_in_process_leaves_the_collector_as_it_was(tmp_path):
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    ref = _old_garbage_cycle()
    result = CliRunner().invoke(app, [*RUN, "-o", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert gc.get_threshold() == threshold
    assert gc.get_freeze_count() == frozen
    gc.collect()
    assert ref() is None  # collected, not frozen for the rest of the process


def test_importing_the_cli_does_not_change_the_collector():
    code = ("import gc; before = gc.get_threshold(); import simulator.cli; "
            "print(before == gc.get_threshold(), gc.get_freeze_count())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "0"]


def test_the_hwsim_process_raises_the_young_threshold_and_freezes_before_the_run(tmp_path):
    code = ("import atexit, gc, sys; from simulator.cli import main; "
            "atexit.register(lambda: print(gc.get_threshold()[0], gc.get_freeze_count() > 0)); "
            f"sys.argv = ['hwsim', *{RUN!r}, '-o', {str(tmp_path / 'r')!r}]; main()")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(GC_YOUNG_THRESHOLD), "True"]
