"""Every shipped scenario validates as `hwsim check` does and runs end to end (capped in size)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from simulator.config.loader import load_scenario
from simulator.defaults import QUICKSTART_YAML
from simulator.runner import Simulation, run_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
FILES = sorted(p for suffix in ("*.yaml", "*.yml") for p in SCENARIOS.rglob(suffix)
               # MCU runs: tests/test_mcu.py; studies: tests/test_reproductions_kv_storage.py; training: test_training*;
               # sweeps: tests/test_sweep.py; diffusion: tests/test_diffusion_serving.py
               if (yaml.safe_load(p.read_text()) or {}).get("type") not in ("mcu", "study", "training", "sweep",
                                                                            "diffusion"))
IDS = [str(p.relative_to(SCENARIOS)) for p in FILES]
CAP = 200  # requests per smoke run


def cap_overrides(path: Path) -> list[str]:
    """Overrides that cap the scenario's workload at CAP requests, where its kind allows it."""
    workload = load_scenario(path).workload
    fields = type(workload.config).model_fields
    for name in ("num_requests", "max_requests"):
        if name in fields:
            current = getattr(workload.config, name)
            return [f"workload.{name}={CAP if current is None else min(current, CAP)}"]
    return []


def test_the_scenarios_directory_holds_the_shipped_scenarios():
    names = set(IDS)
    for expected in ("quickstart.yaml", "multi_replica.yaml", "llama2_70b_tp4_a100.yaml", "trace_replay.yaml",
                     "closed_loop.yaml", "orca_vs_vllm/orca.yaml", "orca_vs_vllm/static.yaml"):
        assert expected in names, f"scenarios/{expected} is missing"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_each_scenario_starts_with_a_comment_saying_what_it_answers(path: Path):
    first = path.read_text(encoding="utf-8").lstrip().splitlines()[0]
    assert first.startswith("#"), f"{path.name} should open with a comment stating its question"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_each_scenario_validates_as_hwsim_check_does(path: Path):
    resolved = load_scenario(path)
    sim = Simulation(resolved)  # what `hwsim check` builds: memory plan, workload, replicas
    assert len(sim.table) > 0
    assert sim.mem.kv_blocks > 0
    # the resolved dump is itself a valid scenario that resolves to the same thing
    again = load_scenario(yaml.safe_load(resolved.to_yaml()))
    assert again.dump() == resolved.dump()


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_each_scenario_runs_end_to_end_when_capped_at_200_requests(path: Path):
    overrides = cap_overrides(path)
    assert overrides, f"{path.name}: its workload kind has neither num_requests nor max_requests to cap"
    result = run_scenario(load_scenario(path, overrides))
    s = result.summary
    assert 0 < s["requests_total"] <= CAP
    assert s["requests_finished"] > 0
    assert s["requests_finished"] + s["requests_rejected"] + s["requests_unfinished"] == s["requests_total"]
    assert s["requests_rejected"] == 0, f"{path.name} rejects requests"
    assert s["ttft_s"]["count"] > 0 and s["ttft_s"]["p50"] > 0


def test_scenarios_quickstart_yaml_resolves_exactly_as_the_embedded_demo_scenario():
    from_file = load_scenario(SCENARIOS / "quickstart.yaml")
    embedded = load_scenario(yaml.safe_load(QUICKSTART_YAML))
    assert from_file.dump() == embedded.dump()
    assert from_file.to_yaml() == embedded.to_yaml()


def test_the_trace_replay_scenario_uses_the_shipped_sample_trace_not_shared_data():
    resolved = load_scenario(SCENARIOS / "trace_replay.yaml")
    path = Path(resolved.workload.config.path)
    assert not path.is_absolute() and ".." not in path.parts
    sample = SCENARIOS / path
    assert sample.exists()
    lines = sample.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "arrived_at,num_prefill_tokens,num_decode_tokens"
    assert len(lines) == 501  # header + the first 500 rows
    readme = (sample.parent / "README.md").read_text(encoding="utf-8")
    assert "derived from the Azure LLM inference trace 2023 as processed by microsoft/vidur (MIT)" in readme


def test_the_sample_trace_is_the_first_500_rows_of_the_shared_trace():
    shared = ROOT.parent / "shared" / "traces" / "splitwise_conv.csv"
    if not shared.exists():
        pytest.skip("shared/traces/splitwise_conv.csv not available")
    with shared.open(encoding="utf-8") as fh:
        head = [next(fh) for _ in range(501)]
    assert (SCENARIOS / "traces" / "conv_sample.csv").read_text(encoding="utf-8") == "".join(head)
