"""Offloading reproductions on the serving engine (H2O, ShadowKV, InstInfer): first-principles checks,
then the direction of each paper's result. The papers' figures are rows of simulator/reproduce.py and
simulator/reproduce_offload.py with paper-derived bands (tests/test_reproduce.py; docs/reproductions.md is
generated from them).
FlexGen, H2O on FlexGen and LLM in a flash run on the serving engine: tests/test_weight_offload.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.reproduce_measure import h2o_serving, serve

PAPERS = Path(__file__).resolve().parents[1] / "scenarios" / "papers"
SHADOWKV, INSTINFER = PAPERS / "shadowkv_llama31_8b_a100.yaml", PAPERS / "instinfer_opt13b_a6000.yaml"


# -- H2O on the serving engine (weights and KV on the GPU) -----------------------------------------
H2O_SERVING = {"kv_budget": 0.2, "output_tokens": 32}


def test_h2o_on_the_serving_engine_holds_a_larger_batch_and_serves_more():
    # the budget keeps 20 % of each sequence's KV resident, so the same KV blocks hold several times
    # the sequences (the prompt's KV is held in full while it is prefilled, so not the full 5x)
    h2o = h2o_serving(H2O_SERVING, False)
    full = h2o_serving(H2O_SERVING, True)
    assert h2o["batch_size_mean"] > 2 * full["batch_size_mean"]
    assert h2o["output_tokens_per_s"] > full["output_tokens_per_s"]


def test_h2o_at_an_equal_batch_cuts_latency_only_by_the_kv_share_of_each_steps_bytes():
    # Same batch: each decode step reads all weights plus the resident KV, so the latency gain is at
    # most (weights + full KV) / (weights + budget x KV) of the decode steps, and above 1
    from simulator.config.loader import load_scenario
    from simulator.runner import memory_plan

    h2o, full = h2o_serving(H2O_SERVING, False, 8), h2o_serving(H2O_SERVING, True, 8)
    gain = full["e2e_s"]["mean"] / h2o["e2e_s"]["mean"]
    plan = memory_plan(load_scenario(PAPERS / "h2o_opt6.7b_t4_serving.yaml"))
    kv = 8 * (512 + 32) * plan.kv_bytes_per_token
    assert 1.0 < gain <= (plan.weight_bytes + kv) / (plan.weight_bytes + 0.2 * kv) * 1.01


def test_h2o_latency_gain_on_the_serving_engine_grows_with_the_generated_length():
    short = {**H2O_SERVING, "output_tokens": 32}
    long = {**H2O_SERVING, "output_tokens": 512}
    gains = [h2o_serving(p, True, 4)["e2e_s"]["mean"] / h2o_serving(p, False, 4)["e2e_s"]["mean"]
             for p in (short, long)]
    assert gains[1] > gains[0] > 1.0


# -- ShadowKV on the serving engine (policies.kv_cache shadowkv) ---------------------------------------
SHADOW_P = {"sparse_budget": 0.0156, "rank": 160, "outlier_fraction": 0.002}


def shadow_sim(*sets: str):
    from simulator.config.loader import load_scenario
    from simulator.runner import Simulation

    return Simulation(load_scenario(SHADOWKV, list(sets)))


def test_shadowkv_gpu_share_of_a_token_is_rank_landmark_and_outliers_over_full_kv():
    from policies.caching.shadowkv import ShadowKvConfig, ShadowKvPolicy

    pol = ShadowKvPolicy(ShadowKvConfig(kv_width=1024))
    assert pol.share == pytest.approx((160 + 1024 / 8 + 2 * 1024 * 0.002) / 2048, rel=1e-12)
    assert pol.resident(122880) == math.ceil(pol.share * 122880) + 80  # + the shared factor B
    assert pol.resident(10) == 10  # short sequences are held in full


def test_shadowkv_and_full_kv_batches_are_free_memory_over_each_ones_bytes_per_sequence():
    from simulator.reproduce_offload import FULL_KV, admitted

    gib, per_token = 2**30, 32 * 2 * 1024 * 2  # Llama-3.1-8B: 128 KiB of K and V per token
    full = shadow_sim(*FULL_KV)
    free = 80 * gib - full.scenario.model.config.weight_bytes() - 1 * gib
    assert admitted(SHADOWKV.name, FULL_KV) == int(free // (per_token * 16)) // (122880 // 16)
    from policies.caching.shadowkv import ShadowKvConfig, ShadowKvPolicy

    blocks = int((free - 15 * gib) // (per_token * 16))  # one full KV kept as prefill workspace
    res = ShadowKvPolicy(ShadowKvConfig(kv_width=1024)).resident(122880)
    assert admitted(SHADOWKV.name, ()) == blocks // math.ceil(res / 16)


def test_a_shadowkv_decode_step_adds_layers_times_the_slower_of_value_fetch_and_key_rebuild():
    from workloads.llm import BatchShape

    sim = shadow_sim()
    fetch = sim.timer.kv_fetch
    rows, ctx = 22, 122880
    resident = rows * sim.scenario.kv_cache.cls(sim.scenario.kv_cache.config).resident(ctx)
    shape = BatchShape(decode_rows=rows, decode_kv=resident, emitting=rows)
    with_fetch, _ = sim.timer.step(shape)
    sim.timer.kv_fetch = None
    without, _ = sim.timer.step(shape)
    sel = math.ceil(0.0156 * rows * ctx)
    per_layer = 10e-6 + sel * 1024 * 2 / fetch.pcie_rate  # the fetch binds: 2 B per value vs 2 x 160 FLOP
    assert (with_fetch - without) / 1e12 == pytest.approx(32 * per_layer, rel=2e-3)
    sim.timer.kv_fetch = fetch
    ps, _ = sim.timer.decode_segment(rows, resident, 3)  # the fast path adds the same wait
    assert ps[0] == with_fetch


def test_shadowkv_throughput_rises_with_value_reuse_and_pcie_bandwidth_and_falls_with_the_budget():
    from simulator.reproduce_offload import SHADOWKV as FILE
    from simulator.reproduce_offload import decode_rate, shadow_sets

    base = decode_rate(FILE, shadow_sets(SHADOW_P))[2]
    assert decode_rate(FILE, (*shadow_sets(SHADOW_P), "policies.kv_cache.value_cache_hit=0.5"))[2] > base
    gen5 = "policies.kv_cache.host={preset: DGX-A100-host, pcie_generation: 5}"
    assert decode_rate(FILE, (*shadow_sets(SHADOW_P), gen5))[2] > base
    assert decode_rate(FILE, shadow_sets({**SHADOW_P, "sparse_budget": 0.05}))[2] < base


def test_shadowkv_beats_full_kv_by_less_than_its_batch_gain():
    from simulator.reproduce_offload import shadowkv_batch, shadowkv_throughput

    batch, tput = shadowkv_batch(SHADOW_P)[0], shadowkv_throughput(SHADOW_P)[0]
    assert 1.0 < tput < batch


def test_a_shadowkv_kv_width_that_is_not_the_models_is_one_line_and_exit_code_2(tmp_path):
    from typer.testing import CliRunner

    from simulator.cli import app

    r = CliRunner().invoke(app, ["run", str(SHADOWKV), "--out", str(tmp_path), "-q", "--set",
                                 "policies.kv_cache.kv_width=4096"])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "kv_width" in r.output
    assert len(r.output.strip().splitlines()) == 1


# -- InstInfer on the serving engine (weight_offload kv: disk, attention: storage) --------------------------
II_P = {"kv_read_fraction": 0.125, "fs_copy_threads": 4}


def ii_ratio(fraction: float, disk_io: str, *sets: str) -> tuple[float, float]:
    """(throughput ratio, decode-step ratio) InstInfer / FlexGen's best, with ``sets`` applied to both."""
    ii = serve(INSTINFER.name, (f"policies.weight_offload.storage_read_fraction={fraction}", *sets))
    fg = [serve(INSTINFER.name, (f"policies.weight_offload.attention={a}", f"policies.weight_offload.disk_io={disk_io}",
                                 *sets)) for a in ("gpu", "host")]
    best = max(fg, key=lambda r: r.summary["output_tokens_per_s"])
    return (ii.summary["output_tokens_per_s"] / best.summary["output_tokens_per_s"],
            best.summary["tpot_s"]["p50"] / ii.summary["tpot_s"]["p50"])


