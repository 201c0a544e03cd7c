"""StepTimer.step memoises an iteration's time under a plain tuple of the BatchShape's fields. A field added to
BatchShape without joining that key would let two different shapes share one entry; this pins the two together."""
from __future__ import annotations

import dataclasses

from simulator.config.loader import load_scenario
from simulator.runner import Simulation
from workloads.llm import BatchShape

KEY_FIELDS = ("prefill", "decode_rows", "decode_kv", "emitting", "decode_ctx")


def test_the_step_memo_key_covers_every_field_of_the_shape():
    assert tuple(f.name for f in dataclasses.fields(BatchShape)) == KEY_FIELDS


def test_shapes_differing_in_any_one_field_get_their_own_memo_entries():
    sim = Simulation(load_scenario("scenarios/quickstart.yaml"))
    timer = sim.replicas[0].timer if hasattr(sim, "replicas") else None
    if timer is None:  # the timer as the runner builds it for a replica
        from simulator.serving.step_timer import StepTimer
        timer = next(v for v in vars(sim).values() if isinstance(v, StepTimer))
    base = BatchShape(prefill=((128, 0),), decode_rows=4, decode_kv=4000, emitting=5)
    variants = [
        dataclasses.replace(base, prefill=((256, 0),)),
        dataclasses.replace(base, decode_rows=8, decode_kv=8000, emitting=9),
        dataclasses.replace(base, decode_kv=40000),
        dataclasses.replace(base, emitting=1),
    ]
    t0 = timer.step(base)
    for v in variants:
        assert timer.step(v) != t0, v
    assert timer.step(base) == t0
