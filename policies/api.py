"""The policy-authoring API: everything a policy needs, in one import.

    from policies.api import BatchPlan, PrefillChunk, SchedulerView, register_scheduler

Extension points and their registration decorators (a class registered under a kind is selected
by ``{kind: <name>}`` in a scenario; ``module:Class`` works without registering):

    register_scheduler            policies.scheduler            plan(SchedulerView) -> BatchPlan
    register_router               cluster.router                route(request, ClusterView) -> int
    register_controller           cluster.controller            decide(ControllerView) -> [actions]
    register_speculation          policies.speculation          a speculation method (proposer, acceptance)
    register_speculation_length   policies.speculation.length   choose(SpeculationView) -> k | {rid: k}
    register_cache_policy         policies.kv_cache             a KV-cache policy
    register_quantization         policies.quantization         a quantization scheme
    register_expert_cache         policies.expert_offload       an expert-cache policy

docs/policies.md lists every view's fields and has out-of-tree examples.
"""

from dataclasses import dataclass

from policies.controllers import (
    ControllerConfig,
    ControllerView,
    Drain,
    Migrate,
    ReplicaState,
    Resume,
    Steal,
    register_controller,
)
from policies.expert_caches import register_expert_cache
from policies.speculation import (
    SpeculationConfig,
    SpeculationMethod,
    SpeculationView,
    register_speculation,
    register_speculation_length,
)
from simulator.config.quantities import EmptyConfig, StrictConfig
from simulator.core.contracts import (
    IDLE,
    BatchPlan,
    ClusterView,
    KvView,
    PrefillChunk,
    ReplicaLoad,
    RequestView,
    Router,
    Scheduler,
    SchedulerView,
)
from simulator.core.errors import PolicyError
from simulator.core.registry import (
    register_cache_policy,
    register_quantization,
    register_router,
    register_scheduler,
)


@dataclass(frozen=True, slots=True)
class Preempt:
    """A tagged ``BatchPlan.preempt`` entry: preempt request ``rid`` by ``mode``.

    recompute: the KV is freed; the request's prompt and generated tokens are computed again.
    swap: the KV is copied to host DRAM (the KV policy must keep host copies: kind swap or
        tiered) and copied back when the request is admitted again; only its last token is
        recomputed. A PolicyError when the KV policy has no host swap space.
    drop: the request is given up (it leaves unfinished, counted as rejected) and its KV freed.
    A bare request id in ``preempt`` leaves the choice to the KV policy (swap when it can).
    """

    rid: int
    mode: str = "recompute"


__all__ = [
    "IDLE", "BatchPlan", "ClusterView", "ControllerConfig", "ControllerView", "Drain", "EmptyConfig", "KvView",
    "Migrate", "PolicyError", "Preempt", "PrefillChunk", "ReplicaLoad", "ReplicaState", "RequestView", "Resume",
    "Router", "Scheduler", "SchedulerView", "SpeculationConfig", "SpeculationMethod", "SpeculationView", "Steal",
    "StrictConfig", "register_cache_policy", "register_controller", "register_expert_cache",
    "register_quantization", "register_router", "register_scheduler", "register_speculation",
    "register_speculation_length",
]
