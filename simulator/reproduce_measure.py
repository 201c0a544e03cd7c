"""How each reproduction's hwsim figure is measured: one function per metric of
:mod:`simulator.reproduce` (serving, capacity and kernel-table rows here; study and MCU rows in
:mod:`simulator.reproduce_studies`), taking the row's driving inputs (name -> value) and returning the
figure plus a one-line account of what produced it.

Every function runs scenarios under ``scenarios/papers/`` (serving runs, capacity searches,
studies, MCU runs) with the inputs applied as ``--set`` overrides; nothing is read from a saved
result. Runs are memoised in-process by (file, overrides), so rows sharing a run (KIVI's memory and
batch, the H2O ratios) pay for it once per process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ROOT / "scenarios" / "papers"

Params = Mapping[str, float]
Figure = tuple[float, str]
MEASURES: dict[str, Callable[[Params], Figure]] = {}


def measure(fn: Callable[[Params], Figure]) -> Callable[[Params], Figure]:
    MEASURES[fn.__name__] = fn
    return fn


def num(v: float) -> str:
    """A value as a ``--set`` literal (no exponent, no trailing zeros)."""
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.6f}".rstrip("0").rstrip(".")


# -- memoised runs ---------------------------------------------------------------------------------

@cache
def study(file: str, overrides: tuple[str, ...] = ()) -> dict:
    from simulator.studies.run import run_study

    return run_study(PAPERS / file, list(overrides), None, quiet=True)


@cache
def mcu(file: str, overrides: tuple[str, ...] = ()) -> dict:
    from simulator.mcu.run import run_mcu_scenario

    return run_mcu_scenario(PAPERS / file, list(overrides), None, True)


@cache
def serve(file: str, overrides: tuple[str, ...] = ()):
    from simulator.config.loader import load_scenario
    from simulator.runner import run_scenario

    return run_scenario(load_scenario(PAPERS / file, list(overrides)))


@cache
def capacity(file: str, overrides: tuple[str, ...], **kw) -> float:
    from simulator.capacity import capacity_search

    return capacity_search(PAPERS / file, overrides=list(overrides), **kw)["capacity_rps"]


# -- scheduling and batching -----------------------------------------------------------------------

SARATHI = "sarathi_mistral7b_a100.yaml"


def sarathi_capacity(kind: str, p: Params, p99_tbt_s: float | None = None, chunk: int | None = None) -> float:
    """Capacity (req/s) under Sarathi-Serve's rule: P99 TBT <= SLO, median queueing <= 2 s; 500
    requests per probe, 8 probes in [0.1, 8]/s."""
    sets = [f"policies.scheduler={{kind: {kind}}}", f"workload.prompt_tokens.median={num(p['prompt_median'])}"]
    if kind == "sarathi":
        sets.append(f"policies.scheduler.chunk_size={int(chunk or p['chunk_size'])}")
    return capacity(SARATHI, tuple(sets), p99_itl_s=p99_tbt_s or p["p99_tbt_s"], p50_queue_s=2.0, lo=0.1, hi=8.0,
                    iterations=8, num_requests=500)


def _sarathi_gain(p: Params, baseline: str) -> Figure:
    s, b = sarathi_capacity("sarathi", p), sarathi_capacity(baseline, p)
    return s / b, f"sarathi {s:.2f}/s vs {baseline} {b:.2f}/s"


@measure
def sarathi_vs_vllm(p: Params) -> Figure:
    return _sarathi_gain(p, "vllm")


@measure
def sarathi_vs_orca(p: Params) -> Figure:
    return _sarathi_gain(p, "orca")


FASTGEN = "fastgen_llama2_70b_a100.yaml"


def fastgen_run(kind: str, p: Params):
    sets = [f"policies.scheduler={{kind: {kind}}}", f"workload.clients={int(p['clients'])}"]
    if kind == "fastgen":
        sets.append(f"policies.scheduler.token_budget={int(p['token_budget'])}")
    return serve(FASTGEN, tuple(sets))


def effective_throughput(result, gen_tokens_per_s: float = 4.0) -> float:
    """FastGen's metric: requests/s meeting the SLA, prompt latency <= prompt tokens / 512 s and
    generation at >= ``gen_tokens_per_s`` tokens/s (TPOT <= 1/that)."""
    from simulator.results import FINISHED

    q = result.requests
    ok = q["measured"] & (q["status"] == FINISHED) & (q["ttft_s"] <= q["prompt_tokens"] / 512.0)
    ok &= ~(q["tpot_s"] > 1.0 / gen_tokens_per_s)
    return float(ok.sum()) / result.summary["measured_window_s"]


@measure
def fastgen_tail(p: Params) -> Figure:
    fg, vl = fastgen_run("fastgen", p), fastgen_run("vllm", p)
    a, b = np.percentile(vl.itl_s, 95), np.percentile(fg.itl_s, 95)
    return a / b, f"P95 inter-token gap vLLM {a * 1e3:.0f} ms vs fastgen {b * 1e3:.0f} ms"


@measure
def fastgen_effective(p: Params) -> Figure:
    fg, vl = effective_throughput(fastgen_run("fastgen", p)), effective_throughput(fastgen_run("vllm", p))
    return fg / vl, f"fastgen {fg:.3f} vs vLLM {vl:.3f} req/s within the SLA"


@measure
def iteration_vs_static(p: Params) -> Figure:
    sets = (f"workload.output_tokens.sigma={num(p['output_sigma'])}",)
    rate = {k: serve("iteration_vs_request_level.yaml", (f"policies.scheduler={{kind: {k}}}", *sets)).summary[
        "throughput_rps"] for k in ("static", "orca", "vllm")}
    return rate["orca"] / rate["static"], (f"orca {rate['orca']:.2f}, vllm {rate['vllm']:.2f}, static "
                                           f"{rate['static']:.2f} req/s at saturation")


# -- disaggregation --------------------------------------------------------------------------------

DISTSERVE, SPLITWISE = "distserve_opt13b_a100.yaml", "splitwise_llama2_70b.yaml"


def distserve_capacity(pools: str, p: Params, tpot_s: float | None = None) -> float:
    sets = (f"workload.prompt_tokens={{dist: lognormal, median: {num(p['prompt_median'])}, sigma: 0.5, min: 64, "
            f"max: 1900}}", "workload.output_tokens={dist: lognormal, median: 100, sigma: 0.6, min: 4, max: 140}",
            "workload.num_requests=800", f"cluster.pools={pools}")
    return capacity(DISTSERVE, sets, slo_ttft_s=2.0, slo_tpot_s=tpot_s or p["tpot_slo_s"], attainment=0.9, lo=0.5,
                    hi=30.0, iterations=8)


DISTSERVE_P1_D2 = "[{name: p, role: prefill, replicas: 1}, {name: d, role: decode, replicas: 2}]"
DISTSERVE_COLOCATED = "[{name: main, replicas: 3}]"


@measure
def distserve_gain(p: Params) -> Figure:
    d, c = distserve_capacity(DISTSERVE_P1_D2, p), distserve_capacity(DISTSERVE_COLOCATED, p)
    return (d / c if c > 0 else float("inf")), f"1 prefill + 2 decode {d:.2f}/s vs 3 colocated {c:.2f}/s"


SPLITWISE_HA = ("[{name: p, role: prefill, replicas: 2, tensor_parallel: 4}, {name: d, role: decode, replicas: 1, "
                "tensor_parallel: 4, device: {kind: gpu, preset: A100-80GB}}]")
SPLITWISE_HH = "[{name: main, replicas: 3, tensor_parallel: 4}]"


def splitwise_capacity(pools: str) -> float:
    return capacity(SPLITWISE, (f"cluster.pools={pools}", "workload.num_requests=800"), slo_ttft_s=1.0,
                    slo_tpot_s=0.05, attainment=0.9, lo=0.5, hi=40, iterations=8)


def preset_price(gpu: str) -> float:
    from simulator.config.loader import resolve_component
    from simulator.core import registry as reg

    return float(resolve_component({"kind": "gpu", "preset": gpu}, reg.HARDWARE, "gpu").config.price)


@measure
def splitwise_per_dollar(p: Params) -> Figure:
    ha, hh = splitwise_capacity(SPLITWISE_HA), splitwise_capacity(SPLITWISE_HH)
    cost_ha, cost_hh = 8 * p["h100_price"] + 4 * p["a100_price"], 12 * p["h100_price"]
    return (ha / cost_ha) / (hh / cost_hh), (f"2 H100 prefill + 1 A100 decode {ha:.1f}/s at {cost_ha:.1f} USD/h vs "
                                             f"3 H100 {hh:.1f}/s at {cost_hh:.1f} USD/h")


FALCON = ("model.preset=Falcon-180B", "cluster.tensor_parallel=4", "cluster.pipeline_parallel=2",
          "engine.max_model_len=2048", "workload.prompt_tokens.max=1500", "workload.output_tokens.max=500",
          "workload.num_requests=300", "run.warmup_requests=20")


def falcon_capacity(scheduler: str, p99_itl_s: float, prompt_median: float = 1730.0) -> float:
    sets = (*FALCON, f"workload.prompt_tokens.median={num(prompt_median)}", f"policies.scheduler={{kind: {scheduler}}}")
    return capacity(SARATHI, sets, attainment=0.9, lo=0.02, hi=10, iterations=9, p99_itl_s=p99_itl_s,
                    p50_queue_s=2.0)


@measure
def sarathi_falcon(p: Params) -> Figure:
    s = falcon_capacity("sarathi", p["p99_tbt_s"], p["prompt_median"])
    v = falcon_capacity("vllm", p["p99_tbt_s"], p["prompt_median"])
    return (s / v if v > 0 else float("inf")), f"sarathi {s:.2f}/s vs vLLM {v:.2f}/s (TP4 x PP2)"


# -- KV cache, memory tiers, storage ---------------------------------------------------------------

def serving_pair(file: str, base: str, p: Params, *extra: str):
    return serve(file, tuple(extra)).summary, serve(file, (base, *extra)).summary


@measure
def vattention_serving(p: Params) -> Figure:
    va, pg = serving_pair("vattention_vs_paged.yaml", "policies.kv_cache={kind: paged}", p,
                          f"workload.arrival.rate={num(p['rate'])}/s")
    return va["throughput_rps"] / pg["throughput_rps"], (f"{va['throughput_rps']:.2f} vs {pg['throughput_rps']:.2f} "
                                                         f"req/s, mean batch {va['batch_size_mean']:.1f} vs "
                                                         f"{pg['batch_size_mean']:.1f}")


@measure
def prefix_serving(p: Params) -> Figure:
    pre, base = serving_pair("prefix_sharing.yaml", "policies.kv_cache={kind: paged}", p,
                             f"workload.prefix_tokens={{dist: fixed, value: {int(p['prefix_tokens'])}}}")
    return pre["throughput_rps"] / base["throughput_rps"], (
        f"{pre['throughput_rps']:.2f} vs {base['throughput_rps']:.2f} req/s, hit rate "
        f"{pre['kv_cache']['hit_rate']:.2f}, mean batch {pre['batch_size_mean']:.0f} vs {base['batch_size_mean']:.0f}")


H2O_SERVING = "h2o_opt6.7b_t4_serving.yaml"


def h2o_serving(p: Params, full_kv: bool, batch: int | None = None):
    """The serving-engine H2O scenario: h2o budget ``kv_budget`` or paged full KV; with ``batch``,
    that many requests all at once and at most that many running (an equal-batch latency run)."""
    sets = [f"workload.output_tokens={{dist: fixed, value: {int(p['output_tokens'])}}}"]
    if batch:
        sets += [f"workload.num_requests={batch}", f"policies.scheduler.max_num_seqs={batch}"]
    sets.append("policies.kv_cache={kind: paged}" if full_kv else
                f"policies.kv_cache.budget_fraction={num(p['kv_budget'])}")
    return serve(H2O_SERVING, tuple(sets)).summary


@measure
def h2o_serving_latency(p: Params) -> Figure:
    h, f = h2o_serving(p, False, 8), h2o_serving(p, True, 8)
    a, b = f["e2e_s"]["mean"], h["e2e_s"]["mean"]
    return a / b, f"OPT-6.7B, batch of 8 on the serving engine: full KV {a:.2f} s vs H2O {b:.2f} s mean latency"


# -- quantization ----------------------------------------------------------------------------------

def _backend(kind: str, gpu: str):
    from simulator.config.loader import resolve_component
    from simulator.core import registry as reg

    c = resolve_component({"kind": kind}, reg.TIMING, "t")
    return c.cls(c.config, resolve_component({"kind": "gpu", "preset": gpu}, reg.HARDWARE, "d").config)


def _scheme(preset: str):
    from simulator.config.loader import resolve_component
    from simulator.core import registry as reg

    c = resolve_component({"kind": "scheme", "preset": preset}, reg.QUANTIZATION, "q")
    return c.cls(c.config)


def _quantized(op, fmt):
    from dataclasses import replace

    return replace(op, dtype=fmt.tensor_dtype, dtype_bytes=fmt.a_bytes, w_bytes=fmt.w_bytes,
                   out_bytes=2.0 if fmt.a_bytes != 2.0 else 0.0, deq_ops=fmt.deq_ops, deq_overlap=fmt.deq_overlap)


def gemm_speedup(preset: str, gpu: str, m: int, n: int, k: int) -> float:
    from workloads.llm import GEMM, Op

    b, fmt = _backend("tile", gpu), _scheme(preset).linear("mlp_up", "fp16", 2.0)
    op = Op(GEMM, "mlp_up", 1, m=m, n=n, k=k, dtype="fp16")
    return b.op_s(op) / b.op_s(_quantized(op, fmt))


@measure
def marlin_kernel(p: Params) -> Figure:
    m = int(p["batch"])
    return gemm_speedup("W4A16-marlin", "A40", m, 72 * 1024, 18 * 1024), f"72k x 18k layer, A40, m={m}"


def step_time(preset: str, gpu: str, rows: int, tokens: int) -> float:
    from simulator.config.loader import load_scenario
    from simulator.op_breakdown import breakdown

    raw = {"hardware": {"device": {"kind": "gpu", "preset": gpu}, "timing": {"kind": "tile"}},
           "model": {"preset": "Llama-2-7B"}, "policies": {"quantization": {"kind": "scheme", "preset": preset}},
           "workload": {"kind": "synthetic", "num_requests": 1, "arrival": {"rate": "1/s"},
                        "prompt_tokens": {"dist": "fixed", "value": 8}, "output_tokens": {"dist": "fixed", "value": 8}}}
    return sum(r["time_s"] for r in breakdown(load_scenario(raw), tokens, rows, 512))


@measure
def marlin_end_to_end(p: Params) -> Figure:
    a, b = step_time("W16A16", "A100-80GB", 1, 0), step_time("W4A16-marlin", "A100-80GB", 1, 0)
    return a / b, f"Llama-2-7B decode step at batch 1, A100-80GB: {a * 1e3:.2f} -> {b * 1e3:.2f} ms"


@measure
def comet_kernel(p: Params) -> Figure:
    s = [gemm_speedup("W4A4KV4", "A100-80GB", m, n, k) for m in (16, 128, 512, 1024, 2048, 4096, 8192)
         for n, k in ((12288, 4096), (4096, 4096), (22016, 4096), (4096, 11008))]
    return float(np.mean(s)), f"mean over Llama-2-7B projections, m = 16..8192 ({min(s):.2f}-{max(s):.2f})"


def quant_serve(file: str, preset: str | None, p: Params):
    sets = [f"policies.quantization={{kind: scheme, preset: {preset}}}"] if preset else []
    if "output_tokens" in p:
        sets.append(f"workload.output_tokens={{dist: fixed, value: {int(p['output_tokens'])}}}")
    return serve(file, tuple(sets))


@measure
def comet_end_to_end(p: Params) -> Figure:
    a = quant_serve("comet_w4a4kv4_a100.yaml", "W16A16", p).summary["output_tokens_per_s"]
    b = quant_serve("comet_w4a4kv4_a100.yaml", None, p).summary["output_tokens_per_s"]
    return b / a, f"W4A4KV4 {b:.0f} vs W16A16 {a:.0f} output tok/s"


KIVI = "kivi_llama2_7b_a100.yaml"


def kivi_plans(p: Params):
    from simulator.config.loader import load_scenario
    from simulator.runner import memory_plan

    a = memory_plan(load_scenario(PAPERS / KIVI, ["policies.quantization={kind: scheme, preset: W16A16}"]))
    b = memory_plan(load_scenario(PAPERS / KIVI, [f"policies.quantization.kv.group_size={int(p['group_size'])}"]))
    return a, b, 2048


@measure
def kivi_memory(p: Params) -> Figure:
    a, b, seq = kivi_plans(p)
    batch = a.kv_blocks * a.block_size // seq
    peak16 = a.weight_bytes + batch * seq * a.kv_bytes_per_token
    window = 128  # KIVI's fp16 residual tokens (preset KV-int2)
    peak2 = b.weight_bytes + batch * ((seq - window) * b.kv_bytes_per_token + window * a.kv_bytes_per_token)
    return peak16 / peak2, f"at the largest fp16 batch ({batch} x {seq} tokens): {peak16 / 2**30:.1f} vs " \
                           f"{peak2 / 2**30:.1f} GiB"


@measure
def kivi_batch(p: Params) -> Figure:
    a, b, seq = kivi_plans(p)
    b16 = a.kv_blocks * a.block_size // seq
    b2 = min(256, b.kv_blocks * b.block_size // (seq - 128))
    return b2 / b16, f"{b16} -> {b2} sequences of {seq} tokens (max_num_seqs 256)"


@measure
def kivi_throughput(p: Params) -> Figure:
    a = quant_serve(KIVI, "W16A16", p).summary["output_tokens_per_s"]
    b = quant_serve(KIVI, None, p).summary["output_tokens_per_s"]
    return b / a, f"{a:.0f} -> {b:.0f} output tok/s"


@measure
def int8_weight_memory(p: Params) -> Figure:
    from simulator.config.loader import load_scenario
    from simulator.runner import memory_plan

    def w(preset):
        return memory_plan(load_scenario(PAPERS / KIVI, [f"policies.quantization={{kind: scheme, preset: {preset}}}"])
                           ).weight_bytes

    a, b = w("W16A16"), w("LLM-int8")
    return b / a, f"Llama-2-7B weights {b / 2**30:.2f} vs {a / 2**30:.2f} GiB"


@measure
def int8_slowdown(p: Params) -> Figure:
    a, b = step_time("W16A16", "A100-80GB", 1, 0), step_time("LLM-int8", "A100-80GB", 1, 0)
    return b / a - 1.0, f"Llama-2-7B decode step at batch 1, A100-80GB: {a * 1e3:.2f} -> {b * 1e3:.2f} ms"


# -- microcontrollers and fragmentation ------------------------------------------------------------

def fragmentation(file: str, p: Params) -> float:
    sets = ("workload.num_requests=400", f"workload.arrival.rate={num(p['rate'])}/s")
    from simulator.config.loader import load_scenario
    from simulator.runner import run_scenario

    return run_scenario(load_scenario(ROOT / "scenarios" / file, list(sets))).summary["kv_fragmentation_mean"]


@measure
def paged_waste(p: Params) -> Figure:
    f = fragmentation("quickstart.yaml", p)
    return f, "time-weighted share of allocated block slots holding no token (quickstart, 400 requests)"


@measure
def reserved_token_share(p: Params) -> Figure:
    f = fragmentation("orca_vs_vllm/orca.yaml", p)
    return 1.0 - f, "Orca reserving max_model_len: share of allocated slots that hold tokens"


# -- MoE expert offload ----------------------------------------------------------------------------

EXPERTFLOW = "expertflow_mixtral8x7b_a6000.yaml"
EXPERTFLOW_BASELINES = {  # the offloading systems ExpertFlow is compared with, as expert-offload blocks
    "on_demand": "{kind: lfu, cache_experts: 0, host: A6000-workstation}",  # no cache: copy when the layer runs
    "lru": "{kind: lru, cache_bytes: %sGiB, host: A6000-workstation}",  # Mixtral-offloading's LRU, no prediction
}


def expertflow_sets(p: Params) -> tuple[str, ...]:
    """ExpertFlow's own configuration with the row's inputs: the cache as a byte budget per GPU, the
    predictor's accuracy."""
    sets = ["policies.expert_offload.cache_experts=null",
            f"policies.expert_offload.cache_bytes={num(p['cache_gib'])}GiB"]
    if "accuracy" in p:
        sets.append(f"policies.expert_offload.prefetch.accuracy={num(p['accuracy'])}")
    return tuple(sets)


