"""Metrics: pure functions from what a run recorded to tables and a summary.

Latency definitions (all per request, seconds):
- queue: first admission to a batch - arrival;  TTFT: first token - arrival;
- TPOT: (finish - first token) / (generated - 1), for requests with more than one token;
- ITL: every gap between consecutive tokens of a request (preemption stalls included);
- E2E: finish - arrival.
Measured requests: all but the first ``run.warmup_requests`` (and those arriving before
``run.warmup``) and the last ``run.cooldown_requests``, by arrival order. Throughput and goodput
are over the measured window: first measured arrival to last measured finish. Utilisation means
(batch size, KV, queue) are weighted by segment duration while busy.
SLO attainment: the share of measured requests that finished within every SLO given; a rejected
request and one still unfinished when the run stopped count as misses. With no TTFT or TPOT SLO
there is nothing to attain: the attainment is NaN (null in summary.json), not 100 %.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hw_models.energy import idle_power_w
from simulator.core.clock import PS_PER_S
from simulator.core.request import FINISHED as R_FINISHED
from simulator.core.request import REJECTED as R_REJECTED
from simulator.energy_summary import draft_idle_w, energy_figures, request_energy_figures, transfer_joules
from simulator.results import FINISHED, REJECTED, UNFINISHED, RunResult

if TYPE_CHECKING:
    from simulator.runner import Simulation

QUANTILES = (50, 90, 99)


def stats(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.all():  # no copy when every value is finite (the inter-token gaps always are)
        x = x[finite]
    if x.size == 0:
        return {"count": 0, "mean": float("nan"), "p50": float("nan"), "p90": float("nan"),
                "p99": float("nan"), "max": float("nan")}
    q = np.percentile(x, QUANTILES)
    return {"count": int(x.size), "mean": float(x.mean()), "p50": float(q[0]), "p90": float(q[1]),
            "p99": float(q[2]), "max": float(x.max())}


def check_exclusions(run: Any, n_requests: int) -> None:
    """Warm-up and cool-down must leave at least one request of the workload measured."""
    from simulator.core.errors import ConfigError

    cool = run.cooldown_requests
    if cool and run.warmup_requests + cool >= n_requests:
        raise ConfigError(f"{cool} (with warmup_requests={run.warmup_requests}) leaves none of the workload's "
                          f"{n_requests} requests measured", where="run.cooldown_requests")


def slo_meets(req: dict[str, np.ndarray], ttft_s: float | None, tpot_s: float | None) -> np.ndarray:
    """Per request: finished, with TTFT <= ``ttft_s`` and TPOT <= ``tpot_s`` where given (a
    request with one token has no TPOT and meets any TPOT SLO)."""
    ok = req["status"] == FINISHED
    if ttft_s is not None:
        ok &= req["ttft_s"] <= ttft_s
    if tpot_s is not None:
        ok &= ~(req["tpot_s"] > tpot_s)
    return ok


def slo_attainment(req: dict[str, np.ndarray], ttft_s: float | None, tpot_s: float | None) -> float:
    """Share of the measured requests that finished within the SLOs, over *all* measured requests
    (rejected and unfinished ones are misses); NaN when no SLO is given or nothing is measured.
    The run summary and the capacity search both use this definition."""
    measured = req["measured"]
    n = int(measured.sum())
    if (ttft_s is None and tpot_s is None) or n == 0:
        return float("nan")
    return float((slo_meets(req, ttft_s, tpot_s) & measured).sum()) / n


def request_columns(requests: list, warmup_requests: int, warmup_s: float,
                    cooldown_requests: int = 0, total_requests: int | None = None) -> dict[str, np.ndarray]:
    """``total_requests``: requests in the workload (rids 0..total-1; the last
    ``cooldown_requests`` of them are not measured). Default: the requests given."""
    n = len(requests)
    col = {k: np.empty(n, dtype=np.int64) for k in
           ("rid", "replica", "arrival_ps", "sched_ps", "first_ps", "finish_ps", "prompt_tokens",
            "output_tokens", "generated_tokens", "preemptions", "state")}
    for i, r in enumerate(requests):
        col["rid"][i] = r.rid
        col["replica"][i] = r.replica
        col["arrival_ps"][i] = r.arrival_ps
        col["sched_ps"][i] = r.first_scheduled_ps
        col["first_ps"][i] = r.first_token_ps
        col["finish_ps"][i] = r.finish_ps
        col["prompt_tokens"][i] = r.prompt_tokens
        col["output_tokens"][i] = r.max_new_tokens
        col["generated_tokens"][i] = r.num_generated
        col["preemptions"][i] = r.num_preemptions
        col["state"][i] = r.state
    energy = np.array([r.energy_j for r in requests], dtype=np.float64)
    order = np.argsort(col["rid"], kind="stable")
    col = {k: v[order] for k, v in col.items()}

    def sec(ps: np.ndarray) -> np.ndarray:
        out = ps.astype(np.float64) / PS_PER_S
        out[ps < 0] = np.nan
        return out

    arrival = sec(col["arrival_ps"])
    status = np.full(n, UNFINISHED, dtype=np.int64)
    status[col["state"] == R_FINISHED] = FINISHED
    status[col["state"] == R_REJECTED] = REJECTED
    finish = sec(col["finish_ps"])
    finish[status != FINISHED] = np.nan
    first = sec(col["first_ps"])
    gen = col["generated_tokens"]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(gen > 1, (finish - first) / np.maximum(gen - 1, 1), np.nan)
    return {
        "rid": col["rid"], "replica": col["replica"], "arrival_s": arrival,
        "first_scheduled_s": sec(col["sched_ps"]), "first_token_s": first, "finish_s": finish,
        "prompt_tokens": col["prompt_tokens"], "output_tokens": col["output_tokens"],
        "generated_tokens": gen, "preemptions": col["preemptions"], "status": status,
        "measured": ((col["rid"] >= warmup_requests) & (arrival >= warmup_s)
                     & (col["rid"] < (n if total_requests is None else total_requests) - cooldown_requests)),
        "ttft_s": first - arrival, "tpot_s": tpot, "e2e_s": finish - arrival,
        "queue_s": sec(col["sched_ps"]) - arrival,
        "energy_j": energy[order],  # dynamic joules attributed by token share (serving/request_energy.py)
    }


def inter_token_gaps(requests: list, iter_ends: list[np.ndarray], measured_rids: set[int] | None) -> np.ndarray:
    """All gaps between consecutive tokens of each request, from its runs of iterations."""
    from itertools import chain

    offsets = np.cumsum([0] + [len(a) for a in iter_ends])
    ends = np.concatenate(iter_ends) if iter_ends else np.zeros(0, np.int64)
    sel = [r.runs for r in requests if r.runs and (measured_rids is None or r.rid in measured_rids)]
    if not sel:
        return np.zeros(0)
    runs = np.fromiter(chain.from_iterable(chain.from_iterable(sel)), dtype=np.int64).reshape(-1, 3)
    counts = np.fromiter(map(len, sel), dtype=np.int64, count=len(sel))
    start = offsets[runs[:, 0]] + runs[:, 1]  # global index of each run's first iteration end
    length = runs[:, 2] - runs[:, 1]
    later = np.ones(len(runs), dtype=bool)  # a run after the request's first: its first gap spans runs
    later[np.cumsum(counts) - counts] = False
    # gaps inside a run are consecutive differences of the end times; a later run's first gap is
    # its first end minus the previous run's last end (taken from ``cross``, appended after ``inner``)
    inner = np.diff(ends)
    prev = np.flatnonzero(later) - 1
    cross = ends[start[later]] - ends[start[prev] + length[prev] - 1]
    gaps = length - 1 + later  # per run, in request order and run order
    out_start = np.cumsum(gaps) - gaps
    # source of output position p in run r: inner[start_r + (p - out_start_r) - later_r]
    src = np.arange(int(gaps.sum()), dtype=np.int64) + np.repeat(start - out_start - later, gaps)
    src[out_start[later]] = len(inner) + np.arange(int(later.sum()), dtype=np.int64)
    # int64 / int: float64, each value float(a) / float(b); divided before the gather (one
    # division per iteration gap, not one per token: the rows of an iteration share its gap)
    return (np.concatenate([inner, cross]) / PS_PER_S)[src]


def littles_law(arrival_s: np.ndarray, depart_s: np.ndarray, horizon_s: float) -> dict[str, float]:
    """Time-average number in system L (integrated from the event sequence) against lambda x W
    over [0, horizon]; requests still in the system at the horizon are counted until then."""
    a = arrival_s[np.isfinite(arrival_s)]
    d = np.where(np.isfinite(depart_s), depart_s, horizon_s)[np.isfinite(arrival_s)]
    if a.size == 0 or horizon_s <= 0:
        return {"L": 0.0, "lambda_W": 0.0, "lambda": 0.0, "W": 0.0}
    times = np.concatenate([a, d])
    steps = np.concatenate([np.ones(a.size), -np.ones(d.size)])
    order = np.lexsort((steps, times))  # departures before arrivals at equal times
    times, steps = times[order], steps[order]
    n_in = np.cumsum(steps)
    area = float(np.sum(n_in[:-1] * np.diff(times)))
    lam = a.size / horizon_s
    w = float(np.mean(d - a))
    return {"L": area / horizon_s, "lambda_W": lam * w, "lambda": lam, "W": w}


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    total = weights.sum()
    return float((values * weights).sum() / total) if total > 0 else 0.0


def summarize(req: dict[str, np.ndarray], batches: dict[str, np.ndarray], itl: np.ndarray,
              sim_time_s: float, facts: dict[str, Any], slo: Any) -> dict[str, Any]:
    status = req["status"]
    measured = req["measured"]
    fin = (status == FINISHED) & measured
    arr = req["arrival_s"][measured]
    window_start = float(np.nanmin(arr)) if arr.size else 0.0
    window_end = float(np.nanmax(req["finish_s"][fin])) if fin.any() else sim_time_s
    window = max(window_end - window_start, 1e-12)
    out_tokens = int(req["generated_tokens"][fin].sum())
    in_tokens = int(req["prompt_tokens"][fin].sum())
    s: dict[str, Any] = {
        "requests_total": facts["requests_total"],
        "requests_arrived": int(status.size),
        "requests_finished": int((status == FINISHED).sum()),
        "requests_rejected": int((status == REJECTED).sum()),
        "requests_unfinished": int((status == UNFINISHED).sum()),
        "requests_measured": int(measured.sum()),
        "sim_time_s": sim_time_s,
        "measured_window_s": window,
        "throughput_rps": float(fin.sum()) / window,
        "output_tokens_per_s": out_tokens / window,
        "total_tokens_per_s": (out_tokens + in_tokens) / window,
        "ttft_s": stats(req["ttft_s"][fin]),
        "tpot_s": stats(req["tpot_s"][fin]),
        "itl_s": stats(itl),
        "e2e_s": stats(req["e2e_s"][fin]),
        "queue_s": stats(req["queue_s"][fin]),
        "preemptions": int(req["preemptions"].sum()),
    }
    ok = slo_meets(req, slo.ttft, slo.tpot) & measured
    s["slo"] = {"ttft_s": slo.ttft, "tpot_s": slo.tpot, "attainment_target": slo.attainment}
    att = slo_attainment(req, slo.ttft, slo.tpot)
    s["slo_attainment"] = att  # NaN (null in summary.json) when no SLO is set
    s["slo_met"] = bool(att >= slo.attainment) if np.isfinite(att) else None
    s["goodput_rps"] = float(ok.sum()) / window
    dur = (batches["end_ps"] - batches["start_ps"]).astype(np.float64)
    kv_frac = np.divide(batches["kv_blocks_used"], np.maximum(batches["kv_blocks_total"], 1))
    s["batch_size_mean"] = _weighted_mean(batches["running"].astype(np.float64), dur)
    s["queue_length_mean"] = _weighted_mean(batches["waiting"].astype(np.float64), dur)
    s["kv_utilization_mean"] = _weighted_mean(kv_frac, dur)
    s["kv_utilization_peak"] = float(kv_frac.max()) if kv_frac.size else 0.0
    # internal fragmentation: allocated block slots not holding a running request's token (the
    # unfilled tail of each last block, reservations, pages, blocks held for transfers)
    block = np.array([r["block_size"] for r in facts["replica_facts"]], dtype=np.float64)
    slots = batches["kv_blocks_used"].astype(np.float64) * (block[batches["replica"]] if block.size else 1.0)
    used_slots = slots > 0
    frag = np.where(used_slots, 1.0 - np.divide(batches["kv_tokens"], np.where(used_slots, slots, 1.0)), 0.0)
    s["kv_fragmentation_mean"] = _weighted_mean(frag[used_slots], dur[used_slots]) if used_slots.any() else 0.0
    busy_r, flops_r = per_replica(batches["replica"], dur, batches["flops"], len(facts["replica_facts"]))
    cluster_figures(s, busy_r, flops_r, int(batches["iterations"].sum()), int(dur.size), out_tokens, sim_time_s,
                    facts)
    s["littles_law"] = littles_law(req["arrival_s"], req["depart_s"], sim_time_s)
    s["memory"] = facts["memory"]
    # modelled energy (hw_models.energy) replaces the busy x TDP estimate of energy per token
    s.update(energy_figures(batches, facts["replica_facts"], sim_time_s, out_tokens, s["requests_finished"]))
    if "energy_j" in s:
        s.update(request_energy_figures(req["energy_j"], fin))
    return s


def per_replica(replica: np.ndarray, dur: np.ndarray, flops: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Busy seconds and FLOP per replica from batch segments."""
    busy_r = np.bincount(replica, weights=dur, minlength=n)[:n] / PS_PER_S
    flops_r = np.bincount(replica, weights=flops, minlength=n)[:n]
    return busy_r, flops_r


