"""Training steps end to end (simulator/training, workloads/training.py) against first principles:
one GPU's step is the sum of its op times, backward GEMMs are 2x the forward FLOPs, ZeRO memory per
GPU is the ZeRO paper's formula, activation memory is Korthikanti et al.'s 34 s b h + 5 a s^2 b, and bad
input is one line with exit code 2."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from simulator.cli import app
from simulator.training.config import load_training
from simulator.training.memory import model_states
from simulator.training.step import build, run_training
from workloads import training as wt
from workloads.llm import GEMM_KINDS

ROOT = Path(__file__).resolve().parents[1]
GPT = {"kind": "transformer", "name": "gpt-small", "family": "gpt", "num_layers": 8, "hidden_size": 1024,
       "num_heads": 16, "num_kv_heads": 16, "head_dim": 64, "intermediate_size": 4096, "gated_mlp": False,
       "vocab_size": 32000, "max_position": 2048, "norm": "layernorm"}
BASE = {"type": "training", "name": "t", "hardware": {"device": {"kind": "gpu", "preset": "A100-80GB"},
                                                     "network": {"kind": "link", "preset": "IB-HDR"},
                                                     "timing": {"kind": "roofline"}},
        "model": GPT, "training": {"gpus": 1, "global_batch": 8, "micro_batch": 2, "seq_len": 1024}}


def scenario(**sections) -> dict:
    """BASE with each section's fields updated; a model naming a preset replaces the GPT block whole."""
    s = copy.deepcopy(BASE)
    for key, val in sections.items():
        if key == "model" and "preset" in val:
            s[key] = dict(val)
        else:
            s.setdefault(key, {}).update(val)
    return s


def test_one_gpu_step_time_is_the_sum_of_its_op_times():
    rt = load_training(scenario())
    plan, stages, backend = build(rt)
    res = run_training(rt)
    fwd, bwd = stages[0].fwd[0], stages[0].bwd[0]
    m = 8 // 2
    expect = m * (backend.ops_s(fwd) + backend.ops_s(bwd)) + plan.opt_s[0]
    assert res.summary["step_s"] == pytest.approx(expect, rel=1e-9)
    assert res.summary["bubble_fraction"] == pytest.approx(0.0, abs=1e-12)


def test_backward_gemm_flops_are_twice_the_forward_and_full_recompute_adds_one_forward():
    rt = load_training(scenario())
    _, stages, _ = build(rt)
    fwd = stages[0].fwd[0]
    gemm = [op for op in fwd if op.kind in GEMM_KINDS]
    assert wt.flops(wt.backward_ops(gemm)) == pytest.approx(2 * wt.flops(gemm))
    layer_fwd = [op for op in fwd if op.name not in wt.STAGE_OPS]
    extra = wt.flops(wt.backward_ops(fwd, "full")) - wt.flops(wt.backward_ops(fwd))
    assert extra == pytest.approx(wt.flops(layer_fwd))


def gpt_flops(batch: int, seq: int) -> tuple[float, float, float]:
    """(forward GEMM FLOPs, forward attention FLOPs, LM-head FLOPs) of ``batch`` sequences of the GPT above,
    counted by hand: per token and layer 2 x 12 h^2 (QKV, output, 4h MLP up and down), the LM head 2 V h;
    causal attention 2 x 2 h FLOPs per (query, key) pair, s (s + 1) / 2 pairs per sequence and layer."""
    L, h, V = GPT["num_layers"], GPT["hidden_size"], GPT["vocab_size"]
    head = batch * seq * 2 * V * h
    return batch * seq * 24 * L * h * h + head, batch * L * 4 * h * seq * (seq + 1) / 2, head


