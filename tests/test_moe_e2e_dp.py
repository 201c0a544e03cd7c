"""Attention data parallelism in a MoE replica: an iteration dealt over the DP ranks, the busiest rank
setting the step, every rank padded to it (simulator/serving/dp_ranks.py, StepTimer)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config.loader import load_scenario
from simulator.runner import Simulation
from simulator.serving.dp_ranks import rank_shapes, rank_tokens
from simulator.serving.step_timer import StepTimer
from simulator.validation.serving import classify, read_rows
from workloads.llm import BatchShape

CSV = Path(__file__).resolve().parents[2] / "shared" / "validation" / "aic" / "silicon_e2e_h200_sxm.csv"


@st.composite
def shapes(draw):
    chunks = tuple(draw(st.lists(st.tuples(st.integers(1, 9000), st.integers(0, 4000)), max_size=6)))
    rows = draw(st.integers(0, 300))
    kv = rows * draw(st.integers(1, 5000))
    emitting = rows + draw(st.integers(0, len(chunks)))
    if not chunks and not rows:
        rows, kv, emitting = 1, 100, 1
    return BatchShape(prefill=chunks, decode_rows=rows, decode_kv=kv, emitting=emitting)


@settings(max_examples=300, deadline=None)
@given(shapes(), st.integers(1, 8))
def test_ranks_conserve_the_iteration(shape, dp):
    """Every prefill chunk lands whole on one rank; decode rows, their summed context and the emitting
    rows add up to the iteration's; decode rows differ by at most one between ranks."""
    parts = rank_shapes(shape, dp)
    assert len(parts) == dp
    assert Counter(c for p in parts for c in p.prefill) == Counter(shape.prefill)
    assert sum(p.decode_rows for p in parts) == shape.decode_rows
    assert sum(p.decode_kv for p in parts) == shape.decode_kv
    assert sum(p.emitting for p in parts) == shape.emitting
    assert sum(rank_tokens(p) for p in parts) == rank_tokens(shape)
    rows = [p.decode_rows for p in parts]
    assert max(rows) - min(rows) <= 1


def test_one_rank_is_the_iteration():
    shape = BatchShape(prefill=((4000, 0), (100, 50)), decode_rows=7, decode_kv=7000, emitting=8)
    assert rank_shapes(shape, 1) == [shape]


def test_prefills_go_to_the_least_loaded_rank():
    """Largest first onto the rank with the fewest tokens: 5 decode rows make ranks of 3 and 2; the 8000-token
    chunk goes to the second, the 1000-token one to the first."""
    parts = rank_shapes(BatchShape(prefill=((1000, 0), (8000, 0)), decode_rows=5, decode_kv=500, emitting=7), 2)
    assert [p.prefill for p in parts] == [((1000, 0),), ((8000, 0),)]
    assert [rank_tokens(p) for p in parts] == [1003, 8002]


def _qwen_timer(line: int) -> StepTimer:
    row = next(r for r in read_rows(CSV) if r.line == line)
    scenario, why, _ = classify(row)
    assert scenario is not None, why
    return Simulation(load_scenario(scenario)).timer


@pytest.fixture(scope="module")
def dp_timer() -> StepTimer:
    timer = _qwen_timer(179)  # Qwen3-235B-FP8, vLLM 0.12, attention tp1 x dp2, experts over both GPUs
    assert timer.dp == 2 and timer.tp == 2
    return timer


PREFILL_SHAPES = (BatchShape(prefill=((2000, 0),), decode_rows=6, decode_kv=6 * 1500, emitting=7),
                  BatchShape(prefill=((8000, 0), (500, 0)), decode_rows=3, decode_kv=3 * 900, emitting=5),
                  BatchShape(prefill=((3000, 1000), (3000, 0)), emitting=2))


