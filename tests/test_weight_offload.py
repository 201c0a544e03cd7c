"""Weight offload on the serving engine (``policies.weight_offload``, workloads/weight_offload.py): layer
weights streamed from host DRAM, SSD or flash beside compute. First principles (transfer-bound steps,
closed forms of the layer pipeline, memory identities), then properties, then the papers' directions
(FlexGen, H2O on FlexGen, LLM in a flash); the papers' figures are rows of simulator/reproduce_offload.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from simulator.cli import app
from simulator.config.loader import load_scenario
from simulator.core.errors import ConfigError
from simulator.runner import Simulation, memory_plan, run_scenario
from simulator.serving.weight_offload import build_weight_offload
from workloads.llm import BatchShape

PAPERS = Path(__file__).resolve().parents[1] / "scenarios" / "papers"
FLEXGEN = PAPERS / "flexgen_opt30b_t4.yaml"
FLASH = PAPERS / "llm_in_a_flash_opt6.7b.yaml"
ONE = ["workload.num_requests=1", "policies.scheduler.max_num_seqs=1", "workload.output_tokens.value=4",
       "policies.scheduler.max_num_batched_tokens=2048"]
GPU_KV = ["policies.weight_offload.kv=gpu", "policies.weight_offload.attention=gpu",
          "policies.weight_offload.num_gpu_batches=1", "engine.activation_reserve=1GiB"]


def offload(path: Path, sets=()):
    sc = load_scenario(path, list(sets))
    return sc, build_weight_offload(sc, sc.pools[0])


def tpot(path: Path, sets=()) -> float:
    return run_scenario(load_scenario(path, list(sets))).summary["tpot_s"]["p50"]


# -- first principles --------------------------------------------------------------------------------
def test_a_transfer_bound_decode_step_is_layers_times_the_weight_copy_plus_one_layer_of_compute():
    # batch 1, KV on the GPU, every weight in host DRAM: the step is PCIe-bound, so the pipeline gives
    # f + (L - 1) f + c = L x (overhead + layer bytes / copy rate) + one layer's compute
    sc, wo = offload(FLEXGEN, GPU_KV + ONE)
    per_layer = 10e-6 + wo.layer_bytes / wo.pcie_rate
    assert wo.pcie_rate == pytest.approx(16 * 8e9 * 128 / 130 / 8 * 0.8)  # PCIe Gen3 x16 at 80 %
    t = tpot(FLEXGEN, GPU_KV + ONE)
    assert wo.num_layers * per_layer < t < wo.num_layers * per_layer * 1.02


def test_with_every_weight_on_the_gpu_the_offloaded_step_equals_the_plain_engine():
    sets = ["policies.weight_offload.gpu_fraction=1.0", "policies.weight_offload.kv=gpu",
            "policies.weight_offload.attention=gpu", "policies.weight_offload.num_gpu_batches=1"]
    base = ["model.preset=OPT-6.7B", "workload.num_requests=8", "policies.scheduler.max_num_seqs=8",
            "engine.activation_reserve=1GiB"]
    with_plan = run_scenario(load_scenario(FLEXGEN, base + sets)).summary
    plain = run_scenario(load_scenario(FLEXGEN, base + ["policies.weight_offload=null"])).summary
    assert with_plan["tpot_s"]["p50"] == pytest.approx(plain["tpot_s"]["p50"], rel=1e-9)
    assert with_plan["ttft_s"]["p50"] == pytest.approx(plain["ttft_s"]["p50"], rel=1e-9)


def test_the_layer_pipeline_closed_form_with_and_without_overlap():
    _, wo = offload(FLEXGEN, GPU_KV)
    L = wo.num_layers
    f = wo.copy_overhead_s + wo.layer_bytes / wo.pcie_rate
    for compute in (0.1 * f * L, 3.0 * f * L):  # transfer-bound, then compute-bound
        c = compute / L
        assert wo.step_s(compute, 0.0, 0.0, 0, 0, 1) == pytest.approx(f + (L - 1) * max(c, f) + c, rel=1e-12)
    wo.overlap = False
    assert wo.step_s(5.0, 0.0, 0.0, 0, 0, 1) == pytest.approx(L * (5.0 / L + f), rel=1e-12)


def test_the_fast_decode_path_equals_one_iteration_at_a_time():
    sim = Simulation(load_scenario(FLEXGEN))
    timer = sim.timer
    rows, kv0, k = 48, 48 * 520, 5
    ps, _ = timer.decode_segment(rows, kv0, k)
    for i in range(k):
        one, _ = timer.step(BatchShape(decode_rows=rows, decode_kv=kv0 + i * rows, emitting=rows))
        assert ps[i] == one


def test_kv_in_host_dram_holds_what_the_host_weights_leave_and_the_gpu_holds_two_layer_buffers():
    sc, wo = offload(FLEXGEN)
    plan = memory_plan(sc)
    host_weights = wo.num_layers * wo.layer_bytes
    assert plan.kv_blocks == int((208e9 - host_weights) // (plan.kv_bytes_per_token * plan.block_size))
    assert plan.weight_bytes == pytest.approx(wo.other_bytes + 2 * wo.layer_bytes, rel=1e-12)
    # the placement plan: every layer in host DRAM, none on disk, the KV in DRAM
    assert (plan.weight_host_bytes, plan.weight_disk_bytes, plan.kv_tier) == (host_weights, 0.0, "host")
    model = sc.model.config
    assert wo.other_bytes + wo.num_layers * wo.layer_bytes == pytest.approx(model.weight_bytes(), rel=1e-12)


def test_a_zig_zag_block_amortises_one_weight_stream_over_its_gpu_batches():
    small = tpot(FLEXGEN, ["workload.num_requests=48", "policies.scheduler.max_num_seqs=48"])
    block = tpot(FLEXGEN, [])
    assert block < 2 * small  # four times the rows, one weight stream


def test_more_pcie_bandwidth_never_lowers_flexgen_throughput():
    rates = [run_scenario(load_scenario(FLEXGEN, [f"policies.weight_offload.host.pcie_generation={g}"]))
             .summary["output_tokens_per_s"] for g in (3, 4, 5)]
    assert rates[0] <= rates[1] <= rates[2] and rates[2] > rates[0]


def test_weights_on_the_ssd_are_slower_than_in_dram_when_the_drive_is_slower_than_pcie():
    sets = GPU_KV + ONE
    dram = tpot(FLEXGEN, sets)
    ssd = tpot(FLEXGEN, sets + ["policies.weight_offload.disk_fraction=0.5"])
    assert ssd > dram


def test_a_layer_half_on_the_ssd_loads_in_the_drive_read_then_the_whole_layers_pcie_copy():
    # the drive's half is read into host DRAM (the SSD model at 1 MiB commands, QD 32), then the whole streamed
    # layer crosses PCIe: in series per layer; batch 1 is transfer-bound, so the token is L such loads + a layer
    sets = GPU_KV + ONE + ["policies.weight_offload.disk_fraction=0.5"]
    _, wo = offload(FLEXGEN, sets)
    drive = wo.disk_read_s(0.5 * wo.layer_bytes, 1 << 20)
    assert drive > 0.5 * wo.layer_bytes / 8e9  # no PCIe Gen4 drive reads faster than 8 GB/s
    per_layer = wo.copy_overhead_s + wo.layer_bytes / wo.pcie_rate + drive
    t = tpot(FLEXGEN, sets)
    assert wo.num_layers * per_layer < t < wo.num_layers * per_layer * 1.02


@settings(max_examples=40, deadline=None)
@given(compute=st.floats(1e-4, 10.0), overhead=st.floats(0, 1e-3), rate=st.floats(1e9, 1e11),
       gpu_fraction=st.floats(0.0, 1.0))
def test_the_pass_is_never_faster_than_its_compute_or_its_transfers_and_overlap_never_hurts(
        compute, overhead, rate, gpu_fraction):
    _, wo = offload(FLEXGEN, GPU_KV)
    wo.copy_overhead_s, wo.pcie_rate, wo.gpu_fraction = overhead, rate, gpu_fraction
    streamed = wo.layer_bytes * (1 - gpu_fraction)
    f = (overhead + streamed / rate) if streamed > 0 else 0.0
    t = wo.step_s(compute, 0.0, 0.0, 0, 0, 1)
    assert t >= max(compute, wo.num_layers * f) * (1 - 1e-12)
    wo.overlap = False
    assert wo.step_s(compute, 0.0, 0.0, 0, 0, 1) >= t * (1 - 1e-12)


# -- LLM in a flash ----------------------------------------------------------------------------------
def test_flash_with_every_neuron_active_reads_all_non_resident_ffn_bytes_and_computes_densely():
    sets = ["policies.weight_offload.ffn_density=1", "policies.weight_offload.predictor_precision=1",
            "policies.weight_offload.predictor_recall=1", "policies.weight_offload.window_tokens=0",
            "policies.weight_offload.predictor_rank=0"]
    _, wo = offload(FLASH, sets)
    nbytes, disk, req = wo.layer_read(1)
    assert nbytes == disk == pytest.approx(wo.flash.ffn_layer_bytes * (1 - wo.static_share()), rel=1e-12)
    assert req == pytest.approx(wo.flash.ffn_layer_bytes * (1 - wo.static_share()), rel=1e-12)  # one run
    assert wo.dense_scale(1) == pytest.approx(1.0, rel=1e-12)


def test_flash_reads_the_predicted_windowed_density_of_the_non_resident_ffn():
    _, wo = offload(FLASH)
    f = wo.flash
    assert f.rho == pytest.approx(0.03 * 0.95 / 0.5)
    nbytes, _, _ = wo.layer_read(1)
    assert nbytes == pytest.approx(f.ffn_layer_bytes * f.rho * 0.28 * (1 - wo.static_share()), rel=1e-12)
    # the GPU memory holds half the model: attention, embeddings, the window cache, a static FFN share
    sc = load_scenario(FLASH)
    resident = memory_plan(sc).weight_bytes - f.ffn_layer_bytes  # less the read buffer
    assert resident == pytest.approx(0.5 * sc.model.config.weight_bytes(), rel=1e-9)


def test_bundling_doubles_the_read_size_and_windowing_reads_fewer_bytes_and_each_lowers_tpot():
    _, base = offload(FLASH)
    _, unbundled = offload(FLASH, ["policies.weight_offload.bundling=false"])
    _, no_window = offload(FLASH, ["policies.weight_offload.window_tokens=0"])
    assert base.layer_read(1)[2] == pytest.approx(2 * unbundled.layer_read(1)[2], rel=1e-9)  # up row + down column
    assert no_window.layer_read(1)[0] > base.layer_read(1)[0]
    t = tpot(FLASH)
    assert t < tpot(FLASH, ["policies.weight_offload.bundling=false"])
    assert t < tpot(FLASH, ["policies.weight_offload.window_tokens=0"])


def test_a_batch_flags_the_union_of_its_tokens_neurons():
    _, wo = offload(FLASH)
    one, eight = wo.layer_read(1)[0], wo.layer_read(8)[0]
    rho = wo.flash.rho
    assert eight / one == pytest.approx((1 - (1 - rho) ** 8) / rho, rel=1e-12)
    assert one < eight < 8 * one


def test_flash_beats_naive_loading_on_the_gpu_and_more_than_on_the_cpu():
    from simulator.reproduce_offload import flash_cpu, flash_gpu

    p = {"ffn_density": 0.03, "predictor_precision": 0.5}
    gpu, cpu = flash_gpu(p)[0], flash_cpu(p)[0]
    assert gpu > cpu > 1.0


# -- papers' directions ------------------------------------------------------------------------------
def test_h2o_on_flexgen_beats_flexgen_which_beats_weights_streamed_with_kv_on_the_gpu():
    from simulator.reproduce_offload import h2o_vs_deepspeed, h2o_vs_flexgen

    p = {"kv_budget": 0.2, "num_gpu_batches": 8}
    vs_flexgen, vs_ds = h2o_vs_flexgen(p)[0], h2o_vs_deepspeed(p)[0]
    assert vs_ds > vs_flexgen > 1.0


# -- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("sets, words", [
    (["policies.weight_offload.gpu_fraction=0.5", "policies.weight_offload.disk_fraction=0.6"], "exceeds 1"),
    (["policies.weight_offload.kv=gpu"], "kv: host"),
    (["policies.weight_offload.kind=nope"], "nope"),
    (["model.preset=Mixtral-8x7B"], "expert"),
    (["policies.weight_offload.host.dram_bytes=10GB"], "DRAM"),
    (["policies.weight_offload.disk_fraction=1.0", "policies.weight_offload.ssd={preset: DC-NVMe-PCIe4, "
      "capacity_bytes: 1GB}"], "drive of 0.9 GiB"),
])
def test_a_bad_weight_offload_plan_is_one_line_and_exit_code_2(sets, words, tmp_path):
    args = ["run", str(FLEXGEN), "--out", str(tmp_path), "-q"]
    for s in sets:
        args += ["--set", s]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: ") and words in r.output and len(r.output.strip().splitlines()) == 1


def test_a_resident_share_the_gpu_cannot_hold_is_a_config_error():
    with pytest.raises(ConfigError, match="gpu_fraction"):
        memory_plan(load_scenario(FLEXGEN, ["policies.weight_offload.gpu_fraction=0.5"]))


def test_kv_on_disk_holds_the_drives_capacity():
    sc = load_scenario(PAPERS / "instinfer_opt13b_a6000.yaml")
    plan = memory_plan(sc)
    assert plan.kv_blocks == int(3.84e12 // (plan.kv_bytes_per_token * plan.block_size))
    assert plan.weight_bytes == pytest.approx(sc.model.config.weight_bytes(), rel=1e-12)  # all on the GPU
    assert (plan.weight_host_bytes, plan.weight_disk_bytes, plan.kv_tier) == (0.0, 0.0, "disk")


def test_check_says_where_the_weights_and_the_kv_live():
    r = CliRunner().invoke(app, ["check", str(FLEXGEN)])
    assert r.exit_code == 0, r.output
    assert "GiB in host DRAM, 0.0 GiB on disk, streamed" in r.output and "KV 138.6 GiB in host DRAM" in r.output
