"""Every iteration and decode stretch a run times through the hot path's shortcuts equals the fresh
computation, bit for bit, call by call.

The shortcuts: ``StepTimer.step`` memoised per shape, dense-op terms assembled from parts seen in
other (tokens, emitting) pairs, a stretch's joules from per-row-count affine terms, roofline decode
attention from per-op scalars, and the tile backend's remembered decode-attention lines. Each run
below times every call twice: as the run does, and on a twin timer with empty memos, the assembly
off and the attention shortcuts bypassed; picoseconds, FLOPs and joules must be the same bytes.
A memo key missing an input the result depends on (power cap, KV format, speculative rows as
chunks, attention variants, attention data parallelism, MoE routing, a capped cache's resident
context, a framework's padding and fusions) shows up as a mismatch in the run that exercises it.
Combinations a run may not reach (a token count and an emitting count each seen, never together)
are drawn by the Hypothesis tests of ``tests/test_hot_path_exact.py``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from hw_models import attention_kernels as ak
from hw_models.timing.roofline import RooflineBackend
from simulator.config.loader import load_scenario
from simulator.runner import Simulation
from simulator.serving.step_timer import StepTimer

CASES = [
    # H100 tile (lean decode kernel) under a power cap, vLLM profile (CUDA-graph padding, fusions)
    ("scenarios/quickstart.yaml", ["workload.num_requests=120", "run.warmup_requests=0",
                                   "hardware.device.power_cap_w=400W", "engine.framework=vllm-0.12"]),
    # A100 tile (split-KV decode kernel), int8 K/V
    ("scenarios/quickstart.yaml", ["workload.num_requests=120", "run.warmup_requests=0",
                                   "hardware.device.preset=A100-80GB",
                                   "policies.quantization={kind: scheme, preset: KV-int8}"]),
    # LLM.int8() at TP 2 with SGLang's fusions: outlier kernels around the LM head too
    ("scenarios/quickstart.yaml", ["workload.num_requests=80", "run.warmup_requests=0", "cluster.tensor_parallel=2",
                                   "engine.framework=sglang-0.5",
                                   "policies.quantization={kind: scheme, preset: LLM-int8}"]),
    # roofline, a draft model speculating (verified tokens as chunks, the draft timer's own steps)
    ("scenarios/policy_speculation.yaml", ["workload.num_requests=20", "run.warmup_requests=0"]),
    # MLA + block-scaled fp8 MoE, EP 8 with attention data parallelism
    ("scenarios/moe_deepseek_v3_ep8.yaml", ["workload.num_requests=60", "run.warmup_requests=0",
                                            "cluster.attention_data_parallel=8"]),
    # sliding-window / full attention layers, MoE
    ("scenarios/variants/local_global_gpt_oss.yaml", []),
    # H2O: a capped cache (resident context per iteration)
    ("scenarios/papers/h2o_opt6.7b_t4_serving.yaml", []),
]


def _bits(x) -> bytes:
    return np.asarray(x, dtype=np.float64).tobytes()


class _Shadow:
    """Wraps StepTimer.step / decode_segment: each call is also computed on a fresh twin timer."""

    def __init__(self, monkeypatch) -> None:
        self.steps = self.stretches = 0
        self.mismatches: list[str] = []
        self._step, self._segment = StepTimer.step, StepTimer.decode_segment
        self._decode_s, self._scalars = ak.decode_s, RooflineBackend._decode_scalars
        shadow = self

        def step(timer, shape):
            ps, flops = shadow._step(timer, shape)
            got = (ps, _bits(flops), _bits(timer.last_energy_j))
            twin = shadow._twin(timer)
            with shadow._fresh():
                ps2, flops2 = twin._step(shape)
            shadow.steps += 1
            if got != (ps2, _bits(flops2), _bits(twin.last_energy_j)):
                shadow.mismatches.append(f"step {shape}: {ps} ps vs {ps2} ps fresh")
            return ps, flops

        def decode_segment(timer, rows, kv0, k):
            ps, flops = shadow._segment(timer, rows, kv0, k)
            got = (ps.tobytes(), _bits(flops), _bits(timer.last_energy_j))
            twin = shadow._twin(timer)
            twin._affine_j = {}
            with shadow._fresh():
                ps2, flops2 = shadow._segment(twin, rows, kv0, k)
            shadow.stretches += 1
            if got != (ps2.tobytes(), _bits(flops2), _bits(twin.last_energy_j)):
                shadow.mismatches.append(f"stretch of {rows} rows x {k}")
            return ps, flops

        monkeypatch.setattr(StepTimer, "step", step)
        monkeypatch.setattr(StepTimer, "decode_segment", decode_segment)

    @staticmethod
    def _twin(timer: StepTimer) -> StepTimer:
        """The timer with empty memos and the dense-term assembly off (the same model, backend, policies)."""
        twin = timer.__dict__.get("_shadow_twin")
        if twin is None:
            twin = copy.copy(timer)
            for name, value in list(vars(twin).items()):
                if isinstance(value, dict):
                    setattr(twin, name, {})
            twin._split_heads = False
            twin._attn_template = timer._attn_template  # the same decode ops (made once per row count)
            timer.__dict__["_shadow_twin"] = twin
        return twin

    def _fresh(self):
        shadow = self

        class Fresh:
            def __enter__(self):
                ak.decode_s = lambda op, kv, p, mode="split_kv": ak._decode_s(op, np.asarray(kv, dtype=np.float64),
                                                                                p, mode)
                RooflineBackend._decode_scalars = lambda backend, op: None

            def __exit__(self, *exc):
                ak.decode_s, RooflineBackend._decode_scalars = shadow._decode_s, shadow._scalars

        return Fresh()


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{p.split('/')[-1]}{'+' if s else ''}" for p, s in CASES])
def test_each_timed_call_equals_a_fresh_computation(case, monkeypatch):
    path, sets = CASES[case]
    shadow = _Shadow(monkeypatch)
    sim = Simulation(load_scenario(path, sets))
    sim.run()
    assert shadow.steps > 0
    assert not shadow.mismatches, shadow.mismatches[:5]
    # the shortcuts were taken: steps served from the memo, stretches timed as one call
    timers = {id(rt.timer): rt.timer for rt in sim.pools}.values()
    assert any(t._steps for t in timers if isinstance(t, StepTimer))
    if case != 3:  # the speculating run has no decode stretches (its scheduler's rows change k each step)
        assert shadow.stretches > 0