def cluster_figures(s: dict[str, Any], busy_r: np.ndarray, flops_r: np.ndarray, iterations: int, segments: int,
                    out_tokens: int, sim_time_s: float, facts: dict[str, Any]) -> None:
    """Busy fraction, MFU, cost, energy, pools and KV transfers into summary ``s`` (in place)."""
    reps = facts["replica_facts"]  # one dict per replica: tp, peak_flops, price_usd_per_h, tdp_w
    tp = np.array([r["tp"] for r in reps], dtype=np.float64)
    peak = np.array([r["peak_flops"] for r in reps], dtype=np.float64)
    busy_s = float(busy_r.sum())
    gpus = float(tp.sum())
    s["gpu_busy_fraction"] = busy_s / (len(reps) * sim_time_s) if sim_time_s > 0 else 0.0
    # flops are recorded per GPU of each replica
    s["mfu"] = float((flops_r * tp).sum() / ((tp * peak).sum() * sim_time_s)) if sim_time_s > 0 else 0.0
    s["iterations"] = iterations
    s["batch_segments"] = segments
    s["gpus"] = int(gpus)
    prices = [r["price_usd_per_h"] for r in reps]
    if all(p for p in prices):
        cost = float(sum(p * t for p, t in zip(prices, tp))) * sim_time_s / 3600.0
        s["cost_usd"] = cost
        s["cost_usd_per_mtok"] = cost / (out_tokens / 1e6) if out_tokens else float("nan")
    s["energy_busy_j"] = float(sum(b * t * (r["tdp_w"] or 0.0) for b, t, r in zip(busy_r, tp, reps)))
    s["energy_per_output_token_j"] = s["energy_busy_j"] / out_tokens if out_tokens else float("nan")
    if facts.get("pools") and len(facts["pools"]) > 1:
        s["pools"] = {}
        for p in facts["pools"]:
            idx = np.asarray(p["replicas"], dtype=np.int64)
            s["pools"][p["name"]] = {
                "role": p["role"], "replicas": len(idx), "gpus": int(tp[idx].sum()),
                "busy_fraction": float(busy_r[idx].sum() / (len(idx) * sim_time_s)) if sim_time_s > 0 else 0.0,
                "mfu": float((flops_r[idx] * tp[idx]).sum() / ((tp[idx] * peak[idx]).sum() * sim_time_s))
                if sim_time_s > 0 else 0.0,
                "energy_busy_j": float(sum(busy_r[i] * tp[i] * (reps[i]["tdp_w"] or 0.0) for i in idx)),
                "cost_usd": float(sum((reps[i]["price_usd_per_h"] or 0.0) * tp[i] for i in idx)) * sim_time_s / 3600.0}
    if facts.get("transfers"):
        t = np.asarray(facts["transfers"], dtype=np.float64)
        s["kv_transfer"] = {"count": int(t.shape[0]), "bytes": float(t[:, 3].sum()),
                            "time_s": stats((t[:, 2] - t[:, 1]) / PS_PER_S)}


