"""Build a simulation from a resolved scenario and run it.

    result = run_scenario(load_scenario("scenarios/quickstart.yaml"))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import simpy

from simulator.config.loader import ResolvedScenario, resolve_component
from simulator.core import registry as reg
from simulator.core.clock import s_to_ps
from simulator.core.errors import CapacityError, ConfigError
from simulator.core.events import Recorder
from simulator.core.rng import RngStreams
from simulator.results import RunResult
from simulator.serving.cluster import Cluster
from simulator.serving.kv_cache import PagedKvCache
from simulator.serving.replica import Replica
from simulator.serving.step_timer import StepTimer
from workloads.llm import layer_shards

GiB = 2**30


@dataclass(frozen=True)
class MemoryPlan:
    """Per-GPU memory of one replica, as an engine sizes its KV cache."""

    usable_bytes: float
    weight_bytes: float
    activation_bytes: float
    kv_bytes: float
    kv_bytes_per_token: float
    block_size: int
    kv_blocks: int


def check_parallelism(scenario: ResolvedScenario) -> None:
    """Tensor parallelism must split attention heads (and KV heads, or replicate them) evenly."""
    model = scenario.model.config
    tp = scenario.spec.cluster.tensor_parallel
    if model.num_heads % tp:
        raise ConfigError(f"tensor_parallel={tp} does not divide the {model.num_heads} attention heads of "
                          f"{model.name}", where="cluster.tensor_parallel")
    if model.num_kv_heads % tp and tp % model.num_kv_heads:
        raise ConfigError(f"tensor_parallel={tp} neither divides nor is a multiple of the {model.num_kv_heads} "
                          f"KV heads of {model.name}", where="cluster.tensor_parallel")


def memory_plan(scenario: ResolvedScenario) -> MemoryPlan:
    model = scenario.model.config
    dev = scenario.device.config
    tp = scenario.spec.cluster.tensor_parallel
    check_parallelism(scenario)
    eng = scenario.spec.engine
    usable = dev.memory_bytes * eng.gpu_memory_utilization - dev.extra_memory_bytes
    weights = model.weight_bytes() / tp
    free = usable - weights - eng.activation_reserve
    if free <= 0:
        raise CapacityError(
            f"{model.name} needs {weights / GiB:.1f} GiB of weights per GPU at tensor_parallel={tp}, "
            f"plus {eng.activation_reserve / GiB:.1f} GiB activation reserve, but {dev.name} gives "
            f"{usable / GiB:.1f} GiB ({eng.gpu_memory_utilization:g} x {dev.memory_bytes / GiB:.0f} GiB); "
            f"raise cluster.tensor_parallel or choose a larger GPU", where="model")
    _, kv_heads, _ = layer_shards(model, tp)
    per_token = 2.0 * model.num_layers * kv_heads * model.head_dim * model.dtype_bytes
    block_size = int(getattr(scenario.scheduler.config, "block_size", 16))
    blocks = int(free // (per_token * block_size))
    return MemoryPlan(usable, weights, eng.activation_reserve, blocks * per_token * block_size, per_token,
                      block_size, blocks)


def max_model_len(scenario: ResolvedScenario) -> int:
    model = scenario.model.config
    asked = scenario.spec.engine.max_model_len
    if asked is not None and asked > model.max_position:
        raise ConfigError(f"max_model_len={asked} exceeds the {model.max_position}-token context of {model.name}",
                          where="engine.max_model_len")
    return asked or model.max_position


def build_link(scenario: ResolvedScenario):
    tp = scenario.spec.cluster.tensor_parallel
    comp = scenario.interconnect
    if comp is None and tp > 1:
        name = getattr(scenario.device.config, "default_interconnect", None)
        if not name:
            raise ConfigError("tensor_parallel > 1 needs hardware.interconnect (the device names none)",
                              where="hardware.interconnect")
        comp = resolve_component({"kind": "link", "preset": name}, reg.HARDWARE, "hardware.interconnect")
    return comp.cls(comp.config) if comp is not None else None


class Simulation:
    def __init__(self, scenario: ResolvedScenario) -> None:
        self.scenario = scenario
        spec = scenario.spec
        model = scenario.model.config
        self.tp = spec.cluster.tensor_parallel
        self.mem = memory_plan(scenario)
        self.max_model_len = max_model_len(scenario)
        if self.mem.kv_blocks * self.mem.block_size < self.max_model_len:
            raise CapacityError(
                f"the KV cache holds {self.mem.kv_blocks * self.mem.block_size} tokens per replica, fewer "
                f"than max_model_len={self.max_model_len}; set engine.max_model_len lower or add memory",
                where="engine.max_model_len")
        self.link = build_link(scenario)
        backend = scenario.timing.cls(scenario.timing.config, scenario.device.config, self.link)
        self.backend = backend
        self.timer = StepTimer(model, self.tp, backend)
        self.rngs = RngStreams(spec.seed)
        source = scenario.workload.cls(scenario.workload.config, base_dir=scenario.base_dir)
        self.table = source.generate(self.rngs).validate("workload")
        self.env = simpy.Environment()
        self.recorder = Recorder(spec.cluster.replicas)
        router = scenario.router.cls(scenario.router.config)
        self.cluster = Cluster(self.env, self.recorder, router, scenario.router.kind)
        for i in range(spec.cluster.replicas):
            sched = scenario.scheduler.cls(scenario.scheduler.config)
            kv = PagedKvCache(self.mem.kv_blocks, self.mem.block_size)
            self.cluster.replicas.append(Replica(self.cluster, i, sched, scenario.scheduler.kind, kv, self.timer,
                                                 self.max_model_len))

    def run(self, progress: Callable[[int, int], None] | None = None) -> RunResult:
        """Run to the end (or ``run.max_time``); ``progress(done, total)`` is called as requests
        finish (about every 1% of them)."""
        from simulator.metrics import build_result

        t0 = time.perf_counter()
        total = len(self.table)
        if progress is not None:
            step = max(1, total // 100)
            self.cluster.progress = (step, lambda done: progress(done, total))
        if self.table.closed_loop:
            self.cluster.start_closed_loop(self.table)
        else:
            self.cluster.start_open_loop(self.table)
        spec = self.scenario.spec
        self.env.run(until=s_to_ps(spec.run.max_time) if spec.run.max_time else None)
        if progress is not None:
            progress(self.cluster.done, total)
        return build_result(self, time.perf_counter() - t0)


def run_scenario(scenario: ResolvedScenario, progress: Callable[[int, int], None] | None = None) -> RunResult:
    return Simulation(scenario).run(progress)
