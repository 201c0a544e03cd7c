"""Across the shipped serving scenarios, a short decode stretch is timed identically by both paths.

``StepTimer.decode_segment`` takes its Python-float path (``_small_segment``) for a stretch of at most
``SMALL_STRETCH`` iterations with a Python ``int`` first context, and the numpy array path otherwise
(a numpy integer first context forces it). Wherever the Python path answers, the picoseconds, FLOPs and
per-iteration joules must be the array path's bit for bit -- under every feature the scenarios switch
on (tensor parallelism, MLA, MoE, frameworks, disaggregated pools, speculation, prefix caching,
preemption, CPU / NPU / FPGA devices timed by the roofline). Where a feature changes the array path's
branch (a power cap, attention data parallelism, per-layer attention variants, hybrid linear layers,
quantized K/V, streamed weights, KV fetched from a lower tier), the Python path must decline.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from simulator.config.loader import load_scenario
from simulator.runner import Simulation
from simulator.serving.step_timer import SMALL_STRETCH

ROOFLINE = ["hardware.timing.kind=roofline"]
# scenarios where the Python path runs (roofline timing forced where the scenario has another)
PLAIN = ["benchmarks/splitwise_conv_10k.yaml", "scenarios/closed_loop.yaml", "scenarios/disaggregated.yaml",
         "scenarios/llama2_70b_tp4_a100.yaml", "scenarios/moe_deepseek_v3_ep8.yaml",
         "scenarios/policy_speculation.yaml", "scenarios/policy_preemption.yaml",
         "scenarios/papers/prefix_sharing.yaml", "scenarios/devices/u280_llama2_7b.yaml",
         "scenarios/devices/cpu_calibrated_qwen3_0.6b.yaml", "scenarios/papers/tokenweave_llama33_70b_h100.yaml"]
# scenarios whose array path takes another branch: the Python path must decline every stretch
DECLINED = ["scenarios/devices/h100_power_cap.yaml", "scenarios/moe_multinode_ep16.yaml",
            "scenarios/variants/hybrid_mamba2.yaml", "scenarios/variants/local_global_gpt_oss.yaml",
            "scenarios/variants/sliding_window.yaml", "scenarios/papers/kivi_llama2_7b_a100.yaml",
            "scenarios/papers/flexgen_opt30b_t4.yaml", "scenarios/papers/shadowkv_llama31_8b_a100.yaml"]
GRID = [(rows, ctx, k) for rows in (1, 3, 8, 37, 256) for ctx in (1, 97, 3001) for k in (1, 2, 7, SMALL_STRETCH)]


@functools.cache
def _timers(path: str) -> tuple:
    sim = Simulation(load_scenario(path, ROOFLINE))
    return tuple(p.timer for p in sim.pools)


@pytest.mark.parametrize("path", PLAIN)
def test_where_the_python_path_runs_it_equals_the_array_path(path):
    for timer in _timers(path):
        ran = 0
        for rows, ctx, k in GRID:
            kv0 = rows * ctx
            ps, flops = timer.decode_segment(rows, kv0, k)
            joules = np.array(timer.last_energy_j, dtype=np.float64)
            ps_np, flops_np = timer.decode_segment(rows, np.int64(kv0), k)  # the array path
            assert ps.dtype == ps_np.dtype == np.int64 and ps.tobytes() == ps_np.tobytes(), (rows, ctx, k)
            assert flops.tobytes() == flops_np.tobytes(), (rows, ctx, k)
            if timer.energy is not None:
                assert joules.tobytes() == np.asarray(timer.last_energy_j, dtype=np.float64).tobytes()
            ran += timer._small_segment(rows, kv0, k, *timer._decode_fixed(rows)) is not None
        assert ran == len(GRID)  # the Python path was the one compared


@pytest.mark.parametrize("path", DECLINED)
def test_where_the_array_path_branches_the_python_path_declines(path):
    for timer in _timers(path):
        for rows, ctx, k in GRID:
            assert timer._small_segment(rows, rows * ctx, k, *timer._decode_fixed(rows)) is None, (rows, ctx, k)
