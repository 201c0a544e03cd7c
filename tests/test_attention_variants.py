"""Attention variants and linear layers: first-principles checks of the ops and the memory plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config.loader import resolve_component
from simulator.core import registry as reg
from workloads.attention_variants import groups, kv_bytes_per_sequence, window_pairs
from workloads.llm import BatchShape, lower

ROOT = Path(__file__).resolve().parents[1]


def _model(preset: str = "Mistral-7B", **attention):
    over = {"attention": attention} if attention else {}
    return resolve_component({"kind": "transformer", "preset": preset, **over}, reg.MODELS, "model").config


def _gpu(preset: str = "H100-SXM"):
    return resolve_component({"kind": "gpu", "preset": preset}, reg.HARDWARE, "gpu").config


def _by_name(ops):
    return {op.name: op for op in ops}


def test_window_decode_reads_min_context_window():
    """Window w (+ sinks s): decode attention bytes = min(context, w + s) x K/V bytes per token."""
    w, s = 4096, 4
    m = _model(layer_pattern="W*32", window_tokens=w, sink_tokens=s)
    per_token_layer = 2 * m.num_kv_heads * m.head_dim * m.dtype_bytes
    for ctx in (100, 4100, 20000):
        op = _by_name(lower(BatchShape(decode_rows=1, decode_kv=ctx, emitting=1), m))["attn_decode_window"]
        q_bytes = 2 * m.num_heads * m.head_dim * m.dtype_bytes
        assert op.bytes_moved() == pytest.approx(m.num_layers * (q_bytes + min(ctx, w + s) * per_token_layer))
        # the memory plan: the same tokens kept
        assert kv_bytes_per_sequence(m, ctx) == pytest.approx(m.num_layers * min(ctx, w + s) * per_token_layer)


def test_alternating_local_global_layers():
    """gpt-oss-20b: its config's layer_types alternate window 128 / full; K/V kept per sequence is
    the local layers at min(ctx, 128) plus the global layers at ctx."""
    m = _model("gpt-oss-20b", window_tokens=128)
    local = len(m.sliding_window_layers)
    per = 2 * m.num_kv_heads * m.head_dim * m.dtype_bytes
    ctx = 10000
    assert kv_bytes_per_sequence(m, ctx) == pytest.approx(per * (local * 128 + (m.num_layers - local) * ctx))
    assert m.kv_elems_per_token() == 2 * m.num_kv_heads * m.head_dim * (m.num_layers - local)
    assert m.kv_bounded_bytes() == pytest.approx(per * local * 128)


@settings(max_examples=200, deadline=None)
@given(t=st.integers(0, 300), ctx=st.integers(0, 300), cap=st.one_of(st.none(), st.integers(1, 400)))
def test_window_pairs_match_brute_force(t, ctx, cap):
    pairs = sum(min(p + 1, cap) if cap else p + 1 for p in range(ctx, ctx + t))
    keys = {k for p in range(ctx, ctx + t) for k in range(max(0, p + 1 - (cap or p + 1)), p + 1)}
    assert window_pairs(t, ctx, cap) == (pairs, len(keys))


def test_duo_streaming_heads_memory():
    """DuoAttention: a share r of the KV heads streaming (sink + window), the rest full: memory per
    sequence = (1 - r) x full + r x min(ctx, sink + window)."""
    m = _model("Llama-3-8B", streaming_heads=0.5, head_window_tokens=256, head_sink_tokens=64)
    full = _model("Llama-3-8B")
    ctx = 100_000
    # Llama-3-8B: 32 layers x 8 KV heads x 128 wide, K and V in bf16; 4 heads keep ctx, 4 keep 64 + 256
    want = 32 * 2 * 128 * 2 * (4 * ctx + 4 * 320)
    assert kv_bytes_per_sequence(m, ctx) == pytest.approx(want)
    ops = _by_name(lower(BatchShape(decode_rows=1, decode_kv=ctx, emitting=1), m))
    assert ops["attn_decode"].kv_heads + ops["attn_decode_stream"].kv_heads == full.num_kv_heads
    assert ops["attn_decode_stream"].kv_tokens == 320


def test_pyramid_budgets_per_layer():
    """Per-layer budgets (fractions): the memory plan's K/V per token is the mean budget x full."""
    budgets = list(np.linspace(0.05, 0.35, 32).round(4))
    m = _model("Llama-3-8B", kv_budget=budgets)
    full = _model("Llama-3-8B")
    assert m.kv_elems_per_token() == pytest.approx(full.kv_elems_per_token() * float(np.mean(budgets)), rel=1e-3)
    # prefill reads the whole prompt; decode reads the budget
    pre = [op for op in lower(BatchShape(prefill=((4096, 0),), emitting=1), m) if op.kind == "attn_prefill"]
    assert sum(op.pairs * op.count for op in pre) == 4096 * 4097 // 2 * 32
    dec = [op for op in lower(BatchShape(decode_rows=1, decode_kv=10000, emitting=1), m) if op.kind == "attn_decode"]
    assert sum(op.kv_tokens * op.count for op in dec) == pytest.approx(sum(np.ceil(b * 10000) for b in budgets), abs=32)


