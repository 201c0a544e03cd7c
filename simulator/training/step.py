"""A training step from a resolved scenario: lower each stage, time it, check memory, simulate.

By symmetry every data-parallel replica runs the same pipeline at the same time, and the tp x cp
GPUs of a stage run the same kernels: the step simulates one replica's ``pp`` stage processes
exactly (one GPU per stage), and the data-parallel collectives as what each GPU puts on its own
link (the other replicas' GPUs do the same on theirs, rail-optimised). A 1024-GPU job is thus ``pp``
processes, not 1024.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from hw_models.link import Link
from simulator.core.errors import CapacityError, ConfigError
from simulator.training.config import ResolvedTraining
from simulator.training.memory import MemoryBreakdown, breakdown, bytes_per_param, gib
from simulator.training.schedule import Channel, PipelinePlan, PipelineResult, max_in_flight, simulate, unit_order
from workloads import training as wt
from workloads.llm import ALLREDUCE, ALLTOALL, ATTN_PREFILL

# gradient reductions per chunk the step simulates at most (each is a SimPy process): a bucket size that
# would cut a chunk's gradients finer is refused rather than simulated for minutes
MAX_BUCKETS = 10_000


@dataclass
class StageInfo:
    fwd: list[list[Any]]  # ops per chunk
    bwd: list[list[Any]]
    params: float
    memory: MemoryBreakdown
    in_flight: int


@dataclass
class TrainResult:
    name: str
    summary: dict[str, Any]
    pipeline: PipelineResult
    stages: list[StageInfo] = field(default_factory=list)
    wall_s: float = 0.0


def _channel(link: Any, p2p: bool = False) -> Channel:
    eff = link.p2p_efficiency if p2p and link.p2p_efficiency is not None else link.efficiency
    return Channel(link.latency_s, link.bw_bytes_per_s * eff, link.name)


def sp_collectives_s(op: Any, link: Any) -> float:
    """Sequence parallelism's reduce-scatter and all-gather replacing the tensor-parallel all-reduce
    ``op`` (all ``op.count`` of them): two ring collectives on the TP link, each n - 1 latency steps and
    (n - 1) / n of the activation bytes at the link's collective rate (``hw_models.link``'s alpha-beta)."""
    c = link.config
    one = (op.workers - 1) * c.latency_s + wt.sp_collective_bytes(op) / (c.bw_bytes_per_s * c.efficiency)
    return 2.0 * one * op.count if op.workers > 1 else 0.0


def ring_passes(ops: list[Any], backend: Any, send_bytes: float, cp: int) -> tuple[tuple[float, float, int], ...]:
    """The ring attention passes among ``ops`` (one GPU's kernels of a unit): (attention seconds, bytes
    per ring step over all the op's layers, cp). A forward or recomputed attention sends the K/V block,
    the backward K/V and their gradients (twice the bytes)."""
    out = []
    for op in ops:
        if op.kind == ATTN_PREFILL:
            k = 2.0 if op.name == "attn_bwd" else 1.0
            out.append((backend.op_s(op), k * send_bytes * op.count, cp))
    return tuple(out)


def stage_shapes(rt: ResolvedTraining) -> list[list[wt.StageShape]]:
    """[stage][chunk] shapes: virtual stage c * pp + s holds layers [vs L/V, (vs + 1) L/V)."""
    lay, model = rt.spec.layout, rt.model
    V = lay.pp * lay.virtual_stages
    per = model.num_layers // V
    fd = model.first_dense_layers if model.is_moe else 0
    out = []
    for s in range(lay.pp):
        row = []
        for c in range(lay.virtual_stages):
            vs = c * lay.pp + s
            dense = max(0, min(per, fd - vs * per))
            row.append(wt.StageShape(per, vs == 0, vs == V - 1, dense))
        out.append(row)
    return out


def train_shape(rt: ResolvedTraining) -> wt.TrainShape:
    t, lay = rt.spec.training, rt.spec.layout
    return wt.TrainShape(t.micro_batch, t.seq_len, lay.tp, lay.cp, lay.ep, lay.sequence_parallel, t.precision,
                         t.recompute)


def build(rt: ResolvedTraining) -> tuple[PipelinePlan, list[StageInfo], Any]:
    spec, lay, t, model = rt.spec, rt.spec.layout, rt.spec.training, rt.model
    per_node = spec.hardware.gpus_per_node
    tp_link = rt.intra if lay.tp * lay.cp <= per_node or rt.inter is None else rt.inter
    backend = rt.timing.cls(rt.timing.config, rt.device, Link(tp_link))
    ep_link = rt.intra if lay.ep * lay.cp <= per_node or rt.inter is None else rt.inter
    a2a = backend if ep_link is tp_link else rt.timing.cls(rt.timing.config, rt.device, Link(ep_link))

    sp = lay.sequence_parallel and lay.tp > 1
    cp = lay.cp
    tp_l = Link(tp_link)

    def op_time(op: Any) -> float:
        if op.kind == ATTN_PREFILL and cp > 1:  # timed as the ring (PipelinePlan.ring_fwd / ring_bwd)
            return 0.0
        if sp and op.kind == ALLREDUCE and op.workers == lay.tp:
            return sp_collectives_s(op, tp_l)
        return (a2a if op.kind == ALLTOALL else backend).op_s(op)  # MoE all-to-all on the expert group's link

    def timed(ops: list[Any]) -> float:
        return sum(op_time(op) for op in ops)

    ts = train_shape(rt)
    m = t.global_batch // (t.micro_batch * lay.dp)
    shapes = stage_shapes(rt)
    w_b, g_b, k_b = bytes_per_param(t.precision, t.grad_dtype, t.optimizer)
    shards = lay.dp * lay.cp
    # experts over ep / tp data-parallel ranks: their gradients and ZeRO shards span the rest of the group
    expert_shards = shards // (lay.ep // lay.tp) if lay.ep > lay.tp else shards
    unit_act = wt.activation_bytes_per_layer(model, ts, t.flash_attention) * shapes[0][0].layers
    stages: list[StageInfo] = []
    fwd_s, bwd_s, opt_s, grads, params_b, e_grads, e_params_b = [], [], [], [], [], [], []
    ring_fwd, ring_bwd = [], []
    for s, row in enumerate(shapes):
        fwd = [wt.forward_ops(model, sh, ts) for sh in row]
        bwd = [wt.backward_ops(f, t.recompute, t.flash_attention) for f in fwd]
        if cp > 1:
            kv = wt.ring_send_bytes(model, ts)  # per ring step and layer
            ring_fwd.append([ring_passes(f, backend, kv, cp) for f in fwd])
            ring_bwd.append([ring_passes(b, backend, kv, cp) for b in bwd])
        fwd_s.append([timed(f) for f in fwd])
        bwd_s.append([timed(b) for b in bwd])
        chunk_params = [wt.stage_params(model, sh, lay.tp, lay.ep) for sh in row]
        chunk_experts = [wt.expert_params(model, sh, lay.tp, lay.ep) for sh in row] if expert_shards != shards \
            else [0.0] * len(row)
        params, experts = sum(chunk_params), sum(chunk_experts)
        opt_params = (params - experts) / (shards if lay.zero >= 1 else 1) + \
            experts / (expert_shards if lay.zero >= 1 else 1)
        opt_s.append(backend.op_s(wt.optimizer_op(opt_params, g_b, w_b, k_b)))
        grads.append([(x - e) * g_b for x, e in zip(chunk_params, chunk_experts)])
        params_b.append([(x - e) * 2.0 for x, e in zip(chunk_params, chunk_experts)])
        e_grads.append([e * g_b for e in chunk_experts])
        e_params_b.append([e * 2.0 for e in chunk_experts])
        order = unit_order(lay.pp, m, lay.virtual_stages, s)
        flight = max_in_flight(order)
        logits = wt.logits_bytes(model, ts) if row[-1].last else 0.0
        mem = breakdown(params, lay.zero, shards, unit_act, flight, logits, t.memory_reserve, t.offload_activations,
                        t.precision, t.grad_dtype, t.optimizer, experts, expert_shards)
        stages.append(StageInfo(fwd, bwd, params, mem, flight))
    biggest = max(x for row in grads + e_grads for x in row)
    if biggest / lay.grad_bucket_bytes > MAX_BUCKETS:
        raise ConfigError(f"{lay.grad_bucket_bytes:g} B buckets cut a chunk's {biggest / 1e6:,.0f} MB of gradients "
                          f"into more than {MAX_BUCKETS:,} reductions; give at least "
                          f"{biggest / MAX_BUCKETS / 1e6:.2g} MB (Megatron's default: 40MB)",
                          where="layout.grad_bucket_bytes")
    cross_node_pp = lay.tp * lay.cp * lay.dp >= per_node and lay.pp > 1
    p2p_link = rt.inter if cross_node_pp and rt.inter is not None else rt.intra
    act = ts.tokens * model.hidden_size * model.dtype_bytes
    if lay.tp > 1 and (lay.sequence_parallel or (lay.scatter_gather and p2p_link is rt.inter)):
        act /= lay.tp
    dp_local = max(1, per_node // (lay.tp * lay.cp))
    dp_link = rt.intra if lay.dp <= dp_local or rt.inter is None else rt.inter
    host = rt.host
    pcie = Channel(host.transfer_overhead_s, host.copy_rate(), "pcie") if t.offload_activations else None
    plan = PipelinePlan(
        p=lay.pp, m=m, v=lay.virtual_stages, fwd_s=fwd_s, bwd_s=bwd_s, opt_s=opt_s, act_bytes=act,
        p2p=_channel(p2p_link, p2p=True) if lay.pp > 1 else None, dp=shards,
        dp_channel=_channel(dp_link) if shards > 1 else None, zero=lay.zero, grad_bytes=grads, param_bytes=params_b,
        bucket_bytes=lay.grad_bucket_bytes, overlap_grad_reduce=lay.overlap_grad_reduce,
        offload_bytes=unit_act if t.offload_activations else 0.0, pcie=pcie,
        expert_grad_bytes=e_grads if expert_shards != shards else [], expert_param_bytes=e_params_b
        if expert_shards != shards else [], expert_dp=expert_shards, ring_fwd=ring_fwd, ring_bwd=ring_bwd,
        cp_channel=_channel(tp_link, p2p=True) if cp > 1 else None)
    # on one link (the same name), pipeline sends and gradient reductions share each GPU's bandwidth resource
    return plan, stages, backend


def check_memory(rt: ResolvedTraining, stages: list[StageInfo]) -> None:
    cap = rt.device.memory_bytes
    worst = max(range(len(stages)), key=lambda s: stages[s].memory.total)
    mem = stages[worst].memory
    if mem.total > cap:
        raise CapacityError(
            f"stage {worst} needs {gib(mem.total)} per GPU (weights {gib(mem.weights)}, grads {gib(mem.grads)}, "
            f"optimizer {gib(mem.optimizer)}, activations {gib(mem.activations)}, reserve {gib(mem.reserve)}), "
            f"more than the {gib(cap)} of {rt.device.name}; use ZeRO, more tp/pp, recompute or a smaller micro_batch",
            where="layout")


def checkpoint(rt: ResolvedTraining, stages: list[StageInfo], step_s: float) -> dict[str, float]:
    """Time to save weights and optimizer state: each GPU copies what it writes to host DRAM over PCIe,
    then the node's GPUs write to the node's SSD together: one copy of the model state, no duplicates
    (the 16-bit weights from one data-parallel replica unless ZeRO-3 shards them, the optimizer state
    from one replica, or from every GPU's shard with ZeRO). Stall: the step waits for both; async: for
    the copy only (the SSD write overlaps the following steps)."""
    from hw_models.host import Host
    from hw_models.ssd import Ssd

    spec = rt.spec
    t, lay, ck = spec.training, spec.layout, spec.checkpoint
    w_b = bytes_per_param(t.precision, t.grad_dtype, t.optimizer)[0]
    # the 16-bit weights and the optimizer state each GPU holds (ZeRO shards included), not the fp8 copy
    weights = max(st.memory.weights * 2.0 / w_b for st in stages)
    optimizer = max(st.memory.optimizer for st in stages)
    per_gpu = weights + optimizer
    node = min(spec.hardware.gpus_per_node, t.gpus)
    dp_local = min(lay.dp, max(1, node // (lay.tp * lay.cp)))  # data-parallel peers on one node
    replica = max(1, node // dp_local)  # the node's GPUs of one data-parallel replica
    # replicated state is written by one replica's GPUs, sharded state (ZeRO) by every GPU
    node_bytes = weights * (node if lay.zero >= 3 else replica) + optimizer * (node if lay.zero >= 1 else replica)
    copy_s = Host(rt.host).transfer_s(per_gpu)
    ssd_s = Ssd(rt.ssd).write_s(node_bytes, ck.request_bytes, ck.queue_depth)
    stall = copy_s + ssd_s if ck.mode == "stall" else copy_s
    if ck.mode == "async" and ck.every_steps and ssd_s > ck.every_steps * step_s:
        stall += ssd_s - ck.every_steps * step_s  # the next save waits for the previous write
    per_step = stall / ck.every_steps if ck.every_steps else 0.0
    return {"checkpoint_bytes_per_gpu": per_gpu, "checkpoint_bytes_per_node": node_bytes,
            "checkpoint_copy_s": copy_s, "checkpoint_ssd_write_s": ssd_s,
            "checkpoint_stall_s": stall, "checkpoint_overhead_per_step_s": per_step}


def run_training(rt: ResolvedTraining) -> TrainResult:
    t0 = time.perf_counter()
    spec, lay, t, model = rt.spec, rt.spec.layout, rt.spec.training, rt.model
    plan, stages, backend = build(rt)
    check_memory(rt, stages)
    res = simulate(plan)
    if min(res.stage_end_ps) <= 0 or len(res.stage_end_ps) != lay.pp:
        raise RuntimeError("the pipeline schedule did not finish (a dependency was never met)")
    step_s = res.step_ps / 1e12
    gpus_per_stage = lay.tp * lay.cp * lay.dp
    fwd_fl = sum(wt.flops(f) for st in stages for f in st.fwd)
    bwd_fl = sum(wt.flops(b) for st in stages for b in st.bwd)
    # MFU: forward + backward at 2x, no recompute (neither activation recompute nor FlashAttention-2's scores)
    model_flops = plan.m * gpus_per_stage * sum(wt.model_flops(f) for st in stages for f in st.fwd)
    hw_flops = plan.m * gpus_per_stage * (fwd_fl + bwd_fl)
    peak = rt.device.tensor_peak("fp8" if t.precision == "fp8" else "bf16") * t.gpus
    tokens = t.global_batch * t.seq_len
    worst = max(stages, key=lambda st: st.memory.total).memory
    summary: dict[str, Any] = {
        "name": spec.name, "model": model.name, "gpus": t.gpus, "device": rt.device.name,
        "layout": {"dp": lay.dp, "tp": lay.tp, "pp": lay.pp, "cp": lay.cp, "ep": lay.ep,
                   "virtual_stages": lay.virtual_stages, "zero": lay.zero, "schedule": lay.schedule,
                   "sequence_parallel": lay.sequence_parallel},
        "micro_batches": plan.m, "global_batch": t.global_batch, "seq_len": t.seq_len,
        "step_s": step_s, "tokens_per_s": tokens / step_s,
        "model_flops_per_step": model_flops, "hardware_flops_per_step": hw_flops,
        "mfu": model_flops / (step_s * peak), "hfu": hw_flops / (step_s * peak),
        "tflops_per_gpu": hw_flops / step_s / t.gpus / 1e12,
        "bubble_fraction": res.bubble_fraction(0),
        "bubble_fraction_formula": (lay.pp - 1) / lay.virtual_stages / (plan.m + (lay.pp - 1) / lay.virtual_stages),
        "stage_fwd_s": [sum(x) for x in plan.fwd_s], "stage_bwd_s": [sum(x) for x in plan.bwd_s],
        "optimizer_s": max(plan.opt_s), "dp_wire_bytes_per_gpu": max(res.dp_wire_bytes),
        "p2p_bytes_per_gpu": max(res.p2p_bytes), "cp_ring_bytes_per_gpu": max(res.cp_bytes, default=0.0),
        "params_total": model.num_params(),
        "memory_per_gpu": worst.as_dict(), "memory_capacity_bytes": rt.device.memory_bytes,
        "memory_per_stage": [st.memory.as_dict() for st in stages],
        "activations_in_flight": [st.in_flight for st in stages], "timing": rt.timing.kind,
        "simulated_processes": lay.pp,
    }
    summary.update(checkpoint(rt, stages, step_s))
    return TrainResult(spec.name, summary, res, stages, time.perf_counter() - t0)