def test_instinfer_dense_vs_flexgen_at_the_drive_rate_is_bounded_by_internal_over_read_bandwidth():
    # full attention in storage vs FlexGen reading at the drive's sequential rate: both decode steps are
    # flash-read bound, so the decode gain is at most internal / the drive's read rate (9.6 / ~6.9 GB/s)
    from simulator.config.loader import load_scenario
    from simulator.serving.weight_offload import build_weight_offload

    sc = load_scenario(INSTINFER, ["policies.weight_offload.disk_io=direct"])
    wo = build_weight_offload(sc, sc.pools[0])
    bound = wo.storage_internal_bw / wo.kv_disk_read_rate
    tput, decode = ii_ratio(1.0, "direct")
    assert 1.0 < tput < decode <= bound * 1.01
    assert 1.2 <= bound <= 1.5


def test_instinfer_gain_grows_with_flash_channels_and_vanishes_without_more_internal_bandwidth():
    wide = ii_ratio(1.0, "direct", "policies.weight_offload.ssd.channels=16")[0]
    assert wide > 1.8  # 19.2 GB/s inside vs ~6.9 GB/s over the host link
    # 5 channels: 6 GB/s inside, and the drive's host reads are capped by the same 6 GB/s of NAND buses
    assert ii_ratio(1.0, "direct", "policies.weight_offload.ssd.channels=5")[0] < 1.05


