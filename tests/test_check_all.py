"""``hwsim check`` accepts every scenario ``hwsim run`` accepts — every file under scenarios/, of
every type — and describes what it would run: each pool of a pooled deployment by name, role,
replicas and device; the MCU and its memory; the study."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli import app

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted(p for p in (ROOT / "scenarios").rglob("*") if p.suffix in (".yaml", ".yml", ".toml", ".json"))


def check(path: Path, *args: str):
    return CliRunner().invoke(app, ["check", str(path), *args])


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: str(p.relative_to(ROOT / "scenarios")))
def test_every_shipped_scenario_passes_hwsim_check(path):
    result = check(path)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"ok: {path} — ")


def test_check_of_a_disaggregated_deployment_names_both_pools_with_role_replicas_and_device():
    path = ROOT / "scenarios" / "disaggregated.yaml"
    pools = yaml.safe_load(path.read_text(encoding="utf-8"))["cluster"]["pools"]
    out = check(path).output
    lines = out.splitlines()
    assert "2 pools" in lines[0] and "1 x 1 x" not in lines[0]
    for pool in pools:
        line = next(x for x in lines if x.strip().startswith(f"pool {pool['name']} "))
        assert f"({pool['role']})" in line and f": {pool['replicas']} x {pool['tensor_parallel']} x" in line
        assert "H100" in line and "tokens per replica" in line
    assert "KV transfer: InfiniBand NDR" in out


def test_check_of_pools_on_different_devices_names_each_device():
    over = ("cluster.pools=[{name: big, role: prefill, replicas: 1, tensor_parallel: 1}, "
            "{name: small, role: decode, replicas: 3, tensor_parallel: 1, device: {kind: gpu, preset: A100-80GB}}]")
    result = check(ROOT / "scenarios" / "disaggregated.yaml", "--set", over)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(x.strip().startswith("pool big (prefill): 1 x 1 x") and "H100" in x for x in lines)
    assert any(x.strip().startswith("pool small (decode): 3 x 1 x") and "A100" in x for x in lines)


def test_check_of_an_mcu_scenario_gives_its_network_mcu_and_memory_without_running():
    result = check(ROOT / "scenarios" / "mcu" / "mcunet_f746.yaml")
    assert result.exit_code == 0, result.output
    assert "mcunet" in result.output and "STM32F746" in result.output and "peak SRAM" in result.output


def test_check_of_a_study_names_it_and_refuses_a_bad_option_in_one_line(tmp_path):
    path = ROOT / "scenarios" / "papers" / "cachegen_llama2_7b.yaml"
    result = check(path)
    assert result.exit_code == 0 and "study cachegen" in result.output, result.output
    bad = check(path, "--set", "gpu_typo=T4")
    assert bad.exit_code == 2 and bad.output.startswith("error: ") and "gpu_typo" in bad.output
    assert len(bad.output.strip().splitlines()) == 1


def test_check_of_a_serving_scenario_prints_its_size():
    result = check(ROOT / "scenarios" / "quickstart.yaml")
    size = result.output.splitlines()[1]
    assert size.strip().startswith("size: 2,000 requests") and "iterations" in size


@pytest.mark.parametrize("name", ["moe_multinode_ep16.yaml", "moe_deepseek_v3_ep8.yaml", "quickstart.yaml"])
def test_check_prints_per_gpu_memory_that_fits_the_gpu(name):
    """With attention data parallelism the plan's KV is dp GPUs' together; the GiB/GPU printed is one
    GPU's, so weights + KV per GPU stay within the device's memory."""
    import re

    result = check(ROOT / "scenarios" / name)
    assert result.exit_code == 0, result.output
    w, kv = map(float, re.search(r"weights ([\d.]+) GiB/GPU, KV ([\d.]+) GiB/GPU", result.output).groups())
    mem = {"H200": 141e9, "H100": 80e9}[re.search(r"(H200|H100)", result.output).group(1)]
    assert 0 < w + kv <= mem / 2**30
