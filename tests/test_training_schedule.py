"""The pipeline schedules of simulator/training/schedule.py against first principles: the 1F1B and
interleaved bubbles emerge at (p-1)/v / (m + (p-1)/v) of the step when stages are equal and sends
are free, every unit runs once, activations held never exceed the warm-up, and data-parallel
all-reduce puts 2(n-1)/n of the gradient bytes on each GPU's link."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.training.schedule import B, Channel, F, PipelinePlan, max_in_flight, simulate, unit_order


def plan(p: int, m: int, v: int = 1, tf: float = 0.01, tb: float = 0.02, **kw) -> PipelinePlan:
    return PipelinePlan(p, m, v, [[tf / v] * v for _ in range(p)], [[tb / v] * v for _ in range(p)], [0.0] * p, **kw)


def formula(p: int, m: int, v: int = 1) -> float:
    return (p - 1) / v / (m + (p - 1) / v)


@pytest.mark.parametrize("p, m", [(2, 2), (4, 8), (8, 64), (12, 48), (16, 16)])
def test_the_1f1b_bubble_emerges_at_p_minus_1_over_m_plus_p_minus_1_within_2_percent(p, m):
    r = simulate(plan(p, m))
    assert r.bubble_fraction(0) == pytest.approx(formula(p, m), rel=0.02)
    # and the step is exactly (m + p - 1) forward-backward slots of one stage
    assert r.step_ps == pytest.approx((m + p - 1) * 0.03e12, rel=1e-9)


@pytest.mark.parametrize("p, m, v", [(4, 8, 2), (4, 16, 4), (8, 64, 2), (12, 48, 2)])
def test_the_interleaved_bubble_shrinks_by_the_chunk_count(p, m, v):
    inter = simulate(plan(p, m, v)).bubble_fraction(0)
    assert inter == pytest.approx(formula(p, m, v), rel=0.02)
    assert inter < simulate(plan(p, m)).bubble_fraction(0)


@pytest.mark.parametrize("p, m, v", [(1, 3, 1), (4, 8, 1), (4, 8, 2), (3, 9, 3), (8, 8, 2)])
def test_every_stage_runs_each_forward_and_backward_once_forward_first(p, m, v):
    for s in range(p):
        order = unit_order(p, m, v, s)
        fwd = [(mb, c) for k, mb, c in order if k == F]
        bwd = [(mb, c) for k, mb, c in order if k == B]
        assert sorted(fwd) == sorted(bwd) == sorted((mb, c) for mb in range(m) for c in range(v))
        for unit in fwd:
            assert order.index((F, *unit)) < order.index((B, *unit))


def test_1f1b_order_is_warm_up_then_one_forward_one_backward_then_cool_down():
    # Narayanan et al. (SC21) fig. 4: stage s of p runs p - s - 1 warm-up forwards, then alternates, then drains
    p, m, s = 4, 6, 1
    expect = [(F, 0, 0), (F, 1, 0),
              (F, 2, 0), (B, 0, 0), (F, 3, 0), (B, 1, 0), (F, 4, 0), (B, 2, 0), (F, 5, 0), (B, 3, 0),
              (B, 4, 0), (B, 5, 0)]
    assert unit_order(p, m, 1, s) == expect


def test_interleaved_order_is_megatrons_chunk_schedule():
    # megatron/core/pipeline_parallel/schedules.py, p 2, v 2 chunks, m 4, stage 0: (p - s - 1) x 2 + (v - 1) x p = 4
    # warm-up forwards going through the chunks p micro-batches at a time, then F/B pairs, backwards from the
    # last chunk down
    expect = [(F, 0, 0), (F, 1, 0), (F, 0, 1), (F, 1, 1),
              (F, 2, 0), (B, 0, 1), (F, 3, 0), (B, 1, 1), (F, 2, 1), (B, 0, 0), (F, 3, 1), (B, 1, 0),
              (B, 2, 1), (B, 3, 1), (B, 2, 0), (B, 3, 0)]
    assert unit_order(2, 4, 2, 0) == expect


def test_1f1b_holds_at_most_p_minus_s_micro_batches_on_stage_s():
    p, m = 8, 64
    assert [max_in_flight(unit_order(p, m, 1, s)) for s in range(p)] == [p - s for s in range(p)]


@settings(max_examples=40, deadline=None)
@given(p=st.integers(1, 10), m=st.integers(1, 40), extra=st.integers(1, 40))
def test_more_micro_batches_never_increase_the_bubble_fraction(p, m, extra):
    assert simulate(plan(p, m + extra)).bubble_fraction(0) <= simulate(plan(p, m)).bubble_fraction(0) + 1e-12


@settings(max_examples=30, deadline=None)
@given(p=st.integers(1, 8), m=st.integers(1, 24), tf=st.floats(1e-3, 1.0), tb=st.floats(1e-3, 2.0))
def test_a_step_is_never_shorter_than_one_stages_work_nor_longer_than_all_stages_in_series(p, m, tf, tb):
    step = simulate(plan(p, m, 1, tf, tb)).step_ps / 1e12
    assert m * (tf + tb) * (1 - 1e-9) <= step <= p * m * (tf + tb) * (1 + 1e-9)


@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize("n, zero", [(2, 0), (4, 0), (16, 0), (8, 1), (8, 2), (4, 3)])
def test_data_parallel_reduction_puts_2_n_minus_1_over_n_of_the_gradients_on_the_wire(n, zero, overlap):
    grads, params, m = 3.0e9, 1.5e9, 4
    ch = Channel(5e-6, 25e9, "ib")
    r = simulate(plan(2, m, dp=n, dp_channel=ch, zero=zero, grad_bytes=[[grads], [grads]],
                      param_bytes=[[params], [params]], bucket_bytes=40e6, overlap_grad_reduce=overlap))
    share = (n - 1) / n
    # all-reduce of the accumulated gradients: 2(n-1)/n; ZeRO-1 (Rajbhandari et al. section 7): reduce-scatter
    # (n-1)/n of them, then all-gather (n-1)/n of the updated weights; ZeRO-2 holds only a gradient shard, so
    # each of the m micro-batches' gradients is reduce-scattered; ZeRO-3 also all-gathers the weights before
    # each of the 2m passes (forward and backward) instead of after the optimizer
    expect = {0: 2 * share * grads, 1: share * (grads + params), 2: share * (m * grads + params),
              3: share * (m * grads + 2 * m * params)}[zero]
    assert r.dp_wire_bytes == pytest.approx([expect, expect], rel=1e-9)


def test_overlapped_gradient_buckets_end_the_step_no_later_than_reducing_after_the_backward():
    ch = Channel(5e-6, 25e9, "ib")
    kw = dict(dp=8, dp_channel=ch, grad_bytes=[[2e9], [2e9]], param_bytes=[[2e9], [2e9]])
    over = simulate(plan(2, 4, overlap_grad_reduce=True, **kw)).step_ps
    after = simulate(plan(2, 4, overlap_grad_reduce=False, **kw)).step_ps
    assert over < after


def test_zero_2_without_overlap_waits_for_each_micro_batchs_reduce_scatter():
    # one stage, m micro-batches: each backward is followed by its gradients' reduce-scatter, alone on the
    # link, so the step is m (forward + backward + reduce-scatter time) + the final all-gather of the weights
    from hw_models.link import LinkConfig

    cfg = LinkConfig(name="ib", technology="infiniband", bw_bytes_per_s="25GB/s", efficiency=0.85, latency_s="5us")
    ch = Channel(cfg.latency_s, cfg.bw_bytes_per_s * cfg.efficiency, "ib")
    n, m, grads, tf, tb = 8, 4, 4e9, 0.01, 0.02
    r = simulate(plan(1, m, 1, tf, tb, dp=n, dp_channel=ch, zero=2, grad_bytes=[[grads]], param_bytes=[[grads / 2]],
                      bucket_bytes=grads, overlap_grad_reduce=False))
    rs = (n - 1) * cfg.latency_s + (n - 1) / n * grads / ch.rate_bytes_per_s
    ag = (n - 1) * cfg.latency_s + (n - 1) / n * grads / 2 / ch.rate_bytes_per_s
    assert r.step_ps / 1e12 == pytest.approx(m * (tf + tb + rs) + ag, rel=1e-9)


def test_pipeline_sends_share_the_gpus_link_with_the_gradient_reduction():
    ch = Channel(0.0, 1e9, "ib")
    alone = simulate(plan(2, 4, act_bytes=5e6, p2p=ch))
    shared = simulate(plan(2, 4, act_bytes=5e6, p2p=ch, dp=8, dp_channel=ch, grad_bytes=[[2e8], [2e8]],
                           param_bytes=[[0.0], [0.0]]))
    sends = [iv for iv in shared.intervals if iv.lane == "p2p"]
    solo = [iv for iv in alone.intervals if iv.lane == "p2p"]
    assert max(iv.end_ps - iv.start_ps for iv in sends) > max(iv.end_ps - iv.start_ps for iv in solo)
    assert sum(alone.p2p_bytes) == pytest.approx(2 * 4 * 5e6)  # one activation and one gradient per micro-batch


@pytest.mark.parametrize("n, size", [(2, 1e8), (8, 4e9), (16, 3e7)])
def test_one_all_reduce_alone_on_the_link_takes_the_links_alpha_beta_time(n, size):
    from hw_models.link import Link, LinkConfig

    cfg = LinkConfig(name="ib", technology="infiniband", bw_bytes_per_s="25GB/s", efficiency=0.85, latency_s="5us")
    ch = Channel(cfg.latency_s, cfg.bw_bytes_per_s * cfg.efficiency, "ib")
    # one stage, one micro-batch of zero compute, one bucket reduced after the backward
    r = simulate(plan(1, 1, 1, 0.0, 0.0, dp=n, dp_channel=ch, grad_bytes=[[size]], param_bytes=[[size]],
                      bucket_bytes=size, overlap_grad_reduce=False))
    assert r.step_ps / 1e12 == pytest.approx(Link(cfg).allreduce_s(size, n), rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(p=st.integers(2, 8), k=st.integers(1, 4), v=st.integers(1, 4), offload=st.booleans())
def test_every_stage_finishes_its_step_whatever_the_pipeline_shape(p, k, v, offload):
    ch = Channel(1e-5, 1e10, "link")
    r = simulate(plan(p, p * k, v, act_bytes=1e6, p2p=ch, offload_bytes=2e6 if offload else 0.0,
                      pcie=Channel(1e-5, 2e10, "pcie")))
    assert min(r.stage_end_ps) > 0
    copies = [iv for iv in r.intervals if iv.lane == "pcie"]
    # every stashed unit (all but the last virtual stage's) goes to the host and comes back once
    assert len(copies) == (2 * (p * v - 1) * p * k if offload else 0)


def test_experts_spread_over_data_parallel_ranks_reduce_their_gradients_over_the_smaller_group():
    ch = Channel(5e-6, 25e9, "ib")
    dense, experts, n, ne = 1e9, 4e9, 16, 4
    r = simulate(plan(1, 2, dp=n, dp_channel=ch, grad_bytes=[[dense]], param_bytes=[[dense]],
                      expert_grad_bytes=[[experts]], expert_param_bytes=[[experts]], expert_dp=ne))
    assert r.dp_wire_bytes[0] == pytest.approx(2 * (n - 1) / n * dense + 2 * (ne - 1) / ne * experts, rel=1e-9)