@pytest.mark.parametrize("recompute", ["none", "selective", "full"])
@pytest.mark.parametrize("flash", [True, False])
def test_mfu_counts_3x_the_forward_flops_and_hfu_adds_every_recompute(recompute, flash):
    s = run_training(load_training(scenario(training={"recompute": recompute, "flash_attention": flash}))).summary
    gemm, attn, head = gpt_flops(8, 1024)
    # model FLOPs (PaLM's MFU, Megatron-LM's count without recompute): forward + backward at 2x the forward
    assert s["model_flops_per_step"] == pytest.approx(3 * (gemm + attn), rel=1e-6)
    # hardware FLOPs add what is run again: FlashAttention-2 recomputes the scores in its backward (0.5 x the
    # attention forward), selective recompute core attention, full recompute every layer's forward (not the head)
    extra = (0.5 * attn if flash else 0.0) + {"none": 0.0, "selective": attn, "full": gemm - head + attn}[recompute]
    assert s["hardware_flops_per_step"] == pytest.approx(3 * (gemm + attn) + extra, rel=1e-6)
    peak = 312e12  # A100 dense bf16 tensor peak (datasheet)
    assert s["mfu"] == pytest.approx(3 * (gemm + attn) / (s["step_s"] * peak), rel=1e-6)


@pytest.mark.parametrize("layout", [{"tp": 2}, {"pp": 2}, {"dp": 2}, {"cp": 2}, {"tp": 2, "sequence_parallel": True},
                                    {"pp": 2, "schedule": "interleaved", "virtual_stages": 2}])
def test_a_steps_model_flops_do_not_depend_on_how_the_gpus_split_the_model(layout):
    # the same global batch of the same model is the same work however it is split: summed over the GPUs, the
    # per-GPU ops of every layout add up to the hand count (CP's per-GPU pair counts are rounded up)
    gpus = 2
    s = run_training(load_training(scenario(training={"gpus": gpus}, layout=layout))).summary
    gemm, attn, _ = gpt_flops(8, 1024)
    assert s["model_flops_per_step"] == pytest.approx(3 * (gemm + attn), rel=1e-4)


@pytest.mark.parametrize("zero", [0, 1, 2, 3])
def test_zero_memory_per_gpu_is_the_zero_papers_formula(zero):
    dp = 8
    rt = load_training(scenario(training={"gpus": dp, "global_batch": 32}, layout={"dp": dp, "zero": zero}))
    _, stages, _ = build(rt)
    psi = stages[0].params
    assert psi == pytest.approx(rt.model.num_params(), rel=1e-12)  # data parallel only: every GPU holds the model
    mem = stages[0].memory
    # Rajbhandari et al. (SC20) section 3.1: 2 + 2 + 12 bytes per parameter, sharded by stage over N_d
    expect = {0: (2 + 2 + 12) * psi, 1: (2 + 2) * psi + 12 * psi / dp, 2: 2 * psi + (2 + 12) * psi / dp,
              3: (2 + 2 + 12) * psi / dp}[zero]
    assert mem.weights + mem.grads + mem.optimizer == pytest.approx(expect, rel=1e-12)
    assert sum(model_states(psi, zero, dp)) == pytest.approx(expect, rel=1e-12)


def test_one_gpus_parameters_over_the_layout_add_up_to_the_model():
    model = load_training(scenario()).model
    pp, tp = 4, 2
    shapes = [wt.StageShape(2, s == 0, s == pp - 1) for s in range(pp)]
    total = sum(wt.stage_params(model, sh, tp) for sh in shapes) * tp
    norms = (2 * model.num_layers + 1) * model.hidden_size  # every tensor-parallel GPU holds the norm weights
    assert total - (tp - 1) * norms == pytest.approx(model.num_params(), rel=1e-12)


@pytest.mark.parametrize("tp, sp", [(1, False), (4, False), (4, True)])
def test_activation_memory_is_korthikantis_count_for_a_gpt_layer(tp, sp):
    model = load_training(scenario()).model
    s, b, h, a = 1024, 2, model.hidden_size, model.num_heads
    ts = wt.TrainShape(b, s, tp, sequence_parallel=sp)
    got = wt.activation_bytes_per_layer(model, ts, flash=False)
    # Korthikanti et al. (2022), eq. 1 / 2 / 4: s b h (10 + 24/t + 5 a s / (h t)), (34 + 5 a s / h) / t with SP
    outside = 10 / tp if sp else 10
    assert got == pytest.approx(s * b * h * (outside + 24 / tp + 5 * a * s / (h * tp)))
    sel = wt.activation_bytes_per_layer(model, wt.TrainShape(b, s, tp, sequence_parallel=sp, recompute="selective"),
                                        flash=False)
    assert sel == pytest.approx(s * b * h * (outside + 24 / tp))


