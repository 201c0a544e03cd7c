"""Plug-ins: a scheduler written here runs end to end by `module:Class`; bad plans are refused with
a PolicyError naming the policy and the reason; unknown kinds get a did-you-mean; entry points load.

The plug-in classes live in this module and are named by ``f"{__name__}:Class"``: ``__name__`` is
whatever name pytest imported this file under (``test_plugins`` or ``tests.test_plugins``), and
that name is in ``sys.modules``, so the registry's ``importlib.import_module`` finds this very
module without a second copy.
"""

from __future__ import annotations

import importlib.metadata

import pytest
import yaml
from pydantic import Field
from typer.testing import CliRunner

from policies.api import BatchPlan, PrefillChunk, SchedulerView, StrictConfig
from simulator.cli import app
from simulator.config.loader import load_scenario
from simulator.core import registry as reg
from simulator.core.errors import ConfigError, PolicyError, UnknownKindError
from simulator.defaults import QUICKSTART_YAML
from simulator.runner import Simulation

# -------------------------------------------------------------------------------------------
# plug-ins written by a user


class FcfsConfig(StrictConfig):
    block_size: int = Field(default=16, gt=0, description="tokens per KV block")


class FcfsScheduler:
    """First come, first served, one request at a time: its prefill, then its decode to the end."""

    Config = FcfsConfig
    steady_decode = False

    def __init__(self, config: FcfsConfig) -> None:
        self.config = config
        self.calls = 0

    def plan(self, view: SchedulerView) -> BatchPlan:
        self.calls += 1
        if view.running:
            r = view.running[0]
            if r.in_prefill:
                return BatchPlan(prefill=(PrefillChunk(r.rid, r.prefill_remaining),))
            return BatchPlan(decode=(r.rid,))
        r = view.waiting[0]
        if r.prefill_target > view.max_model_len:
            return BatchPlan(reject=(r.rid,))
        return BatchPlan(prefill=(PrefillChunk(r.rid, r.prefill_remaining),))


class DecodesWaiting(FcfsScheduler):
    """Decodes a request that is still waiting (never prefilled)."""

    def plan(self, view: SchedulerView) -> BatchPlan:
        if view.waiting:
            return BatchPlan(decode=(view.waiting[0].rid,))
        return super().plan(view)


class OverCommitsKv(FcfsScheduler):
    """Admits a request reserving more KV than the whole cache holds."""

    def plan(self, view: SchedulerView) -> BatchPlan:
        if view.waiting and not view.running:
            r = view.waiting[0]
            too_many = (view.kv.total_blocks + 1) * view.kv.block_size
            return BatchPlan(prefill=(PrefillChunk(r.rid, r.prefill_remaining, reserve_tokens=too_many),))
        return super().plan(view)


class SchedulesFinished(FcfsScheduler):
    """Decodes the previous request once more after it finished."""

    def __init__(self, config: FcfsConfig) -> None:
        super().__init__(config)
        self.current: int | None = None

    def plan(self, view: SchedulerView) -> BatchPlan:
        if not view.running and self.current is not None:
            return BatchPlan(decode=(self.current,))  # finished: it left `running`
        plan = super().plan(view)
        if plan.prefill:
            self.current = plan.prefill[0].rid
        return plan


class ReturnsADict(FcfsScheduler):
    """Returns something that is not a BatchPlan."""

    def plan(self, view: SchedulerView):
        return {"decode": [r.rid for r in view.running]}


def ref(cls: type) -> str:
    return f"{__name__}:{cls.__name__}"


def scenario(scheduler: dict | str, num_requests: int = 12) -> dict:
    raw = yaml.safe_load(QUICKSTART_YAML)
    raw["workload"] = {
        "kind": "synthetic",
        "num_requests": num_requests,
        "arrival": {"process": "poisson", "rate": "20/s"},
        "prompt_tokens": {"dist": "uniform", "low": 16, "high": 256},
        "output_tokens": {"dist": "uniform", "low": 2, "high": 12},
    }
    raw["run"] = {"warmup_requests": 0}
    raw["policies"]["scheduler"] = {"kind": scheduler} if isinstance(scheduler, str) else scheduler
    return raw


# -------------------------------------------------------------------------------------------
# a user scheduler by module:Class


def test_a_scheduler_defined_in_a_test_module_runs_end_to_end_by_module_colon_class():
    resolved = load_scenario(scenario({"kind": ref(FcfsScheduler), "block_size": 32}))
    assert resolved.scheduler.cls is FcfsScheduler
    assert resolved.scheduler.config == FcfsConfig(block_size=32)
    sim = Simulation(resolved)
    assert sim.mem.block_size == 32
    result = sim.run()
    s = result.summary
    assert s["requests_finished"] == s["requests_total"] == 12
    req = result.requests
    # one request at a time, first come first served: each starts after the one before finished
    order = req["first_scheduled_s"].argsort(kind="stable")
    assert (req["arrival_s"][order][1:] >= req["arrival_s"][order][:-1]).all()
    assert (req["first_scheduled_s"][order][1:] >= req["finish_s"][order][:-1]).all()
    # every iteration emits exactly one token, and with steady_decode False plan() ran each time
    assert s["iterations"] == int(req["output_tokens"].sum())
    assert sim.cluster.replicas[0].scheduler.calls == s["iterations"]


