"""Cost of the `tile` timing backend against `roofline` on the 10k-request trace case, in process.

    python benchmarks/backend_overhead.py [--repeats N]

Alternates the two backends N times (default 4) on benchmarks/splitwise_conv_10k.yaml and prints,
per backend, the minimum simulation time of `run_scenario`, the seconds spent inside the backend's
own predictions (op_s misses and decode attention, timed around each call), the iterations
simulated and the mean decode rows per iteration. The two runs simulate different schedules (a
backend that predicts slower steps gets larger batches), so the whole-run ratio mixes the
backend's cost with the cost of simulating a different schedule; the prediction seconds separate them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from simulator.config.loader import load_scenario
from simulator.runner import run_scenario

HERE = Path(__file__).resolve().parent
SPENT = [0.0]


def _timed(cls: type, name: str) -> None:
    fn = getattr(cls, name)

    def wrapper(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(self, *args, **kwargs)
        finally:
            SPENT[0] += time.perf_counter() - t

    setattr(cls, name, wrapper)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=4)
    args = ap.parse_args()
    import hw_models.timing.roofline as roofline
    import hw_models.timing.tile as tile

    for cls in (roofline.RooflineBackend, tile.TileBackend):
        for name in ("_op_s", "decode_attention_s"):
            if name in vars(cls):
                _timed(cls, name)
    scenarios = {b: load_scenario(HERE / "splitwise_conv_10k.yaml", overrides=[f"hardware.timing={{kind: {b}}}"])
                 for b in ("roofline", "tile")}
    best: dict[str, tuple] = {}
    for _ in range(args.repeats):
        for b, sc in scenarios.items():
            SPENT[0] = 0.0
            t = time.perf_counter()
            res = run_scenario(sc)
            wall = time.perf_counter() - t
            if b not in best or wall < best[b][0]:
                it = np.asarray(res.batches["iterations"])
                rows = np.asarray(res.batches["decode_rows"])
                best[b] = (wall, SPENT[0], int(it.sum()), float((rows * it).sum() / it.sum()))
    for b, (wall, spent, iters, rows) in best.items():
        print(f"{b:9s} run {wall:.3f} s  predictions {spent:.3f} s  iterations {iters:,}  decode rows/iter {rows:.1f}")
    (rw, rs, _, _), (tw, ts, _, _) = best["roofline"], best["tile"]
    print(f"tile / roofline: whole run {tw / rw:.2f}x; prediction seconds added by tile {ts - rs:.3f} s "
          f"= {(ts - rs) / rw:.1%} of the roofline run")


if __name__ == "__main__":
    main()