def run_facts(sim: Simulation) -> dict[str, Any]:
    """What the summary needs to know about the cluster: per-replica and per-pool facts, KV
    transfers and the memory plan."""
    mem = sim.mem
    gib = 2.0**30
    dtype = sim.scenario.model.config.dtype
    replica_facts = []
    pools = []
    xfer = transfer_joules(sim)
    for rt in sim.pools:
        dev = rt.pool.device.config
        pools.append({"name": rt.pool.name, "role": rt.pool.role, "replicas": rt.replicas})
        for i in rt.replicas:
            replica_facts.append({
                "index": i, "pool": rt.pool.name, "role": rt.pool.role, "device": dev.name,
                "tp": rt.pool.tensor_parallel, "devices": rt.pool.tensor_parallel,
                "kv_blocks_total": rt.mem.kv_blocks, "block_size": rt.mem.block_size,
                "kv_bytes_per_block": rt.mem.kv_bytes_per_token * rt.mem.block_size,
                "peak_flops": dev.tensor_peak(dtype), "price_usd_per_h": dev.price, "tdp_w": dev.tdp_w,
                "idle_w": (idle_power_w(dev) if getattr(dev, "tdp_w", None) else 0.0)
                + draft_idle_w(sim.cluster.replicas[i]),
                "transfer_j": float(xfer[i]),  # per device: swaps, offload, KV hand-off, migration
                "busy_s": sim.cluster.replicas[i].busy_ps / PS_PER_S})
    return {
        "requests_total": len(sim.table), "replica_facts": replica_facts, "pools": pools,
        "transfers": sim.cluster.transfers,
        "memory": {"weights_gib_per_gpu": mem.weight_bytes / gib, "kv_gib_per_gpu": mem.kv_bytes / gib,
                   "kv_blocks_per_replica": mem.kv_blocks, "block_size": mem.block_size,
                   "kv_tokens_per_replica": mem.kv_blocks * mem.block_size,
                   "kv_bytes_per_token_per_gpu": mem.kv_bytes_per_token},
    }


