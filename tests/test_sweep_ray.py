"""The same sweep on a real local Ray instance gives the rows of the local process pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.sweep import run_sweep
from simulator.sweep_spec import build_sweep

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'hwsim[ray]')")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_a_sweep_on_ray_gives_the_same_rows_as_on_the_local_pool(tmp_path, local_ray):
    spec = {"name": "ray", "base": str(ROOT / "scenarios/quickstart.yaml"),
            "set": {"workload.num_requests": 80, "run.warmup_requests": 5},
            "grid": {"cluster.replicas": [1, 2], "policies.scheduler.kind": ["vllm", "sarathi"]},
            "objectives": ["min cost_usd_per_mtok"], "constraints": ["slo_attainment >= 0.9"]}
    sw = build_sweep(spec)
    on_ray = run_sweep(sw, tmp_path / "ray", backend="ray", html=False)
    local = run_sweep(sw, tmp_path / "local", workers=2, html=False)

    def same(rows):
        return [json.dumps({k: v for k, v in r.items() if k != "wall_s"}, sort_keys=True) for r in rows]

    assert len(on_ray) == 4 and all(r["error"] is None for r in on_ray)
    assert same(on_ray) == same(local)
