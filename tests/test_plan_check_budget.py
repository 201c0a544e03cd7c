"""The plan check's token budget counts a mixed plan's decode rows with its prefill chunks
(``BatchPlan.num_tokens``, one token per decode row): a plan one token over the budget only
through its decode rows is refused, the same plan one token smaller runs every request to the end.

The scheduler below is named by ``f"{__name__}:MixedScheduler"`` so the registry imports it."""

from __future__ import annotations

import pytest
from pydantic import Field

from policies.api import BatchPlan, PrefillChunk, SchedulerView, StrictConfig
from simulator.config.loader import load_scenario
from simulator.core.errors import PolicyError
from simulator.results import FINISHED
from simulator.runner import run_scenario

BUDGET = 16

BASE = {
    "name": "budget-test", "seed": 3,
    "hardware": {"device": {"kind": "gpu", "preset": "A100-80GB"}, "timing": {"kind": "roofline"}},
    "model": {"kind": "transformer", "preset": "Llama-2-7B"},
    "engine": {"gpu_memory_utilization": 0.9, "activation_reserve": "2GiB", "max_model_len": 512},
    "workload": {"kind": "synthetic", "num_requests": 6, "arrival": {"process": "poisson", "rate": "50/s"},
                 "prompt_tokens": {"dist": "fixed", "value": 40},
                 "output_tokens": {"dist": "fixed", "value": 30}},
}


class MixedConfig(StrictConfig):
    block_size: int = Field(default=16, gt=0)
    over: int = 0  # tokens over the budget in every mixed plan


class MixedScheduler:
    """Decodes every running request and fills the rest of the budget with one prompt chunk;
    ``over`` adds that many tokens to the chunk."""

    Config = MixedConfig
    steady_decode = False

    def __init__(self, config: MixedConfig) -> None:
        self.config = config
        self.mixed = 0  # mixed plans returned

    def token_budget(self, view: SchedulerView) -> int:
        return BUDGET

    def plan(self, view: SchedulerView) -> BatchPlan:
        decode = tuple(r.rid for r in view.running if not r.in_prefill)
        pending = [r for r in view.running if r.in_prefill] + list(view.waiting)
        if not pending:
            return BatchPlan(decode=decode)
        r = pending[0]
        room = BUDGET - len(decode)
        chunk = min(r.prefill_remaining, room)
        if decode and chunk == room:
            self.mixed += 1
            chunk += self.config.over
        return BatchPlan(prefill=(PrefillChunk(r.rid, chunk),), decode=decode)


def scenario(over: int):
    return load_scenario({**BASE, "policies": {"scheduler": {"kind": f"{__name__}:MixedScheduler", "over": over}}},
                         [])


def test_a_mixed_plan_filling_the_budget_exactly_runs_to_the_end():
    res = run_scenario(scenario(0))
    assert (res.requests["status"] == FINISHED).all()
    steps = res.batches
    # some step carried decode rows and a prompt chunk together, and none went over the budget
    mixed = (steps["prefill_tokens"] > 0) & (steps["decode_rows"] > 0)
    assert mixed.any()
    assert (steps["prefill_tokens"] + steps["decode_rows"] <= BUDGET).all()


def test_a_mixed_plan_one_token_over_through_its_decode_rows_is_refused():
    with pytest.raises(PolicyError, match=f"plan has 17 tokens, over its budget of {BUDGET}") as info:
        run_scenario(scenario(1))
    assert info.value.policy == f"{__name__}:MixedScheduler"
