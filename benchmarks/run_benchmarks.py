"""Speed benchmarks of whole `hwsim run` invocations (wall time and peak RSS of the process).

    python benchmarks/run_benchmarks.py            # all cases
    python benchmarks/run_benchmarks.py --quick    # the 10k trace case only

Each case runs `hwsim run ... -q` in a fresh process, three times, and reports the median wall
time and the largest peak RSS. Results go to stdout as a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "subprocess.run(sys.argv[1:], check=True)\n"
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def measure(args: list[str], repeats: int) -> tuple[float, float, dict]:
    walls, rss = [], []
    summary: dict = {}
    for _ in range(repeats):
        out = Path(tempfile.mkdtemp(prefix="hwsim-bench-"))
        cmd = [sys.executable, "-c", WRAPPER, shutil.which("hwsim") or "hwsim", "run", *args, "--out", str(out), "-q"]
        res = subprocess.run(cmd, check=True, capture_output=True, text=True)
        wall, maxrss_kb = res.stdout.split()[-2:]
        walls.append(float(wall))
        rss.append(float(maxrss_kb) / 1024)
        summary = json.loads((out / "summary.json").read_text())
        summary["sim_wall_s"] = json.loads((out / "run_info.json").read_text())["wall_s"]
        shutil.rmtree(out)
    return statistics.median(walls), max(rss), summary


def capacity_wall() -> float:
    import time

    from simulator.capacity import capacity_search

    t = time.perf_counter()
    capacity_search(HERE.parent / "scenarios" / "quickstart.yaml", slo_ttft_s=2.0, slo_tpot_s=0.1, lo=1, hi=40,
                    iterations=8, num_requests=2000)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    cases = [("splitwise_conv 10k (trace, 6 req/s)", [str(HERE / "splitwise_conv_10k.yaml")])]
    if not a.quick:
        cases.append(("capacity search, 8 rates x 2,000 requests", None))
        for n in (1000, 10000, 100000):
            cases.append((f"synthetic conv {n:,}", [str(HERE / "synthetic_conv.yaml"),
                                                    "--set", f"workload.num_requests={n}"]))
        cases.append(("synthetic conv 10k, no report/trace", [str(HERE / "synthetic_conv.yaml"), "--no-report",
                                                            "--set", "outputs.chrome_trace=false"]))
        cases.append(("splitwise_conv 10k, tile backend", [str(HERE / "splitwise_conv_10k.yaml"),
                                                          "--set", "hardware.timing.kind=tile"]))
        cases.append(("synthetic conv 10k, 4 replicas", [str(HERE / "synthetic_conv.yaml"), "--set",
                                                        "cluster.replicas=4", "--set", "workload.arrival.rate=24/s"]))
        cases.append(("synthetic conv 10k, disaggregated 2P+2D", [
            str(HERE / "synthetic_conv.yaml"), "--set", "workload.arrival.rate=12/s", "--set",
            "cluster.pools=[{name: p, role: prefill, replicas: 2}, {name: d, role: decode, replicas: 2}]",
            "--set", "cluster.kv_transfer={link: {kind: link, preset: IB-NDR}}"]))
    print(f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| case | wall s (median) | peak RSS MB | requests | sim wall s (in-process) | iterations |")
    print("|---|---|---|---|---|---|")
    for name, args in cases:
        if args is None:
            wall = capacity_wall()
            print(f"| {name} | {wall:.2f} | - | 16,000 | - | - |")
            continue
        wall, rss, s = measure(args, a.repeats)
        print(f"| {name} | {wall:.2f} | {rss:.0f} | {s['requests_total']:,} | {s['sim_wall_s']:.2f} "
              f"| {s['iterations']:,} |")


if __name__ == "__main__":
    main()