@measure
def expertflow_memory(p: Params) -> Figure:
    from simulator.config.loader import load_scenario
    from simulator.runner import memory_plan
    from simulator.serving.expert_offload import build_expert_offload

    sc = load_scenario(PAPERS / EXPERTFLOW, list(expertflow_sets(p)))
    plan, eo = memory_plan(sc), build_expert_offload(sc, sc.pools[0])
    whole = plan.weight_bytes - eo.cache_bytes + eo.routed_bytes
    gib = 2.0**30
    return 1.0 - plan.weight_bytes / whole, (f"GPU weights {plan.weight_bytes / gib:.1f} of {whole / gib:.1f} GiB: "
                                             f"non-expert weights + {eo.cache_experts:g} experts per layer cached "
                                             f"(KV blocks {plan.kv_blocks:,})")


def expertflow_speedup(p: Params, baseline: str) -> Figure:
    block = EXPERTFLOW_BASELINES[baseline]
    block = block % num(p["cache_gib"]) if "%s" in block else block
    ef = serve(EXPERTFLOW, expertflow_sets(p)).summary["output_tokens_per_s"]
    base = serve(EXPERTFLOW, (f"policies.expert_offload={block}",)).summary["output_tokens_per_s"]
    return ef / base, f"output tok/s {ef:.2f} (cache + prefetch) vs {base:.2f} ({baseline.replace('_', '-')})"


@measure
def expertflow_vs_on_demand(p: Params) -> Figure:
    return expertflow_speedup(p, "on_demand")


@measure
def expertflow_vs_lru(p: Params) -> Figure:
    return expertflow_speedup(p, "lru")


# the study and MCU rows register themselves in MEASURES on import
from simulator import reproduce_studies  # noqa: E402, F401
