"""The serving hot path's shortcuts give exactly what the direct computation gives.

- Roofline decode attention from cached per-op scalars (bytes regrouped as b0 + b1 x context)
  equals the textbook expression bit for bit: FLOPs and bytes are integers below 2**53.
- ``StepTimer.step`` memoised per iteration shape returns the fresh computation's picoseconds,
  FLOPs and joules, for repeated and interleaved shapes.
- ``outputs.chrome_trace: auto`` writes trace.json for runs of at most ``TRACE_AUTO_MAX``
  requests only; ``true`` / ``false`` force it.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hw_models.attention_kernels import head_dims
from hw_models.timing.roofline import RooflineBackend, RooflineConfig
from simulator.config.loader import load_scenario
from simulator.outputs import write_results
from simulator.runner import Simulation, run_scenario
from workloads.llm import BatchShape, Op

SCENARIO = {
    "name": "hot-path",
    "seed": 3,
    "hardware": {"device": {"kind": "gpu", "preset": "H100-SXM"}, "timing": {"kind": "roofline"}},
    "model": {"preset": "Llama-2-7B"},
    "workload": {"kind": "synthetic", "num_requests": 120,
                 "arrival": {"process": "poisson", "rate": "8/s"},
                 "prompt_tokens": {"dist": "lognormal", "median": 300, "sigma": 0.8, "max": 1500},
                 "output_tokens": {"dist": "lognormal", "median": 60, "sigma": 0.8, "max": 300}},
    "policies": {"scheduler": {"kind": "vllm"}},
    "run": {"warmup_requests": 0},
}


def _textbook(backend, op, kv):
    """Roofline decode attention as written before the cached scalars (roofline.py, 16-bit K/V)."""
    kv = np.asarray(kv, dtype=np.float64)
    b = op.dtype_bytes
    dk, dv, kvw = head_dims(op)
    flops = 2.0 * op.heads * (dk + dv) * kv
    nbytes = b * (op.seqs * op.heads * (dk + dv) + kv * kvw * op.kv_heads)
    return (np.maximum(flops / backend.peak(op.dtype), nbytes / backend._bw) + backend._launch) * op.count


@functools.cache
def _roofline(compute_efficiency: float):
    """A roofline backend on H100-SXM; at 1 % of the tensor peak decode attention is compute-bound."""
    return RooflineBackend(RooflineConfig(compute_efficiency=compute_efficiency),
                           load_scenario(copy.deepcopy(SCENARIO)).device.config)


@settings(max_examples=300, deadline=None)
@given(heads=st.integers(1, 128), group=st.sampled_from([1, 2, 4, 8]), head_dim=st.sampled_from([64, 80, 128, 256]),
       seqs=st.integers(1, 512), layers=st.integers(1, 128),
       dtype=st.sampled_from([("bf16", 2.0), ("fp8", 1.0), ("fp16", 2.0), ("tf32", 4.0)]),
       kv=st.lists(st.integers(1, 50_000_000), min_size=1, max_size=40), eff=st.sampled_from([1.0, 0.01]))
def test_roofline_decode_attention_from_cached_scalars_is_bit_identical(heads, group, head_dim, seqs, layers, dtype,
                                                                        kv, eff):
    backend = _roofline(eff)
    kv_heads = max(1, heads // group)
    op = Op("attn_decode", "attn_decode", layers, seqs=seqs, kv_tokens=kv[0], heads=heads, kv_heads=kv_heads,
            head_dim=head_dim, dtype=dtype[0], dtype_bytes=dtype[1])
    got = backend.decode_attention_s(op, np.array(kv, dtype=np.int64))
    want = _textbook(backend, op, kv)
    assert got.tobytes() == want.tobytes()
    again = backend.decode_attention_s(op, np.array(kv, dtype=np.int64))  # the cached scalars
    assert again.tobytes() == want.tobytes()


def test_memoised_iteration_steps_equal_fresh_ones():
    sim = Simulation(load_scenario(copy.deepcopy(SCENARIO)))
    timer = sim.pools[0].timer
    shapes = [BatchShape(prefill=((512, 0),), emitting=1), BatchShape(prefill=((100, 0), (37, 12)), emitting=2),
              BatchShape(decode_rows=7, decode_kv=4321, emitting=7),
              BatchShape(prefill=((64, 128),), decode_rows=3, decode_kv=999, emitting=4)]
    fresh = []
    for s in shapes:
        ps, flops = timer._step(s)
        fresh.append((ps, flops, timer.last_energy_j))
    assert len({f[0] for f in fresh}) == len(shapes)  # distinct shapes, distinct times
    for _ in range(2):  # first call fills the memo, the second reads it; interleaved so joules must switch
        for s, want in zip(shapes, fresh):
            ps, flops = timer.step(s)
            assert (ps, flops, timer.last_energy_j) == want
    assert len(timer._steps) == len(shapes)


def test_chrome_trace_auto_writes_small_runs_only(tmp_path, monkeypatch):
    from simulator import outputs

    scenario = load_scenario(copy.deepcopy(SCENARIO))
    result = run_scenario(scenario)
    assert result.summary["requests_total"] == 120
    write_results(result, scenario.to_yaml(), tmp_path / "auto", report=False)  # default: auto
    assert (tmp_path / "auto" / "trace.json").is_file()
    monkeypatch.setattr(outputs, "TRACE_AUTO_MAX", 100)  # the same run is now above the threshold
    write_results(result, scenario.to_yaml(), tmp_path / "big", report=False, chrome_trace="auto")
    assert not (tmp_path / "big" / "trace.json").exists()
    assert (tmp_path / "big" / "summary.json").is_file()
    write_results(result, scenario.to_yaml(), tmp_path / "forced", report=False, chrome_trace=True)
    assert (tmp_path / "forced" / "trace.json").is_file()
    write_results(result, scenario.to_yaml(), tmp_path / "off", report=False, chrome_trace=False)
    assert not (tmp_path / "off" / "trace.json").exists()


def _gaps_reference(requests, iter_ends):
    """Inter-token gaps as first written: every token's end time gathered, differenced, and the
    differences between two requests dropped (simulator/metrics.py before the in-run differences)."""
    from itertools import chain

    offsets = np.cumsum([0] + [len(a) for a in iter_ends])
    ends = np.concatenate(iter_ends)
    sel = [r.runs for r in requests if r.runs]
    runs = np.array(list(chain.from_iterable(sel)), dtype=np.int64).reshape(-1, 3)
    counts = np.array([len(s) for s in sel], dtype=np.int64)
    starts = offsets[runs[:, 0]] + runs[:, 1]
    lengths = runs[:, 2] - runs[:, 1]
    owner = np.repeat(np.repeat(np.arange(len(sel)), counts), lengths)
    run_off = np.cumsum(lengths) - lengths
    idx = np.arange(int(lengths.sum())) - np.repeat(run_off - starts, lengths)
    times = ends[idx]
    return np.diff(times)[owner[1:] == owner[:-1]].astype(np.float64) / 1e12


class _Req:
    def __init__(self, rid, runs):
        self.rid, self.runs = rid, runs


@settings(max_examples=300, deadline=None)
@given(data=st.data(), replicas=st.integers(1, 4), requests=st.integers(1, 12))
def test_inter_token_gaps_equal_the_gathered_token_times(data, replicas, requests):
    from simulator.metrics import inter_token_gaps

    # each replica's iteration end times: strictly increasing picoseconds
    iter_ends = [np.cumsum(np.array(data.draw(st.lists(st.integers(1, 10**9), min_size=1, max_size=60)),
                                    dtype=np.int64)) for _ in range(replicas)]
    reqs = []
    for rid in range(requests):
        runs, rep = [], data.draw(st.integers(0, replicas - 1))
        pos = data.draw(st.integers(0, len(iter_ends[rep]) - 1))
        for _ in range(data.draw(st.integers(0, 4))):  # runs move forward; a request may migrate
            if pos >= len(iter_ends[rep]):
                break
            end = data.draw(st.integers(pos + 1, len(iter_ends[rep])))
            runs.append([rep, pos, end])
            pos = end + data.draw(st.integers(0, 3))
            if data.draw(st.booleans()):  # continues on another replica
                rep = data.draw(st.integers(0, replicas - 1))
                pos = data.draw(st.integers(0, len(iter_ends[rep]) - 1))
        reqs.append(_Req(rid, runs))
    if not any(r.runs for r in reqs):
        return
    got = inter_token_gaps(reqs, iter_ends, None)
    assert got.tobytes() == _gaps_reference(reqs, iter_ends).tobytes()
    measured = {r.rid for r in reqs[::2]}
    sub = [r for r in reqs if r.rid in measured]
    if any(r.runs for r in sub):
        assert inter_token_gaps(reqs, iter_ends, measured).tobytes() == _gaps_reference(sub, iter_ends).tobytes()


@functools.cache
def _tile(preset: str):
    import simulator.core.registry as reg
    from simulator.config.loader import resolve_component

    comp = resolve_component({"kind": "tile"}, reg.TIMING, "timing")
    dev = resolve_component({"kind": "gpu", "preset": preset}, reg.HARDWARE, "gpu").config
    return comp.cls(comp.config, dev, None)


@settings(max_examples=200, deadline=None)
@given(preset=st.sampled_from(["H100-SXM", "A100-80GB"]), heads=st.sampled_from([8, 32, 64]),
       group=st.sampled_from([1, 4, 8]), seqs=st.integers(1, 256), kv0=st.integers(1, 2_000_000),
       k=st.integers(1, 300), mode=st.sampled_from(["split_kv", "lean"]))
def test_tile_decode_attention_remembered_lines_equal_fresh_ones(preset, heads, group, seqs, kv0, k, mode):
    """A stretch's context sums kv0 + seqs * j asked twice (the second from the remembered lines)
    give the time computed from scratch (``attention_kernels._decode_s``) bit for bit."""
    from hw_models import attention_kernels as ak

    backend = _tile(preset)
    op = Op("attn_decode", "attn_decode", 32, seqs=seqs, q_tokens=seqs, kv_tokens=kv0, heads=heads,
            kv_heads=max(1, heads // group), head_dim=128, dtype="bf16", dtype_bytes=2.0)
    p = backend._attn_params("bf16")
    kv = np.arange(kv0, kv0 + seqs * k, seqs, dtype=np.int64).astype(np.float64)
    fresh = ak._decode_s(op, kv, p, mode)
    first = ak.decode_s(op, kv, p, mode)
    second = ak.decode_s(op, kv, p, mode)
    assert first.tobytes() == fresh.tobytes() == second.tobytes()


# (scenario, overrides): dense Llama on the roofline; DeepSeek-V3 (MLA, block-scaled fp8, EP 8, vLLM
# fusions) on tile; LLM.int8() (outlier kernels around every GEMM, the LM head's included) at TP 2
# with a framework's fusions; W8A8 int8 with attention data parallelism off (dense TP 4).
SPLIT_CASES = [
    ("scenarios/quickstart.yaml", ["hardware.timing.kind=roofline"]),
    ("scenarios/moe_deepseek_v3_ep8.yaml", []),
    ("scenarios/quickstart.yaml", ["policies.quantization={kind: scheme, preset: LLM-int8}",
                                   "cluster.tensor_parallel=2", "engine.framework=sglang-0.5"]),
    ("scenarios/llama2_70b_tp4_a100.yaml", ["policies.quantization={kind: scheme, preset: W8A8-int8}"]),
]


@functools.cache
def _timers(case: int):
    path, sets = SPLIT_CASES[case]
    a = Simulation(load_scenario(path, sets)).pools[0].timer
    b = Simulation(load_scenario(path, sets)).pools[0].timer
    b._split_heads = False  # every pair lowered afresh
    return a, b


@settings(max_examples=60, deadline=None)
@given(case=st.integers(0, len(SPLIT_CASES) - 1),
       pairs=st.lists(st.tuples(st.integers(1, 3000), st.integers(0, 300)), min_size=1, max_size=40))
def test_dense_terms_assembled_from_seen_parts_equal_a_fresh_lowering(case, pairs):
    """A (tokens, emitting) pair assembled from a token count and an emitting count seen in other
    pairs gives the fresh lowering's seconds, FLOPs, launches and joules exactly; the assembly
    stays on (the head ops are contiguous and depend on emitting only) for every shipped model kind."""
    split, fresh = _timers(case)
    # pairs crossing earlier ones, so that most are assembled
    pairs = pairs + [(t, e) for (t, _), (_, e) in zip(pairs, reversed(pairs))]
    for t, e in pairs:
        assert split._dense(t, e) == fresh._dense(t, e)
        if split.energy is not None:
            assert split._dense_energy[(t, e)] == fresh._dense_energy[(t, e)]
    assert split._split_heads
    assert any(e for _, e in pairs) <= bool(split._heads)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=50),
       st.lists(st.integers(-(2**62), 2**62), max_size=50))
def test_csv_cells_are_numpys_strings(floats, ints):
    """requests/batches/events CSV cells: Python's repr of each float (NaN: empty) and str of each
    integer are numpy's str of the float64 / int64, the cells these files always had."""
    from simulator.outputs import _column_strings

    f = np.array(floats, dtype=np.float64)
    want = f.astype(str).astype(object)
    want[np.isnan(f)] = ""
    assert _column_strings(f) == want.tolist()
    i = np.array(ints, dtype=np.int64)
    assert _column_strings(i) == i.astype(str).tolist()
    assert _column_strings(i > 0) == (i > 0).astype(np.int64).astype(str).tolist()
