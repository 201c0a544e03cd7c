"""Reader of aiconfigurator system directories (Parquet kernel tables per op family / framework / version).

Models: each GEMM row (``gemm/<fw>/<ver>/gemm_perf.parquet``: m, n, k, gemm_dtype -> latency ms)
    as one ``gemm`` Op: ``bfloat16`` at 2 bytes, per-tensor scaled ``fp8`` on the fp8 tensor path
    with 1-byte operands and a bf16 output, preceded by the activation-quantize kernel the
    framework's fp8 linear runs (read the bf16 input, write it in fp8; ``workloads.llm`` lowers an
    fp8 GEMM the same way); each context-attention row (prefill: batch_size
    sequences of isl tokens, causal) as one ``attn_prefill`` Op; each generation-attention row
    (decode: batch_size sequences, one query each, a context of isl + step tokens) as one
    ``attn_decode`` Op; each MLA row (``mla/``, DeepSeek-V3's attention with heads/TP heads on one
    GPU) as a ``workloads.mla`` attention op: context as MHA over up-projected K/V (Q/K 192, V 128)
    or, for SGLang, absorbed (``MLA_CONTEXT_ABSORBED``), generation as absorbed MQA over the latent.
    The class of a row is ``gemm bf16``, ``gemm fp8``, ``context attention``,
    ``generation attention``, ``context mla`` or ``generation mla``; its source is
    ``<framework> <version>``. Block-scaled fp8 GEMM rows (``fp8_block``) are class
    ``gemm fp8_block``: the ``W8A8-fp8-block`` scheme's quantize kernel and GEMM.
Ignores: rows of a variant hwsim cannot express; they are counted per reason, never dropped
    silently: weight-only / SmoothQuant GEMMs, an fp8 KV cache or fp8 attention math (MLA too),
    sliding-window attention, beam width > 1, the wide-EP MLA module tables. The other op families
    of the directory (mla_bmm, quantize, ...).
Sources: NVIDIA aiconfigurator-core 0.12.0 ``systems/`` tables (Apache-2.0),
    ../shared/validation/README.md.
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

from simulator.core.errors import ConfigError
from simulator.validation.vidur import Row
from workloads.llm import Op

PYARROW_HINT = "reading Parquet tables needs pyarrow: pip install 'hwsim[validate]'"
CLASSES = ("gemm bf16", "gemm fp8", "context attention", "generation attention")
# aic system name (directory, or the benchmark CSV's system column) -> hwsim GPU preset; the GPUs
# other than H200/A100 are predicted from their datasheet presets alone
SYSTEM_GPU = {"h200_sxm": "H200", "h100_sxm": "H100-SXM", "h100_pcie": "H100-PCIe", "a100_sxm": "A100-80GB",
              "b200_sxm": "B200", "b300_sxm": "B300", "gb200": "GB200", "gb200_sxm": "GB200", "gb300": "GB300",
              "gb300_sxm": "GB300", "l40s": "L40S"}
GEMM_DTYPES = {"bfloat16": ("gemm bf16", "bf16", 2.0), "float16": ("gemm bf16", "fp16", 2.0),
               "fp8": ("gemm fp8", "fp8", 1.0)}
GEMM_SKIP = {"int8_wo": "weight-only int8 GEMM (TRT-LLM plugin) not mapped",
             "int4_wo": "weight-only int4 GEMM (TRT-LLM plugin) not mapped",
             "sq": "SmoothQuant int8 GEMM not mapped"}


# Timing-backend settings of each framework's kernels (the `timing:` block of a framework profile),
# fitted per framework with `python -m simulator.validation.fit aic ../shared/validation/aic/h200_sxm`:
# the fp8 linear's activation-quantize kernel(s) (traffic over the bytes read + written once, the
# shortest time of the kernel(s), and for a kernel with a CTA per row its bytes in flight and cost per row)
# and, for vLLM and SGLang, its per-tensor fp8 GEMM kernel family: CUTLASS scaled_mm's sm90 dispatch with its
# own efficiency and per-wave cost (hw_models.scaled_mm; refitted with `python -m simulator.validation.fit
# scaled-mm ../shared/validation/aic/h200_sxm --quick` on even rows, odd rows held out); the attention
# constants of its kernels per family (fa2 fitted on a100_sxm, fa3 on h200_sxm; vLLM's fa3 decode also its own share
# of HBM bandwidth, `python -m simulator.validation.fit decode-hbm ../shared/validation/aic/h200_sxm vllm --quick`;
# the fa3 prefill constants, a persistent kernel with the softmax partly overlapped, refitted with `python -m
# simulator.validation.fit context-attention ../shared/validation/aic/h200_sxm --quick`, even rows, odd held out);
# its decode kernel and,
# for TensorRT-LLM, the GQA group XQA serves
# (32; larger groups run the MMHA kernel, which reads K/V once per query head). The fused-MoE kernel
# family each runs by default (hw_models.timing.tile.FIT_MOE holds each family's fitted constants).
FRAMEWORK_TIMING: dict[str, dict] = {
    "sglang": dict(mem_traffic_multiplier={"quant": 1.585}, mem_kernel_floor_s={"quant": 2.793e-6},
                   row_bytes_in_flight=5353.0, row_cost_s={"quant": 44.8e-9},
                   fp8_gemm_kernel="cutlass_sm90", scaled_mm_efficiency=0.7639, scaled_mm_cta_overhead_cycles=1146.3,
                   attention_mma_efficiency=0.8864, fa3_mma_efficiency=0.7301,
                   attention_cta_cycles={"fa2": 1567.1, "fa3": 177.9},
                   attention_prefill_fixed_s={"fa2": 4.547e-6, "fa3": 6.429e-6},
                   attention_softmax_overlap={"fa3": 0.501}, attention_persistent={"fa3": True},
                   attention_decode_fixed_s={"fa2": 6.299e-6, "fa3": 2.895e-6},
                   attention_decode_cta_cycles={"fa2": 4470.7, "fa3": 4993.0},
                   attention_decode_hbm_efficiency={"fa3": 0.8577},
                   moe_kernel="triton_sglang"),
    "trtllm": dict(mem_traffic_multiplier={"quant": 2.512}, mem_kernel_floor_s={"quant": 9.625e-6},
                   row_bytes_in_flight=17521.0,  # quantize refit with the GEMM below held (fit-hbm --refit-quant)
                   scaled_mm_hbm_efficiency=0.7656, scaled_mm_hbm_latency_s=1.058e-6,  # fit-hbm trtllm --max-m 1024
                   attention_mma_efficiency=0.5214, fa3_mma_efficiency=0.6551,
                   attention_cta_cycles={"fa2": 2177.5, "fa3": 8500.6},
                   attention_prefill_fixed_s={"fa2": 6.489e-6, "fa3": 7.551e-6},
                   attention_softmax_overlap={"fa3": 0.5202}, attention_persistent={"fa3": True},
                   attention_decode_fixed_s={"fa2": 6.898e-6, "fa3": 3.321e-6},
                   attention_decode_cta_cycles={"fa2": 1880.4, "fa3": 2267.7},
                   decode_kernel="split_kv", decode_max_group=32,
                   moe_kernel="cutlass",
                   alltoall_efficiency={"ll": 0.505, "ht": 0.601}, alltoall_latency_s={"ll": 38.3e-6, "ht": 59.0e-6}),
    "vllm": dict(mem_traffic_multiplier={"quant": 1.714}, mem_kernel_floor_s={"quant": 1.756e-6},
                 row_bytes_in_flight=3741.0, row_cost_s={"quant": 856.6e-9},
                 fp8_gemm_kernel="cutlass_sm90", scaled_mm_efficiency=0.78, scaled_mm_cta_overhead_cycles=1227.9,
                 scaled_mm_hbm_efficiency=0.7972, scaled_mm_hbm_latency_s=1.259e-6,  # decode_parts fit-hbm
                 attention_mma_efficiency=0.6875, fa3_mma_efficiency=0.756,
                 attention_cta_cycles={"fa2": 2291.0, "fa3": 1247.3},
                 attention_prefill_fixed_s={"fa2": 4.278e-6, "fa3": 7.866e-6},
                 attention_softmax_overlap={"fa3": 0.3428}, attention_persistent={"fa3": True},
                 attention_decode_fixed_s={"fa2": 5.708e-6, "fa3": 4.479e-6},
                 attention_decode_cta_cycles={"fa2": 4713.8, "fa3": 5446.8},
                 attention_decode_hbm_efficiency={"fa3": 0.8705},
                 moe_kernel="triton",
                 alltoall_efficiency={"ll": 0.334, "ht": 0.459}, alltoall_latency_s={"ll": 47.0e-6, "ht": 102.0e-6}),
}


def framework_of(row: Row) -> str:
    return row.source.split(" ", 1)[0]


def by_framework(row: Row) -> str:
    """Summary key: class per framework and version."""
    from simulator.validation.kernels import op_class

    return f"{op_class(row)} | {row.source}"


def predict_aic(rows: list[Row], backend_kind: str, gpu, frameworks: bool = True):
    """A kernels.Result of ``rows``: with the tile backend each framework's rows under its
    ``FRAMEWORK_TIMING`` settings (``frameworks=False``: the backend's defaults for all)."""
    import numpy as np

    from simulator.validation.kernels import Result, predict

    if backend_kind != "tile" or not frameworks:
        return predict(rows, backend_kind, gpu)
    out = np.empty(len(rows))
    from hw_models.timing.tile import FIT_MOE
    from simulator.validation.aic_moe import config_set_of

    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        parts = r.source.split(" ")
        family = parts[2] if len(parts) > 2 and parts[2] in FIT_MOE else None  # a MoE row's kernel family
        groups.setdefault((framework_of(r), family, config_set_of(r.source) if family else ""), []).append(i)
    for (fw, family, cset), idx in groups.items():
        over = {**FRAMEWORK_TIMING.get(fw, {}), **({"moe_kernel": family} if family else {}),
                **({"moe_config_set": cset} if cset else {})}
        res = predict([rows[i] for i in idx], backend_kind, gpu, _merged(over))
        out[idx] = res.predicted
    return Result(backend_kind, rows, out)


def _merged(over: dict) -> dict:
    """Framework overrides merged over the TileConfig defaults (dict fields key by key)."""
    from hw_models.timing.tile import TileConfig

    base = TileConfig()
    return {k: {**getattr(base, k), **v} if isinstance(v, dict) else v for k, v in over.items()}


def is_aic_dir(directory: Path) -> bool:
    """An aic system directory: ``gemm/`` or ``attention/`` folders holding ``collection_meta.yaml``."""
    return any(Path(directory).glob("gemm/*/*/collection_meta.yaml")) or \
        any(Path(directory).glob("attention/*/*/collection_meta.yaml"))


def default_gpu(system_dir: Path) -> str:
    """The GPU preset of an aic system directory (from its name), or a ConfigError."""
    name = Path(system_dir).resolve().name
    if name not in SYSTEM_GPU:
        raise ConfigError(f"{system_dir}: unknown aic system {name!r} (known: {', '.join(sorted(SYSTEM_GPU))}); "
                          "give --gpu PRESET")
    return SYSTEM_GPU[name]


def _read(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ConfigError(PYARROW_HINT) from exc
    return pq.read_table(path).to_pylist()


def _tables(system_dir: Path, family: str, name: str) -> list[tuple[str, Path]]:
    return [(f"{p.parent.parent.name} {p.parent.name}", p)
            for p in sorted(Path(system_dir).glob(f"{family}/*/*/{name}"))]


def _gemm_rows(system_dir: Path, skipped: Counter) -> list[Row]:
    rows: list[Row] = []
    for source, path in _tables(system_dir, "gemm", "gemm_perf.parquet"):
        for r in _read(path):
            dt = r["gemm_dtype"]
            if dt in BLOCK_GEMM_DTYPES:
                rows.append(block_gemm_row(source, r))
                continue
            if dt not in GEMM_DTYPES:
                skipped[GEMM_SKIP.get(dt, f"GEMM dtype {dt!r} not modelled")] += 1
                continue
            cls, dtype, nbytes = GEMM_DTYPES[dt]
            m, n, k = int(r["m"]), int(r["n"]), int(r["k"])
            op = Op("gemm", "gemm", 1, m=m, n=n, k=k, dtype=dtype, dtype_bytes=nbytes,
                    out_bytes=2.0 if nbytes != 2.0 else 0.0)
            item: Op | list[Op] = op
            if nbytes != 2.0:  # the framework's linear quantizes its 16-bit input first (as workloads.llm lowers it)
                item = [Op("elementwise", "gemm_quant", 1, m=m, bytes=int(m * k * (2.0 + nbytes))), op]
            rows.append(Row(source, cls, 1, m, float(r["latency"]) * 1e-3, item))
    return rows


def _attn_skip(r: dict) -> str | None:
    if r.get("window_size", 0):
        return "sliding-window attention not modelled"
    if r.get("beam_width", 1) != 1:
        return "beam search attention not modelled"
    if r["attn_dtype"] != "bfloat16" or r["kv_cache_dtype"] != "bfloat16":
        return "fp8 KV cache / fp8 attention math not modelled"
    return None


def _attention_rows(system_dir: Path, skipped: Counter) -> list[Row]:
    rows: list[Row] = []
    for phase, fname in (("context attention", "context_attention_perf.parquet"),
                         ("generation attention", "generation_attention_perf.parquet")):
        for source, path in _tables(system_dir, "attention", fname):
            for r in _read(path):
                why = _attn_skip(r)
                if why:
                    skipped[f"{phase}: {why}"] += 1
                    continue
                b, h, kvh, hd = int(r["batch_size"]), int(r["num_heads"]), int(r["num_key_value_heads"]), \
                    int(r["head_dim"])
                if phase == "context attention":
                    s = int(r["isl"])
                    op = Op("attn_prefill", "attn_prefill", 1, seqs=b, q_tokens=b * s, kv_tokens=b * s,
                            pairs=b * s * (s + 1) // 2, heads=h, kv_heads=kvh, head_dim=hd)
                else:
                    s = int(r["isl"]) + int(r["step"])
                    op = Op("attn_decode", "attn_decode", 1, seqs=b, q_tokens=b, kv_tokens=b * s, heads=h,
                            kv_heads=kvh, head_dim=hd)
                rows.append(Row(source, phase, 1, b * s, float(r["latency"]) * 1e-3, op))
    return rows


# -- block-scaled fp8 GEMMs (gemm_dtype fp8_block) ----------------------------------------------
# aic gemm_dtype -> (class, quantization preset): DeepSeek-style 128 x 128 weight / 1 x 128 activation scales
BLOCK_GEMM_DTYPES = {"fp8_block": ("gemm fp8_block", "W8A8-fp8-block")}


@functools.cache
def _block_format(preset: str):
    """The GEMM format (``policies.quantization`` LinearFormat) of a quantization preset."""
    import simulator.core.registry as reg
    from simulator.config.loader import resolve_component

    comp = resolve_component({"kind": "scheme", "preset": preset}, reg.QUANTIZATION, "quantization")
    return comp.cls(comp.config).linear("gemm", "bf16", 2.0)


def block_gemm_row(source: str, r: dict) -> Row:
    """A block-scaled fp8 GEMM row as ``workloads.llm`` lowers such a linear: the per-token-group
    activation quantize kernel (bf16 in; fp8 and its fp32 group scales out), then the fp8 GEMM with
    scaled weights and the CUDA-core promotion every ``scale_block_k`` of K, bf16 out."""
    cls, preset = BLOCK_GEMM_DTYPES[r["gemm_dtype"]]
    fmt = _block_format(preset)
    m, n, k = int(r["m"]), int(r["n"]), int(r["k"])
    quant = Op("elementwise", "gemm_quant_group", 1, m=m, bytes=int(m * k * (2.0 + fmt.a_bytes)))
    op = Op("gemm", "gemm", 1, m=m, n=n, k=k, dtype=fmt.tensor_dtype, dtype_bytes=fmt.a_bytes, w_bytes=fmt.w_bytes,
            out_bytes=2.0, scale_block_k=fmt.scale_block_k)
    return Row(source, cls, 1, m, float(r["latency"]) * 1e-3, [quant, op])


# -- multi-head latent attention (mla/) ---------------------------------------------------------
MLA_CLASSES = ("context mla", "generation mla")
# DeepSeek-V3's MLA widths (config.json): the tables are its attention with heads/TP heads per GPU
MLA_DIMS = dict(kv_lora_rank=512, qk_rope_head_dim=64, qk_nope_head_dim=128, v_head_dim=128)
# The context kernel's form per framework. TensorRT-LLM's context MLA is MHA over up-projected K/V
# (Q/K 192, V 128). SGLang's runs absorbed (MQA over the 576/512-wide latent): at the longest prompts
# its rows take 3.2-3.3x TensorRT-LLM's (mla/*/context_mla_perf.parquet, 128 heads, isl 16384-32768),
# the ratio of the two forms' FLOPs per (query, key) pair, 2 x (576 + 512) / (2 x (192 + 128)) = 3.4.
MLA_CONTEXT_ABSORBED = {"sglang": True, "trtllm": False}


def _mla_skip(r: dict) -> str | None:
    if r.get("mla_dtype", "bfloat16") != "bfloat16" or r.get("kv_cache_dtype", "bfloat16") != "bfloat16":
        return "fp8 KV cache / fp8 MLA math not modelled"
    return None


def _mla_item(phase: str, fw: str, r: dict) -> Op:
    from workloads.mla import MlaAttnOp, absorbed_prefill_op

    d = MLA_DIMS
    b, h = int(r["batch_size"]), int(r["num_heads"])  # num_heads: the heads on one GPU (128 / tp_size)
    latent = d["kv_lora_rank"] + d["qk_rope_head_dim"]
    if phase == "context mla":
        s = int(r["isl"])
        if MLA_CONTEXT_ABSORBED.get(fw, False):
            return absorbed_prefill_op(b, s, h, d["kv_lora_rank"], d["qk_rope_head_dim"])
        return MlaAttnOp("attn_prefill", "attn_prefill", 1, seqs=b, q_tokens=b * s, kv_tokens=b * s,
                         pairs=b * s * (s + 1) // 2, heads=h, kv_heads=h,
                         head_dim=d["qk_nope_head_dim"] + d["qk_rope_head_dim"], v_head_dim=d["v_head_dim"])
    s = int(r["isl"]) + int(r["step"])
    return MlaAttnOp("attn_decode", "attn_decode", 1, seqs=b, q_tokens=b, kv_tokens=b * s, heads=h, kv_heads=1,
                     head_dim=latent, v_head_dim=d["kv_lora_rank"], latent=True)


def mla_rows(system_dir: Path, skipped: Counter) -> list[Row]:
    """The MLA attention kernel tables (``mla/<fw>/<ver>/{context,generation}_mla_perf.parquet``) as
    ``context mla`` / ``generation mla`` rows; the wide-EP module tables are counted as skipped."""
    rows: list[Row] = []
    for phase, fname in (("context mla", "context_mla_perf.parquet"),
                         ("generation mla", "generation_mla_perf.parquet")):
        for source, path in _tables(system_dir, "mla", fname):
            fw = source.split(" ", 1)[0]
            for r in _read(path):
                why = _mla_skip(r)
                if why:
                    skipped[f"{phase}: {why}"] += 1
                    continue
                op = _mla_item(phase, fw, r)
                x = int(r["batch_size"]) * (int(r["isl"]) + (int(r["step"]) if phase == "generation mla" else 0))
                rows.append(Row(source, phase, 1, x, float(r["latency"]) * 1e-3, op))
        for _, path in _tables(system_dir, "mla", f"wideep_{fname}"):
            skipped[f"{phase}: wide-EP MLA module table (fp8 block projections, fp8 KV) not mapped"] += \
                len(_read(path))
    return rows


def load_aic(system_dir: Path) -> tuple[list[Row], dict[str, int]]:
    """(rows, {skip reason: count}) of an aic system directory's GEMM and attention tables.

    Raises ConfigError when pyarrow is missing (``PYARROW_HINT``)."""
    system_dir = Path(system_dir)
    skipped: Counter = Counter()
    rows = _gemm_rows(system_dir, skipped) + _attention_rows(system_dir, skipped) + mla_rows(system_dir, skipped)
    # -- communication tables (comm/): appended here ------------------------------------------
    from simulator.validation.aic_comm import read_comm

    comm, comm_skipped = read_comm(system_dir)
    rows += comm
    skipped.update(comm_skipped)
    # -- MoE tables (moe/): the fused MoE op ---------------------------------------------------
    from simulator.validation.aic_moe import read_moe

    moe, moe_skipped = read_moe(system_dir)
    rows += moe
    skipped.update(moe_skipped)
    from simulator.validation.aic_moe import read_a2a

    a2a, a2a_skipped = read_a2a(system_dir)
    rows += a2a
    skipped.update(a2a_skipped)

    return rows, dict(sorted(skipped.items()))