def test_activation_offload_keeps_two_units_on_the_gpu_and_costs_pcie_time():
    sc = scenario(training={"gpus": 4, "global_batch": 32}, layout={"pp": 4})
    plain = run_training(load_training(sc)).summary
    off = run_training(load_training(scenario(training={"gpus": 4, "global_batch": 32, "offload_activations": True},
                                              layout={"pp": 4}))).summary
    # stage 0 of 4 holds 4 micro-batches' activations in 1F1B (its warm-up + 1); offloaded, only 2 stay
    assert plain["activations_in_flight"][0] == 4
    assert off["memory_per_stage"][0]["activations_bytes"] == pytest.approx(
        plain["memory_per_stage"][0]["activations_bytes"] * 2 / 4, rel=1e-12)
    assert off["step_s"] >= plain["step_s"]


def test_a_stalling_checkpoint_costs_more_than_an_asynchronous_one():
    stall = run_training(load_training(scenario(checkpoint={"every_steps": 10, "mode": "stall"}))).summary
    asyn = run_training(load_training(scenario(checkpoint={"every_steps": 10, "mode": "async"}))).summary
    assert stall["checkpoint_stall_s"] > asyn["checkpoint_stall_s"] > 0
    assert stall["checkpoint_bytes_per_gpu"] == pytest.approx(14 * stall["params_total"], rel=1e-3)


@pytest.mark.parametrize("zero", [0, 1, 2, 3])
def test_a_node_holding_whole_replicas_writes_one_copy_of_the_model_state(zero):
    # 8 data-parallel replicas on one node: whatever ZeRO shards, the checkpoint holds each parameter's 16-bit
    # weight and 12 bytes of Adam state once (no replica writes a duplicate)
    s = run_training(load_training(scenario(training={"gpus": 8, "global_batch": 16}, layout={"dp": 8, "zero": zero},
                                            checkpoint={"every_steps": 10}))).summary
    assert s["checkpoint_bytes_per_node"] == pytest.approx(14 * s["params_total"], rel=1e-3)
    per_param = {0: 2 + 12, 1: 2 + 12 / 8, 2: 2 + 12 / 8, 3: (2 + 12) / 8}[zero]  # what one GPU copies to host
    assert s["checkpoint_bytes_per_gpu"] == pytest.approx(per_param * s["params_total"], rel=1e-3)


def run_cli(*args: str):
    return CliRunner().invoke(app, list(args))


def one_line_error(result, *parts: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for part in parts:
        assert part in lines[0], lines[0]


@pytest.mark.parametrize("change, parts", [
    ({"layout": {"dp": 3}, "training": {"gpus": 4}}, ("layout", "3 x 1 x 1 x 1 = 3", "4 GPUs")),
    ({"layout": {"dp": 2}, "training": {"gpus": 2, "global_batch": 7, "micro_batch": 1}},
     ("training.global_batch", "7", "micro_batch x dp")),
    ({"layout": {"pp": 3}, "training": {"gpus": 3}}, ("layout.pp", "8 layers", "3 chunks")),
    ({"training": {"micro_batch": 64, "global_batch": 64, "seq_len": 2048}, "model": {"num_layers": 64}},
     ("layout", "GiB per GPU", "more than the 80.0 GiB")),
    ({"layout": {"zero": 4}}, ("layout.zero",)),
    ({"layout": {"tp": 3}, "training": {"gpus": 3}}, ("layout.tp", "16 attention heads")),
    ({"layout": {"ep": 2}, "training": {"gpus": 1}}, ("layout.ep", "dense")),
    ({"training": {"seq_len": "2k"}}, ("training.seq_len",)),
    ({"training": {"seq_len": 4096}}, ("training.seq_len", "2048-token context")),
    ({"layout": {"tp": 8}, "training": {"gpus": 8}, "model": {"num_kv_heads": 4}}, ("layout.tp", "4 key-value heads")),
    # 1-byte buckets would be ~10^8 reductions per step (minutes and gigabytes), refused up front
    ({"layout": {"grad_bucket_bytes": "1B"}}, ("layout.grad_bucket_bytes", "more than 10,000 reductions")),
])
def test_bad_training_input_is_one_line_and_exit_2(tmp_path, change, parts):
    sc = scenario()
    for key, val in change.items():
        sc.setdefault(key, {}).update(val)
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(sc))
    for cmd in ("train", "check"):
        one_line_error(run_cli(cmd, str(path), *(["-o", str(tmp_path / "out")] if cmd == "train" else [])), *parts)


