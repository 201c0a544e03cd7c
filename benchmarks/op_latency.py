"""Cost of one uncached ``tile`` prediction per op kind (the shape memo bypassed).

    python benchmarks/op_latency.py

Lowers Llama-2-7B (TP 1 and 2) iterations of many token counts and contexts to ops and times
``TileBackend._op_s`` on each op (no memo; the minimum of 3 predictions, so that a pause of the
machine does not count as prediction cost), on A100-80GB and H100-SXM. Prints microseconds per
op: median and p99 per kind.
"""

from __future__ import annotations

import statistics
import time

import simulator.core.registry as reg
from simulator.config.loader import resolve_component
from workloads.llm import BatchShape, lower

REPEATS = 3  # each op is predicted this many times (nothing is memoised at this level)


def backend(gpu: str):
    g = resolve_component({"kind": "gpu", "preset": gpu}, reg.HARDWARE, "gpu").config
    link = resolve_component({"kind": "link", "preset": "NVLink3"}, reg.HARDWARE, "link")
    c = resolve_component({"kind": "tile"}, reg.TIMING, "timing")
    return c.cls(c.config, g, link.cls(link.config))


def main() -> None:
    m = resolve_component({"kind": "transformer", "preset": "Llama-2-7B"}, reg.MODELS, "model").config
    ops = []
    for tp in (1, 2):
        for tokens in range(1, 4097, 13):
            ops += lower(BatchShape(prefill=((tokens, tokens // 3),), emitting=1), m, tp)
            ops += lower(BatchShape(decode_rows=min(tokens, 256), decode_kv=tokens * 37, emitting=1), m, tp)
    print("| GPU | op kind | ops timed | median us | p99 us |")
    print("|---|---|---|---|---|")
    for gpu in ("A100-80GB", "H100-SXM"):
        b = backend(gpu)
        per: dict[str, list[float]] = {}
        for op in ops:
            best = float("inf")
            for _ in range(REPEATS):  # the minimum: the computation, not a scheduler hiccup of the machine
                t = time.perf_counter()
                b._op_s(op)
                best = min(best, time.perf_counter() - t)
            per.setdefault(op.kind, []).append(best * 1e6)
        for kind, v in sorted(per.items()):
            v.sort()
            print(f"| {gpu} | {kind} | {len(v)} | {statistics.median(v):.1f} | {v[int(0.99 * (len(v) - 1))]:.1f} |")


if __name__ == "__main__":
    main()
