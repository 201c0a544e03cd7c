"""Predict end-to-end serving benchmarks: one closed-loop simulation per measured row.

Each row of a benchmark CSV (the aiconfigurator ``silicon_e2e`` format: model, framework and
version, precision, isl, osl, concurrency, tp/pp/dp/ep, agg or disagg, measured TTFT and TPOT in
ms) becomes a scenario: the row's GPU preset, the model's shipped config, the framework profile
(``engine.framework``), the precision as a quantization scheme (and the profile's KV dtype),
``concurrency`` clients in a closed loop sending fixed-length requests, all starting at once, as a
max-concurrency benchmark does. The simulation's mean TTFT and mean TPOT over all requests
(TPOT = (end - first token) / (output tokens - 1), as benchmark tools compute it) are compared
with the measurement.

Models: every row as its scenario on the one engine (no per-row constants).
Ignores: benchmark-tool overheads outside the engine (HTTP, tokenization in the client).
Sources: ../shared/validation/README.md (format); benchmark tools' TPOT definition (vLLM
    ``benchmarks/serve.py``, SGLang ``bench_serving.py``).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simulator.core.errors import ConfigError, HwsimError
from simulator.validation.aic import SYSTEM_GPU
from simulator.validation.serving_plausible import (  # noqa: F401  (re-exported)
    BUSY_CHUNK,
    PLAUSIBLE_BUSY,
    PLAUSIBLE_PEAK,
    TENSOR_DTYPE,
    implied_busy,
    implied_peak,
)

REQUIRED = ("model_path", "backend", "backend_version", "precision", "mode", "isl", "osl", "batch_size", "tp_size",
            "silicon_ttft_ms", "silicon_tpot_ms")
# Model families served as mixture-of-experts (expert routing, expert parallelism in the scenario).
MOE_FAMILIES = ("deepseek", "qwen3-235b", "qwen3-30b-a3b", "qwen3.5", "kimi", "minimax", "gpt-oss", "glm-4.5",
                "glm-5", "mixtral", "llama-4", "dbrx", "grok")
PRECISION = {"fp8": "W8A8-fp8", "bf16": None, "fp16": None, "fp4": "W4A16-mxfp4-moe"}
# the quantization scheme of a row's GEMM / MoE quant mode columns, where they name one
QUANT_MODE = {"fp8": "W8A8-fp8", "fp8_block": "W8A8-fp8-block", "nvfp4": "W4A16-mxfp4-moe",
              "mxfp4": "W4A16-mxfp4-moe", "bf16": None, "float16": None}
# Checkpoints published with block-scaled fp8 weights (128 x 128 blocks): an engine loading one runs its
# block-fp8 kernels whatever a row's quant-mode label says (the aic rows label the same checkpoint fp8_block
# for SGLang and fp8 for vLLM; DeepSeek-V3 / R1 fp8_block for SGLang and fp8 for TensorRT-LLM). Sources: the
# Qwen/Qwen3-235B-A22B-FP8 model card ("fine-grained fp8 quantization with a block size of 128"), the
# DeepSeek-V3 technical report section 3.3 (fp8 weights in 128 x 128 blocks, the released checkpoints);
# their config.json quantization_config weight_block_size [128, 128].
BLOCK_FP8_CHECKPOINTS = ("qwen3-235b-a22b-fp8", "deepseek-v3", "deepseek-r1")
# the largest tensor-parallel group of one node (NVSwitch, 8 GPUs): larger rows span nodes
NODE_GPUS = 8


@dataclass
class ServingRow:
    line: int  # 1-based line in the file (the header is line 1)
    id: str
    model: str
    framework: str
    version: str | None
    precision: str
    mode: str
    isl: int
    osl: int
    concurrency: int
    tp: int
    pp: int
    dp: int
    ep: int
    system: str
    ttft_ms: float
    tpot_ms: float
    extra: dict[str, Any] = field(default_factory=dict)
    moe_tp: int = 0  # 0: not given (= tp / ep)
    gemm_quant: str = ""
    moe_quant: str = ""


def _num(r: dict[str, str], col: str, line: int, path: Path, default: float | None = None) -> float:
    v = (r.get(col) or "").strip()
    if not v:
        if default is not None:
            return default
        raise ConfigError(f"{path.name} line {line}: field {col!r} is empty")
    try:
        x = float(v)
    except ValueError:
        raise ConfigError(f"{path.name} line {line}: field {col!r} is not a number: {v!r}") from None
    if not math.isfinite(x) or x < 0:
        raise ConfigError(f"{path.name} line {line}: field {col!r} must be a finite number >= 0, got {v!r}",
                          where=str(path))
    return x


def read_rows(path: Path) -> list[ServingRow]:
    """Rows of a benchmark CSV; a missing column or a bad value is one error naming line and field."""
    try:
        f = open(path, newline="")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    with f:
        try:
            return _read(f, path)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path.name}: not a text CSV file ({exc.reason} at byte {exc.start})") from None


def _read(f, path: Path) -> list[ServingRow]:
    reader = csv.DictReader(f)
    cols = reader.fieldnames or []
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise ConfigError(f"{path.name}: missing column(s) {', '.join(missing)} (line 1)")
    rows = []
    for i, r in enumerate(reader, start=2):
        def n(col: str, default: float | None = None, r: dict = r, i: int = i) -> float:
            return _num(r, col, i, path, default)

        mode = (r.get("mode") or "agg").strip().lower()
        agg = mode == "agg"  # disaggregated rows give concurrency and parallelism per worker pool
        conc, tp = int(n("batch_size", None if agg else 0)), int(n("tp_size", None if agg else 0))
        isl, osl = int(n("isl")), int(n("osl"))
        for col, v in (("batch_size", conc), ("tp_size", tp), ("isl", isl), ("osl", osl)):
            if not agg and col in ("batch_size", "tp_size"):
                continue
            if v < 1:
                raise ConfigError(f"{path.name} line {i}: field {col!r} must be >= 1, got {v}")
        for col in ("silicon_ttft_ms", "silicon_tpot_ms"):
            if n(col) <= 0:
                raise ConfigError(f"{path.name} line {i}: field {col!r} must be > 0 (a measured time), got {n(col)}")
        ver = (r.get("backend_version") or "").strip() or None
        rows.append(ServingRow(
            line=i, id=(r.get("id") or f"line{i}").strip(), model=(r.get("model_path") or "").strip(),
            framework=(r.get("backend") or "").strip(), version=ver,
            precision=(r.get("precision") or "").strip().lower(), mode=mode,
            isl=isl, osl=osl, concurrency=conc, tp=tp, pp=int(n("pp_size", 1)),
            dp=int(n("attention_dp_size", 1)), ep=int(n("moe_ep_size", 1)),
            system=(r.get("system") or "").strip().lower(),
            ttft_ms=n("silicon_ttft_ms"), tpot_ms=n("silicon_tpot_ms"), moe_tp=int(n("moe_tp_size", 0)),
            gemm_quant=(r.get("gemm_quant_mode") or "").strip().lower(),
            moe_quant=(r.get("moe_quant_mode") or "").strip().lower()))
    return rows


def _is_moe(model: str) -> bool:
    name = model.lower().split("/")[-1]
    return any(f in name for f in MOE_FAMILIES)


def classify(row: ServingRow, gpu: str | None = None) -> tuple[dict[str, Any] | None, str | None, str]:
    """(scenario dict, None, note) for a row hwsim models; (None, skip reason, '') for a row it
    cannot model yet. Input it cannot read at all (a model it does not know, an unknown framework
    or version, a precision it has no scheme for) raises ConfigError naming the line and field."""
    from simulator.config.framework import resolve_profile
    from workloads.architectures.transformer import preset_for_hf_id

    where = f"line {row.line}"
    if row.mode != "agg":
        return None, f"mode {row.mode!r}: only aggregated serving rows are predicted", ""
    preset = preset_for_hf_id(row.model)
    if preset is None and _is_moe(row.model):  # a known MoE family whose configuration hwsim does not ship
        return None, "mixture-of-experts model not shipped with hwsim (no configuration for it)", ""
    if preset is None:
        raise ConfigError(f"line {row.line}: field 'model_path': model {row.model!r} is not shipped with hwsim",
                          where=where)
    if row.version and re.search(r"dev", row.version) and not re.match(r"^\d", row.version):
        return None, f"version {row.version!r} is a development build, not a release hwsim has a profile for", ""
    prof = resolve_profile(row.framework, row.version, where=f"line {row.line}: field 'backend_version'") \
        if row.framework.lower() in ("vllm", "sglang", "trtllm") else None
    if prof is None:
        raise ConfigError(f"line {row.line}: field 'backend': unknown framework {row.framework!r}; known: vllm, "
                          f"sglang, trtllm")
    if row.precision not in PRECISION:
        raise ConfigError(f"line {row.line}: field 'precision': {row.precision!r} is not modelled; known: "
                          f"{', '.join(PRECISION)}")
    moe = _is_moe(row.model)
    if row.pp > 1 or (row.dp > 1 and not moe):
        return None, "pipeline parallelism, or attention data parallelism of a dense model, is not modelled here", ""
    ep, dp, gpus = 1, 1, row.tp
    if moe:  # attention: dp groups of tp GPUs; MoE: moe_tp x moe_ep GPUs = all of them
        ep = row.ep
        moe_tp = row.moe_tp or max(1, row.tp * row.dp // max(1, ep))
        gpus = moe_tp * ep
        if gpus % row.tp or (row.dp > 1 and gpus != row.tp * row.dp):
            return None, (f"MoE layout moe_tp {moe_tp} x moe_ep {ep} does not match attention tp {row.tp} x "
                          f"dp {row.dp}"), ""
        dp = gpus // row.tp
    if gpus > NODE_GPUS:
        return None, f"{gpus} GPUs span several nodes: multi-node parallelism is not modelled here", ""
    gpu = gpu or SYSTEM_GPU.get(row.system)
    if gpu is None:
        raise ConfigError(f"line {row.line}: field 'system': unknown system {row.system!r}; give --gpu")
    note = "" if row.version else f"version not given: {prof.name} profile"
    scheme = PRECISION[row.precision]
    mode = row.moe_quant if moe else row.gemm_quant
    if mode in QUANT_MODE:
        scheme = QUANT_MODE[mode]
    if scheme == "W8A8-fp8" and row.model.lower().split("/")[-1] in BLOCK_FP8_CHECKPOINTS:
        scheme = "W8A8-fp8-block"
    if scheme == "W8A8-fp8-block" and not fp8_checkpoint(row.model):
        scheme = "W8A8-fp8"  # a 16-bit checkpoint quantized at load time cannot run block scales (below)
    quant = None
    if scheme is not None:
        quant = {"kind": "scheme", "preset": scheme}
        if prof.kv_cache_dtype == "fp8":
            quant["kv"] = {"dtype": "fp8_e4m3"}
    n = row.concurrency
    scenario = {
        "name": row.id, "seed": 0,
        "hardware": {"device": {"kind": "gpu", "preset": gpu}},
        # The frameworks run a model's own sliding-window layers windowed (gpt-oss, Gemma, Mistral).
        # MoE: a served batch's tokens pick their experts by the router, not dealt evenly (workloads.moe)
        "model": {"kind": "transformer", "preset": preset, **({"attention": {}} if _windowed(preset) else {}),
                  **({"routing": {"draw": "random"}} if moe else {})},
        "cluster": {"tensor_parallel": gpus, **({"expert_parallel": ep} if ep > 1 else {}),
                    **({"attention_data_parallel": dp} if dp > 1 else {})},
        # the row's own release: its profile with the defaults that release changed (profile ``versions``)
        "engine": {"framework": f"{prof.framework}-{row.version or prof.version}",
                   "max_model_len": row.isl + row.osl},
        "workload": {"kind": "closed_loop", "clients": row.concurrency, "num_requests": n,
                     "prompt_tokens": {"dist": "fixed", "value": row.isl},
                     "output_tokens": {"dist": "fixed", "value": row.osl}},
        "policies": {"quantization": quant} if quant else {},
        "outputs": {"report": False, "chrome_trace": False, "events": False, "requests": False},
    }
    return scenario, None, note


def fp8_checkpoint(model: str) -> bool:
    """Whether a Hugging Face id names a checkpoint published in fp8 (``-FP8`` in its name, or a checkpoint
    of ``BLOCK_FP8_CHECKPOINTS``). A 16-bit checkpoint served with fp8 quantization is quantized at load
    time, and that runs per-channel weight scales with per-token activation scales, never 128 x 128 blocks:
    sglang==0.5.6.post2 sglang/srt/layers/quantization/fp8.py ``Fp8Config.__init__`` raises for block-wise
    quantization of a checkpoint that is not fp8-serialized, and ``Fp8LinearMethod.process_weights_after_loading``
    quantizes such weights per output channel (``per_token_group_quant_fp8`` over the whole row) for the
    CUTLASS ``fp8_scaled_mm`` (``cutlass_fp8_supported`` on sm90), activations per token
    (``fp8_utils.apply_fp8_linear``). The aic rows label SGLang's fp8 ``fp8_block`` whatever the checkpoint."""
    name = model.lower().split("/")[-1]
    return "fp8" in name or name in BLOCK_FP8_CHECKPOINTS