def test_hwsim_train_writes_summary_trace_and_report_with_bubbles_visible(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(scenario(training={"gpus": 8, "global_batch": 16}, layout={"pp": 4, "dp": 2})))
    out = tmp_path / "out"
    result = run_cli("train", str(path), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "MFU" in result.output and "pipeline bubble" in result.output
    summary = json.loads((out / "summary.json").read_text())
    trace = json.loads((out / "trace.json").read_text())
    ranks = {e["pid"] for e in trace["traceEvents"] if e["ph"] == "X"}
    assert ranks == {0, 1, 2, 3}
    fb = sorted((e["ts"], e["ts"] + e["dur"]) for e in trace["traceEvents"]
                if e["ph"] == "X" and e["pid"] == 3 and e["cat"] in ("forward", "backward"))
    assert fb[0][0] > 0  # the last rank waits for the first activation: a bubble at the start
    assert summary["bubble_fraction"] > 0
    assert "<svg" in (out / "report.html").read_text()
    # hwsim run takes the same file and hwsim check accepts it
    assert run_cli("run", str(path), "-o", str(tmp_path / "out2"), "-q").exit_code == 0
    assert run_cli("check", str(path)).output.startswith(f"ok: {path} — training")


@pytest.mark.parametrize("name", ["training_llama3_8b.yaml", "training_gpt3_175b_1024.yaml"])
def test_shipped_training_scenarios_run(name):
    s = run_training(load_training(ROOT / "scenarios" / name)).summary
    assert 0 < s["mfu"] < s["hfu"] <= 1
    assert s["memory_per_gpu"]["total_bytes"] < s["memory_capacity_bytes"]


def test_the_1024_gpu_step_simulates_one_replica_of_8_stage_processes():
    r = run_training(load_training(ROOT / "scenarios" / "training_gpt3_175b_1024.yaml"))
    # global batch 1024 over dp 16 at micro-batch 1: 64 micro-batches through 8 stages, each stage running every
    # forward and backward once and one optimizer step; nothing else is simulated
    assert r.summary["micro_batches"] == 1024 // 16
    compute = [iv for iv in r.pipeline.intervals if iv.lane == "compute"]
    assert {iv.rank for iv in compute} == set(range(8))
    for rank in range(8):
        names = [iv.name for iv in compute if iv.rank == rank]
        assert sorted(names) == sorted([f"F{i}" for i in range(64)] + [f"B{i}" for i in range(64)] + ["optimizer"])


def test_context_parallel_halves_the_tokens_activations_and_attention_pairs_per_gpu():
    rt1 = load_training(scenario(training={"gpus": 2, "global_batch": 8}, layout={"dp": 2}))
    rt2 = load_training(scenario(training={"gpus": 2, "global_batch": 8}, layout={"cp": 2}))
    (_, s1, _), (_, s2, _) = build(rt1), build(rt2)
    attn = [next(op for op in s[0].fwd[0] if op.name == "attn_prefill") for s in (s1, s2)]
    assert attn[1].q_tokens * 2 == attn[0].q_tokens and attn[1].pairs * 2 == pytest.approx(attn[0].pairs, abs=2)
    assert attn[1].kv_tokens == attn[0].kv_tokens  # every GPU still sees all of the sequence's keys
    a1, a2 = (wt.activation_bytes_per_layer(rt.model, wt.TrainShape(2, 1024, cp=c)) for rt, c in ((rt1, 1), (rt2, 2)))
    assert a2 * 2 == pytest.approx(a1)


def test_expert_parallelism_splits_the_experts_parameters_and_grouped_gemms():
    moe = {"kind": "transformer", "preset": "Mixtral-8x7B", "num_layers": 4}
    one = load_training(scenario(model=moe, training={"gpus": 2}, layout={"tp": 2}))
    two = load_training(scenario(model=moe, training={"gpus": 2}, layout={"tp": 2, "ep": 2}))
    (_, s1, _), (_, s2, _) = build(one), build(two)
    # the same expert parameters per GPU (half of each expert, or all of half the experts)
    assert s1[0].params == pytest.approx(s2[0].params, rel=1e-9)
    g1 = next(op for op in s1[0].fwd[0] if op.name == "moe_up")
    g2 = next(op for op in s2[0].fwd[0] if op.name == "moe_up")
    assert len(g2.groups) * 2 == len(g1.groups) and g2.n == 2 * g1.n


def test_fp8_runs_the_gemms_on_the_fp8_path_and_keeps_a_one_byte_weight_copy():
    bf = build(load_training(scenario(hardware={"device": {"kind": "gpu", "preset": "H100-SXM"}})))[1]
    f8 = build(load_training(scenario(hardware={"device": {"kind": "gpu", "preset": "H100-SXM"}},
                                      training={"precision": "fp8"})))[1]
    gemms = [op for op in f8[0].fwd[0] if op.kind in GEMM_KINDS]
    assert {op.dtype for op in gemms if op.name != "lm_head"} == {"fp8"}
    assert f8[0].memory.weights == pytest.approx(bf[0].memory.weights * 1.5)


def test_fp8_on_a_gpu_without_an_fp8_path_is_one_line():
    with pytest.raises(Exception, match="no fp8 tensor path"):
        load_training(scenario(training={"precision": "fp8"}))


def test_the_resolved_scenario_loads_again_to_the_same_scenario(tmp_path):
    from simulator.training_cli import _resolved_yaml

    rt = load_training(ROOT / "scenarios" / "training_llama3_8b.yaml")
    path = tmp_path / "r.yaml"
    path.write_text(_resolved_yaml(rt))
    assert load_training(path).dump() == rt.dump()


@settings(max_examples=12, deadline=None)
@given(zero=st.integers(0, 2), micro=st.sampled_from([1, 2, 4]))
def test_a_higher_zero_stage_never_needs_more_memory_nor_puts_fewer_bytes_on_the_wire(zero, micro):
    def run(z: int):
        sc = scenario(training={"gpus": 8, "global_batch": 32, "micro_batch": micro}, layout={"dp": 4, "pp": 2,
                                                                                               "zero": z})
        return run_training(load_training(sc)).summary

    lo, hi = run(zero), run(zero + 1)
    assert hi["memory_per_gpu"]["total_bytes"] <= lo["memory_per_gpu"]["total_bytes"]
    assert hi["dp_wire_bytes_per_gpu"] >= lo["dp_wire_bytes_per_gpu"] * (1 - 1e-9)


def test_expert_parallelism_over_data_parallel_ranks_dispatches_by_all_to_all_and_holds_whole_experts():
    moe = {"kind": "transformer", "preset": "Mixtral-8x7B", "num_layers": 4}
    rt = load_training(scenario(model=moe, training={"gpus": 8, "global_batch": 8, "micro_batch": 1},
                                layout={"tp": 2, "dp": 4, "ep": 8}))
    _, stages, _ = build(rt)
    names = [op.name for op in stages[0].fwd[0]]
    assert "moe_dispatch" in names and "moe_combine" in names
    assert len(next(op for op in stages[0].fwd[0] if op.name == "moe_up").groups) <= 1  # 8 experts on 8 GPUs
    m = rt.model
    experts = m._mlp_params(m.expert_intermediate) * m.num_experts * m.num_layers
    dense = load_training(scenario(model=moe, training={"gpus": 2, "global_batch": 8, "micro_batch": 1},
                                   layout={"tp": 2}))
    # going from experts split over the 2 tensor-parallel GPUs to 8 expert-parallel GPUs frees 3/8 of the experts
    assert build(dense)[1][0].params - stages[0].params == pytest.approx(experts * (1 / 2 - 1 / 8), rel=1e-9)


@pytest.mark.parametrize("dp, grad_dtype", [(2, "bf16"), (4, "bf16"), (8, "fp32")])
def test_a_steps_data_parallel_all_reduce_moves_2_n_minus_1_over_n_of_the_gradient_bytes(dp, grad_dtype):
    rt = load_training(scenario(training={"gpus": dp, "global_batch": 4 * dp, "grad_dtype": grad_dtype},
                                layout={"dp": dp}))
    s = run_training(rt).summary
    grads = s["params_total"] * (2 if grad_dtype == "bf16" else 4)
    assert s["dp_wire_bytes_per_gpu"] == pytest.approx(2 * (dp - 1) / dp * grads, rel=1e-9)
