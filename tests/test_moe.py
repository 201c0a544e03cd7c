"""Mixture-of-experts serving: routing conservation, skew, expert parallelism, grouped-GEMM bounds,
and the errors a user gets for an impossible MoE configuration."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hw_models.gemm_grouped import plan_grouped
from hw_models.gemm_tiles import plan_gemm
from simulator.cli import app
from simulator.config.loader import resolve_component
from simulator.core import registry as reg
from workloads.llm import GROUPED, BatchShape, dense_ops, lower, moe_ops
from workloads.moe import RoutingConfig, busiest_rank, expert_loads, rank_loads

runner = CliRunner()


def model(preset: str, **over):
    block = {"kind": "transformer", "preset": preset, **over}
    return resolve_component(block, reg.MODELS, "model").config


@settings(max_examples=60, deadline=None)
@given(tokens=st.integers(1, 5000), experts_log=st.integers(1, 8), k=st.integers(1, 8), ep_log=st.integers(0, 4),
       dist=st.sampled_from(["uniform", "zipf", "power_law"]), a=st.floats(1.05, 3.0))
def test_routing_conserves_tokens_and_the_busiest_gpu_holds_at_least_the_mean(tokens, experts_log, k, ep_log,
                                                                              dist, a):
    experts = 2 ** experts_log
    k = min(k, experts)
    ep = 2 ** min(ep_log, experts_log)
    routing = RoutingConfig(dist=dist, exponent=a)
    loads, dropped = expert_loads(tokens, experts, k, routing)
    assert dropped == 0 and int(loads.sum()) == tokens * k  # dropless: every (token, expert) pair runs
    assert loads.max() <= tokens  # a token's k experts are distinct
    ranks = rank_loads(tokens, experts, k, ep, routing)
    assert sum(sum(r) for r in ranks) == tokens * k and all(len(r) == experts // ep for r in ranks)
    busiest = busiest_rank(tokens, experts, k, ep, routing)
    assert sum(busiest) == max(sum(r) for r in ranks) >= tokens * k / ep


def test_a_capacity_factor_drops_what_exceeds_each_experts_capacity():
    routing = RoutingConfig(dist="zipf", exponent=1.5, capacity_factor=1.25)
    loads, dropped = expert_loads(1000, 64, 2, routing)
    cap = int(np.ceil(1.25 * 2000 / 64))
    assert loads.max() == cap and dropped > 0 and int(loads.sum()) + dropped == 2000


def test_skew_zero_is_uniform_and_skew_never_makes_a_layer_faster():
    m0 = model("Qwen3-30B-A3B")
    flat = model("Qwen3-30B-A3B", routing={"dist": "zipf", "exponent": 0.0})
    hot = model("Qwen3-30B-A3B", routing={"dist": "zipf", "exponent": 1.2})
    assert moe_ops(512, m0, 4, 4) == moe_ops(512, flat, 4, 4)
    from hw_models.timing.roofline import RooflineBackend, RooflineConfig
    from simulator.validation.kernels import gpu_config

    b = RooflineBackend(RooflineConfig(), gpu_config("H200"))
    assert b.ops_s(moe_ops(512, hot, 4, 4)) > b.ops_s(moe_ops(512, m0, 4, 4))


def test_without_expert_parallelism_one_gpu_runs_every_routed_token_over_all_experts():
    m = model("Mixtral-8x7B")
    (up,) = [op for op in moe_ops(100, m, 2, 1) if op.name == "moe_up"]
    assert up.kind == GROUPED and sum(up.groups) == 200 and len(up.groups) == 8
    assert up.n == 2 * 14336 // 2  # gate + up of each expert, split over the 2 GPUs
    (up8,) = [op for op in moe_ops(100, m, 8, 8) if op.name == "moe_up"]
    assert len(up8.groups) == 1 and up8.n == 2 * 14336  # one whole expert per GPU


def test_moe_lowering_counts_dense_leading_layers_and_shared_experts():
    m = model("Qwen3-30B-A3B", first_dense_layers=2, num_shared_experts=1)
    ops = dense_ops(64, 64, m, 1)
    names = {op.name: op.count for op in ops}
    assert names["mlp_up"] == 2 and names["moe_up"] == m.num_layers - 2 and names["shared_up"] == m.num_layers - 2
    flops = sum(op.flops() for op in ops if op.name in ("moe_up", "moe_down", "shared_up", "shared_down",
                                                        "mlp_up", "mlp_down"))
    h, ei, L = m.hidden_size, m.expert_intermediate, m.num_layers
    expect = 2 * 64 * 3 * h * ((L - 2) * (8 * ei + ei) + 2 * m.intermediate_size)
    assert flops == pytest.approx(expect)  # 2 FLOPs per MAC over every active MLP weight, per token


@pytest.mark.parametrize("groups", [(1,), (3, 1, 1), (64,) * 16, (900, 20, 3), (4096, 4096)])
def test_a_grouped_gemm_is_never_faster_than_its_roofline_or_the_same_rows_as_one_gemm(groups):
    from hw_models.timing.tile import TileBackend, TileConfig
    from simulator.validation.kernels import gpu_config

    gpu = gpu_config("H200")
    p = TileBackend(TileConfig(), gpu).gemm_params("bf16")
    n, k = 3072, 4096
    t = plan_grouped(groups, n, k, 2.0, p).time_s
    m = sum(groups)
    roof = max(2.0 * m * n * k / gpu.tensor_peak("bf16"), 2.0 * (m * k + len(groups) * k * n + m * n) /
               gpu.memory_bw_bytes_per_s)
    assert t >= roof
    if len(groups) == 1:  # one group: a GEMM the library could also split along K or cluster
        assert t >= plan_gemm(m, n, k, 2.0, p).time_s * (1 - 1e-9)


def write(tmp_path, **over):
    sc = {"name": "moe", "hardware": {"device": {"kind": "gpu", "preset": "H200"}},
          "model": {"kind": "transformer", "preset": "Qwen3-30B-A3B"},
          "cluster": {"tensor_parallel": 2, "expert_parallel": 2},
          "workload": {"kind": "closed_loop", "clients": 4, "num_requests": 8,
                       "prompt_tokens": {"dist": "fixed", "value": 128},
                       "output_tokens": {"dist": "fixed", "value": 8}},
          "outputs": {"report": False, "chrome_trace": False, "events": False, "requests": False}}
    for key, val in over.items():
        node = sc
        parts = key.split(".")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = val
    path = tmp_path / "moe.yaml"
    path.write_text(yaml.safe_dump(sc))
    return path


def test_an_expert_parallel_moe_scenario_runs(tmp_path):
    res = runner.invoke(app, ["run", str(write(tmp_path)), "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("over,needle", [
    ({"cluster.expert_parallel": 3, "cluster.tensor_parallel": 6}, "expert_parallel"),
    ({"cluster.expert_parallel": 4}, "does not divide tensor_parallel=2"),
    ({"model.preset": "Llama-3.1-8B"}, "needs a mixture-of-experts model"),
    ({"model.experts_per_token": 200}, "exceeds num_experts"),
    ({"model.routing": {"dist": "histogram", "weights": [1.0, 2.0]}}, "routing.weights has 2 entries"),
])
def test_impossible_moe_configurations_are_one_line_errors(tmp_path, over, needle):
    res = runner.invoke(app, ["run", str(write(tmp_path, **over)), "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1


def test_an_iteration_of_a_moe_model_lowers_with_attention_and_routed_experts():
    m = model("gpt-oss-120b")
    ops = lower(BatchShape(prefill=((256, 0),), emitting=1), m, 1)
    up = next(op for op in ops if op.name == "moe_up")
    assert sum(up.groups) == 256 * 4 and len(up.groups) == 128


AIC = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "validation" / "aic" / "h200_sxm"


@pytest.fixture(scope="module")
def aic_moe_rows():
    """The H200 fused-MoE rows (read once per module)."""
    if not (AIC / "moe").is_dir():
        pytest.skip("../shared/validation/aic/h200_sxm/moe not present")
    pytest.importorskip("pyarrow")
    from simulator.validation.aic_moe import read_moe

    return read_moe(AIC)[0]


def test_the_row_passes_are_measured_on_no_row_the_fit_holds_out(aic_moe_rows):
    from hw_models.timing.tile import FIT_MOE
    from simulator.validation.aic_moe import NARROW_WIDTH, fit_sample, passes_rows

    held = {id(r) for rs in fit_sample(aic_moe_rows).values() for r in rs[1::2]}
    left_out = 0
    for family in FIT_MOE:
        used = passes_rows(aic_moe_rows, family)
        assert not any(id(r) in held for r in used), family
        bf16 = [r for r in aic_moe_rows if r.source.split(" ")[2] == family and r.op == "moe bf16"]
        if bf16:  # the held-out rows of the measured kind are left out, and only they
            top = max(r.x for r in bf16)
            kind = [r for r in bf16 if r.x == top and next(o for o in r.item if o.name == "moe_down").k <= NARROW_WIDTH]
            assert len(used) == sum(id(r) not in held for r in kind), family
            assert used or family == "flashinfer_cutlass"  # it has no narrow rows (takes TRT-LLM's passes)
            left_out += len(kind) - len(used)
    assert left_out > 0  # the measured kind and the held-out halves do meet: the exclusion is not vacuous


@pytest.fixture(scope="module")
def moe_errors(aic_moe_rows):
    """Signed percent errors of a 6000-row sample of the H200 fused-MoE rows, by class."""
    import random

    from simulator.validation.aic import predict_aic
    from simulator.validation.kernels import gpu_config

    rows = list(aic_moe_rows)
    random.Random(0).shuffle(rows)
    rows = rows[:6000]
    pred = np.asarray(predict_aic(rows, "tile", gpu_config("H200")).predicted)
    meas = np.array([r.measured_s for r in rows])
    err = 100 * (pred - meas) / meas
    return {cls: err[[r.op == cls for r in rows]] for cls in ("moe bf16", "moe fp8", "moe fp8_block")}


def test_the_h200_moe_kernel_tables_are_predicted_within_the_measured_bound(moe_errors):
    """FIDELITY.md figures (fused MoE op, every row): bf16 / fp8 / fp8_block median APE 14.4 / 16.0 / 14.9 %;
    on this sample 13.6 / 15.3 / 14.9 %, bias within 2 %. The bounds guard against regressions."""
    assert np.median(np.abs(moe_errors["moe fp8"])) < 17.0
    for err in moe_errors.values():
        assert abs(np.median(err)) < 10.0


def test_the_h200_bf16_and_block_fp8_moe_kernel_tables_meet_the_15_percent_target(moe_errors):
    # bf16: the Triton families at their frameworks' own tile configurations (hw_models.moe_configs)
    assert np.median(np.abs(moe_errors["moe bf16"])) <= 15.0
    assert np.median(np.abs(moe_errors["moe fp8_block"])) <= 15.0


def test_the_h200_grouped_expert_gemm_table_as_a_whole_meets_the_15_percent_target(moe_errors):
    """The issue's target is one figure for the grouped expert GEMM table: every fused-MoE row of every dtype
    together (FIDELITY.md: 14.93 % over 451,899 rows). Held to each dtype apart, per-tensor fp8 still misses (below)."""
    pooled = np.concatenate([np.abs(e) for e in moe_errors.values()])
    assert len(pooled) == 6000
    assert np.median(pooled) <= 15.0


@pytest.mark.xfail(strict=True, reason="target: fused MoE median APE <= 15 % per class; per-tensor fp8 reaches "
                                       "about 16 % (vLLM 0.24's FlashInfer rows 31 %, FIDELITY.md)")
def test_the_h200_per_tensor_fp8_moe_kernel_table_meets_the_15_percent_target(moe_errors):
    assert np.median(np.abs(moe_errors["moe fp8"])) <= 15.0


def test_attention_data_parallelism_splits_attention_and_dispatches_every_token_to_its_experts():
    m = model("Qwen3-30B-A3B")
    shape = BatchShape(prefill=((512, 0), (512, 0)), decode_rows=64, decode_kv=64 * 1000, emitting=66)
    tp_ops = lower(shape, m, 4, ep=4)
    dp_ops = lower(shape, m, 4, ep=4, dp=4)
    get = {op.name: op for op in dp_ops}
    # each of the 4 groups runs attention on a quarter of the sequences, with all the heads (tp 1)
    assert get["attn_decode"].seqs == 16 and get["attn_decode"].heads == m.num_heads
    assert get["qkv_proj"].m == (1024 + 64) // 4
    # every token reaches its experts: the GPU's grouped GEMM sees the whole iteration's routed tokens
    assert get["moe_up"].m == next(op for op in tp_ops if op.name == "moe_up").m
    from workloads.moe import dispatch_copies

    sent = (1024 + 64) // 4 * dispatch_copies(8, 4) * m.hidden_size * 2 * 3 / 4
    assert get["moe_dispatch"].bytes == int(sent) == get["moe_combine"].bytes
    assert "attn_allreduce" not in get  # one GPU per attention group


def test_attention_data_parallelism_multiplies_the_kv_blocks_and_replicates_the_dense_weights(tmp_path):
    from simulator.config.loader import load_scenario
    from simulator.runner import memory_plan

    tp = load_scenario(write(tmp_path, **{"cluster.tensor_parallel": 4, "cluster.expert_parallel": 4}))
    dp = load_scenario(write(tmp_path, **{"cluster.tensor_parallel": 4, "cluster.expert_parallel": 4,
                                          "cluster.attention_data_parallel": 4}))
    a, b = memory_plan(tp), memory_plan(dp)
    assert b.weight_bytes > a.weight_bytes  # attention and embeddings held whole by every group
    assert b.kv_bytes_per_token == 4 * a.kv_bytes_per_token  # all KV heads on each GPU of its group
    assert b.kv_blocks >= 4 * int((a.kv_bytes - 4 * (b.weight_bytes - a.weight_bytes)) // (4 * a.kv_bytes_per_token
                                                                                         * a.block_size))


@pytest.mark.parametrize("over,needle", [
    ({"cluster.attention_data_parallel": 3}, "does not divide tensor_parallel=2"),
    ({"model.preset": "Llama-3.1-8B", "cluster.expert_parallel": 1, "cluster.attention_data_parallel": 2},
     "needs a mixture-of-experts model"),
])
def test_impossible_attention_data_parallel_layouts_are_one_line_errors(tmp_path, over, needle):
    res = runner.invoke(app, ["run", str(write(tmp_path, **over)), "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output, res.output


def test_the_h200_moe_all_to_all_tables_are_predicted_within_twenty_percent():
    """FIDELITY.md: DeepEP dispatch / combine inside one node, median APE 14.8 % (target <= 20 %)."""
    if not (AIC / "comm").is_dir():
        pytest.skip("../shared/validation/aic/h200_sxm/comm not present")
    pytest.importorskip("pyarrow")
    from simulator.validation.aic_moe import read_a2a
    from simulator.validation.kernels import network_s

    rows, skipped = read_a2a(AIC)
    assert len(rows) == 888 and not skipped
    err = np.array([(network_s(r, "tile") - r.measured_s) / r.measured_s for r in rows])
    assert np.median(np.abs(err)) <= 0.20 and abs(np.median(err)) <= 0.10