def _windowed(preset: str) -> bool:
    """Whether the model's config declares sliding-window layers (``sliding_window_tokens``)."""
    from simulator.config.loader import resolve_component
    from simulator.core import registry as reg

    return bool(resolve_component({"kind": "transformer", "preset": preset}, reg.MODELS, "model")
                .config.sliding_window_tokens)


STEADY_ROUNDS = 3


def round_means(requests: dict, clients: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """((TTFT, TPOT) mean seconds of round 2, of round 3) of a closed-loop run of 3 rounds of
    ``clients`` requests: round k is ids (k - 1) x clients up to k x clients, the k-th ``clients``
    requests issued (the closed loop hands its table out in order to whichever client is free, as a
    concurrency-limited benchmark does: by issue order, whatever order they finish in). Round 2 runs
    at full concurrency; round 3 holds the last request issued and drains (no request follows a
    finished one). Unfinished requests (NaN) are left out of the means; ``not_finished`` counts them."""
    rid = np.asarray(requests["rid"])
    ttft, tpot = np.asarray(requests["ttft_s"], float), np.asarray(requests["tpot_s"], float)
    out = []
    for lo in (clients, 2 * clients):
        sel = (rid >= lo) & (rid < lo + clients)
        out.append((float(np.nanmean(ttft[sel])), float(np.nanmean(tpot[sel]))))
    return out[0], out[1]


def not_finished(requests: dict, first_rid: int, total: int) -> int:
    """Requests of ids ``first_rid`` up to ``total`` that did not finish (rejected, unfinished or never
    issued): the means leave them out, so the prediction's note states their count."""
    from simulator.results import FINISHED

    rid = np.asarray(requests["rid"])
    sel = (rid >= first_rid) & (rid < total)
    return int(total - first_rid - (sel & (np.asarray(requests["status"]) == FINISHED)).sum())


@dataclass
class Prediction:
    row: ServingRow
    ttft_ms: float = float("nan")
    tpot_ms: float = float("nan")
    skipped: str | None = None
    note: str = ""
    wall_s: float = 0.0
    implied_peak: float = float("nan")  # the measurement's prompt GEMM FLOP/s per GPU / dense peak
    implied_busy: float = float("nan")  # GPU seconds per second its prompts' GEMMs + all-reduces need

    @property
    def implausible(self) -> bool:
        return self.implied_peak > PLAUSIBLE_PEAK or self.implied_busy > PLAUSIBLE_BUSY


def predict_row(args: tuple[ServingRow, str | None, str, int, str, dict | None]) -> Prediction:
    import time

    from simulator.config.loader import load_scenario
    from simulator.runner import run_scenario

    row, gpu, backend, per_client, start, fw_over = args
    scenario, reason, note = classify(row, gpu)
    if scenario is None:
        return Prediction(row, skipped=reason)
    if fw_over:
        scenario["engine"]["framework"] = {"preset": scenario["engine"]["framework"], **fw_over}
    if backend != "tile":
        scenario["hardware"]["timing"] = {"kind": backend}
    t0 = time.perf_counter()
    try:
        c = row.concurrency
        if per_client == 1 or start == "burst":  # the whole benchmark, every client at once
            scenario["workload"]["num_requests"] = per_client * c
            first = run_scenario(load_scenario(scenario)).summary
            ttft, tpot = first["ttft_s"]["mean"], first["tpot_s"]["mean"]
            left = first["requests_total"] - first["requests_finished"]
        else:
            # pass 1: the benchmark's first round, every client at once (its queueing is in the means),
            # followed by the second round's requests as its clients finish (their prefills interleave
            # with the first round's last decodes, as in the benchmark); round 1 is ids 0 up to clients
            scenario["workload"]["num_requests"] = 2 * c
            burst = run_scenario(load_scenario(scenario)).requests
            r1 = np.asarray(burst["rid"]) < c
            first = {k: float(np.nanmean(np.asarray(burst[k], float)[r1])) for k in ("ttft_s", "tpot_s", "e2e_s")}
            # pass 2: the later rounds in steady state. The clients' first requests are spread over
            # one request lifetime from pass 1 (a desynchronised closed loop: real clients drift
            # apart), 3 rounds with the first left out as warm-up
            scenario["workload"]["num_requests"] = STEADY_ROUNDS * c
            scenario["workload"]["ramp_up"] = f"{first['e2e_s']}s"
            scenario["run"] = {"warmup_requests": c}
            steady = run_scenario(load_scenario(scenario)).requests
            # the benchmark's mean over per_client rounds: one burst, the last round draining (its clients
            # stop one by one, so it runs below the concurrency), the rest steady; here round 2 is the
            # steady round and round 3 the drain, each weighed as one of the benchmark's rounds
            mid, drain = round_means(steady, c)
            w = 1.0 / per_client
            ws = max(0.0, 1.0 - 2 * w)
            ttft = w * first["ttft_s"] + ws * mid[0] + w * drain[0]
            tpot = w * first["tpot_s"] + ws * mid[1] + w * drain[1]
            left = not_finished(burst, 0, c) + not_finished(steady, c, STEADY_ROUNDS * c)
    except HwsimError as exc:  # e.g. the model does not fit: the row cannot run as configured
        return Prediction(row, skipped=f"cannot run: {exc}", note=note)
    if not math.isfinite(ttft) or (row.osl > 1 and not math.isfinite(tpot)):
        return Prediction(row, skipped="cannot run: no simulated request of a round finished", note=note)
    if left:
        note = "; ".join(x for x in (note, f"{left} simulated request(s) did not finish (rejected): left out of "
                                           f"the means") if x)
    return Prediction(row, ttft_ms=1e3 * ttft, tpot_ms=1e3 * tpot, note=note, wall_s=time.perf_counter() - t0,
                      implied_peak=implied_peak(row, scenario), implied_busy=implied_busy(row, scenario))


def check_rows(rows: list[ServingRow], gpu: str | None) -> None:
    """Raise on the first row that is bad input (before any simulation runs)."""
    for r in rows:
        classify(r, gpu)


def predict_all(rows: list[ServingRow], gpu: str | None = None, backend: str = "tile", jobs: int = 1,
                per_client: int = 10, start: str = "ramp", framework_overrides: dict | None = None
                ) -> list[Prediction]:
    """``framework_overrides``: fields merged over every row's framework profile (e.g. a fit's
    ``{"host": {"per_seq_s": "40us"}}``)."""
    from simulator.config.loader import resolve_component
    from simulator.core import registry as reg

    resolve_component({"kind": backend}, reg.TIMING, "--backend")  # an unknown backend: one error, before any row
    check_rows(rows, gpu)
    args = [(r, gpu, backend, per_client, start, framework_overrides) for r in rows]
    if jobs <= 1:
        return [predict_row(a) for a in args]
    import multiprocessing as mp

    # longest simulations first, so the pool's last tasks are short
    order = sorted(range(len(args)), key=lambda i: -(args[i][0].concurrency * args[i][0].osl))
    with mp.get_context("fork").Pool(jobs) as pool:
        done = pool.map(predict_row, [args[i] for i in order], chunksize=1)
    out: list[Prediction | None] = [None] * len(args)
    for i, p in zip(order, done):
        out[i] = p
    return out  # type: ignore[return-value]


def errors(preds: list[Prediction], metric: str) -> tuple[np.ndarray, np.ndarray]:
    ok = [p for p in preds if p.skipped is None]
    pred = np.array([getattr(p, f"{metric}_ms") for p in ok])
    meas = np.array([getattr(p.row, f"{metric}_ms") for p in ok])
    return pred, meas


def stats(pred: np.ndarray, meas: np.ndarray) -> tuple[float, float, float, int]:
    """(median APE %, p90 APE %, bias % = median signed error, rows)."""
    if pred.size == 0:
        return float("nan"), float("nan"), float("nan"), 0
    signed = (pred - meas) / meas
    ape = np.abs(signed)
    return (100 * float(np.median(ape)), 100 * float(np.percentile(ape, 90)), 100 * float(np.median(signed)),
            int(pred.size))


def group_key(p: Prediction) -> str:
    r = p.row
    dp = max(r.dp, (r.moe_tp * r.ep) // r.tp if r.moe_tp else 1)
    return f"{r.model.split('/')[-1]} {r.framework} tp{r.tp}" + (f" dp{dp}" if dp > 1 else "") + \
        (f" ep{r.ep}" if r.ep > 1 else "")


def format_table(preds: list[Prediction], backend: str) -> str:
    lines = [f"{'class':44s} {'backend':8s} {'median APE':>11s} {'p90 APE':>9s} {'bias':>8s} {'rows':>6s}"]

    def add(label: str, sub: list[Prediction]) -> None:
        for metric in ("ttft", "tpot"):
            med, p90, bias, n = stats(*errors(sub, metric))
            if n:
                lines.append(f"{(label + ' ' + metric).strip():44s} {backend:8s} {med:10.1f}% {p90:8.1f}% "
                             f"{bias:+7.1f}% {n:6d}")

    add("", preds)
    flagged = [p for p in preds if p.skipped is None and p.implausible]
    if flagged:
        add(f"without {len(flagged)} implausible", [p for p in preds if p.skipped is None and not p.implausible])
    moe = [p for p in preds if p.skipped is None and _is_moe(p.row.model)]
    if moe and len(moe) < len([p for p in preds if p.skipped is None]):  # both kinds: each on its own
        add("dense", [p for p in preds if p.skipped is None and not _is_moe(p.row.model)])
        add("moe", moe)
    groups: dict[str, list[Prediction]] = {}
    for p in preds:
        if p.skipped is None:
            groups.setdefault(group_key(p), []).append(p)
    for k in sorted(groups):
        add(k, groups[k])
    return "\n".join(lines)


def skipped_summary(preds: list[Prediction]) -> list[str]:
    reasons: dict[str, int] = {}
    for p in preds:
        if p.skipped is not None:
            reasons[p.skipped] = reasons.get(p.skipped, 0) + 1
    return [f"skipped {n} row(s): {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1])]


def write_rows(preds: list[Prediction], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["line", "id", "model", "framework", "version", "precision", "isl", "osl", "concurrency", "tp",
                    "measured_ttft_ms", "predicted_ttft_ms", "ttft_error_pct", "measured_tpot_ms",
                    "predicted_tpot_ms", "tpot_error_pct", "implied_peak_fraction", "implied_busy", "skipped",
                    "note"])
        for p in preds:
            r = p.row

            def err(pred: float, meas: float, p: Prediction = p) -> str:
                return "" if p.skipped is not None else f"{100 * (pred - meas) / meas:+.2f}"

            w.writerow([r.line, r.id, r.model, r.framework, r.version or "", r.precision, r.isl, r.osl,
                        r.concurrency, r.tp, f"{r.ttft_ms:.3f}", "" if p.skipped else f"{p.ttft_ms:.3f}",
                        err(p.ttft_ms, r.ttft_ms), f"{r.tpot_ms:.3f}", "" if p.skipped else f"{p.tpot_ms:.3f}",
                        err(p.tpot_ms, r.tpot_ms), "" if p.skipped else f"{p.implied_peak:.3f}",
                        "" if p.skipped else f"{p.implied_busy:.3f}", p.skipped or "",
                        p.note + ("; implausible: the measured throughput needs the prompts' GEMMs at more than "
                                  f"{PLAUSIBLE_PEAK:g} of the dense peak, or the prompts' GEMMs and all-reduces "
                                  f"more than {PLAUSIBLE_BUSY:g} s of GPU time per second"
                                  if p.skipped is None and p.implausible else "")])
    return path
