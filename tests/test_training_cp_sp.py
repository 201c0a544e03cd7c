"""Context parallelism (ring attention) and sequence parallelism in a training step, against first
principles: cp = 1 is the step without any ring, the ring's bytes are 2 x tokens / cp x kv_heads / tp x
head_dim x dtype bytes per layer and step, a step is never faster than its communication-free bound, a
slow link makes it exchange-bound by bytes / bandwidth, and sequence parallelism's reduce-scatter +
all-gather move the all-reduce's bytes at the link's alpha-beta time."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw_models.link import Link
from simulator.training.config import load_training
from simulator.training.schedule import Channel, simulate
from simulator.training.step import build, run_training, sp_collectives_s
from workloads import training as wt
from workloads.llm import ALLREDUCE, ATTN_PREFILL

GQA = {"kind": "transformer", "name": "gqa-small", "family": "llama", "num_layers": 8, "hidden_size": 1024,
       "num_heads": 16, "num_kv_heads": 8, "head_dim": 64, "intermediate_size": 2816, "gated_mlp": True,
       "vocab_size": 32000, "max_position": 8192, "norm": "rmsnorm"}


def scenario(tp: int = 1, cp: int = 1, dp: int = 1, pp: int = 1, sp: bool = False, seq: int = 4096,
             recompute: str = "none", overlap: bool = True) -> dict:
    return {"type": "training", "name": "cp",
            "hardware": {"device": {"kind": "gpu", "preset": "A100-80GB"},
                         "network": {"kind": "link", "preset": "IB-HDR"}, "timing": {"kind": "roofline"}},
            "model": copy.deepcopy(GQA),
            "training": {"gpus": tp * cp * dp * pp, "global_batch": 4 * dp, "micro_batch": 1, "seq_len": seq,
                         "recompute": recompute},
            "layout": {"tp": tp, "cp": cp, "dp": dp, "pp": pp, "sequence_parallel": sp,
                       "overlap_grad_reduce": overlap}}


def ring_units(plan):
    """Every ring pass of the step: (attention seconds, bytes per step, steps), once per unit run."""
    out = []
    for s in range(plan.p):
        for c in range(plan.v):
            out += list(plan.ring_fwd[s][c]) * plan.m + list(plan.ring_bwd[s][c]) * plan.m
    return out


@pytest.mark.parametrize("sp", [False, True])
def test_cp_1_has_no_ring_and_times_each_unit_as_the_sum_of_its_ops(sp):
    rt = load_training(scenario(tp=2, dp=2, pp=2, sp=sp))
    plan, stages, backend = build(rt)
    assert plan.ring_fwd == [] and plan.ring_bwd == [] and plan.cp_channel is None
    link = Link(rt.intra)
    for s, st_ in enumerate(stages):
        for c in range(plan.v):
            for ops, got in ((st_.fwd[c], plan.fwd_s[s][c]), (st_.bwd[c], plan.bwd_s[s][c])):
                if sp:
                    expect = sum(sp_collectives_s(op, link) if op.kind == ALLREDUCE else backend.op_s(op) for op in ops)
                else:
                    expect = backend.ops_s(ops)  # the step as it was before the ring and SP collectives
                assert got == expect
    res = run_training(rt)
    assert res.summary["step_s"] == simulate(plan).step_ps / 1e12
    assert res.summary["cp_ring_bytes_per_gpu"] == 0.0


@given(tp=st.sampled_from([1, 2, 4]), cp=st.sampled_from([2, 4, 8]), mb=st.integers(1, 3),
       seq=st.sampled_from([1024, 2048, 8192]))
@settings(max_examples=20, deadline=None)
def test_ring_bytes_per_layer_and_step_are_2_tokens_over_cp_kv_heads_over_tp_head_dim_dtype(tp, cp, mb, seq):
    model = load_training(scenario()).model
    ts = wt.TrainShape(mb, seq, tp=tp, cp=cp)
    expect = 2 * (mb * seq / cp) * (model.num_kv_heads / tp) * model.head_dim * model.dtype_bytes
    assert wt.ring_send_bytes(model, ts) == pytest.approx(expect, rel=1e-12)
    assert wt.ring_send_bytes(model, wt.TrainShape(mb, seq, tp=tp, cp=1)) == 0.0


@pytest.mark.parametrize("recompute,passes", [("none", 1 + 2), ("selective", 1 + 1 + 2), ("full", 1 + 1 + 2)])
def test_the_step_sends_cp_minus_1_blocks_per_pass_backward_twice_the_bytes(recompute, passes):
    cp, tp = 4, 2
    rt = load_training(scenario(tp=tp, cp=cp, recompute=recompute))
    res = run_training(rt)
    per_layer = wt.ring_send_bytes(rt.model, wt.TrainShape(1, 4096, tp=tp, cp=cp))
    m = 4
    expect = m * rt.model.num_layers * (cp - 1) * per_layer * passes
    assert res.summary["cp_ring_bytes_per_gpu"] == pytest.approx(expect, rel=1e-12)


@given(tp=st.sampled_from([1, 2]), cp=st.sampled_from([2, 4]), pp=st.sampled_from([1, 2]),
       seq=st.sampled_from([2048, 8192]), recompute=st.sampled_from(["none", "selective"]))
@settings(max_examples=12, deadline=None)
def test_a_cp_step_is_never_faster_than_its_communication_free_bound(tp, cp, pp, seq, recompute):
    rt = load_training(scenario(tp=tp, cp=cp, pp=pp, seq=seq, recompute=recompute))
    plan, _, _ = build(rt)
    step = simulate(plan).step_ps
    free = simulate(replace(plan, cp_channel=None)).step_ps  # ring sends take no time: compute / cp per step
    assert step >= free
    # each GPU's sends of one unit are sequential, so the step holds at least all of them end to end
    ch = plan.cp_channel
    sends = sum((k - 1) * (ch.latency_s + b / ch.rate_bytes_per_s) for _, b, k in ring_units(plan))
    assert step / 1e12 >= sends * (1 - 1e-9) / pp


def test_a_1000x_slower_link_makes_the_step_exchange_bound_by_bytes_over_bandwidth():
    cp = 4
    rt = load_training(scenario(tp=2, cp=cp, overlap=False))
    plan, _, _ = build(rt)
    ch = plan.cp_channel
    slow = Channel(ch.latency_s, ch.rate_bytes_per_s / 1000, ch.name)
    res_slow = simulate(replace(plan, cp_channel=slow))
    free = simulate(replace(plan, cp_channel=None)).step_ps
    expect = 0.0
    for a, nbytes, steps in ring_units(plan):
        send = slow.latency_s + nbytes / slow.rate_bytes_per_s
        assert send > a / steps  # exchange-bound: each step waits for its send
        expect += (steps - 1) * (send - a / steps)
    assert (res_slow.step_ps - free) / 1e12 == pytest.approx(expect, rel=1e-6)
    assert sum(res_slow.cp_bytes) == pytest.approx(sum((k - 1) * b for _, b, k in ring_units(plan)), rel=1e-12)
    # at the real link rate the exchange hides behind the attention for this shape
    assert simulate(plan).step_ps <= res_slow.step_ps


@given(tp=st.sampled_from([2, 4, 8]), mb=st.integers(1, 4), seq=st.sampled_from([512, 2048, 4096]))
@settings(max_examples=15, deadline=None)
def test_sequence_parallel_pair_moves_the_all_reduces_bytes_in_two_n_minus_1_over_n_collectives(tp, mb, seq):
    model = load_training(scenario()).model
    ts = wt.TrainShape(mb, seq, tp=tp, sequence_parallel=True)
    fwd = wt.forward_ops(model, wt.StageShape(model.num_layers, True, True), ts)
    ars = [op for op in fwd if op.kind == ALLREDUCE]
    assert ars, "a tensor-parallel layer has all-reduces"
    for op in ars:
        act = mb * seq * model.hidden_size * model.dtype_bytes  # the activation each collective carries
        assert op.bytes == act
        one = wt.sp_collective_bytes(op)
        assert one == pytest.approx((tp - 1) / tp * act, rel=1e-12)
        assert 2 * one == pytest.approx(2 * (tp - 1) / tp * act, rel=1e-12)  # the all-reduce's wire bytes


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_sequence_parallel_collectives_follow_the_links_alpha_beta_model(tp):
    rt = load_training(scenario(tp=tp, sp=True))
    plan, stages, backend = build(rt)
    link = Link(rt.intra)
    c = link.config
    ops = stages[0].fwd[0]
    expect = 0.0
    for op in ops:
        if op.kind == ALLREDUCE:
            one = (tp - 1) * c.latency_s + (tp - 1) / tp * op.bytes / (c.bw_bytes_per_s * c.efficiency)
            t = sp_collectives_s(op, link)
            assert t == pytest.approx(2 * one * op.count, rel=1e-12)
            assert t == pytest.approx(link.allreduce_s(op.bytes, tp) * op.count, rel=1e-12)  # ring identity
            expect += t
        else:
            expect += backend.op_s(op)
    assert plan.fwd_s[0][0] == pytest.approx(expect, rel=1e-12)


def test_ring_attention_is_the_attention_kernel_split_into_cp_steps():
    rt = load_training(scenario(tp=2, cp=4))
    plan, stages, backend = build(rt)
    attn = [op for op in stages[0].fwd[0] if op.kind == ATTN_PREFILL]
    assert [(a, k) for a, _, k in plan.ring_fwd[0][0]] == [(backend.op_s(op), 4) for op in attn]
    rest = sum(backend.op_s(op) for op in stages[0].fwd[0] if op.kind != ATTN_PREFILL)
    assert plan.fwd_s[0][0] == pytest.approx(rest, rel=1e-12)


def test_the_ring_sends_are_on_the_trace_s_cp_lane_and_the_scenario_checks():
    from simulator.training.outputs import LANES, chrome_trace

    res = run_training(load_training(scenario(tp=2, cp=4)))
    sends = [ev for ev in chrome_trace(res)["traceEvents"] if ev["ph"] == "X" and ev["tid"] == LANES["cp"]]
    # 4 micro-batches x (forward + backward pass) x (cp - 1) sends
    assert len(sends) == 4 * 2 * 3 and all(ev["dur"] > 0 for ev in sends)


def test_the_long_context_cp_scenario_loads_and_runs():
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[1] / "scenarios" / "training_llama31_8b_cp.yaml"
    rt = load_training(yaml.safe_load(path.read_text()))
    res = run_training(rt)
    assert rt.spec.layout.cp == 4 and res.summary["cp_ring_bytes_per_gpu"] > 0
