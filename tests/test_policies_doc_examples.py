"""docs/policies.md: its out-of-tree examples run as written (each ``# my_*.py`` block saved as that
module, each ``import hwsim`` block executed) and their results say the mechanism acted."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "policies.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    d = tmp_path_factory.mktemp("oot")
    names = []
    for code in _blocks():
        m = re.match(r"# (my_\w+)\.py", code)
        if m:  # a module may be shown in several blocks (my_policies: a scheduler, then a router)
            path = d / f"{m.group(1)}.py"
            path.write_text((path.read_text(encoding="utf-8") + "\n" if path.exists() else "") + code,
                            encoding="utf-8")
            names.append(m.group(1))
    sys.path.insert(0, str(d))
    yield names
    sys.path.remove(str(d))
    for n in names:
        sys.modules.pop(n, None)


def _run_block(needle: str, monkeypatch):
    block = next(b for b in _blocks() if b.startswith("import hwsim") and needle in b)
    monkeypatch.chdir(ROOT)
    ns: dict = {}
    exec(compile(block, f"{DOC}:{needle}", "exec"), ns)
    *_, last = block.strip().splitlines()
    return eval(last, ns), ns["res"]


def test_the_doc_defines_the_modules_its_examples_use(modules):
    assert {"my_policies", "my_preempt", "my_spec", "my_controller", "my_dispatch"} <= set(modules)


def test_per_request_preemption_example_swaps(modules, monkeypatch):
    (swap_outs, preemptions), _ = _run_block("my_preempt:SwapLong", monkeypatch)
    assert preemptions > 0 and 0 < swap_outs <= preemptions


def test_speculation_length_example_speculates(modules, monkeypatch):
    tokens_per_step, res = _run_block("my_spec:SmallBatch", monkeypatch)
    assert 1.0 < tokens_per_step <= 1 + 4  # k <= 4 proposals per step, some accepted


def test_controller_example_migrates_off_the_drained_replica(modules, monkeypatch):
    migrations, res = _run_block("my_controller:Evacuate", monkeypatch)
    assert migrations > 0


def test_dispatching_controller_example_spreads_arrivals_without_migrating(modules, monkeypatch):
    (migrations, replica), res = _run_block("my_dispatch:FewestTokens", monkeypatch)
    import numpy as np

    counts = np.bincount(np.asarray(replica), minlength=4)
    assert migrations == 0 and len(replica) == 200
    assert counts.min() >= 200 // 4 // 2  # by load: no replica is left with under half its share
    assert counts.tolist() != [50] * 4  # not the scenario's round-robin router: the controller dispatched
