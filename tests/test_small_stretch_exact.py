"""A short decode stretch timed in Python floats equals the numpy array path bit for bit.

``StepTimer.decode_segment`` times stretches of at most ``SMALL_STRETCH`` iterations one element
at a time (``_small_segment``) in the plain case; the picoseconds, FLOPs and per-iteration joules
must be the array path's exactly (the same IEEE operations in the same order). The array path is
taken for the same stretch by passing the first context as a numpy integer.
"""

from __future__ import annotations

import functools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config.loader import load_scenario
from simulator.runner import Simulation
from simulator.serving.step_timer import SMALL_STRETCH

# roofline without a framework; with vLLM (host after the GPU, CUDA graphs up to a batch size, launches
# beyond it); with SGLang (host overlapped with the GPU) at TP 2; the 10k trace case's scenario
CASES = [
    ("scenarios/quickstart.yaml", ["hardware.timing.kind=roofline"]),
    ("scenarios/quickstart.yaml", ["hardware.timing.kind=roofline", "engine.framework=vllm-0.12"]),
    ("scenarios/quickstart.yaml", ["hardware.timing.kind=roofline", "engine.framework=sglang-0.5",
                                   "cluster.tensor_parallel=2"]),
    ("benchmarks/splitwise_conv_10k.yaml", []),
]


@functools.cache
def _timer(case: int):
    path, sets = CASES[case]
    return Simulation(load_scenario(path, sets)).pools[0].timer


@settings(max_examples=200, deadline=None)
@given(case=st.integers(0, len(CASES) - 1), rows=st.integers(1, 600), ctx=st.integers(1, 40_000),
       k=st.integers(1, SMALL_STRETCH))
def test_short_stretch_in_python_equals_the_array_path(case, rows, ctx, k):
    timer = _timer(case)
    kv0 = rows * ctx
    fixed = timer._decode_fixed(rows)
    assert timer._small_segment(rows, kv0, k, *fixed) is not None  # the plain case: the Python path runs
    ps, flops = timer.decode_segment(rows, kv0, k)
    joules = timer.last_energy_j
    ps_np, flops_np = timer.decode_segment(rows, np.int64(kv0), k)  # a numpy first context: the array path
    assert ps.dtype == ps_np.dtype == np.int64 and flops.dtype == flops_np.dtype == np.float64
    assert ps.tobytes() == ps_np.tobytes() and flops.tobytes() == flops_np.tobytes()
    if timer.energy is not None:
        assert joules.dtype == np.float64 and joules.tobytes() == timer.last_energy_j.tobytes()
    assert len(ps) == k and (np.diff(ps) >= 0).all()  # a longer context never takes less time


def test_cases_outside_the_plain_one_take_the_array_path():
    """Tile timing (DeepSeek-V3), a power cap, or a stretch longer than ``SMALL_STRETCH``: no Python path."""
    tile = Simulation(load_scenario("scenarios/moe_deepseek_v3_ep8.yaml", [])).pools[0].timer
    assert tile._small_segment(8, 8000, 4, *tile._decode_fixed(8)) is None
    capped = Simulation(load_scenario("scenarios/quickstart.yaml", ["hardware.timing.kind=roofline",
                                                                    "hardware.device.power_cap_w=400W"])).pools[0].timer
    assert capped.energy.cap_w == 400
    assert capped._small_segment(8, 8000, 4, *capped._decode_fixed(8)) is None
    plain = _timer(0)
    ps, _ = plain.decode_segment(8, 8000, SMALL_STRETCH + 1)  # the array path, the same figures
    ps_np, _ = plain.decode_segment(8, np.int64(8000), SMALL_STRETCH + 1)
    assert ps.tobytes() == ps_np.tobytes()
