"""Energy model: conservation, the power cap, dtype refusal, bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hw_models.energy import EnergyModel, energy_model
from simulator.config.loader import load_scenario, resolve_component
from simulator.core import registry as reg
from simulator.core.errors import ConfigError
from simulator.runner import run_scenario
from workloads.llm import BatchShape, attention_ops, dense_ops

ROOT = Path(__file__).resolve().parents[1]
CAP = ROOT / "scenarios/devices/h100_power_cap.yaml"


def h100(**over):
    return resolve_component({"kind": "gpu", "preset": "H100-SXM", **over}, reg.HARDWARE, "hardware.device").config


def test_energy_per_flop_at_the_dense_peak_is_the_board_power_above_idle():
    e = energy_model(h100())
    dev = h100()
    assert e.flop_j["bf16"] * dev.tensor_peak("bf16") == pytest.approx(dev.tdp_w - e.idle_w)
    assert e.flop_j["fp8"] == pytest.approx(e.flop_j["bf16"] / 2)  # twice the FLOPs at the same power


def test_step_energy_is_the_sum_of_its_ops():
    sim_model = load_scenario(CAP).model.config
    e = energy_model(h100())
    shape = BatchShape(prefill=((512, 0),), decode_rows=8, decode_kv=8 * 700, emitting=9)
    ops = dense_ops(520, 9, sim_model, 1) + attention_ops(shape, sim_model, 1)
    step = e.ops_energy(ops)
    assert sum(step.per_op_j) == pytest.approx(step.dynamic_j)
    flops = sum(op.flops() for op in ops)
    nbytes = sum(op.bytes_moved() for op in ops)
    assert step.dynamic_j == pytest.approx(flops * e.flop_j["bf16"] + nbytes * e.dram_path_j)


def test_run_energy_is_dynamic_over_segments_plus_idle_over_time():
    res = run_scenario(load_scenario(CAP, ["hardware.device.power_cap_w=null", "workload.num_requests=12"]))
    s = res.summary
    dyn = float(res.batches["energy_j"].sum())
    assert dyn > 0
    assert s["energy_dynamic_j"] == pytest.approx(dyn)
    assert s["energy_idle_j"] == pytest.approx(energy_model(h100()).idle_w * res.sim_time_s)
    assert s["energy_j"] == pytest.approx(s["energy_dynamic_j"] + s["energy_idle_j"])
    out = int(res.requests["generated_tokens"].sum())
    assert s["energy_per_output_token_j"] == pytest.approx(s["energy_j"] / out)


@settings(max_examples=200, deadline=None)
@given(t=st.floats(1e-6, 1.0), ec=st.floats(0.0, 500.0), em=st.floats(0.0, 100.0), cap=st.floats(80.0, 700.0))
@example(t=1e-06, ec=0.0, em=1e-05, cap=80.0)  # exactly at the cap: the two sides of the comparison round apart
def test_a_power_cap_is_never_exceeded_and_only_slows_steps(t, ec, em, cap):
    e = EnergyModel("dev", {"bf16": 1e-12}, {"dram": 1e-11}, idle_w=70.0, tdp_w=700.0, cap_w=cap)
    t2, dyn = e.throttle(t, ec, em)
    assert float(t2) >= t
    assert float(e.power_w(t2, dyn)) <= cap * (1 + 1e-9)
    if 70.0 + (ec + em) / t <= cap * (1 - 1e-9):  # below the cap nothing changes
        assert float(t2) == t and float(dyn) == pytest.approx(ec + em)
    elif 70.0 + (ec + em) / t <= cap * (1 + 1e-9):  # at the cap (to rounding): at most a rounding's stretch
        assert float(t2) == pytest.approx(t, rel=1e-9) and float(dyn) == pytest.approx(ec + em)
    else:  # throttling lowers compute energy (V^2) and keeps memory energy
        assert em <= float(dyn) <= ec + em


def test_a_capped_run_stays_under_its_cap_and_is_slower_than_uncapped():
    capped = run_scenario(load_scenario(CAP, ["workload.num_requests=12"])).summary
    free = run_scenario(load_scenario(CAP, ["hardware.device.power_cap_w=null", "workload.num_requests=12"])).summary
    assert capped["power_peak_w_per_device"] <= 350.0 * (1 + 1e-6)
    assert free["power_peak_w_per_device"] > 350.0
    assert capped["ttft_s"]["p50"] > free["ttft_s"]["p50"]
    assert capped["energy_dynamic_j"] < free["energy_dynamic_j"]  # lower voltage: less energy per FLOP


def test_a_device_without_a_dtype_refuses_it_by_name():
    e = energy_model(h100())
    with pytest.raises(ConfigError, match="H100.*no fp4"):
        e.flop_energy("fp4")


def test_a_power_cap_above_tdp_is_a_config_error_naming_the_field():
    with pytest.raises(ConfigError, match="power_cap_w"):
        h100(power_cap_w="900W")


@pytest.mark.parametrize("override, words", [
    ("hardware.device.power_cap_w=900W", "power_cap_w"),
    ("hardware.device.kind=tpu", "unknown hardware kind 'tpu'"),
])
def test_bad_device_input_is_one_line_and_exit_2(override, words):
    p = subprocess.run([sys.executable, "-m", "simulator.cli", "check", str(CAP), "--set", override],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], p.stderr
    assert "Traceback" not in p.stderr


def test_an_mcu_run_splits_its_energy_as_serving_runs_do():
    from simulator.mcu.run import run_mcu_scenario

    mcu = ROOT / "scenarios/papers/mcunetv2_patch.yaml"
    s = run_mcu_scenario(mcu, [], None, True)
    assert s["energy_j"] == pytest.approx(s["energy_dynamic_j"] + s["energy_idle_j"])
    s2 = run_mcu_scenario(mcu, ["mcu.energy.idle_current_a=0.01"], None, True)
    v = resolve_component({"kind": "mcu", "preset": "STM32H743"}, reg.HARDWARE, "mcu").config.energy.supply_v
    assert s2["energy_idle_j"] == pytest.approx(0.01 * v * s2["latency_ms"] / 1e3)
    assert s2["energy_j"] == pytest.approx(s["energy_j"])  # the split moves, the total does not


def test_a_decode_stretch_charges_each_iteration_the_energy_of_its_ops():
    import dataclasses

    from hw_models.timing.roofline import RooflineBackend, RooflineConfig
    from simulator.serving.step_timer import StepTimer
    from workloads.llm import decode_attention

    model = load_scenario(CAP).model.config
    timer = StepTimer(model, 1, RooflineBackend(RooflineConfig(), h100()))
    rows, kv0, k = 6, 6 * 900, 5
    timer.decode_segment(rows, kv0, k)
    got = timer.last_energy_j
    e = energy_model(h100())
    template = decode_attention(model, 1, rows, 0, None)
    for j in range(k):
        ops = dense_ops(rows, rows, model, 1) + [dataclasses.replace(template, kv_tokens=kv0 + rows * j)]
        assert got[j] == pytest.approx(e.ops_energy(ops).dynamic_j, rel=1e-12)


def test_under_a_cap_a_memory_bound_step_keeps_its_time_and_a_compute_bound_one_stretches():
    e = energy_model(h100(power_cap_w="350W"))  # both steps demand 390 W for 5 ms
    t_mem, dyn_mem = e.throttle(5e-3, 0.6, 1.0)  # HBM roofline time 6.5 ms > compute 0.95 ms
    t_cmp, dyn_cmp = e.throttle(5e-3, 1.5, 0.1)
    assert float(t_mem) == pytest.approx(5e-3) and float(dyn_mem) < 1.6  # lower clock, same time
    assert float(t_cmp) > 5e-3 * 1.04
    for t, d in ((t_mem, dyn_mem), (t_cmp, dyn_cmp)):
        assert float(e.power_w(t, d)) <= 350.0 * (1 + 1e-9)


@pytest.mark.parametrize("scenario, override, words", [
    ("scenarios/devices/cpu_calibrated_qwen3_0.6b.yaml", "hardware.device.simd_dtypes=[fp32]",
     "hardware.device: generic x86"),
    ("scenarios/devices/spec_draft_on_npu.yaml", "policies.speculation.device.preset=Snapdragon-8-Gen3",
     "policies.speculation.device: Qualcomm Snapdragon 8 Gen 3 has no bf16"),
])
def test_check_refuses_a_device_lacking_the_model_dtype_in_one_line(scenario, override, words):
    p = subprocess.run([sys.executable, "-m", "simulator.cli", "check", scenario, "--set", override],
                       capture_output=True, text=True, cwd=ROOT)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and words in lines[0] and "no bf16" in lines[0], p.stderr


def _count_draft_joules(monkeypatch) -> dict:
    import simulator.serving.replica as replica_mod
    from simulator.serving.speculation import speculate

    seen = {"j": 0.0, "steps": 0}

    def counted(rep, *args):  # the real function, its draft joules summed
        out = speculate(rep, *args)
        if out[1]:
            seen["j"] += rep.spec.step_draft_j
            seen["steps"] += 1
        return out

    monkeypatch.setattr(replica_mod, "speculate", counted)
    return seen


def test_a_draft_on_its_own_device_adds_its_passes_and_its_idle_power(monkeypatch):
    seen = _count_draft_joules(monkeypatch)
    res = run_scenario(load_scenario(ROOT / "scenarios/devices/spec_draft_on_npu.yaml", ["workload.num_requests=8"]))
    s = res.summary
    e = energy_model(resolve_component({"kind": "npu", "preset": "MI300X"}, reg.HARDWARE, "d").config)
    assert s["energy_idle_j"] == pytest.approx((70.0 + e.idle_w) * s["sim_time_s"], rel=1e-9)  # H100 + MI300X
    assert s["energy_dynamic_j"] == pytest.approx(float(res.batches["energy_j"].sum()))
    # each speculating step runs at least one draft pass over the draft's weights in the MI300X's HBM
    draft = resolve_component({"kind": "transformer", "preset": "Llama-3.2-1B"}, reg.MODELS, "m").config
    assert seen["steps"] > 0
    assert seen["j"] >= seen["steps"] * draft.weight_bytes() * e.dram_path_j
    assert seen["j"] < s["energy_dynamic_j"]


def test_run_energy_is_ops_plus_idle_plus_the_bytes_copied_off_the_device():
    """Conservation: total = segments' op joules + idle + transfers, the transfers the swap and
    hand-off bytes times the PCIe joules per byte (both ends of a network hand-off)."""
    pcie_j = energy_model(h100()).byte_j["pcie"]
    swap = run_scenario(load_scenario(ROOT / "scenarios/policy_preemption.yaml", ["workload.num_requests=60"]))
    s, kv = swap.summary, swap.summary["kv_cache"]
    tp = swap.replicas[0]["tp"]
    assert kv["bytes_to_host"] > 0 and kv["bytes_to_device"] > 0
    a100 = resolve_component({"kind": "gpu", "preset": "A100-80GB"}, reg.HARDWARE, "d").config  # the scenario's
    a100_pcie_j = energy_model(a100).byte_j["pcie"]
    assert s["energy_transfer_j"] == pytest.approx((kv["bytes_to_host"] + kv["bytes_to_device"]) * tp * a100_pcie_j)
    assert s["energy_j"] == pytest.approx(float(swap.batches["energy_j"].sum()) * tp + s["energy_idle_j"]
                                          + s["energy_transfer_j"])
    hetero = run_scenario(load_scenario(ROOT / "scenarios/devices/hetero_h100_prefill_mi300x_decode.yaml",
                                        ["workload.num_requests=10"])).summary
    assert hetero["energy_transfer_j"] == pytest.approx(hetero["kv_transfer"]["bytes"] * 2 * pcie_j)
    assert sum(hetero["energy_by_pool_j"].values()) == pytest.approx(hetero["energy_j"])
    assert hetero["energy_j"] == pytest.approx(hetero["energy_dynamic_j"] + hetero["energy_idle_j"]
                                               + hetero["energy_transfer_j"])


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.tuples(st.floats(1e-6, 0.1), st.floats(0.0, 50.0), st.floats(0.0, 20.0)), min_size=1,
                      max_size=6), cap=st.floats(100.0, 700.0))
def test_the_float_and_subset_paths_of_the_cap_give_the_array_path_bit_for_bit(steps, cap):
    e = energy_model(h100(power_cap_w=f"{cap}W"))
    t, ec, em = (np.array(c) for c in zip(*steps))
    t_all, d_all = e.throttle(t, ec, em)  # the steps below the cap untouched, the others solved alone
    for i, (ti, ci, mi) in enumerate(steps):
        t1, d1 = e.throttle(ti, ci, mi)
        t2, d2 = e.throttle_step(ti, ci, mi)
        assert float(t1) == t2 == t_all[i] and float(d1) == d2 == d_all[i]
        assert e.power_w(t2, d2) <= cap * (1 + 1e-9)


def test_an_mcu_idle_current_above_its_run_current_is_one_line_and_exit_2():
    p = subprocess.run([sys.executable, "-m", "simulator.cli", "check", "scenarios/papers/mcunetv2_patch.yaml",
                        "--set", "mcu.energy.idle_current_a=5"], capture_output=True, text=True, cwd=ROOT)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "idle_current_a 5 A is above run_current_a" in lines[0], p.stderr


def test_eagle_draft_heads_are_charged_as_timed_one_layer_and_the_lm_head_per_token(monkeypatch):
    seen = _count_draft_joules(monkeypatch)
    heads = ["workload.num_requests=20", "policies.speculation.kind=draft_heads",
             "policies.speculation.num_speculative_tokens=4", "policies.speculation.acceptance.alpha=0.6",
             "policies.speculation.length.kind=fixed", "policies.speculation.style=eagle"]
    s = run_scenario(load_scenario(ROOT / "scenarios/policy_speculation.yaml", heads)).summary
    assert seen["steps"] > 0 and 0 < seen["j"] < s["energy_dynamic_j"]
    # the heads' mean power lies under the device's dynamic budget, as the steps they are cut from
    e = energy_model(h100())
    assert seen["j"] / s["kv_cache"]["spec_draft_s"] < e.tdp_w - e.idle_w


@pytest.mark.parametrize("path", ["scenarios/papers/shadowkv_llama31_8b_a100.yaml",
                                  "scenarios/papers/expertflow_mixtral8x7b_a6000.yaml"])
def test_host_fetches_of_sparse_kv_and_missed_experts_are_charged_at_the_pcie_tier(path):
    from simulator.runner import Simulation

    timer = Simulation(load_scenario(ROOT / path)).pools[0].timer
    rows, kv = 4, 4 * 3000
    shape = BatchShape(decode_rows=rows, decode_kv=kv, emitting=rows)
    timer.step(shape)
    with_fetch = float(timer.last_energy_j)
    timer.decode_segment(rows, kv, 2)
    seg = np.asarray(timer.last_energy_j)
    kf, ef = timer.kv_fetch, timer.expert_fetch
    nbytes = 0.0
    if kf is not None:  # values of the selected tokens, every layer
        nbytes += kf.num_layers * np.ceil(kf.sparse_budget * kf.context_of(kv, rows)) * kf.kv_width \
            * kf.dtype_bytes * (1.0 - kf.value_cache_hit)
    if ef is not None:  # one copy of one GPU's share of each missed expert, every MoE layer
        nbytes += ef.moe_layers * ef.misses(rows) * ef.expert_bytes
    timer.kv_fetch = timer.expert_fetch = None
    timer.step(shape)
    assert nbytes > 0
    assert with_fetch - float(timer.last_energy_j) == pytest.approx(nbytes * timer.energy.byte_j["pcie"], rel=1e-9)
    assert seg[0] == pytest.approx(with_fetch, rel=1e-9)  # a decode stretch charges its first iteration alike


def test_the_ssd_tier_is_a_drive_power_over_its_read_rate():
    ssd_j = energy_model(h100()).byte_j["ssd"]  # J/byte
    assert 17.0 / 7e9 < ssd_j < 1.1 * (17.0 / 7e9 + energy_model(h100()).byte_j["pcie"])  # 17 W at 7 GB/s + PCIe


@pytest.mark.parametrize("path", ["scenarios/papers/flexgen_opt30b_t4.yaml",
                                  "scenarios/papers/llm_in_a_flash_opt6.7b.yaml"])
def test_a_weight_offload_stream_is_charged_its_layer_copies(path):
    from simulator.runner import Simulation

    timer = Simulation(load_scenario(ROOT / path)).pools[0].timer
    wo, e = timer.weight_offload, timer.energy
    shape = BatchShape(decode_rows=4, decode_kv=4 * 300, emitting=4)
    timer.step(shape)
    with_copies = float(timer.last_energy_j)
    timer.weight_offload = None
    timer.step(shape)
    extra = with_copies - float(timer.last_energy_j)
    if wo.flash is None:  # every layer's off-GPU weights cross PCIe each iteration (FlexGen: all of them)
        assert extra >= wo.num_layers * wo.layer_bytes * (1.0 - wo.gpu_fraction) * e.byte_j["pcie"] > 0
    else:  # flagged neurons read from flash: the drive and PCIe per byte
        nbytes, _ = wo.flash.read(4, wo.static_share())
        assert extra == pytest.approx(wo.num_layers * nbytes * (e.byte_j["pcie"] + e.byte_j["ssd"]), rel=1e-9)
