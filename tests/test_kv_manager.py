"""The replica's KV manager: one owner of blocks, host copies and rollback; no import circles."""

from __future__ import annotations

import ast
from pathlib import Path

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core.request import RUNNING, Request
from simulator.serving.kv_cache import PagedKvCache
from simulator.serving.kv_manager import GPU, HOST, NONE, KVManager
from simulator.serving.kv_offload import KvOffload

ROOT = Path(__file__).resolve().parents[1]
SERVING = ROOT / "simulator" / "serving"


def _imports(path: Path) -> set[str]:
    """Serving modules ``path`` imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("simulator.serving."):
            out.add(node.module.rsplit(".", 1)[1])
        elif isinstance(node, ast.Import):
            out.update(a.name.rsplit(".", 1)[1] for a in node.names if a.name.startswith("simulator.serving."))
    return out


def test_serving_modules_import_each_other_without_a_circle():
    graph = {p.stem: _imports(p) for p in SERVING.glob("*.py")}
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in graph.get(m, ()):
            assert state.get(n) != 1, "import circle: " + " -> ".join([*stack, m, n])
            if n not in state:
                visit(n, [*stack, m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])
    assert "replica" not in graph["plan_check"] and "kv_tiers" not in graph["kv_offload"]


class _Policy:
    def choose(self, nbytes, free):
        return "swap" if nbytes <= free else "recompute"


class _Host:
    def shared_link(self, env, name):
        from simulator.core.resources import SharedBandwidth

        return SharedBandwidth(env, 25e9, latency_ps=0, name=name)


def _manager(blocks=64, bs=16, swap_space=1e9):
    env = simpy.Environment()
    return env, KVManager(PagedKvCache(blocks, bs), KvOffload(env, 1000.0, _Host(), swap_space, _Policy()))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["grow", "spec", "preempt", "admit", "finish"]),
                          st.integers(0, 7), st.integers(1, 40), st.sampled_from([None, "swap", "recompute", "drop"])),
                max_size=60))
def test_blocks_are_conserved_over_grow_speculate_preempt_and_resume(ops):
    env, kvm = _manager()
    reqs = [Request(i, 0, 30, 100) for i in range(8)]
    for op, i, n, mode in ops:
        r = reqs[i]
        if op in ("grow", "spec") and r.state == RUNNING:
            if kvm.need(r, n) <= kvm.free:
                kvm.grow(r, n)
                if op == "spec":  # n tokens verified, all but one rejected: blocks for them go back
                    kvm.rollback(r, n - 1)
                    r.num_computed += 1
                else:
                    r.num_computed += n
        elif op == "preempt" and r.state == RUNNING:
            kept = kvm.preempt(r, mode)
            assert kvm.location(r) == (HOST if kept else NONE)
            r.state = 0
            if not kept:
                r.num_computed = 0
        elif op == "admit" and r.state != RUNNING:
            kvm.admit(r)
            r.state = RUNNING
        elif op == "finish" and r.state == RUNNING:
            kvm.release(r)
            r.state, r.num_computed = 0, 0
        assert kvm.used == sum(q.kv_blocks for q in reqs)
        assert 0 <= kvm.used <= kvm.total_blocks
        for q in reqs:
            assert q.kv_blocks == 0 or q.kv_blocks >= kvm.blocks_for(q.num_computed)
    env.run()
    off = kvm.offload
    assert abs(off.host_used - sum(off.swapped.values())) < 1e-6  # host bytes: swapped out - swapped in


def test_a_swap_asked_for_by_the_scheduler_is_made_even_when_the_policy_would_recompute():
    class Never:
        def choose(self, nbytes, free):
            return "recompute"

    env = simpy.Environment()
    kvm = KVManager(PagedKvCache(64, 16), KvOffload(env, 1000.0, _Host(), 1e9, Never()))
    a, b = Request(0, 0, 40, 10), Request(1, 0, 40, 10)
    for r in (a, b):
        kvm.grow(r, 40)
        r.num_computed = 40
    assert kvm.location(a) == GPU
    assert kvm.preempt(a, "swap") and kvm.location(a) == HOST
    assert not kvm.preempt(b) and kvm.location(b) == NONE  # the policy's global choice
    assert kvm.used == 0


def test_rollback_returns_exactly_the_blocks_of_rejected_tokens():
    _, kvm = _manager(blocks=10, bs=4)
    r = Request(0, 0, 8, 10)
    kvm.grow(r, 8)
    r.num_computed = 8
    kvm.grow(r, 5)  # verify 5 tokens: 13 tokens -> 4 blocks
    assert r.kv_blocks == 4 and kvm.used == 4
    r.num_computed += 2  # 2 accepted: 10 tokens -> 3 blocks
    assert kvm.rollback(r, 3) == 1
    assert r.kv_blocks == 3 and kvm.used == 3 and kvm.rolled_back_tokens == 3
