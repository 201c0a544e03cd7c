"""Concurrent kernels on SM partitions (hw_models/overlap.py) and the overlap policies
(policies/overlap.py: NanoFlow nano-batches, TokenWeave all-reduce overlap), wired through
engine.overlap into the step timer; the NanoFlow and TokenWeave reproductions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator.core.registry as reg
from hw_models.overlap import Part, _partition, fluid_s, overlapped_s, part_s, plan_s, sms_of
from policies.overlap import NanoFlow, NoOverlap, TokenWeave, split_ops
from simulator.config.loader import load_scenario, resolve_component
from simulator.config.scenario import OverlapSection
from simulator.runner import Simulation, build_overlap, run_scenario
from workloads.llm import BatchShape, Op, attention_ops

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ROOT / "scenarios" / "papers"
NANOFLOW = PAPERS / "nanoflow_llama2_70b_a100.yaml"
TOKENWEAVE = PAPERS / "tokenweave_llama33_70b_h100.yaml"


def backend(kind: str = "tile", gpu: str = "A100-80GB", link: str | None = "NVLink3", **over):
    dev = resolve_component({"kind": "gpu", "preset": gpu}, reg.HARDWARE, "gpu").config
    lk = None
    if link is not None:
        comp = resolve_component({"kind": "link", "preset": link}, reg.HARDWARE, "link")
        lk = comp.cls(comp.config)
    comp = resolve_component({"kind": kind, **over}, reg.TIMING, "timing")
    return comp.cls(comp.config, dev, lk)


TILE = backend("tile", cuda_graphs=True)
ROOF = backend("roofline", launch_overhead=False)

ops_st = st.one_of(
    st.builds(lambda m, n, k: Op("gemm", "g", 1, m=m, n=n, k=k),
              st.integers(1, 8192), st.integers(128, 16384), st.integers(128, 8192)),
    st.builds(lambda b: Op("elementwise", "add", 1, bytes=b), st.integers(1 << 12, 1 << 28)),
    st.builds(lambda s, kv: Op("attn_decode", "attn_decode", 1, seqs=s, q_tokens=s, kv_tokens=s * kv, heads=8,
                               kv_heads=1, head_dim=128), st.integers(1, 256), st.integers(16, 4096)),
    st.builds(lambda b: Op("allreduce", "ar", 1, bytes=b, workers=8), st.integers(1 << 12, 1 << 26)),
)


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.tuples(st.lists(ops_st, min_size=1, max_size=4), st.floats(0.05, 1.0)),
                      min_size=1, max_size=3),
       tile=st.booleans())
def test_overlap_never_beats_its_slowest_part_nor_exceeds_the_sum_of_its_parts(parts, tile):
    be = TILE if tile else ROOF
    total = sum(s for _, s in parts)
    plan = [Part(tuple(ops), s / max(1.0, total)) for ops, s in parts]
    alone = [part_s(be, p) for p in plan]
    t = overlapped_s(be, plan)
    assert max(alone) * (1 - 1e-9) <= t <= sum(alone) * (1 + 1e-9)


@settings(max_examples=30, deadline=None)
@given(ops=st.lists(ops_st, min_size=1, max_size=6), n=st.integers(2, 4), mem=st.floats(0.05, 0.5),
       net=st.integers(1, 24))
def test_a_nano_batch_plan_lies_between_its_busiest_stream_and_all_its_kernels_in_a_row(ops, n, mem, net):
    policy = NanoFlow(OverlapSection(kind="nanoflow"), plan_s)
    shares = (1.0 - mem - net / 108, mem, net / 108)
    batches = [[(policy.stream(o), o) for o in b] for b in split_ops(ops, n)]
    sp = _partition(TILE)
    sms = [sms_of(TILE.device, s) for s in shares]
    per_stream = [0.0, 0.0, 0.0]
    for b in batches:
        for s, o in b:
            per_stream[s] += sp.op(o, sms[s])[0]
    t = plan_s(TILE, batches, shares)
    assert max(per_stream) * (1 - 1e-9) <= t <= sum(per_stream) * (1 + 1e-9)


def test_two_memory_bound_streams_share_hbm_and_two_compute_only_streams_do_not():
    # first principles of the fluid share: each stream alone asks the whole bandwidth -> serialised
    bw = 1e12
    assert fluid_s([[(1.0, 1e12)], [(1.0, 1e12)]], bw) == pytest.approx(2.0)
    assert fluid_s([[(1.0, 0.0)], [(1.0, 0.0)]], bw) == pytest.approx(1.0)
    # half the bandwidth each: no slowdown
    assert fluid_s([[(1.0, 5e11)], [(2.0, 1e12)]], bw) == pytest.approx(2.0)


def test_a_compute_bound_gemm_slows_by_its_sm_share_and_a_memory_bound_kernel_does_not():
    gemm = Op("gemm", "g", 1, m=8192, n=8192, k=8192)
    copy = Op("elementwise", "add", 1, bytes=1 << 30)
    for be in (TILE, ROOF):
        half_gemm = part_s(be, Part((gemm,), 0.5)) / part_s(be, Part((gemm,), 1.0))
        half_copy = part_s(be, Part((copy,), 0.5)) / part_s(be, Part((copy,), 1.0))
        assert 1.8 <= half_gemm <= 2.3, (be.name, half_gemm)
        assert half_copy == pytest.approx(1.0, rel=0.05), (be.name, half_copy)
        # together: the copy runs in the GEMM's shadow (the GEMM asks little HBM bandwidth)
        both = overlapped_s(be, [Part((gemm,), 0.5), Part((copy,), 0.5)])
        assert both == pytest.approx(part_s(be, Part((gemm,), 0.5)), rel=0.02)


def test_an_all_reduce_on_few_sms_is_capped_by_nccls_per_channel_bandwidth():
    ar = Op("allreduce", "ar", 1, bytes=64 << 20, workers=8)
    full = part_s(TILE, Part((ar,), 1.0))
    two = part_s(TILE, Part((ar,), 2 / 108))
    assert full == pytest.approx(TILE.op_s(ar))
    bus = 2 * 7 / 8 * (64 << 20)
    assert two >= bus / (2 * 20e9) * (1 - 1e-9) > full


@pytest.mark.parametrize("be", [TILE, ROOF], ids=["tile", "roofline"])
def test_nano_batching_ops_of_one_kind_gains_nothing_beyond_the_splits_own_cost(be):
    gemms = [Op("gemm", "qkv_proj", 80, m=2048, n=1280, k=8192), Op("gemm", "mlp_up", 80, m=2048, n=7168, k=8192),
             Op("gemm", "mlp_down", 80, m=2048, n=8192, k=3584)]
    whole = be.ops_s(gemms)
    policy = NanoFlow(OverlapSection(kind="nanoflow"), plan_s)
    sp = _partition(be)
    for n in (2, 4):
        shares = (1.0, 0.0, 0.0)  # one kind: every SM on the compute stream
        t = policy.plan_time(gemms, be, n, shares)
        pieces = sum(max(be.op_s(g), sum(sp.op(p, be.device.sm_count)[0] for b in split_ops([g], n) for p in b))
                     for g in gemms)
        assert t >= whole * (1 - 1e-12)  # no gain
        assert t == pytest.approx(pieces, rel=1e-9)  # the only change: the smaller kernels' own cost
    # and the policy's search keeps the unsplit iteration
    assert policy.step_s(gemms, be) == pytest.approx(whole, rel=1e-12)
    assert policy.overlapped_s(gemms, be) is None


def test_splitting_conserves_rows_sequences_and_bytes():
    ops = [Op("gemm", "g", 3, m=1001, n=64, k=64), Op("elementwise", "add", 3, bytes=100003),
           Op("attn_decode", "attn_decode", 3, seqs=7, q_tokens=7, kv_tokens=7000, heads=8, kv_heads=1, head_dim=128),
           Op("allreduce", "ar", 3, bytes=4097, workers=4)]
    for n in (2, 3, 4):
        batches = split_ops(ops, n)
        for kind, field in (("gemm", "m"), ("elementwise", "bytes"), ("attn_decode", "seqs"), ("allreduce", "bytes")):
            got = sum(getattr(o, field) for b in batches for o in b if o.kind == kind)
            want = next(getattr(o, field) for o in ops if o.kind == kind)
            assert got == want, (n, kind)
    assert [p.m for b in split_ops([ops[0]], 3) for p in b] == [334, 334, 333]  # as even as whole rows allow


def _timer(path: Path, *sets: str):
    sim = Simulation(load_scenario(path, list(sets)))
    return sim.timer


SHAPES = (BatchShape(decode_rows=200, decode_kv=200 * 1200, emitting=200),
          BatchShape(prefill=((1500, 300),), decode_rows=100, decode_kv=100 * 900, emitting=101),
          BatchShape(prefill=((4096, 0),), emitting=1))


@pytest.mark.parametrize("path", [NANOFLOW, TOKENWEAVE, ROOT / "scenarios" / "quickstart.yaml"],
                         ids=["nanoflow", "tokenweave", "quickstart"])
def test_overlap_none_is_exactly_todays_step_time(path):
    plain = _timer(path)
    assert plain.kernel_overlap is None
    none = _timer(path, "engine.overlap={kind: none}")
    from simulator.serving.step_timer import StepTimer

    bare = StepTimer(plain.model, plain.tp, plain.backend, plain.quant, plain.framework, plain.launch_s, ep=plain.ep)
    for shape in SHAPES:
        assert plain.step(shape) == none.step(shape) == bare.step(shape)
    a, b = plain.decode_segment(64, 64 * 500, 50), bare.decode_segment(64, 64 * 500, 50)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_overlap_none_run_is_identical_to_a_run_without_the_field():
    sets = ["workload.num_requests=150"]
    a = run_scenario(load_scenario(NANOFLOW, sets)).summary
    b = run_scenario(load_scenario(NANOFLOW, [*sets, "engine.overlap.kind=none"])).summary
    for key in ("total_tokens_per_s", "iterations", "sim_time_s"):
        assert a[key] == b[key]


@pytest.mark.parametrize("kind,path", [("nanoflow", NANOFLOW), ("tokenweave", TOKENWEAVE)])
def test_overlap_is_never_slower_than_back_to_back_and_wins_on_mixed_batches(kind, path):
    base = _timer(path)
    over = _timer(path, f"engine.overlap.kind={kind}")
    for shape in SHAPES:
        assert over.step(shape)[0] <= base.step(shape)[0]
        assert over.step(shape)[1] == base.step(shape)[1]  # the same FLOPs
    assert over.step(SHAPES[1])[0] < base.step(SHAPES[1])[0]


@pytest.mark.parametrize("kind,path", [("nanoflow", NANOFLOW), ("tokenweave", TOKENWEAVE)])
def test_a_decode_stretch_is_overlapped_iteration_by_iteration_exactly_as_single_steps(kind, path):
    t = _timer(path, f"engine.overlap.kind={kind}")
    rows, kv0, k = 256, 256 * 700, 12
    ps, flops = t.decode_segment(rows, kv0, k)
    for i in range(k):
        step = t.step(BatchShape(decode_rows=rows, decode_kv=kv0 + i * rows, emitting=rows))
        assert ps[i] == step[0]
        assert flops[i] == pytest.approx(step[1])
    base = _timer(path).decode_segment(rows, kv0, k)[0]
    assert np.all(ps <= base)


def test_policies_are_built_from_the_engine_block():
    assert build_overlap(OverlapSection()) is None
    assert isinstance(build_overlap(OverlapSection(kind="nanoflow")), NanoFlow)
    assert isinstance(build_overlap(OverlapSection(kind="tokenweave")), TokenWeave)
    assert NoOverlap().overlapped_s([], ROOF) is None
    cfg = OverlapSection(kind="nanoflow")
    assert cfg.nano_batches == [2, 4] and cfg.comm_sms is None


@pytest.mark.parametrize("setting,fragment", [
    ("engine.overlap.kind=bogus", "engine.overlap.kind"),
    ("engine.overlap={kind: tokenweave, nano_batches: [2]}", "nano_batches does not apply"),
    ("engine.overlap={kind: nanoflow, memory_shares: [1.5]}", "memory_shares must be in (0, 1)"),
    ("engine.overlap={kind: nanoflow, nano_batches: [1]}", "nano_batches must be >= 2"),
])
def test_a_bad_overlap_config_is_one_line_and_exit_2(tmp_path, setting, fragment):
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "run", str(ROOT / "scenarios" / "quickstart.yaml"),
                           "--set", setting, "-o", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in proc.stderr, proc.stderr


# -- reproductions ---------------------------------------------------------------------------------
# Bands from the papers' figures with hwsim's mechanism tolerance (a factor 1.5, as
# simulator/reproduce.py uses for mechanism rows): [paper low / 1.5, paper high x 1.5].

def band(lo: float, hi: float, factor: float = 1.5) -> tuple[float, float]:
    return lo / factor, hi * factor


@pytest.fixture(scope="module")
def nanoflow_runs():
    base = run_scenario(load_scenario(NANOFLOW)).summary
    nano = run_scenario(load_scenario(NANOFLOW, ["engine.overlap.kind=nanoflow"])).summary
    return base, nano


@pytest.mark.xfail(strict=True, reason="a miss: 1.267x, under the band's 1.273 (1.91 / 1.5; was 1.325x) since the "
                   "vLLM 0.12 profile's add + RMSNorm streams at its quantize kernel's measured rate, not the "
                   "A100-fitted class rate: the baseline's memory-bound kernels got faster, so the overlap wins less "
                   "(FIDELITY.md, Prefill step by parts)")
def test_nanoflow_throughput_gain_over_a_vllm_like_engine_is_in_the_band_of_the_papers_1_91x(nanoflow_runs):
    # paper: 1.91x over vLLM (LLaMA-2-70B, 8x A100); hwsim: the overlap alone, same engine around it
    base, nano = nanoflow_runs
    gain = nano["total_tokens_per_s"] / base["total_tokens_per_s"]
    lo, hi = band(1.91, 1.91)
    assert lo <= gain <= hi, gain


def test_nanoflow_reaches_the_papers_59_to_72_percent_of_optimal_throughput_within_the_band(nanoflow_runs):
    # optimal as NanoFlow defines it: every GPU at its dense bf16 peak, 2 x parameters FLOPs per token
    _, nano = nanoflow_runs
    sc = load_scenario(NANOFLOW)
    model, dev = sc.model.config, sc.pools[0].device.config
    params = model.weight_bytes() / model.dtype_bytes
    optimal = 8 * dev.tensor_peak("bf16") / (2.0 * params)
    share = nano["total_tokens_per_s"] / optimal
    lo, hi = band(0.59, 0.72)
    assert lo <= share <= hi, share


def _prefill_sweep(kind: str | None):
    t = _timer(TOKENWEAVE, *([f"engine.overlap.kind={kind}"] if kind else []))
    return t, {n: t.step(BatchShape(prefill=((n, 0),), emitting=1))[0] for n in (1024, 2048, 4096, 8192, 16384)}


@pytest.mark.xfail(strict=True, reason="missed: hwsim's all-reduce (NCCL/NVLS above vLLM's 8 MiB custom "
                                       "all-reduce limit) takes 21-33 % of an H100 TP8 prefill step of 1K-16K "
                                       "tokens, above the paper's 'up to 20 %' x 1.5")
def test_tokenweave_communication_share_of_a_tp8_step_is_up_to_the_papers_20_percent():
    t, _ = _prefill_sweep(None)
    be = t.backend
    shares = []
    for n in (1024, 2048, 4096, 8192, 16384):
        shape = BatchShape(prefill=((n, 0),), emitting=1)
        ops = t._ordered(n, 1, attention_ops(shape, t.model, t.tp, t.quant))
        shares.append(sum(be.op_s(o) for o in ops if o.kind == "allreduce") / be.ops_s(ops))
    lo, hi = band(0.20, 0.20)
    assert lo <= max(shares) <= hi, shares


def test_tokenweave_latency_gain_of_overlap_is_in_the_band_of_the_papers_up_to_29_percent():
    _, base = _prefill_sweep(None)
    _, tw = _prefill_sweep("tokenweave")
    gain = max(1 - tw[n] / base[n] for n in base)
    lo, hi = band(0.29, 0.29)
    assert lo <= gain <= hi, gain


# 28.9 % (39.1-40.0 % before the vLLM 0.12 profile's add + RMSNorm took its quantize kernel's measured rate)
def test_tokenweave_throughput_gain_of_overlap_is_in_the_band_of_the_papers_up_to_26_percent():
    base = run_scenario(load_scenario(TOKENWEAVE)).summary
    tw = run_scenario(load_scenario(TOKENWEAVE, ["engine.overlap.kind=tokenweave"])).summary
    gain = tw["total_tokens_per_s"] / base["total_tokens_per_s"] - 1
    lo, hi = band(0.26, 0.26)
    assert lo <= gain <= hi, gain


def test_the_reproduction_scenarios_name_their_overlap_and_state_their_drivers():
    for path in (NANOFLOW, TOKENWEAVE):
        text = path.read_text()
        assert "What drives them" in text and "overlap: {kind: none}" in text
        assert load_scenario(path).spec.engine.overlap.kind == "none"


def test_the_resolved_scenario_round_trips_the_overlap_block(tmp_path):
    sc = load_scenario(NANOFLOW, ["engine.overlap.kind=nanoflow"])
    out = tmp_path / "s.yaml"
    out.write_text(sc.to_yaml())
    again = load_scenario(out)
    assert again.spec.engine.overlap == sc.spec.engine.overlap
    assert again.spec.engine.overlap.kind == "nanoflow" and again.spec.engine.overlap.nano_batches == [2, 4]