def finish_result(sim: Simulation, summary: dict[str, Any], req: dict[str, np.ndarray],
                  batches: dict[str, np.ndarray], events: dict[str, np.ndarray], itl: np.ndarray,
                  replica_facts: list, wall_s: float, **extra: Any) -> RunResult:
    """The :class:`RunResult` from a summary and the tables (ps columns also given in seconds)."""
    summary["wall_s"] = wall_s
    from simulator.serving.kv_offload import kv_summary

    kv = kv_summary(sim.cluster.replicas)
    if kv:
        summary["kv_cache"] = kv
    variant = getattr(sim.scenario.model.config, "attention", None)
    if variant is not None:  # an attention variant's quality effect: inputs, reported as given
        summary["attention_variant"] = {"accuracy_delta": variant.accuracy_delta, "quality_note": variant.quality_note}
    batches_s = dict(batches)
    batches_s["start_s"] = batches["start_ps"] / PS_PER_S
    batches_s["end_s"] = batches["end_ps"] / PS_PER_S
    events["t_s"] = events["t_ps"] / PS_PER_S
    spans = [(pl.index, *span) for pl in sim.pipelines for span in pl.spans]
    stages = {}
    if spans:
        a = np.asarray(spans, dtype=np.int64)
        stages = {"pipeline": a[:, 0], "stage": a[:, 1], "engine": a[:, 2], "start_s": a[:, 3] / PS_PER_S,
                  "end_s": a[:, 4] / PS_PER_S}
    spec = sim.scenario.spec
    return RunResult(name=spec.name, scenario=sim.scenario.dump(), summary=summary, requests=req, batches=batches_s,
                     events=events, itl_s=itl, replicas=replica_facts, sim_time_s=sim.env.now / PS_PER_S,
                     wall_s=wall_s, stages=stages, **extra)


