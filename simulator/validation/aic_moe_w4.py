"""A check, not a fit: the H200 aic MoE rows with 4-bit expert weights (``w4a16_mxfp4``, ``int4_wo``)
against hwsim's generic weight-only grouped GEMM.

    python -m simulator.validation.aic_moe_w4 ../shared/validation/aic/h200_sxm

Models: each row as ``simulator.validation.aic_moe.item_of`` lowers a MoE call (bf16 activations), its
    grouped GEMMs given the weight format of a shipped quantization preset (``W4A16-mxfp4-moe``: e2m1 x 32
    with an e8m0 scale; ``W4A16-marlin``: int4 with group scales), timed by the tile backend with the
    fused-MoE family of the row's framework (vLLM: triton, SGLang: triton_sglang, TRT-LLM: cutlass), whose
    constants were fitted on the bf16 / fp8 rows only. Prints the median APE per framework and dtype.
Ignores: the 4-bit kernels' own efficiencies and fixed costs (no kernel family of their own is fitted).
Sources: aiconfigurator-core systems data (../shared/validation/README.md).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

PRESET = {"w4a16_mxfp4": "W4A16-mxfp4-moe", "int4_wo": "W4A16-marlin"}
FAMILY = {"vllm": "triton", "sglang": "triton_sglang", "trtllm": "cutlass"}


def check(system_dir: Path) -> dict[tuple[str, str], tuple[int, float, float]]:
    """(framework, dtype) -> (rows, median APE, median signed error) over the 4-bit MoE rows."""
    import numpy as np

    import simulator.core.registry as reg
    from simulator.config.loader import resolve_component
    from simulator.validation.aic import _read, _tables
    from simulator.validation.aic_moe import item_of, routing_of
    from workloads.llm import GROUPED

    dev = resolve_component({"kind": "gpu", "preset": "H200"}, reg.HARDWARE, "gpu").config
    backends = {}
    for fw, fam in FAMILY.items():
        comp = resolve_component({"kind": "tile", "moe_kernel": fam}, reg.TIMING, "timing")
        backends[fw] = comp.cls(comp.config, dev, None)
    fmts = {}
    for dt, preset in PRESET.items():
        comp = resolve_component({"kind": "scheme", "preset": preset}, reg.QUANTIZATION, "quantization")
        fmts[dt] = comp.cls(comp.config).linear("mlp_up", "bf16", 2.0)
    err = defaultdict(list)
    for source, path in _tables(system_dir, "moe", "moe_perf.parquet"):
        fw = source.split()[0].lower()
        for r in _read(path):
            dt = r["moe_dtype"]
            routing = routing_of(str(r["distribution"]))
            tp, ep, experts = int(r["moe_tp_size"]), int(r["moe_ep_size"]), int(r["num_experts"])
            if dt not in PRESET or routing is None or experts % ep or int(r["inter_size"]) % tp or fw not in FAMILY:
                continue
            f = fmts[dt]
            ops = [replace(op, w_bytes=f.w_bytes, deq_ops=f.deq_ops, deq_overlap=f.deq_overlap)
                   if op.kind == GROUPED else op
                   for op in item_of(int(r["num_tokens"]), int(r["hidden_size"]), int(r["inter_size"]), experts,
                                     int(r["topk"]), tp, ep, "nongated" not in str(r.get("kernel_source", "")),
                                     routing)]
            pred = backends[fw].ops_s(ops)
            meas = float(r["latency"]) * 1e-3
            err[(fw, dt)].append(pred / meas - 1.0)
    return {k: (len(v), float(np.median(np.abs(v))), float(np.median(v))) for k, v in sorted(err.items())}


def main(argv: list[str]) -> None:
    system = Path(argv[0]) if argv else Path("../shared/validation/aic/h200_sxm")
    for (fw, dt), (n, ape, signed) in check(system).items():
        print(f"{fw:7s} {dt:12s} {n:6d} rows  median APE {100 * ape:5.1f} %  median signed {100 * signed:+6.1f} %")


if __name__ == "__main__":
    main(sys.argv[1:])
