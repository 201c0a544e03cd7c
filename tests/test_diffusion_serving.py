"""Diffusion serving on the engine (``type: diffusion``): image requests from the workload sources, routed to
denoising replicas that batch across steps (stream) or by request. First principles: a pass of b images costs
the lowered pass at b (2b under guidance); with no queueing an image takes steps x the pass at its batch; one
replica at low load is an M/D/1 queue; images and passes are conserved. Then the direction of stream batching
against request-level batches, and bad input as one line, exit 2."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from simulator.cli import app
from simulator.serving.diffusion_replica import DenoiseTimer
from simulator.serving.diffusion_run import DiffusionSimulation, load_diffusion
from workloads.diffusion import DenoiserConfig, step_flops, step_ops

ROOT = Path(__file__).resolve().parents[1]
BASE = {"hardware": {"device": {"kind": "gpu", "preset": "H100-SXM"}, "timing": {"kind": "roofline"}},
        "model": {"preset": "DiT-XL/2"}, "resolution_px": 256, "steps": 10, "guidance": True,
        "scheduler": {"batching": "stream", "max_batch": 8},
        "workload": {"kind": "synthetic", "num_requests": 20, "arrival": {"process": "poisson", "rate": "5/s"}}}


def sim_of(**changes) -> DiffusionSimulation:
    raw = copy.deepcopy(BASE)
    for k, v in changes.items():
        if k in ("scheduler", "cluster", "slo") and isinstance(raw.get(k), dict):
            raw[k] = {**raw[k], **v}
        else:
            raw[k] = v
    spec, base = load_diffusion(raw)
    return DiffusionSimulation(spec, base)


def closed(clients: int, n: int) -> dict:
    return {"kind": "closed_loop", "clients": clients, "num_requests": n}


@pytest.mark.parametrize("preset, res", [("DiT-XL/2", 256), ("DiT-XL/2", 512), ("SD-1.5-UNet", 512)])
def test_a_pass_of_b_images_costs_the_lowered_pass_at_b_and_guidance_doubles_it(preset, res):
    sim = sim_of(model={"preset": preset}, resolution_px=res)
    cfg, backend = sim.spec.model, sim.backend
    plain = DenoiseTimer(cfg, res, False, backend)
    for b in (1, 3, 8):
        assert sim.timer.pass_s(b) == sum(backend.op_s(op) for op in step_ops(cfg, b, res, True))
        assert sim.timer.pass_s(b) == pytest.approx(plain.pass_s(2 * b), rel=1e-12)  # CFG: 2b rows per pass
        # the roofline bound: never faster than the pass's FLOPs at the tensor peak
        assert sim.timer.pass_s(b) >= step_flops(cfg, b, res) / backend.peak(cfg.dtype)


@pytest.mark.parametrize("batching", ["stream", "request"])
@pytest.mark.parametrize("b", [1, 4])
def test_with_no_queueing_an_image_takes_steps_times_the_pass_at_its_batch(batching, b):
    # b clients send at t = 0 and again the moment their image is done: every pass holds the same b images
    sim = sim_of(scheduler={"batching": batching, "max_batch": 8}, workload=closed(b, 3 * b))
    r = sim.run()
    want = 10 * sim.timer.pass_ps(b) / 1e12
    for req in sim.cluster.requests:
        assert (req.finish_ps - req.arrival_ps) / 1e12 == pytest.approx(want, abs=1e-12)
        assert req.first_scheduled_ps == req.arrival_ps  # no queueing
    assert r["mean_batch_images"] == b and r["queueing_delay_s"]["mean"] == 0.0
    # closed loop, no think time: throughput = clients / latency (Little's law, exact here)
    assert r["throughput_images_per_s"] == pytest.approx(b / want, rel=1e-9)


def test_one_replica_at_low_load_is_an_md1_queue():
    """Poisson arrivals, one image per batch, deterministic service S = steps x pass(1): the mean wait of an
    M/D/1 queue is rho S / (2 (1 - rho)) (Pollaczek-Khinchine)."""
    sim0 = sim_of(scheduler={"batching": "request", "max_batch": 1})
    S = 10 * sim0.timer.pass_ps(1) / 1e12
    rho = 0.3
    wl = {"kind": "synthetic", "num_requests": 20000, "arrival": {"process": "poisson", "rate": f"{rho / S}/s"}}
    sim = sim_of(scheduler={"batching": "request", "max_batch": 1}, workload=wl, seed=3)
    r = sim.run()
    wq = rho * S / (2 * (1 - rho))
    assert r["queueing_delay_s"]["mean"] == pytest.approx(wq, rel=0.08)
    assert r["latency_s"]["mean"] == pytest.approx(wq + S, rel=0.02)
    assert r["gpu_busy_fraction"] == pytest.approx(rho, rel=0.03)


def test_stream_batching_of_one_image_is_request_level_batching_of_one():
    wl = {"kind": "synthetic", "num_requests": 300, "arrival": {"process": "poisson", "rate": "20/s"}}
    a = sim_of(scheduler={"batching": "stream", "max_batch": 1}, workload=wl)
    b = sim_of(scheduler={"batching": "request", "max_batch": 1}, workload=wl)
    a.run(), b.run()
    assert [r.finish_ps for r in a.cluster.requests] == [r.finish_ps for r in b.cluster.requests]


@settings(max_examples=25, deadline=None)
@given(replicas=st.integers(1, 3), max_batch=st.integers(1, 6), steps=st.integers(1, 6), n=st.integers(1, 30),
       rate=st.sampled_from(["2/s", "20/s", "200/s"]), batching=st.sampled_from(["stream", "request"]),
       seed=st.integers(0, 5))
def test_images_and_passes_are_conserved(replicas, max_batch, steps, n, rate, batching, seed):
    wl = {"kind": "synthetic", "num_requests": n, "arrival": {"process": "poisson", "rate": rate}}
    sim = sim_of(cluster={"replicas": replicas, "router": {"kind": "least_outstanding"}}, steps=steps, seed=seed,
                 scheduler={"batching": batching, "max_batch": max_batch}, workload=wl)
    r = sim.run()
    assert r["images_completed"] == n and r["images_unfinished"] == 0
    assert all(req.num_generated == steps for req in sim.cluster.requests)
    assert sum(rep.images_passed for rep in sim.cluster.replicas) == n * steps  # each image in steps passes
    assert sum(len(rep.by_id) for rep in sim.cluster.replicas) == n  # each routed to one replica
    fastest = steps * min(sim.timer.pass_ps(b) for b in range(1, max_batch + 1))
    for req in sim.cluster.requests:
        assert req.arrival_ps <= req.first_scheduled_ps and req.finish_ps - req.first_scheduled_ps >= fastest
    assert 1 <= r["mean_batch_images"] <= max_batch and 0 < r["slo_attainment"] <= 1


def test_the_round_robin_router_alternates_images_over_replicas():
    sim = sim_of(cluster={"replicas": 2, "router": {"kind": "round_robin"}})
    sim.run()
    assert [req.replica for req in sim.cluster.requests] == [i % 2 for i in range(20)]


def test_stream_batching_lowers_mean_latency_at_the_same_throughput_where_a_pass_is_sublinear_in_batch():
    """DiT-XL/2 at 256 px on an H100: 16 images cost 5.3 x one pass. Requests that arrive while a batch runs
    join it at the next pass instead of waiting for the whole batch's steps: the same images are served
    (throughput equal) with less waiting."""
    path = ROOT / "scenarios/variants/diffusion_dit.yaml"
    out = {}
    for batching in ("stream", "request"):
        spec, base = load_diffusion(path, [f"scheduler.batching={batching}"])
        sim = DiffusionSimulation(spec, base)
        out[batching] = sim.run()
    assert sim.timer.pass_s(16) < 6 * sim.timer.pass_s(1)  # the regime: a pass far from compute-bound
    s, q = out["stream"], out["request"]
    assert s["throughput_images_per_s"] == pytest.approx(q["throughput_images_per_s"], rel=0.01)
    assert s["latency_s"]["mean"] < 0.85 * q["latency_s"]["mean"]
    assert s["latency_s"]["p90"] < q["latency_s"]["p90"] and s["mean_batch_images"] > q["mean_batch_images"]


def test_where_a_pass_costs_its_batch_linearly_stream_batching_gains_nothing():
    """SD-1.5's UNet at 512 px on an A100: 8 images cost 6.4 x one pass (compute-bound). A joining image
    slows every image in the pass about as much as it would have waited, so stream batching shares the GPU
    like processor sharing, whose mean latency for fixed-size jobs is no better than serving them in
    batches first-come first-served (M/D/1: S / (1 - rho) against S + rho S / (2 (1 - rho)))."""
    lat = {}
    for batching in ("stream", "request"):
        sim = sim_of(hardware={"device": {"kind": "gpu", "preset": "A100-80GB"}, "timing": {"kind": "tile"}},
                     model={"preset": "SD-1.5-UNet"}, resolution_px=512, steps=25,
                     scheduler={"batching": batching, "max_batch": 8},
                     workload={"kind": "synthetic", "num_requests": 600,
                               "arrival": {"process": "poisson", "rate": "2.7/s"}})
        lat[batching] = sim.run()["latency_s"]["mean"]
    assert sim.timer.pass_s(8) > 6 * sim.timer.pass_s(1)
    assert lat["stream"] >= lat["request"]


def test_slo_attainment_counts_images_within_the_latency_target():
    sim = sim_of(slo={"latency": "1s"})
    r = sim.run()
    lat = np.array([(q.finish_ps - q.arrival_ps) / 1e12 for q in sim.cluster.requests])
    assert r["slo_attainment"] == (lat <= 1.0).mean()


@pytest.mark.parametrize("name", ["diffusion_dit", "diffusion_unet"])
def test_the_shipped_scenarios_run_check_and_write_their_results(name, tmp_path):
    path = ROOT / f"scenarios/variants/{name}.yaml"
    r = CliRunner().invoke(app, ["check", str(path)])
    assert r.exit_code == 0 and "diffusion:" in r.output, r.output
    r = CliRunner().invoke(app, ["run", str(path), "-o", str(tmp_path), "--set", "workload.num_requests=40"])
    assert r.exit_code == 0, r.output
    import json

    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["images_completed"] == 40 and s["throughput_images_per_s"] > 0
    assert len((tmp_path / "requests.csv").read_text().splitlines()) == 41
    assert "hwsim diffusion:" in (tmp_path / "report.html").read_text()
    again = CliRunner().invoke(app, ["run", str(tmp_path / "scenario.resolved.yaml"), "-o", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output  # the resolved scenario runs to the same figures
    assert json.loads((tmp_path / "again" / "summary.json").read_text()) == s


@pytest.mark.parametrize("override, needle", [
    ("steps=0", "steps"),
    ("steps=-3", "steps"),
    ("resolution_px=500", "not a multiple of the VAE's 8"),
    ("resolution_px=520", "not a multiple of patch 2"),
    ("scheduler.max_batch=0", "max_batch"),
    ("scheduler.max_batch=100000", "lower scheduler.max_batch"),
    ("scheduler.batching=static", "batching"),
    ("cluster.router.kind=fastest", "router"),
    ("workload.num_requests=-1", "num_requests"),
])
@pytest.mark.parametrize("command", ["check", "run"])
def test_bad_input_is_one_line_exit_2(override, needle, command, tmp_path):
    args = [command, str(ROOT / "scenarios/variants/diffusion_dit.yaml"), "--set", override]
    r = CliRunner().invoke(app, args + (["-o", str(tmp_path)] if command == "run" else []))
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and needle in lines[0], r.output


def test_a_unet_latent_too_small_for_its_levels_is_one_line_exit_2():
    r = CliRunner().invoke(app, ["check", str(ROOT / "scenarios/variants/diffusion_unet.yaml"),
                                 "--set", "resolution_px=8"])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "cannot be halved 3 times" in lines[0], r.output


def test_the_memory_plan_holds_the_weights_and_a_pass_of_activations():
    sim = sim_of(model={"preset": "SD-1.5-UNet"}, resolution_px=512)
    m = sim.memory
    assert m["weight_bytes"] == pytest.approx(2 * 831.22432e6, rel=1e-6)  # lowered GEMM weights, fp16
    assert m["weight_bytes"] + m["activation_bytes"] <= m["usable_bytes"]
    assert DenoiserConfig(preset="SD-1.5-UNet").kind == "unet"


def test_hwsim_ops_lists_each_kernel_of_a_denoising_pass_and_its_flops_add_up():
    path = ROOT / "scenarios/variants/diffusion_dit.yaml"
    r = CliRunner().invoke(app, ["ops", str(path), "--images", "2"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    names = [ln.split()[0] for ln in lines[3:-2]]
    cfg = DenoiserConfig(preset="DiT-XL/2")
    assert names == [op.name for op in step_ops(cfg, 2, 256)]
    assert float(lines[-1].split()[-2]) == pytest.approx(step_flops(cfg, 2, 256) / 1e9, abs=0.01)
    bad = CliRunner().invoke(app, ["ops", str(path), "--images", "0"])
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1, bad.output


def test_a_trace_replays_its_arrival_times_as_images(tmp_path):
    """The engine's trace source: arrivals at 0, 1 and 1.001 s (token columns ignored); on one idle replica the
    first image starts at once, the third waits behind the second's pass under stream batching."""
    trace = tmp_path / "t.csv"
    trace.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,5,5\n1.0,5,5\n1.001,5,5\n")
    sim = sim_of(workload={"kind": "trace", "path": str(trace)})
    sim.run()
    arr = [r.arrival_ps for r in sim.cluster.requests]
    start = [r.first_scheduled_ps for r in sim.cluster.requests]
    assert arr == [0, 10**12, 10**12 + 10**9] and start[:2] == arr[:2]
    assert start[2] == 10**12 + sim.timer.pass_ps(1)  # joins the running batch at the next pass


def test_a_run_cut_by_max_time_counts_its_unfinished_images_as_slo_misses():
    wl = {"kind": "synthetic", "num_requests": 50, "arrival": {"process": "poisson", "rate": "50/s"}}
    sim = sim_of(workload=wl, run={"max_time": "0.5s"}, slo={"latency": "10s"})
    r = sim.run()
    assert r["images_unfinished"] > 0 and r["images_completed"] + r["images_unfinished"] == r["images_arrived"]
    assert r["slo_attainment"] == pytest.approx(r["images_completed"] / r["images_arrived"])


def test_dit_activations_are_the_largest_operand_set_of_the_pass():
    """DiT's widest op is the MLP's GELU: (2 b T) rows x (4h in + 4h out) at 2 bytes (guidance: 2b rows), above
    the up projection's h in + 4h out."""
    from workloads.diffusion import activation_bytes

    cfg = DenoiserConfig(preset="DiT-XL/2")
    for b in (1, 4, 16):
        assert activation_bytes(cfg, b, 256) == 2 * b * 256 * (4 * 1152 + 4 * 1152) * 2
        assert activation_bytes(cfg, b, 256, guidance=False) == activation_bytes(cfg, b, 256) / 2