def test_a_module_colon_class_config_is_strict_like_a_builtin():
    with pytest.raises(ConfigError) as err:
        load_scenario(scenario({"kind": ref(FcfsScheduler), "blok_size": 32}))
    assert str(err.value).startswith("policies.scheduler.blok_size:")
    assert "did you mean 'block_size'" in str(err.value)


# -------------------------------------------------------------------------------------------
# invalid plans


@pytest.mark.parametrize("cls, reason", [
    (DecodesWaiting, "which is not running here"),
    (OverCommitsKv, "KV blocks but only"),
    (SchedulesFinished, "which is finished"),
    (ReturnsADict, "not a BatchPlan"),
])
def test_an_invalid_plan_raises_a_policy_error_naming_the_policy_and_the_reason(cls, reason):
    sim = Simulation(load_scenario(scenario(ref(cls))))
    with pytest.raises(PolicyError) as err:
        sim.run()
    assert err.value.policy == ref(cls)
    assert reason in err.value.reason
    assert ref(cls) in str(err.value) and reason in str(err.value)


def test_a_policy_error_survives_being_rebuilt_from_its_args_as_simpy_and_pickle_do():
    import pickle

    err = PolicyError("mine", "decodes request 3, which is finished")
    for copy in (type(err)(*err.args), pickle.loads(pickle.dumps(err))):
        assert (copy.policy, copy.reason, str(copy)) == (err.policy, err.reason, str(err))
    assert str(err) == "policy 'mine': decodes request 3, which is finished"


@pytest.mark.parametrize("cls", [DecodesWaiting, OverCommitsKv, SchedulesFinished])
def test_an_invalid_plan_through_the_cli_exits_2_with_one_line(cls, tmp_path):
    path = tmp_path / "bad_policy.yaml"
    path.write_text(yaml.safe_dump(scenario(ref(cls))), encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "-q"])
    out = result.output
    assert result.exit_code == 2, out
    assert out.startswith("error: policy ") and out.count("\n") == 1 and "Traceback" not in out
    assert ref(cls) in out


# -------------------------------------------------------------------------------------------
# lookup errors


def test_an_unknown_kind_gives_a_did_you_mean_and_the_known_kinds():
    with pytest.raises(UnknownKindError) as err:
        reg.SCHEDULERS.get("orka", where="policies.scheduler.kind")
    text = str(err.value)
    assert "did you mean 'orca'" in text and all(k in text for k in ("orca", "static", "vllm"))
    with pytest.raises(UnknownKindError, match="did you mean 'least_outstanding'"):
        reg.ROUTERS.get("least_outstandig")


def test_a_misspelt_module_colon_class_suggests_the_class():
    with pytest.raises(UnknownKindError) as err:
        reg.SCHEDULERS.get(f"{__name__}:FcfsSchedular", where="policies.scheduler.kind")
    assert f"did you mean '{ref(FcfsScheduler)}'" in str(err.value)
    with pytest.raises(UnknownKindError, match="cannot import module 'no_such_module_xyz'"):
        reg.SCHEDULERS.get("no_such_module_xyz:Thing")


# -------------------------------------------------------------------------------------------
# entry points


def fake_entry_points(group_map: dict[str, list[importlib.metadata.EntryPoint]]):
    def entry_points(**params):
        return group_map.get(params.get("group"), [])

    return entry_points


def test_an_entry_point_plugin_is_found_by_its_name(monkeypatch):
    sched = reg.SCHEDULERS
    sched.kinds()  # scan the built-ins first, so the copy below holds them
    monkeypatch.setattr(sched, "_entries", dict(sched._entries))
    monkeypatch.setattr(sched, "_entry_points_loaded", False)
    ep = importlib.metadata.EntryPoint(name="fcfs_ep", value=ref(FcfsScheduler), group="hwsim.schedulers")
    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points({"hwsim.schedulers": [ep]}))

    assert "fcfs_ep" in sched.kinds() and "vllm" in sched.kinds()
    entry = sched.get("fcfs_ep")
    assert entry.cls is FcfsScheduler and entry.config is FcfsConfig and entry.origin == ref(FcfsScheduler)
    listing = CliRunner().invoke(app, ["plugins"])
    assert listing.exit_code == 0
    assert any(line.split()[:2] == ["fcfs_ep", ref(FcfsScheduler)] for line in listing.output.splitlines())

    result = Simulation(load_scenario(scenario("fcfs_ep", num_requests=4))).run()
    assert result.summary["requests_finished"] == 4


def test_a_broken_entry_point_is_a_config_error_naming_it(monkeypatch):
    fresh = reg.Registry("scheduler", "hwsim.schedulers", ("policies.schedulers",))
    ep = importlib.metadata.EntryPoint(name="broken", value="no_such_module_xyz:Thing", group="hwsim.schedulers")
    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points({"hwsim.schedulers": [ep]}))
    with pytest.raises(ConfigError) as err:
        fresh.get("broken")
    assert "entry point 'broken'" in str(err.value) and "hwsim.schedulers" in str(err.value)
