"""Reproductions of offloading papers on the serving engine: weights streamed from host DRAM, SSD or flash
(``policies.weight_offload``), KV in host DRAM, KV budgets on top (FlexGen, H2O, LLM in a flash).

Each measure function runs scenarios under ``scenarios/papers/`` with the row's inputs as ``--set``
overrides (memoised by :func:`simulator.reproduce_measure.serve`).
"""

from __future__ import annotations

import math

from simulator.reproduce_measure import PAPERS, Figure, Params, measure, num, serve

SECTION = "KV cache, memory tiers, storage"  # simulator.reproduce.KV (this module is imported while that one loads)
NOTE = ("Serving scenarios: KV-cache policies `paged`, `prefix`, `vattention`, `h2o`, `shadowkv`; weight offload "
        "(`policies.weight_offload`: layer weights streamed from host DRAM, SSD or flash beside compute, KV in host "
        "DRAM or on a drive, decode attention on the host CPU or inside computational storage); studies only for "
        "kernels (vAttention, Hydragen) and CacheGen's codec arithmetic.")  # the KV section's note (reproduce.py)

FLEXGEN = "flexgen_opt30b_t4.yaml"
FLASH_GPU, FLASH_CPU = "llm_in_a_flash_opt6.7b.yaml", "llm_in_a_flash_opt6.7b_cpu.yaml"


# -- FlexGen and H2O: OPT-30B on a T4-class GPU, weights (and KV) in 208 GB of host DRAM -------------------

