"""The Chrome/Perfetto trace of real runs: slices on one thread never overlap, in whole nanoseconds,
and the per-iteration mode gives one slice per iteration named after what the iteration ran."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulator.config.loader import load_scenario
from simulator.runner import Simulation
from simulator.trace_export import build_chrome_trace, write_chrome_trace

ROOT = Path(__file__).resolve().parents[1]


def run(name: str, *overrides: str):
    return Simulation(load_scenario(ROOT / "scenarios" / name, list(overrides))).run()


@pytest.fixture(scope="module")
def runs():
    return {"single": run("quickstart.yaml", "workload.num_requests=300"),
            "disaggregated": run("disaggregated.yaml", "workload.num_requests=300"),
            "pipelined": run("quickstart.yaml", "workload.num_requests=60", "cluster.tensor_parallel=2",
                             "cluster.pipeline_parallel=2", "hardware.timing.kind=roofline")}


def slices_by_thread(path: Path) -> dict[tuple[int, int], list[tuple[int, int, dict]]]:
    """(start ns, end ns, event) of every X slice per (pid, tid), read back from the JSON text."""
    out: dict[tuple[int, int], list[tuple[int, int, dict]]] = {}
    for e in json.loads(path.read_text(encoding="utf-8"))["traceEvents"]:
        if e["ph"] == "X":
            start, dur = round(e["ts"] * 1000), round(e["dur"] * 1000)
            assert abs(e["ts"] * 1000 - start) < 1e-3 and abs(e["dur"] * 1000 - dur) < 1e-3  # whole ns
            out.setdefault((e["pid"], e["tid"]), []).append((start, start + dur, e))
    return out


@pytest.mark.parametrize("per_iteration", [False, True])
@pytest.mark.parametrize("name", ["single", "disaggregated", "pipelined"])
def test_no_two_slices_on_one_thread_overlap_by_even_a_nanosecond(runs, name, per_iteration, tmp_path):
    path = tmp_path / "trace.json"
    write_chrome_trace(runs[name], path, per_iteration)
    threads = slices_by_thread(path)
    assert threads
    if name == "pipelined":
        assert len(threads) > len(runs[name].replicas)  # the stage threads are checked too
    touching = 0
    for key, sl in threads.items():
        sl.sort(key=lambda x: x[0])
        for (_, e0, _), (s1, _, _) in zip(sl, sl[1:]):
            assert s1 >= e0, f"thread {key}: a slice starts {e0 - s1} ns before the previous one ends"
            touching += s1 == e0
    assert touching > 0  # back-to-back iterations touch exactly: the check above is not vacuous


def test_segment_slices_end_where_the_simulated_segment_ends(runs):
    res = runs["single"]
    xs = [e for e in build_chrome_trace(res, per_iteration=False)["traceEvents"] if e["ph"] == "X"]
    ends = sorted(round(e["ts"] * 1000) + round(e["dur"] * 1000) for e in xs)
    expected = sorted(np.round(np.asarray(res.batches["end_s"]) * 1e9).astype(np.int64).tolist())
    assert ends == expected


def test_per_iteration_mode_gives_one_slice_per_iteration_named_after_its_work(runs):
    res = runs["single"]
    per_seg = [e for e in build_chrome_trace(res, per_iteration=False)["traceEvents"] if e["ph"] == "X"]
    per_it = [e for e in build_chrome_trace(res, per_iteration=True)["traceEvents"] if e["ph"] == "X"]
    assert len(per_seg) == len(res.batches["start_s"])
    assert len(per_it) == int(res.batches["iterations"].sum()) > len(per_seg)
    assert all(e["args"]["iterations"] == 1 for e in per_it)
    names = {e["name"] for e in per_it}
    assert "decode" in names and not any(n.startswith("decode x") for n in names)
    prefill = [e for e in per_it if e["args"]["prefill_tokens"] > 0]
    assert sum(e["args"]["prefill_tokens"] for e in prefill) == int(res.batches["prefill_tokens"].sum())
    assert {e["name"] for e in prefill} <= {"prefill", "prefill+decode"}
    # the default for a run this short is per iteration
    assert len([e for e in build_chrome_trace(res)["traceEvents"] if e["ph"] == "X"]) == len(per_it)


def test_prefill_only_batches_are_named_prefill(runs):
    res = runs["disaggregated"]  # prefill replicas run prompts only
    xs = [e for e in build_chrome_trace(res, per_iteration=False)["traceEvents"] if e["ph"] == "X"]
    prefill_only = [e for e in xs if e["args"]["prefill_tokens"] > 0 and e["args"]["decode_rows"] == 0]
    assert prefill_only and all(e["name"] == "prefill" for e in prefill_only)
    assert all(e["name"] == "prefill+decode" for e in xs
               if e["args"]["prefill_tokens"] > 0 and e["args"]["decode_rows"] > 0)