def test_quest_topk_reads_budget_plus_selection():
    m = _model("Llama-3-8B", topk_tokens=2048, topk_page_tokens=16)
    ops = _by_name(lower(BatchShape(decode_rows=2, decode_kv=2 * 32768, emitting=2), m))
    assert ops["attn_decode"].kv_tokens == 2 * 2048
    assert ops["attn_select"].kv_tokens == 2 * 32768 // 16
    # the selection reads a min and a max key (128 wide, bf16) per page and KV head, plus the queries
    sel = ops["attn_select"]
    q_bytes = 2 * 32 * 128 * 2  # 2 rows x 32 query heads x 128 x bf16
    assert sel.bytes_moved() == pytest.approx(32 * (q_bytes + 2 * 2048 * 8 * 2 * 128 * 2), rel=0.01)
    # the cache keeps everything
    assert m.kv_elems_per_token() == _model("Llama-3-8B").kv_elems_per_token()


def test_block_sparse_prefill_density():
    """MInference: prefill FLOPs = density x dense causal FLOPs + the index estimate."""
    m = _model("Llama-3-8B", prefill_density=0.1, sparse_index_queries=64)
    dense = _by_name(lower(BatchShape(prefill=((65536, 0),), emitting=1), _model("Llama-3-8B")))["attn_prefill"]
    ops = _by_name(lower(BatchShape(prefill=((65536, 0),), emitting=1), m))
    assert ops["attn_prefill_sparse"].flops() == pytest.approx(0.1 * dense.flops(), rel=1e-6)
    assert ops["attn_sparse_index"].pairs == 64 * 65536


def test_cross_layer_sharing_halves_kv():
    m = _model("Llama-3-8B", kv_share_layers=2)
    assert m.kv_elems_per_token() * 2 == _model("Llama-3-8B").kv_elems_per_token()