def zigzag_block(sets: tuple[str, ...], k: int) -> tuple[int, float]:
    """FlexGen's memory rule for the block: the largest GPU batch b such that the hidden states of the
    k x b block and one GPU batch's MLP activations (for the prompt) fit beside the resident weights.
    Returns (b, activation bytes)."""
    from simulator.config.loader import load_scenario
    from simulator.serving.weight_offload import build_weight_offload

    sc = load_scenario(PAPERS / FLEXGEN, list(sets))
    m, dev, pool = sc.model.config, sc.pools[0].device.config, sc.pools[0]
    wo = build_weight_offload(sc, pool)
    usable = dev.memory_bytes * sc.spec.engine.gpu_memory_utilization - dev.extra_memory_bytes
    room = usable - wo.resident_weight_bytes(m.weight_bytes(), math.inf)
    prompt = int(sc.spec.workload["prompt_tokens"]["value"])
    per_b = (k * m.hidden_size + m.intermediate_size + 3 * m.hidden_size) * prompt * m.dtype_bytes
    b = int(room // per_b)
    return b, b * per_b


def block_sets(k: int, b: int, act_bytes: float, prompt: int = 512) -> tuple[str, ...]:
    n = k * b
    return (f"policies.weight_offload.num_gpu_batches={k}", f"engine.activation_reserve={int(act_bytes)}B",
            f"policies.scheduler.max_num_seqs={n}", f"workload.num_requests={n}",
            f"policies.scheduler.max_num_batched_tokens={n * prompt}")


@measure
def flexgen_tok_s(p: Params) -> Figure:
    prompt = int(p["prompt_tokens"])
    r = serve(FLEXGEN, (f"workload.prompt_tokens.value={prompt}",
                        f"policies.scheduler.max_num_batched_tokens={192 * prompt}"))
    s = r.summary
    return s["output_tokens_per_s"], (f"block 4 x 48, prefill {s['ttft_s']['p50']:.0f} s, decode step "
                                      f"{s['tpot_s']['p50']:.2f} s (weights over PCIe Gen3)")


def h2o_run(p: Params):
    budget = f"policies.kv_cache={{kind: h2o, budget_fraction: {num(p['kv_budget'])}, min_tokens: 1}}"
    k = int(p["num_gpu_batches"])
    b, act = zigzag_block((), k)
    return serve(FLEXGEN, (budget, *block_sets(k, b, act))), k * b


DEEPSPEED = ("policies.weight_offload.kv=gpu", "policies.weight_offload.attention=gpu",
             "policies.weight_offload.num_gpu_batches=1", "engine.activation_reserve=1GiB",
             "policies.scheduler.max_num_seqs=256", "workload.num_requests=256",
             "policies.scheduler.max_num_batched_tokens=131072")


@measure
def h2o_vs_flexgen(p: Params) -> Figure:
    (h, n), f = h2o_run(p), serve(FLEXGEN, ())
    a, b = h.summary["output_tokens_per_s"], f.summary["output_tokens_per_s"]
    return a / b, f"OPT-30B: H2O {a:.1f} tok/s (block {n}) vs FlexGen {b:.1f} tok/s (block 192)"


@measure
def h2o_vs_deepspeed(p: Params) -> Figure:
    (h, _), d = h2o_run(p), serve(FLEXGEN, DEEPSPEED)
    a, b = h.summary["output_tokens_per_s"], d.summary["output_tokens_per_s"]
    return a / b, (f"OPT-30B: H2O {a:.1f} tok/s vs ZeRO-Inference-like {b:.2f} tok/s (weights streamed, full KV on "
                   f"the GPU: mean batch {d.summary['batch_size_mean']:.0f})")


# -- LLM in a flash: OPT-6.7B with memory for half of it ---------------------------------------------------

NAIVE = "policies.weight_offload={kind: stream, gpu_fraction: 0.5, disk_fraction: 0.5, overlap: false, " \
        "ssd: Client-NVMe-PCIe4, "


def flash_ratio(file: str, p: Params, naive_extra: str) -> Figure:
    sets = (f"policies.weight_offload.ffn_density={num(p['ffn_density'])}",
            f"policies.weight_offload.predictor_precision={num(p['predictor_precision'])}")
    f = serve(file, sets).summary["tpot_s"]["p50"]
    n = serve(file, (NAIVE + naive_extra + "}",)).summary["tpot_s"]["p50"]
    return n / f, f"{n:.2f} s -> {f * 1e3:.0f} ms per token (TPOT, batch 1)"


@measure
def flash_cpu(p: Params) -> Figure:
    return flash_ratio(FLASH_CPU, p, "unified_memory: true")


@measure
def flash_gpu(p: Params) -> Figure:
    return flash_ratio(FLASH_GPU, p, "host: A6000-workstation")


# -- ShadowKV: Llama-3.1-8B at 122K context on an A100-80GB --------------------------------------------------

SHADOWKV = "shadowkv_llama31_8b_a100.yaml"
FULL_KV = ("policies.kv_cache={kind: paged}", "engine.activation_reserve=1GiB")


def admitted(file: str, sets: tuple[str, ...]) -> int:
    """Sequences of the workload's full length the replica's KV blocks hold (the engine's memory plan and
    KV policy), at most the scheduler's max_num_seqs."""
    from simulator.config.loader import load_scenario
    from simulator.runner import memory_plan

    sc = load_scenario(PAPERS / file, list(sets))
    plan = memory_plan(sc)
    w = sc.spec.workload
    ctx = int(w["prompt_tokens"]["value"]) + int(w["output_tokens"]["value"])
    comp = sc.kv_cache
    tokens = comp.cls(comp.config).resident(ctx) if comp is not None and comp.cls.mechanism == "capped" else ctx
    return min(plan.kv_blocks // -(-tokens // plan.block_size), int(sc.pools[0].scheduler.config.max_num_seqs))


def decode_rate(file: str, sets: tuple[str, ...]) -> tuple[int, float, float]:
    """(batch, decode step s, decode tok/s) with as many requests as the KV admits, all at t = 0: the
    median inter-token gap is the step of the full batch once every prompt is prefilled."""
    import numpy as np

    n = admitted(file, sets)
    r = serve(file, (*sets, f"workload.num_requests={n}"))
    step = float(np.median(r.itl_s))
    return n, step, n / step


def shadow_sets(p: Params) -> tuple[str, ...]:
    return (f"policies.kv_cache.sparse_budget={num(p['sparse_budget'])}", f"policies.kv_cache.rank={int(p['rank'])}",
            f"policies.kv_cache.outlier_fraction={num(p['outlier_fraction'])}")


@measure
def shadowkv_batch(p: Params) -> Figure:
    s, f = admitted(SHADOWKV, shadow_sets(p)), admitted(SHADOWKV, FULL_KV)
    return s / f, f"batch {f} -> {s} sequences of 122,880 tokens (engine memory plan + KV policy)"


@measure
def shadowkv_throughput(p: Params) -> Figure:
    (bs, ss, ts), (bf, sf, tf) = decode_rate(SHADOWKV, shadow_sets(p)), decode_rate(SHADOWKV, FULL_KV)
    return ts / tf, f"{tf:.0f} -> {ts:.0f} tok/s (batch {bf} -> {bs}, decode step {sf * 1e3:.0f} -> {ss * 1e3:.0f} ms)"


# -- InstInfer: OPT-13B on an A6000, the KV of 256 sequences on a computational-storage drive -----------------

INSTINFER = "instinfer_opt13b_a6000.yaml"


def instinfer_runs(p: Params, fraction: float | None = None, disk_io: str = "filesystem"):
    """(InstInfer's run, FlexGen's best run of GPU and CPU attention with KV on the same drive, its attention)."""
    f = p["kv_read_fraction"] if fraction is None else fraction
    threads = f"policies.weight_offload.fs_copy_threads={int(p['fs_copy_threads'])}"
    ii = serve(INSTINFER, (f"policies.weight_offload.storage_read_fraction={num(f)}",))
    fg = {a: serve(INSTINFER, (f"policies.weight_offload.attention={a}", f"policies.weight_offload.disk_io={disk_io}",
                               threads)) for a in ("gpu", "host")}
    best = max(fg, key=lambda a: fg[a].summary["output_tokens_per_s"])
    return ii, fg[best], best


@measure
def instinfer_gain(p: Params) -> Figure:
    ii, fg, where = instinfer_runs(p)
    a, b = ii.summary["output_tokens_per_s"], fg.summary["output_tokens_per_s"]
    return a / b, (f"{b:.1f} vs {a:.1f} tok/s (FlexGen: memmap reads, attention on the {where}); decode step "
                   f"{fg.summary['tpot_s']['p50']:.1f} s vs {ii.summary['tpot_s']['p50']:.2f} s")


# -- TPI-LLM: Llama-2-70B over 8 laptops on 1 Gbit/s Ethernet -------------------------------------------------

TPI = "tpi_llm_llama2_70b.yaml"
ACCELERATE = ("cluster.tensor_parallel=1", "policies.weight_offload.overlap=false")


def tpi_sets(p: Params) -> tuple[str, ...]:
    return (f"engine.activation_reserve={num(p.get('runtime_gib', 1.0))}GiB",
            f"hardware.interconnect.latency_s={num(p.get('link_latency_ms', 0.5))}ms",
            f"hardware.interconnect.bw_bytes_per_s={num(p.get('link_bw_mb_s', 125.0))}MB/s")


@measure
def tpi_peak_memory(p: Params) -> Figure:
    from simulator.config.loader import load_scenario
    from simulator.runner import memory_plan
    from simulator.serving.weight_offload import build_weight_offload

    sc = load_scenario(PAPERS / TPI, list(tpi_sets(p)))
    plan, wo = memory_plan(sc), build_weight_offload(sc, sc.pools[0])
    tp = sc.pools[0].tensor_parallel
    kv = sc.spec.engine.max_model_len * plan.kv_bytes_per_token
    master = plan.weight_bytes + (tp - 1) * wo.other_bytes + kv + plan.activation_bytes
    return master / 1e9, (f"window of 4 x {wo.layer_bytes / 1e6:.0f} MB shards + embedding and head "
                          f"{tp * wo.other_bytes / 1e9:.2f} GB + KV + runtime")


def tpi_pair(p: Params):
    sets = tpi_sets(p)
    return serve(TPI, sets).summary, serve(TPI, (*sets, *ACCELERATE)).summary


@measure
def tpi_ttft_cut(p: Params) -> Figure:
    t, a = tpi_pair(p)
    x, y = t["ttft_s"]["p50"], a["ttft_s"]["p50"]
    return 1.0 - x / y, f"TTFT {x:.1f} s vs {y:.1f} s (Accelerate-like: one laptop, no prefetch)"


@measure
def tpi_token_cut(p: Params) -> Figure:
    t, a = tpi_pair(p)
    x, y = t["tpot_s"]["p50"], a["tpot_s"]["p50"]
    return 1.0 - x / y, f"token {x:.2f} s vs {y:.1f} s"


def _rows():
    """The expectations (built on first access: ``simulator.reproduce`` imports this module while it loads)."""
    from simulator.reproduce import ANALYTIC, INPUT_BOUND, KV, MECHANISM, Expectation, Input

    H2O_INPUTS = (Input("kv_budget", 0.2, "policies.kv_cache.budget_fraction", "H2O's 20 % budget (input)"),
                  Input("num_gpu_batches", 8, "policies.weight_offload.num_gpu_batches (block = k x the largest GPU "
                        "batch whose activations fit)", "FlexGen's largest block setting", True))
    SHADOW_INPUTS = (Input("sparse_budget", 0.0156, "policies.kv_cache.sparse_budget", "ShadowKV's 1.56 % (input)"),
                     Input("rank", 160, "policies.kv_cache.rank", "ShadowKV's key rank (input)", True),
                     Input("outlier_fraction", 0.002, "policies.kv_cache.outlier_fraction", "assumed"))
    TPI_INPUTS = (Input("link_latency_ms", 0.5, "hardware.interconnect.latency_s (ms)",
                        "estimate for a switched LAN + TCP"),
                  Input("link_bw_mb_s", 125, "hardware.interconnect.bw_bytes_per_s (MB/s)", "1 Gbit/s Ethernet"))
    FLASH_INPUTS = (Input("ffn_density", 0.03, "policies.weight_offload.ffn_density",
                          "OPT ReLU FFN ~97 % zero (paper)"),
                    Input("predictor_precision", 0.5, "policies.weight_offload.predictor_precision", "assumed"))

    return (
        Expectation(
            "flexgen_opt30b_t4", KV, "FlexGen (ICML 2023)",
            "OPT-30B on one T4 (208 GB DRAM), 512 + 32 tokens: 7.32 tok/s", 7.32, "tok/s",
            "recalled, not verified offline",
            "output tok/s of 192 requests (4 GPU batches x 48), weights and KV in host DRAM, CPU attention (serving "
            "engine, policies.weight_offload stream)", "flexgen_tok_s", MECHANISM, FLEXGEN,
            (Input("prompt_tokens", 512, "workload.prompt_tokens.value", "the paper's setting", True),),
            missed="hwsim's roofline runs the prefill GEMMs at the T4's full fp16 peak and CPU attention at half the "
                   "DRAM bandwidth with no Python or synchronisation overhead: ~3x faster than the measured system"),
        Expectation(
            "h2o_vs_flexgen", KV, "H2O (NeurIPS 2023)",
            "20 % KV budget: up to 3x throughput vs FlexGen (OPT-30B, T4)", 3.0, "x", "abstract",
            "output tok/s, FlexGen + kv_cache h2o at the largest block its GPU activations allow / FlexGen's 192",
            "h2o_vs_flexgen", MECHANISM, FLEXGEN, H2O_INPUTS,
            missed="at 512 + 32 tokens the prefill (full attention, untouched by the budget) is about half the time, "
                   "so a larger block raises throughput less than the budget shrinks the KV"),
        Expectation(
            "h2o_vs_deepspeed", KV, "H2O (NeurIPS 2023)",
            "up to 29x throughput vs DeepSpeed ZeRO-Inference and HF Accelerate", 29.0, "x", "abstract",
            "output tok/s, H2O as above / weights streamed with full KV on the GPU (the batch the KV admits)",
            "h2o_vs_deepspeed", MECHANISM, FLEXGEN, H2O_INPUTS,
            missed="the 29x also reflects the baselines' measured overheads, which hwsim does not model"),
        Expectation(
            "llm_in_a_flash_cpu", KV, "LLM in a flash (ACL 2024)",
            "a model twice the DRAM runs 4-5x faster than naive loading on CPU", (4.0, 5.0), "x", "abstract",
            "TPOT naive (half of each layer read from flash) / flash (OPT-6.7B, Ryzen 7840U as a roofline device, "
            "client NVMe)", "flash_cpu", MECHANISM, FLASH_CPU, FLASH_INPUTS,
            missed="hwsim's CPU computes a batch-1 token at the DRAM roofline, so flash I/O dominates the naive token; "
                   "the paper's CPU implementation spends far longer on compute"),
        Expectation(
            "llm_in_a_flash_gpu", KV, "LLM in a flash (ACL 2024)",
            "20-25x faster than naive loading on GPU", (20.0, 25.0), "x", "abstract",
            "TPOT naive / flash, RTX-4090, flash reads staged through host DRAM over PCIe 4.0", "flash_gpu", MECHANISM,
            FLASH_GPU, FLASH_INPUTS,
            missed="hwsim's NVMe keeps ~6.6 GB/s for 16 KiB reads at QD32, so the gain approaches the byte ratio; the "
                   "paper's flash (Apple M1 Max SSD) loses more on small random reads"),
        Expectation(
            "instinfer_throughput", KV, "InstInfer (2024)",
            "in-storage decode attention: up to 11.1x throughput vs FlexGen, 13B model on an A6000", 11.1, "x",
            "abstract", "output tok/s of 256 x (1024 + 128) tokens, KV on the drive: attention in storage (SparF) / "
            "FlexGen's best of GPU and CPU attention over its memmap path (serving engine)", "instinfer_gain",
            INPUT_BOUND, INSTINFER,
            (Input("kv_read_fraction", 0.125, "policies.weight_offload.storage_read_fraction",
                   "assumed: SparQ's 1/8 setting"),
             Input("fs_copy_threads", 4, "policies.weight_offload.fs_copy_threads", "FlexGen TorchDisk default",
                   True)),
            driver="kv_read_fraction: the decode gain is about (internal flash bandwidth / kv_read_fraction) / "
                   "FlexGen's read rate; the prefill, the same in both, dilutes it"),
        Expectation(
            "tpi_llm_peak_memory", KV, "TPI-LLM (2024)", "Llama-2-70B peak memory down to 3.1 GB", 3.1, "GB",
            "abstract", "master device: the engine's memory plan at tensor_parallel 8 (a window of 4 layer shards, "
            "its KV for 512 tokens, the runtime) with the embedding and LM head held whole", "tpi_peak_memory",
            INPUT_BOUND, TPI,
            (Input("runtime_gib", 1.0, "engine.activation_reserve (GiB)", "estimate: process + PyTorch resident set"),),
            driver="the runtime's resident set: an estimated 1 GiB of the 3.0 GB"),
        Expectation(
            "tpi_llm_ttft", KV, "TPI-LLM (2024)", "> 80 % lower time to first token than Accelerate", 0.8, "reduction",
            "abstract", "1 - TTFT / the Accelerate-like TTFT (one laptop, whole layers from disk, no prefetch), "
            "serving engine", "tpi_ttft_cut", MECHANISM, TPI, TPI_INPUTS, band=(0.8, 1.0),
            missed="at the band's edge (0.7995): each layer of the 128-token prompt pass is bound by the laptops' "
                   "fp32 compute and two ring all-reduces of 2 MB over 1 Gbit/s Ethernet (TCP payload 94 %); the "
                   "Accelerate-like baseline pays no Python or page-cache overheads"),
        Expectation(
            "tpi_llm_token_latency", KV, "TPI-LLM (2024)", "> 80 % lower per-token latency than Accelerate", 0.8,
            "reduction", "abstract", "1 - TPOT / the Accelerate-like TPOT", "tpi_token_cut", MECHANISM, TPI,
            TPI_INPUTS, band=(0.8, 1.0)),
        Expectation(
            "shadowkv_batch", KV, "ShadowKV (2024)", "up to 6x larger batch (Llama-3.1-8B, 122K, A100)", 6.0, "x",
            "abstract", "sequences of 122,880 tokens the KV blocks hold, kv_cache shadowkv / paged (engine memory "
            "plan; one full KV kept as prefill workspace)", "shadowkv_batch", ANALYTIC, SHADOWKV, SHADOW_INPUTS),
        Expectation(
            "shadowkv_throughput", KV, "ShadowKV (2024)", "up to 3.04x throughput", 3.04, "x", "abstract",
            "decode tok/s at each one's largest batch (batch / median inter-token gap), shadowkv / paged",
            "shadowkv_throughput", MECHANISM, SHADOWKV, SHADOW_INPUTS,
            missed="three quarters of the ShadowKV step is the value fetch over PCIe (22 sequences x 1,917 tokens x "
                   "2 KiB per layer); the paper's kernels reuse recently fetched chunks (value_cache_hit, 0 here) "
                   "and read only the selected rows of the key factor (charged in full here)"),
    )


def __getattr__(name: str):
    if name == "ROWS":
        return _rows()
    raise AttributeError(name)