def build_result(sim: Simulation, wall_s: float) -> RunResult:
    if sim.stream is not None:
        return sim.stream.result(sim, wall_s)
    from simulator.core.request import REJECTED as R_REJ

    spec = sim.scenario.spec
    requests = sim.cluster.requests
    req = request_columns(requests, spec.run.warmup_requests, spec.run.warmup, spec.run.cooldown_requests,
                          len(sim.table))
    depart = np.full(len(requests), np.nan)
    by_rid = sorted(requests, key=lambda r: r.rid)
    for i, r in enumerate(by_rid):
        if r.state in (R_FINISHED, R_REJ):
            depart[i] = r.finish_ps / PS_PER_S
    req["depart_s"] = depart
    rec = sim.recorder
    batches = rec.batch_columns()
    measured_rids = set(req["rid"][req["measured"]].tolist())
    n_rep = len(sim.cluster.replicas)
    itl = inter_token_gaps(requests, [rec.iteration_ends(i) for i in range(n_rep)], measured_rids)
    sim_time_s = sim.env.now / PS_PER_S
    facts = run_facts(sim)
    summary = summarize(req, batches, itl, sim_time_s, facts, spec.slo)
    return finish_result(sim, summary, req, batches, rec.event_columns(), itl, facts["replica_facts"], wall_s)
