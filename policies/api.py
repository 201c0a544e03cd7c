"""The policy-authoring API: everything a scheduler or router needs, in one import.

    from policies.api import BatchPlan, PrefillChunk, SchedulerView, register_scheduler
"""

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
from simulator.core.registry import register_router, register_scheduler

__all__ = [
    "IDLE", "BatchPlan", "ClusterView", "EmptyConfig", "KvView", "PolicyError", "PrefillChunk",
    "ReplicaLoad", "RequestView", "Router", "Scheduler", "SchedulerView", "StrictConfig",
    "register_router", "register_scheduler",
]