def test_the_memmap_read_path_is_one_readahead_window_per_thread_plus_its_copy():
    from simulator.config.loader import load_scenario
    from simulator.serving.weight_offload import build_weight_offload, fs_read_rate

    sc = load_scenario(INSTINFER, ["policies.weight_offload.disk_io=filesystem"])
    wo = build_weight_offload(sc, sc.pools[0])
    from hw_models.ssd import Ssd
    from simulator.config.loader import resolve_component
    from simulator.core import registry as reg

    d = Ssd(resolve_component({"kind": "ssd", "preset": "DC-NVMe-PCIe4"}, reg.HARDWARE, "t").config)
    w, copy = 131072, 10e9  # A6000-workstation: 10 GB/s single-thread staging copy
    assert wo.kv_disk_read_rate == pytest.approx(4 * w / (d.response_s(w, 4) + w / copy), rel=1e-12)
    assert d.throughput_bytes_per_s(w, 1) < wo.kv_disk_read_rate < d.throughput_bytes_per_s(1 << 20, 32)
    assert fs_read_rate(d, 4 * w, 4, copy) > wo.kv_disk_read_rate  # bigger windows read faster


@settings(max_examples=40, deadline=None)
@given(window=st.integers(4096, 8 << 20), threads=st.integers(1, 64))
def test_the_memmap_path_never_beats_the_drive_link_or_the_copy_threads(window, threads):
    from hw_models.ssd import Ssd
    from simulator.config.loader import resolve_component
    from simulator.core import registry as reg
    from simulator.serving.weight_offload import fs_read_rate

    d = Ssd(resolve_component({"kind": "ssd", "preset": "DC-NVMe-PCIe4"}, reg.HARDWARE, "t").config)
    rate = fs_read_rate(d, window, threads, 10e9)
    assert rate <= d.config.host_rate * (1 + 1e-9)
    assert rate <= threads * 10e9


def test_sparf_and_flexgens_file_path_each_add_to_instinfers_gain():
    # dense + FlexGen at the drive rate < SparF alone < SparF + FlexGen's memmap path (the configured pair)
    dense_direct, sparse_direct = ii_ratio(1.0, "direct")[0], ii_ratio(0.125, "direct")[0]
    configured = ii_ratio(0.125, "filesystem")[0]
    assert 1.0 < dense_direct < sparse_direct < configured
    # decode is flash-read bound in both: the decode gain with SparF alone stays under its ceiling
    assert ii_ratio(0.125, "direct")[1] <= 9.6e9 / 0.125 / 6.5e9


def test_instinfer_peer_to_peer_saves_little_because_qkv_is_tiny_next_to_the_kv_read():
    p2p = serve(INSTINFER.name, ()).summary["output_tokens_per_s"]
    bounced = serve(INSTINFER.name, ("policies.weight_offload.p2p=false",)).summary["output_tokens_per_s"]
    assert 0.95 * p2p < bounced <= p2p


def test_attention_in_storage_needs_kv_on_disk_and_a_drive_with_compute(tmp_path):
    from typer.testing import CliRunner

    from simulator.cli import app

    for sets, word in ((["policies.weight_offload.kv=host"], "kv: disk"),
                       (["policies.weight_offload.ssd=DC-NVMe-PCIe4"], "compute_flops_per_s")):
        args = ["run", str(INSTINFER), "--out", str(tmp_path), "-q"]
        for x in sets:
            args += ["--set", x]
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2 and r.output.startswith("error: ") and word in r.output, r.output
