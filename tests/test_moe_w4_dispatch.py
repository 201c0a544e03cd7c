"""MoE parts added for the serving rows: the MXFP4 expert kernels' own constants (checked on the H200 aic
w4a16_mxfp4 tables), vLLM's all-gather / reduce-scatter dispatch under attention data parallelism, and the
routing draw that puts a batch's (token, expert) pairs on the experts its tokens actually touch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw_models import collectives as co
from simulator.config.loader import resolve_component
from simulator.core import registry as reg
from simulator.validation.kernels import gpu_config, make_backend
from workloads.llm import ALLTOALL, GROUPED, Op
from workloads.moe import RoutingConfig, busiest_rank, expert_loads

AIC = Path(__file__).resolve().parents[2] / "shared" / "validation" / "aic" / "h200_sxm"


def _tile(**over):
    return make_backend("tile", gpu_config("H200"), over)


# -- routing draw -------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(tokens=st.integers(1, 4096), experts_log=st.integers(3, 8), k=st.integers(1, 8),
       exponent=st.sampled_from([0.0, 0.8, 1.2]))
def test_random_draw_conserves_pairs_and_touches_the_expected_distinct_experts(tokens, experts_log, k, exponent):
    experts = 2 ** experts_log
    k = min(k, experts)
    routing = RoutingConfig(dist="zipf", exponent=exponent, draw="random")
    load, dropped = expert_loads(tokens, experts, k, routing)
    even, _ = expert_loads(tokens, experts, k, RoutingConfig(dist="zipf", exponent=exponent))
    assert int(load.sum()) == tokens * k and dropped == 0  # every pair routed
    assert int(load.max()) <= tokens  # a token's k experts are distinct
    assert (load > 0).sum() <= (even > 0).sum()  # collisions never touch more experts than dealing them
    assert (load > 0).sum() <= min(experts, tokens * k)


def test_random_draw_follows_the_occupancy_law_and_matches_expected_at_large_batches():
    r = RoutingConfig(draw="random")
    for tokens, experts, k in ((32, 128, 4), (16, 128, 8), (9, 256, 8)):
        touched = (expert_loads(tokens, experts, k, r)[0] > 0).sum()
        assert touched == round(experts * (1 - (1 - k / experts) ** tokens))
    assert busiest_rank(8192, 128, 8, 4, r) == busiest_rank(8192, 128, 8, 4)  # every expert touched: the same


# -- all-gather / reduce-scatter dispatch -------------------------------------------------------------

def _a2a(name: str, m: int, dp: int) -> Op:
    return Op(ALLTOALL, name, 1, m=m, n=dp, k=4096, bytes=m * 4096 * 2, workers=dp, dtype="bf16", dtype_bytes=2.0)


def _linked(**over):
    link = resolve_component({"kind": "link", "preset": "NVLink4"}, reg.HARDWARE, "link")
    comp = resolve_component({"kind": "tile", **over}, reg.TIMING, "timing")
    return comp.cls(comp.config, gpu_config("H200"), link.cls(link.config))


@pytest.mark.parametrize("m,dp", [(4, 2), (64, 4), (2048, 8)])
def test_allgather_dispatch_is_nccls_all_gather_and_the_combine_its_reduce_scatter(m, dp):
    be = _linked(moe_a2a="allgather_reducescatter")
    size = dp * m * 4096 * 2
    assert be.op_s(_a2a("moe_dispatch", m, dp)) == pytest.approx(co.allgather_s(size, dp, be._fabric, be._nccl))
    assert be.op_s(_a2a("moe_combine", m, dp)) == pytest.approx(co.reduce_scatter_s(size, dp, be._fabric,
                                                                                    be._nccl))
    # never faster than moving the other groups' bytes at the link's rate
    assert be.op_s(_a2a("moe_dispatch", m, dp)) >= (dp - 1) * m * 4096 * 2 / be.link.config.bw_bytes_per_s
    # the DeepEP default is unchanged
    deep = _linked()
    assert deep.op_s(_a2a("moe_dispatch", m, dp)) == pytest.approx(
        deep.link.alltoall_s(m * 4096 * 2, dp, deep.config.alltoall_efficiency["ll" if m <= 128 else "ht"],
                             deep.config.alltoall_latency_s["ll" if m <= 128 else "ht"]))


def test_vllm_profile_names_the_allgather_dispatch():
    from simulator.config.framework import resolve_profile

    assert resolve_profile("vllm", "0.12.0").timing["moe_a2a"] == "allgather_reducescatter"


# -- MXFP4 expert kernels -----------------------------------------------------------------------------

def test_mxfp4_experts_take_the_familys_mxfp4_constants_and_other_formats_do_not():
    be = _tile(moe_kernel="triton")
    fam = be.config.moe_kernels["triton"]
    op = Op(GROUPED, "moe_up", 1, m=64, n=5760, k=2880, groups=(1,) * 64, pairs=64, w_bytes=0.53125, deq_ops=1.0)
    mx = replace(op, w_dtype="mxfp4")
    slower = _tile(moe_kernel="triton", moe_kernels={**be.config.moe_kernels,
                                                     "triton": {**fam, "fixed_s_mxfp4": fam["fixed_s_mxfp4"] + 1e-3}})
    assert slower.op_s(mx) == pytest.approx(be.op_s(mx) + 1e-3)  # its own fixed cost
    assert slower.op_s(op) == be.op_s(op)  # int4 (no w_dtype): its Marlin constants (test_moe_marlin.py)


@pytest.mark.skipif(not AIC.is_dir(), reason="aic tables not present")
def test_mxfp4_moe_rows_of_vllm_oai_triton_and_trtllm_are_within_the_reported_band():
    """FIDELITY.md (kernel tables of the MoE parts): the fitted MXFP4 kernels, every 8th row."""
    pytest.importorskip("pyarrow")
    from simulator.validation.aic_moe_w4 import predict, read_rows

    rows = [r for r in read_rows(AIC)[::8] if r.dtype == "w4a16_mxfp4"]
    for kernel, band in (("vllm_gptossmxfp4moe_triton_oaitritonmxfp4expertsmonolithic", 22.0),
                         ("moe_torch_flow", 25.0)):
        mine = [r for r in rows if r.kernel == kernel]
        err = predict(mine) / np.array([r.measured_s for r in mine]) - 1
        assert len(mine) > 100 and 100 * float(np.median(np.abs(err))) <= band