@pytest.mark.parametrize("shape", PREFILL_SHAPES)
def test_step_is_never_faster_than_any_rank_alone(dp_timer, shape):
    """The step (busiest rank, every rank padded to it) is at least each rank's own dense ops at its own
    tokens (every rank that many) plus its own attention."""
    ps, _ = dp_timer.step(shape)
    for part, (attn_s, _) in zip(rank_shapes(shape, dp_timer.dp), dp_timer.rank_attention_s(shape)):
        dense_s = dp_timer._dense(dp_timer.dp * rank_tokens(part), dp_timer.dp * part.emitting)[0]
        assert ps >= int((dense_s + attn_s) * 1e12) - 1


def test_a_lone_prefill_is_not_split_over_the_ranks(dp_timer):
    """One 8000-token prompt is prefilled by one rank: the step takes longer than half the prompt on
    each rank (the even split it replaces), by more than the attention of the other half."""
    shape = BatchShape(prefill=((8000, 0),), emitting=1)
    ps, _ = dp_timer.step(shape)
    even_dense = dp_timer._dense(8000, 1)[0]  # 4000 tokens per rank
    assert ps > 1.3 * even_dense * 1e12


def test_one_rank_timer_equals_the_undivided_path():
    """dp = 1: the step is the lowered iteration's ops (padded to the CUDA-graph size when decoding)."""
    timer = _qwen_timer(184)  # the same model and engine, tp2 without attention data parallelism
    assert timer.dp == 1
    for rows in (1, 3, 20, 37):
        assert timer._padded_decode(rows) == timer.framework.padded_batch(rows)
    shape = BatchShape(prefill=((2000, 0),), decode_rows=6, decode_kv=9000, emitting=7)
    from workloads.llm import attention_ops

    t = timer._dense(2006, 7)[0] + sum(timer.backend.op_s(op) for op in attention_ops(shape, timer.model, 2,
                                                                                       timer.quant))
    host = timer.host_step_s + timer.host_seq_s * 7
    assert timer.step(shape)[0] == int(round((t + host) * 1e12))


def test_decode_ranks_pad_to_their_own_graph_size(dp_timer):
    """20 decode rows over 2 ranks: 10 each, padded to vLLM's graph size 16 on both, so the experts take
    32 tokens (not 24, the padding of 20 rows on one GPU)."""
    assert dp_timer._padded_decode(20) == 32
    assert dp_timer._padded_decode(8) == 8


def test_host_work_per_rank(dp_timer):
    """Each DP rank's process prepares its own requests at the same time: 20 rows on 2 ranks cost the
    host one rank's 10 (a single engine would pay for 20)."""
    assert not dp_timer.overlap
    assert dp_timer._with_host(0.0, 20) == dp_timer.host_step_s + dp_timer.host_seq_s * 10
    assert dp_timer._with_host(0.0, 21) == dp_timer.host_step_s + dp_timer.host_seq_s * 11


def test_decode_graph_replay_is_per_rank(dp_timer):
    """Each DP rank replays its own CUDA graph of its share of the rows (vllm==0.12.0 gpu_model_runner.py
    _determine_batch_execution_and_padding dispatches the graph on the rank's own, DP-padded token count):
    600 decode rows on 2 ranks are 300 per rank, within vLLM's 512-row capture limit, so no host launches
    bound the step however slow a launch is (a 1 s launch would otherwise make the step at least 189 s)."""
    fw = dp_timer.framework
    rows = 600
    assert rows > fw.cuda_graphs.max_batch >= -(-rows // dp_timer.dp)
    slow = StepTimer(dp_timer.model, dp_timer.tp, dp_timer.backend, dp_timer.quant, fw, launch_s=1.0, dp=dp_timer.dp)
    shape = BatchShape(decode_rows=rows, decode_kv=rows * 1500, emitting=rows)
    assert slow.step(shape)[0] == dp_timer.step(shape)[0]
    ps, _ = slow.decode_segment(rows, rows * 1500, 3)
    assert ps.tolist() == dp_timer.decode_segment(rows, rows * 1500, 3)[0].tolist()
    assert ps.max() < 1e12  # under a second