def test_linear_layer_decode_cost_independent_of_context():
    """A state-space layer reads and writes a fixed state per row: its ops are the same at any context."""
    m = _model("Qwen3-Next-80B-A3B")
    assert groups(m)[0].layers == 12  # one full-attention layer in four
    short = [op for op in lower(BatchShape(decode_rows=8, decode_kv=8 * 1000, emitting=8), m, 2)
             if op.name.startswith("ssm_")]
    long = [op for op in lower(BatchShape(decode_rows=8, decode_kv=8 * 200_000, emitting=8), m, 2)
            if op.name.startswith("ssm_")]
    assert short == long and {op.name for op in short} >= {"ssm_update", "ssm_in_proj", "ssm_out_proj"}
    upd = _by_name(short)["ssm_update"]
    assert upd.count == 36
    lin = m.linear
    state = (lin.num_heads // 2) * lin.state_dim * lin.head_dim
    assert upd.bytes >= 8 * 2 * state * lin.state_dtype_bytes  # read and write the state of every row


def test_pure_state_space_model_decode_time_flat():
    from hw_models.timing.roofline import RooflineBackend, RooflineConfig

    dev = _gpu()
    be = RooflineBackend(RooflineConfig(), dev)
    m = resolve_component({"kind": "transformer", "preset": "Llama-3-8B", "attention": {"layer_pattern": "S*32"},
                           "linear": _LIN}, reg.MODELS, "model").config
    times = [sum(be.op_s(op) for op in lower(BatchShape(decode_rows=4, decode_kv=4 * c, emitting=4), m))
             for c in (100, 10_000, 1_000_000)]
    assert times[0] == pytest.approx(times[2])


# Mamba-2 2.7B's mixer shape (state-spaces/mamba2-2.7b config: d_model 2560, expand 2, headdim 64, d_state 128)
_LIN = {"kind": "mamba2", "num_heads": 80, "head_dim": 64, "state_dim": 128, "num_groups": 1}


def test_decode_segment_matches_single_steps():
    """The serving loop's decode stretch times each iteration as one step of the same rows does."""
    from hw_models.timing.roofline import RooflineBackend, RooflineConfig
    from simulator.serving.step_timer import StepTimer

    dev = _gpu()
    m = _model("Llama-3-8B", layer_pattern="WF*16", window_tokens=1024, sink_tokens=4, streaming_heads=0.5,
               head_window_tokens=256, head_sink_tokens=64)
    timer = StepTimer(m, 1, RooflineBackend(RooflineConfig(), dev))
    ps, _ = timer.decode_segment(4, 4 * 3000, 3)
    for j in range(3):
        one, _ = timer.step(BatchShape(decode_rows=4, decode_kv=4 * 3000 + 4 * j, emitting=4))
        assert ps[j] == one


@pytest.mark.parametrize("override, needle", [
    ("model.attention.window_tokens=100000", "larger than the model's context"),
    ("model.attention.kv_budget=1.5", "outside (0, 1]"),
    ("model.attention.kv_budget=0", "outside (0, 1]"),
    ("model.attention.layer_pattern=W*31", "31 layers for num_layers 32"),
    ("model.attention.kv_budget_tokens=50000", "larger than the model's context"),
    ("model.attention.prefill_density=[0.1, 1.5]", "outside (0, 1]"),
    ("model.attention.prefill_density=[]", "empty list"),
    ("model.attention.topk_tokens=100000", "larger than the model's context"),
    ("model.attention.streaming_heads=0.05", "less than one of the model's 8 KV heads"),
    ("model.attention.kv_share_layers=2", "layers 0-1 are of different kinds (WF)"),
    ("model.attention.kv_budget_tokens=[]", "empty list"),
    ("model.attention.prefill_density=[0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]", "9 head groups for 8 KV"),
])
def test_bad_input_one_line_exit_2(override, needle):
    from typer.testing import CliRunner

    from simulator.cli import app

    extra = ["--set", "model.attention.layer_pattern=WF*16"] if "kv_share" in override else []
    r = CliRunner().invoke(app, ["check", str(ROOT / "scenarios/variants/sliding_window.yaml"), "--set", override,
                                 *extra])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.output


def test_variant_scenarios_check():
    from typer.testing import CliRunner

    from simulator.cli import app

    for f in sorted((ROOT / "scenarios" / "variants").glob("*.yaml")):
        r = CliRunner().invoke(app, ["check", str(f)])
        assert r.exit_code == 0, (f.name, r.output)


def test_quality_inputs_are_reported_as_given():
    from simulator.config.loader import load_scenario
    from simulator.runner import Simulation

    sc = load_scenario(ROOT / "scenarios" / "variants" / "duo_attention.yaml",
                       ["workload.num_requests=2", "model.attention.accuracy_delta=-0.012",
                        "model.attention.quality_note=paper table"])
    res = Simulation(sc).run()
    assert res.summary["attention_variant"] == {"accuracy_delta": -0.012, "quality_note": "paper table"}


def test_memory_plan_reserves_the_bounded_kv_per_batch_slot():
    from simulator.config.loader import load_scenario
    from simulator.runner import memory_plan

    sc = load_scenario(ROOT / "scenarios" / "variants" / "sliding_window.yaml")
    plan = memory_plan(sc)
    m = sc.model.config
    per_seq = m.num_layers * (4096 + 4) * 2 * m.num_kv_heads * m.head_dim * m.dtype_bytes
    assert plan.kv_residual_bytes == pytest.approx(32 * per_seq)  # max_num_seqs x the windows
    hyb = memory_plan(load_scenario(ROOT / "scenarios" / "variants" / "hybrid_mamba2.yaml"))
    full = memory_plan(load_scenario(ROOT / "scenarios" / "variants" / "hybrid_mamba2.yaml",
                                     ["model.attention=null", "model.linear=null"]))
    assert hyb.kv_bytes_per_token == pytest.approx(full.kv_bytes_per_token / 4)  # 8 of 32 layers keep K/V


@settings(max_examples=60, deadline=None)
@given(ctx=st.integers(1, 300_000), share=st.sampled_from([0.25, 0.5, 0.75]),
       window=st.integers(16, 4096), budget=st.floats(0.01, 1.0))
def test_variants_never_keep_more_than_full_attention_and_grow_with_context(ctx, share, window, budget):
    full = _model("Llama-3-8B")
    for m in (_model("Llama-3-8B", streaming_heads=share, head_window_tokens=window, head_sink_tokens=4),
              _model("Llama-3-8B", kv_budget=budget),
              _model("Llama-3-8B", layer_pattern="WF*16", window_tokens=window)):
        kept = kv_bytes_per_sequence(m, ctx)
        assert kept <= kv_bytes_per_sequence(full, ctx) + 1e-6
        assert kv_bytes_per_sequence(m, ctx + 1) >= kept


def test_layer_pattern_as_a_list_of_kinds():
    m = _model("Llama-3-8B", layer_pattern=["sliding", "full"] * 16, window_tokens=512)
    assert m.attention.layer_pattern == "WF" * 16
    from simulator.core.errors import ConfigError

    with pytest.raises(ConfigError, match="not one of"):
        _model("Llama-3-8B", layer_pattern=["sliding", "dense"] * 16, window_tokens=512)


def test_head_groups_under_tensor_parallelism_keep_whole_heads():
    """Tensor parallelism deals whole KV heads: with one KV head per GPU (Llama-3-8B, 8 KV heads, tp 8)
    the busiest GPU holds a retrieval head, so its decode reads the whole context and its memory plan
    keeps it; the heads of every group on a GPU add up to its KV heads."""
    m = _model("Llama-3-8B", streaming_heads=0.5, head_window_tokens=256, head_sink_tokens=64)
    ctx = 100_000
    per_head_layer = 2 * m.head_dim * m.dtype_bytes
    for tp, full_heads, stream_heads in ((1, 4, 4), (4, 1, 1), (8, 1, 0)):
        ops = _by_name(lower(BatchShape(decode_rows=1, decode_kv=ctx, emitting=1), m, tp))
        assert ops["attn_decode"].kv_heads == full_heads and ops["attn_decode"].kv_tokens == ctx
        assert ops.get("attn_decode_stream") is None if not stream_heads else \
            ops["attn_decode_stream"].kv_heads == stream_heads
        want = m.num_layers * per_head_layer * (full_heads * ctx + stream_heads * 320)
        assert kv_bytes_per_sequence(m, ctx, tp=tp) == pytest.approx(want)
    dens = _model("Llama-3-8B", prefill_density=[0.1, 0.3, 0.2])
    for tp in (1, 2, 4, 8):
        pre = [op for op in lower(BatchShape(prefill=((8192, 0),), emitting=1), dens, tp)
               if op.name.startswith("attn_prefill_sparse")]
        assert sum(op.kv_heads for op in pre) == max(1, 8 // tp)
        assert pre[0].name.endswith("_d1") or len(pre) == 3  # a lone head goes to the densest group


@pytest.mark.parametrize("attention", [
    {"topk_tokens": 512, "topk_page_tokens": 16},
    {"layer_pattern": "WF*16", "window_tokens": 1024, "sink_tokens": 4},
    {"kv_budget": 0.3},
], ids=["quest", "window", "budget"])
def test_decode_stretch_matches_single_steps_at_uneven_mean_contexts(attention):
    """The serving loop's decode stretch and a single step agree for every variant, also when the
    rows' mean context is not a whole number (4 rows, 4 x 1008 + 2 keys: a Quest page boundary)."""
    from hw_models.timing.roofline import RooflineBackend, RooflineConfig
    from simulator.serving.step_timer import StepTimer

    m = _model("Llama-3-8B", **attention)
    timer = StepTimer(m, 1, RooflineBackend(RooflineConfig(), _gpu()))
    kv0 = 4 * 1008 + 2
    ps, _ = timer.decode_segment(4, kv0, 3)
    for j in range(3):
        one, _ = timer.step(BatchShape(decode_rows=4, decode_kv=kv0 + 4 * j, emitting=4))
        assert ps[j] == pytest.approx(one, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(ctxs=st.lists(st.integers(1, 20_000), min_size=1, max_size=8), window=st.integers(16, 8192))
def test_mean_context_never_undercounts_the_keys_a_window_reads(ctxs, window):
    """The serving loop passes decode rows as a context sum and the lowering takes each row at the mean:
    with a window the keys read are then an upper bound of the rows' own sum of min(context, window)
    (min is concave), equal when every row is inside the window or every row beyond it."""
    m = _model("Mistral-7B", layer_pattern="W*32", window_tokens=window)
    exact = sum(min(c, window) for c in ctxs)
    op = _by_name(lower(BatchShape(decode_rows=len(ctxs), decode_kv=sum(ctxs), emitting=len(ctxs)), m))
    read = op["attn_decode_window"].kv_tokens
    assert read >= exact - 1
    if all(c <= window for c in ctxs) or all(c >= window for c in ctxs):
        assert abs(read - exact) <= 1
    per_row = _by_name(lower(BatchShape(decode_rows=len(ctxs), decode_kv=sum(ctxs), emitting=len(ctxs),
                                        decode_ctx=tuple(ctxs)), m))["attn_decode_window"]
    assert per_row.kv_tokens == exact  # given each row's context, the lowering is exact


def test_state_space_prefill_flops_per_token_are_the_ssd_count_at_any_length():
    """Mamba-2 SSD (Dao & Gu 2024, section 6): per token and head 2Q(N + P) for the masked intra-chunk
    product plus 4NP for the chunk states -- the same per token at 4K and at 64K tokens."""
    from workloads.variant_ops import mixer_ops

    m = resolve_component({"kind": "transformer", "preset": "Llama-3-8B", "attention": {"layer_pattern": "S*32"},
                           "linear": {**_LIN, "chunk_size": 256}}, reg.MODELS, "model").config
    H, N, P, Q = 80, 128, 64, 256
    for T in (4096, 65536):
        ops = [op for op in mixer_ops(BatchShape(prefill=((T, 0),), emitting=1), m)
               if op.kind in ("attn_prefill", "gemm")]
        per_token_layer = sum(op.flops() for op in ops) / T / 32
        assert per_token_layer == pytest.approx(H * (2 * Q * (N + P) + 4 * N * P), rel=1e-9)


def test_linear_heads_not_a_multiple_of_groups_is_one_line_exit_2():
    from typer.testing import CliRunner

    from simulator.cli import app

    r = CliRunner().invoke(app, ["check", str(ROOT / "scenarios/variants/hybrid_qwen3_next.yaml"),
                                 "--set", "model.linear.num_groups=5"])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "not a multiple of num_groups 5" in lines[0], r.output


def test_density_groups_decode_as_one_kernel_over_all_heads():
    """Per-head prefill densities change only the prefill: decode is one attention kernel over every KV
    head (not one launch per density group), in a single step and in a decode stretch alike."""
    from hw_models.timing.roofline import RooflineBackend, RooflineConfig
    from simulator.serving.step_timer import StepTimer

    m = _model("Llama-3-8B", prefill_density=[0.05, 0.1, 0.2, 0.4])
    dec = [op for op in lower(BatchShape(decode_rows=2, decode_kv=2 * 5000, emitting=2), m)
           if op.kind == "attn_decode"]
    assert [(op.name, op.kv_heads, op.heads, op.kv_tokens) for op in dec] == [("attn_decode", 8, 32, 10000)]
    timer = StepTimer(m, 1, RooflineBackend(RooflineConfig(), _gpu()))
    ps, _ = timer.decode_segment(2, 10000, 2)
    for j in range(2):
        one, _ = timer.step(BatchShape(decode_rows=2, decode_kv=10000 + 2 * j, emitting=2))
        assert ps[j] == pytest.approx(one, rel=1e-12)
