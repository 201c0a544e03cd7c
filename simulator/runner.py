"""Build a simulation from a resolved scenario and run it.

    result = run_scenario(load_scenario("scenarios/quickstart.yaml"))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import simpy

from simulator.config.loader import Pool, ResolvedScenario, resolve_component
from simulator.core import registry as reg
from simulator.core.clock import s_to_ps
from simulator.core.errors import CapacityError, ConfigError
from simulator.core.events import Recorder
from simulator.core.resources import SharedBandwidth
from simulator.core.rng import RngStreams
from simulator.metrics import check_exclusions
from simulator.results import RunResult
from simulator.serving.cluster import Cluster
from simulator.serving.controller import attach_controller
from simulator.serving.expert_offload import build_expert_offload
from simulator.serving.frontend import Frontend
from simulator.serving.kv_manager import make_kv_cache, make_offload
from simulator.serving.kv_offload import page_block_size
from simulator.serving.moe_layout import pool_timing
from simulator.serving.multinode import node_network_link
from simulator.serving.pipeline import Pipeline
from simulator.serving.replica import Replica
from simulator.serving.ring_attention import ContextParallelTimer, check_context_parallel, check_prompts
from simulator.serving.sparse_kv_fetch import build_sparse_kv_fetch
from simulator.serving.speculation import attach_speculation
from simulator.serving.step_timer import StepTimer
from simulator.serving.weight_offload import build_weight_offload

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
    kv_residual_bytes: float = 0.0  # full-precision KV windows reserved per batch slot (KIVI)
    weight_host_bytes: float = 0.0  # weight offload: layer weights of one GPU in host DRAM
    weight_disk_bytes: float = 0.0  # ... and on the drive
    kv_tier: str = "gpu"  # where the KV blocks live: gpu, host (DRAM) or disk (weight offload)


def check_parallelism(model, tp: int, where: str = "cluster.tensor_parallel", ep: int = 1, dp: int = 1) -> None:
    """Tensor parallelism must split attention heads (and KV heads, or replicate them) evenly;
    expert parallelism must divide the tensor-parallel GPUs and the experts."""
    if ep > 1:
        ep_where = where.replace("tensor_parallel", "expert_parallel")
        if not model.is_moe:
            raise ConfigError(f"expert_parallel={ep} needs a mixture-of-experts model; {model.name} is dense",
                              where=ep_where)
        if tp % ep:
            raise ConfigError(f"expert_parallel={ep} does not divide tensor_parallel={tp}", where=ep_where)
        if model.num_experts % ep:
            raise ConfigError(f"expert_parallel={ep} does not divide the {model.num_experts} experts of "
                              f"{model.name}", where=ep_where)
    if dp > 1:
        dp_where = where.replace("tensor_parallel", "attention_data_parallel")
        if not model.is_moe:
            raise ConfigError(f"attention_data_parallel={dp} needs a mixture-of-experts model (its MoE layers join "
                              f"the groups); {model.name} is dense: use replicas", where=dp_where)
        if tp % dp:
            raise ConfigError(f"attention_data_parallel={dp} does not divide tensor_parallel={tp}", where=dp_where)
        tp //= dp  # attention's tensor-parallel group
    if model.num_heads % tp:
        raise ConfigError(f"tensor_parallel={tp} does not divide the {model.num_heads} attention heads of "
                          f"{model.name}", where=where)
    if model.num_kv_heads % tp and tp % model.num_kv_heads:
        raise ConfigError(f"tensor_parallel={tp} neither divides nor is a multiple of the {model.num_kv_heads} "
                          f"KV heads of {model.name}", where=where)


def pool_memory_plan(model, dev, tp: int, engine, scheduler_config, where: str = "model", pp: int = 1,
                     quant=None, block_size: int | None = None, dp: int = 1, expert_offload=None,
                     weight_offload=None, cp: int = 1) -> MemoryPlan:
    """Per-GPU memory of a replica of ``model`` on ``dev`` split over ``tp`` x ``pp`` GPUs (each
    pipeline stage holds 1/pp of the layers, and KV for those layers only); ``quant`` (a
    quantization scheme) sets the weight bytes and the KV bytes per element. ``dp`` > 1 (attention
    data parallelism): the routed experts are split over the ``tp`` GPUs, every other weight over the
    ``tp / dp`` GPUs of an attention group; each group keeps its own requests' KV, so the replica's
    KV blocks are ``dp`` times one GPU's. ``expert_offload`` (workloads.expert_offload): only its
    expert cache of the routed experts counts against GPU memory. ``weight_offload``
    (workloads.weight_offload): only its GPU-resident weights and layer buffers count; with KV in host
    DRAM the KV capacity is the DRAM its host-resident weights leave. ``cp`` > 1 (context parallelism):
    the weights replicated over ``cp`` groups of ``tp / cp`` GPUs, each GPU holding ``1 / cp`` of every
    token's K/V."""
    tp //= cp
    usable = dev.memory_bytes * engine.gpu_memory_utilization - dev.extra_memory_bytes
    weights = (quant.weight_bytes(model) if quant is not None else model.weight_bytes()) / (tp * pp)
    if dp > 1:  # the non-expert share of the weights is replicated over the dp groups
        expert = model.moe_layers * model.num_experts * model._mlp_params(model.expert_intermediate)
        weights *= expert / model.num_params() + (1.0 - expert / model.num_params()) * dp
        tp //= dp
    if expert_offload is not None:  # routed experts in host memory / on SSD, a cache of them on the GPU
        weights = expert_offload.resident_weight_bytes(weights, usable - engine.activation_reserve)
    if weight_offload is not None:  # layer weights streamed from host DRAM / SSD each iteration
        weights = weight_offload.resident_weight_bytes(weights, usable - engine.activation_reserve)
    free = usable - weights - engine.activation_reserve
    if getattr(engine, "memory_rule", "total") == "free_after_weights":  # TRT-LLM: a share of what is left
        usable = dev.memory_bytes - dev.extra_memory_bytes
        free = (usable - weights - engine.activation_reserve) * engine.gpu_memory_utilization
    if free <= 0:
        raise CapacityError(
            f"{model.name} needs {weights / GiB:.1f} GiB of weights per GPU at tensor_parallel={tp}, "
            f"plus {engine.activation_reserve / GiB:.1f} GiB activation reserve, but {dev.name} gives "
            f"{usable / GiB:.1f} GiB ({engine.gpu_memory_utilization:g} x {dev.memory_bytes / GiB:.0f} GiB); "
            f"raise cluster.tensor_parallel or choose a larger GPU", where=where)
    if weight_offload is not None and weight_offload.kv_on_host:
        free = weight_offload.host_kv_bytes()
    kv_elem = quant.kv_bytes_per_element(model.dtype_bytes, model.head_dim) if quant is not None else model.dtype_bytes
    per_token = model.kv_elems_per_token(tp) * kv_elem / pp / cp  # MLA: the latent, on every GPU (not split by TP)
    residual = 0.0
    if quant is not None and quant.config.kv.residual_tokens and kv_elem != model.dtype_bytes:
        # the recent-token windows stay in 16 bit, one per batch slot, allocated up front
        slots = int(getattr(scheduler_config, "max_num_seqs", 256))
        residual = slots * quant.config.kv.residual_tokens * per_token * model.dtype_bytes / kv_elem
        free -= residual
    bounded = model.kv_bounded_bytes(tp, kv_elem) / pp  # windows, token budgets, SSM states: per sequence
    if bounded:  # held by every batch slot, allocated up front (workloads.attention_variants)
        slots = int(getattr(scheduler_config, "max_num_seqs", 256))
        residual += slots * bounded
        free -= slots * bounded
    block_size = block_size or int(getattr(scheduler_config, "block_size", 16))
    # a model whose K/V is all bounded (every layer windowed): blocks cost ~nothing, slots hold the KV
    blocks = min(2**40, max(0, int(free // (max(per_token, 1e-9) * block_size)))) * dp
    return MemoryPlan(usable, weights, engine.activation_reserve, blocks * per_token * block_size, per_token,
                      block_size, blocks, residual, **(weight_offload.placement() if weight_offload else {}))


def memory_plan(scenario: ResolvedScenario, pool: Pool | None = None) -> MemoryPlan:
    pool = pool or scenario.pools[0]
    model = scenario.model.config
    where = "cluster.tensor_parallel" if scenario.spec.cluster.pools is None else f"cluster.pools.{pool.name}"
    check_context_parallel(model, pool, where.replace("tensor_parallel", "context_parallel"), scenario.spec.policies,
                           scenario.spec.engine.overlap)
    check_parallelism(model, pool.tensor_parallel // pool.context_parallel, where, pool.expert_parallel,
                      pool.attention_data_parallel)
    return pool_memory_plan(model, pool.device.config, pool.tensor_parallel, scenario.spec.engine,
                            pool.scheduler.config, "model" if scenario.spec.cluster.pools is None else where,
                            pool.pipeline_parallel, build_quantization(scenario),
                            page_block_size(scenario.kv_cache, model, pool.tensor_parallel),
                            dp=pool.attention_data_parallel,
                            expert_offload=build_expert_offload(scenario, pool, build_quantization(scenario)),
                            weight_offload=build_weight_offload(scenario, pool, build_quantization(scenario)),
                            cp=pool.context_parallel)


def build_quantization(scenario: ResolvedScenario):
    """The scenario's quantization scheme instance, or None (unquantized)."""
    comp = scenario.quantization
    return comp.cls(comp.config) if comp is not None else None


def max_model_len(scenario: ResolvedScenario) -> int:
    model = scenario.model.config
    asked = scenario.spec.engine.max_model_len
    if asked is not None and asked > model.max_position:
        raise ConfigError(f"max_model_len={asked} exceeds the {model.max_position}-token context of {model.name}",
                          where="engine.max_model_len")
    return asked or model.max_position


def build_overlap(config):
    """The ``engine.overlap`` policy with the SM-partition mechanism, or None (kernels back to back)."""
    if config is None or config.kind == "none":
        return None
    from hw_models.overlap import plan_s
    from policies.overlap import make_overlap

    return make_overlap(config, plan_s)


def build_link(scenario: ResolvedScenario, pool: Pool | None = None):
    pool = pool or scenario.pools[0]
    comp = pool.interconnect
    if comp is None and pool.tensor_parallel * pool.pipeline_parallel > 1:
        name = getattr(pool.device.config, "default_interconnect", None)
        if not name:
            raise ConfigError("tensor_parallel > 1 needs hardware.interconnect (the device names none)",
                              where="hardware.interconnect")
        comp = resolve_component({"kind": "link", "preset": name}, reg.HARDWARE, "hardware.interconnect")
    link = comp.cls(comp.config) if comp is not None else None
    return node_network_link(scenario, pool, link)  # replicas wider than a node (simulator.serving.multinode)


@dataclass
class PoolRuntime:
    """What one pool's replicas share: memory plan, interconnect, timing backend and step timer."""

    pool: Pool
    mem: MemoryPlan
    link: object
    backend: object
    timer: StepTimer
    replicas: list[int]


def check_warmup(scenario: ResolvedScenario, n_requests: int) -> None:
    """``run.warmup_requests`` must leave at least one of the workload's requests measured."""
    warm = scenario.spec.run.warmup_requests
    if warm and warm >= n_requests:
        raise ConfigError(f"warmup_requests={warm} leaves none of the workload's {n_requests:,} requests to "
                          f"measure", where="run.warmup_requests")


class Simulation:
    def __init__(self, scenario: ResolvedScenario) -> None:
        self.scenario = scenario
        spec = scenario.spec
        model = scenario.model.config
        self.quant = build_quantization(scenario)
        for pool in scenario.pools if self.quant is not None else ():
            self.quant.check_device(pool.device.config, model.dtype)
        mems = [memory_plan(scenario, pool) for pool in scenario.pools]  # a model that does not fit first
        self.max_model_len = max_model_len(scenario)
        self.pools: list[PoolRuntime] = []
        for pool, mem in zip(scenario.pools, mems):
            if mem.kv_blocks * mem.block_size < self.max_model_len:
                raise CapacityError(
                    f"the KV cache holds {mem.kv_blocks * mem.block_size} tokens per replica of pool {pool.name!r}, "
                    f"fewer than max_model_len={self.max_model_len}; set engine.max_model_len lower or add memory",
                    where="engine.max_model_len")
            link = build_link(scenario, pool)
            backend = scenario.timing.cls(pool_timing(scenario.timing.config, pool), pool.device.config, link)
            if pool.context_parallel > 1:  # ring attention (simulator.serving.ring_attention)
                check_context_parallel(model, pool, "cluster.context_parallel" if spec.cluster.pools is None else
                                       f"cluster.pools.{pool.name}", kv_fetch=build_sparse_kv_fetch(scenario, pool))
                timer = ContextParallelTimer(model, pool.tensor_parallel, pool.context_parallel, backend, self.quant,
                                             scenario.framework, pool.device.config.launch_overhead_s)
                self.pools.append(PoolRuntime(pool, mem, link, backend, timer, []))
                continue
            timer = StepTimer(model, pool.tensor_parallel, backend, self.quant, scenario.framework,
                              pool.device.config.launch_overhead_s, ep=pool.expert_parallel,
                              dp=pool.attention_data_parallel,
                              kernel_overlap=build_overlap(spec.engine.overlap),
                              expert_fetch=build_expert_offload(scenario, pool, self.quant),
                              weight_offload=build_weight_offload(scenario, pool, self.quant),
                              kv_fetch=build_sparse_kv_fetch(scenario, pool))
            self.pools.append(PoolRuntime(pool, mem, link, backend, timer, []))
        first = self.pools[0]
        self.tp, self.mem, self.link, self.backend, self.timer = (
            first.pool.tensor_parallel, first.mem, first.link, first.backend, first.timer)
        self.rngs = RngStreams(spec.seed)
        source = scenario.workload.cls(scenario.workload.config, base_dir=scenario.base_dir)
        self.table = source.generate(self.rngs).validate("workload")
        vision = getattr(scenario.model.config, "vision", None)
        if vision is not None and vision.tokens_per_request:  # image tokens join every prompt (workloads.vision)
            import dataclasses

            self.table = dataclasses.replace(self.table, prompt_tokens=self.table.prompt_tokens
                                             + vision.tokens_per_request)
        check_exclusions(spec.run, len(self.table))
        for pool in scenario.pools:
            check_prompts(self.table.prompt_tokens, pool.context_parallel,
                          "cluster.context_parallel" if spec.cluster.pools is None else f"cluster.pools.{pool.name}")
        self.env = simpy.Environment()
        n_replicas = sum(p.replicas * p.pipeline_parallel for p in scenario.pools)
        self.pipelines: list[Pipeline] = []
        self.recorder = Recorder(n_replicas)
        router = scenario.router.cls(scenario.router.config)
        decode_router = scenario.decode_router.cls(scenario.decode_router.config) if scenario.decode_router else None
        self.cluster = Cluster(self.env, self.recorder, router, scenario.router.kind, decode_router,
                               scenario.decode_router.kind if scenario.decode_router else "")
        if scenario.framework is not None:
            self.cluster.frontend_ps = s_to_ps(scenario.framework.host.request_s)
            # each serving instance (a replica taking arrivals) runs its own frontend processes:
            # pooled here as one FCFS queue of processes x instances (serving/frontend.py)
            instances = sum(p.replicas for p in scenario.pools if p.role != "decode")
            self.cluster.frontend = Frontend.from_profile(scenario.framework.frontend, instances)
        for pi, rt in enumerate(self.pools):
            pool = rt.pool
            pp = pool.pipeline_parallel
            for _ in range(pool.replicas):
                # pipeline parallelism: pp virtual engines (micro-batches in flight), each with its own
                # scheduler and 1/pp of the KV blocks, sharing the pp stages of one replica
                pipeline = None
                if pp > 1:
                    act_bytes = model.hidden_size * model.dtype_bytes
                    pipeline = Pipeline(self.env, pp, rt.link, act_bytes, len(self.pipelines))
                    self.pipelines.append(pipeline)
                for _ in range(pp):
                    i = len(self.cluster.replicas)
                    sched = pool.scheduler.cls(pool.scheduler.config)
                    kv = make_kv_cache(scenario.kv_cache, rt.mem.kv_blocks // pp, rt.mem.block_size)
                    offload = make_offload(scenario.kv_cache, self.env, rt.mem.kv_bytes_per_token,
                                           2 * model.num_layers // pp)
                    self.cluster.add_replica(Replica(self.cluster, i, sched, pool.scheduler.kind, kv, rt.timer,
                                                     self.max_model_len, role=pool.role, pool=pi,
                                                     pipeline=pipeline, offload=offload))
                    self.cluster.replicas[i].devices = pool.tensor_parallel  # as run_facts counts them
                    rt.replicas.append(i)
        self.stream = None  # RunStream when the metrics stream (run.metrics), set when the run starts
        attach_speculation(self)  # policies.speculation: multi-token decode steps
        attach_controller(self)  # cluster.controller: migration, steal, drain across replicas
        if scenario.disaggregated:
            if scenario.kv_cache is not None and scenario.kv_cache.cls.mechanism != "paged":
                raise ConfigError("disaggregated pools support only the paged KV mechanism",
                                  where="policies.kv_cache.kind")
            self._connect_pools(model)

    def _connect_pools(self, model) -> None:
        """Each decode replica gets an inbound KV link: the transfer link's bandwidth per GPU times
        its tensor-parallel degree (each GPU receives its shard over its own NIC/link); with MLA
        every GPU receives the whole latent, so one GPU's bandwidth."""
        link = self.scenario.kv_link.config
        self.cluster.kv_bytes_per_token = model.kv_bytes_per_token() if self.quant is None else (
            model.kv_bytes_per_token() / model.dtype_bytes
            * self.quant.kv_bytes_per_element(model.dtype_bytes, model.head_dim))
        for rep in self.cluster.decoders:
            # MLA: every GPU receives the whole latent, so the GPUs' links do not add up
            tp = 1 if model.is_mla else self.pools[rep.pool].pool.tensor_parallel
            self.cluster.kv_links[rep.index] = SharedBandwidth(
                self.env, link.bw_bytes_per_s * link.efficiency * tp, latency_ps=s_to_ps(link.latency_s),
                name=f"kv-link-{rep.index}")

    def run(self, progress: Callable[[int, int], None] | None = None) -> RunResult:
        """Run to the end (or ``run.max_time``); ``progress(done, total)`` is called as requests
        finish (about every 1% of them)."""
        from simulator.metrics import build_result

        t0 = time.perf_counter()
        total = len(self.table)
        if progress is not None:
            step = max(1, total // 100)
            self.cluster.progress = (step, lambda done: progress(done, total))
        from simulator.metrics_stream import RunStream, streaming

        if streaming(self.scenario.spec.run.metrics, total):
            self.stream = RunStream(self)
            self.stream.start(self)
            self.cluster.sink = self.stream.done
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
