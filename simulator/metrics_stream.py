"""Bounded-memory metrics for large runs (``run.metrics: streaming``; ``auto`` above 50,000 requests).

The exact metrics (simulator/metrics.py) keep every request object until the end and build one
array of every inter-token gap (22 million gaps at 100,000 requests). In streaming mode a request
leaves the simulator when it finishes: finished requests are taken in chunks of ``CHUNK``, turned
into the same per-request columns as the exact path, and

- their latencies (TTFT, TPOT, end-to-end, queueing) and inter-token gaps go into log-bucket
  sketches (simulator/sketch.py: every percentile within 0.5 % of the exact one; counts, means
  and maxima exact);
- counts, token sums, the measured window, SLO hits and the sojourn-time sum (Little's law) are
  running sums;
- their rows are appended to requests.csv in a temporary folder (moved into the results folder
  by :func:`simulator.outputs.write_results`), and so are the batch segments and events the
  recorder gathered since the last chunk (then dropped from memory); utilisation means are
  running duration-weighted sums;
- a deterministic sample stays in memory for the report and the trace: every k-th request
  (k = ceil(requests / ``SAMPLE_REQUESTS``)) with its events and inter-token gaps, and every
  m-th batch segment (m doubles whenever more than ``SAMPLE_SEGMENTS`` are held).

Rows of requests.csv come in the order requests finished (by rid within a chunk), not by rid.
What still grows with the run: one 8-byte iteration end time per iteration per replica (the
inter-token gaps of a request still running are read from it), the workload table and the
requests in flight.
"""

from __future__ import annotations

import math
from itertools import chain
from typing import TYPE_CHECKING, Any

import numpy as np

from simulator.core.clock import PS_PER_S
from simulator.energy_summary import energy_figures
from simulator.metrics import cluster_figures, finish_result, per_replica, request_columns, run_facts, slo_meets
from simulator.results import FINISHED, REJECTED, UNFINISHED, RunResult, Spool
from simulator.sketch import RELATIVE_ERROR, LogHistogram

if TYPE_CHECKING:
    from simulator.runner import Simulation

STREAM_THRESHOLD = 50_000  # auto: streaming for workloads of more requests than this
CHUNK = 8192  # finished requests summarised (and recorder tables flushed) at a time
SAMPLE_REQUESTS = 20_000  # about this many requests (with their events and gaps) kept for the report
SAMPLE_SEGMENTS = 50_000  # at most this many batch segments kept for the report
LATENCIES = ("ttft_s", "tpot_s", "e2e_s", "queue_s")


def streaming(mode: str, n_requests: int) -> bool:
    return mode == "streaming" or (mode == "auto" and n_requests > STREAM_THRESHOLD)


def run_itl(requests: list, iter_end_ps: list, measured: np.ndarray) -> np.ndarray:
    """Inter-token gaps of ``requests`` (those with ``measured`` true), read from each replica's
    iteration end times without concatenating them (the same gaps as metrics.inter_token_gaps)."""
    runs, same = _flat_runs(requests, measured)
    if runs.shape[0] == 0:
        return np.zeros(0)
    rep, a, b = runs[:, 0], runs[:, 1], runs[:, 2]
    lengths = b - a
    run_off = np.cumsum(lengths) - lengths
    idx = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(run_off - a, lengths)
    times = _gather(iter_end_ps, np.repeat(rep, lengths), idx)
    first = np.zeros(idx.size, dtype=bool)  # the first token of each request has no gap before it
    first[run_off[~same & (lengths > 0)]] = True
    return (np.diff(times)[~first[1:]]).astype(np.float64) / PS_PER_S


def _flat_runs(requests: list, measured: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every run (replica, first, end iteration) of the measured requests as one (n, 3) array, and
    whether each run continues the request of the run before it."""
    sel = [r.runs for r, m in zip(requests, measured.tolist()) if m and r.runs]
    if not sel:
        return np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=bool)
    runs = np.fromiter(chain.from_iterable(chain.from_iterable(sel)), dtype=np.int64).reshape(-1, 3)
    counts = np.fromiter(map(len, sel), dtype=np.int64, count=len(sel))
    same = np.ones(runs.shape[0], dtype=bool)
    same[np.cumsum(counts) - counts] = False  # a request's first run starts afresh
    return runs, same


def _gather(iter_end_ps: list, rep: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Iteration end times ``iter_end_ps[rep[i]][idx[i]]`` for every i."""
    out = np.empty(idx.size, dtype=np.int64)
    for r in np.unique(rep).tolist():
        m = rep == r
        ends = np.frombuffer(iter_end_ps[r], dtype=np.int64)
        out[m] = ends[idx[m]]
        del ends  # release the buffer: the replica appends to its array again
    return out


def run_itl_weighted(requests: list, iter_end_ps: list, measured: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same gaps as :func:`run_itl` as (distinct gap, how many requests had it): all requests
    in a batch share its iteration end times, so each iteration gap is taken once per replica and
    weighted by the runs that span it (a difference array over the iterations), and only gaps
    between two runs of one request (after an iteration it sat out, a preemption or a KV
    transfer) are taken one by one."""
    runs, same = _flat_runs(requests, measured)
    if runs.shape[0] == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    rep, a, b = runs[:, 0], runs[:, 1], runs[:, 2]
    k = np.flatnonzero(same)  # run k continues run k - 1 of the same request
    cross = (_gather(iter_end_ps, rep[k], a[k]) - _gather(iter_end_ps, rep[k - 1], b[k - 1] - 1)) / PS_PER_S
    values, weights = [cross.astype(np.float64)], [np.ones(k.size, dtype=np.int64)]
    long = b - a > 1
    for r in np.unique(rep[long]).tolist():
        m = long & (rep == r)
        ar, br = a[m], b[m]
        lo, hi = int(ar.min()), int(br.max())
        # cover[j - lo]: runs with a < j < b (+1 where a run's inner gaps start, -1 past its last)
        cover = np.bincount(ar + 1 - lo, minlength=hi - lo + 1) - np.bincount(br - lo, minlength=hi - lo + 1)
        w = np.cumsum(cover)[1:hi - lo]  # iterations j = lo+1 .. hi-1
        ends = np.frombuffer(iter_end_ps[r], dtype=np.int64)
        gaps = np.diff(ends[lo:hi]).astype(np.float64) / PS_PER_S
        del ends
        used = w > 0
        values.append(gaps[used])
        weights.append(w[used])
    return np.concatenate(values), np.concatenate(weights)


class RunStream:
    """Receives requests as they finish and keeps memory bounded; see the module docstring."""

    def __init__(self, sim: Simulation) -> None:
        spec = sim.scenario.spec
        self.rec = sim.recorder
        self.total = len(sim.table)
        self.warm_n, self.warm_s, self.cool = spec.run.warmup_requests, spec.run.warmup, spec.run.cooldown_requests
        self.slo = spec.slo
        self.stride = max(1, math.ceil(self.total / SAMPLE_REQUESTS))
        self.block = None  # per-replica block size, set at the first flush (replicas exist by then)
        self.pending: list = []
        self.sketch = {k: LogHistogram() for k in (*LATENCIES, "itl_s", "energy_j")}
        self.energy_attributed_j = 0.0  # joules attributed to every request (serving/request_energy.py)
        self.n = {"arrived": 0, "finished": 0, "rejected": 0, "unfinished": 0, "measured": 0, "fin_measured": 0,
                  "slo_ok": 0, "preemptions": 0, "out_tokens": 0, "in_tokens": 0}
        self.window = [math.inf, -math.inf]  # first measured arrival, last measured finish
        self.sojourn_s = 0.0  # sum over arrived requests of (departure or end of run) - arrival
        self.unfinished_arrivals: list[np.ndarray] = []
        self.seg = {"dur": 0.0, "running": 0.0, "waiting": 0.0, "kv": 0.0, "kv_peak": 0.0, "frag": 0.0,
                    "frag_dur": 0.0, "iterations": 0, "count": 0}
        self.busy_r: np.ndarray | None = None
        self.energy_r: np.ndarray | None = None
        self.power_peak: float | None = None
        self.flops_r: np.ndarray | None = None
        self.samples: dict[str, list] = {"requests": [], "itl": [], "events": [], "batches": []}
        self.seg_stride = 1
        self.seg_seen = 0
        outs = spec.outputs
        self.spool = Spool() if (outs.requests or outs.events) else None
        self.fh: dict[str, Any] = {}
        from simulator.outputs import BATCH_COLUMNS, EVENT_COLUMNS, REQUEST_COLUMNS

        for key, cols, on in (("requests", REQUEST_COLUMNS, outs.requests), ("events", EVENT_COLUMNS, outs.events),
                              ("batches", BATCH_COLUMNS, outs.events)):
            if on:
                fh = self.fh[key] = self.spool.path(key).open("w", newline="", encoding="utf-8")
                fh.write(",".join(cols) + "\n")

    # -- as the run goes -----------------------------------------------------------------
    def done(self, req) -> None:
        self.pending.append(req)
        if len(self.pending) >= CHUNK:
            self.flush()

    def flush(self, sim_time_ps: int | None = None) -> None:
        if self.pending:
            self._requests(self.pending, sim_time_ps)
            self.pending = []
        self._recorder()

    def _requests(self, requests: list, end_ps: int | None) -> None:
        from simulator.outputs import REQUEST_COLUMNS, REQUEST_FORMATTERS, write_rows

        req = request_columns(requests, self.warm_n, self.warm_s, self.cool, self.total)
        order = sorted(requests, key=lambda r: r.rid)  # request_columns sorts by rid
        n = self.n
        status, measured = req["status"], req["measured"]
        fin = (status == FINISHED) & measured
        n["arrived"] += int(status.size)
        n["finished"] += int((status == FINISHED).sum())
        n["rejected"] += int((status == REJECTED).sum())
        n["unfinished"] += int((status == UNFINISHED).sum())
        n["measured"] += int(measured.sum())
        n["fin_measured"] += int(fin.sum())
        n["preemptions"] += int(req["preemptions"].sum())
        n["out_tokens"] += int(req["generated_tokens"][fin].sum())
        n["in_tokens"] += int(req["prompt_tokens"][fin].sum())
        n["slo_ok"] += int((slo_meets(req, self.slo.ttft, self.slo.tpot) & measured).sum())
        if measured.any():
            self.window[0] = min(self.window[0], float(np.nanmin(req["arrival_s"][measured])))
        if fin.any():
            self.window[1] = max(self.window[1], float(np.nanmax(req["finish_s"][fin])))
        for k in LATENCIES:
            self.sketch[k].add(req[k][fin])
        self.sketch["energy_j"].add(req["energy_j"][fin])
        self.energy_attributed_j += float(req["energy_j"].sum())
        self.sketch["itl_s"].add(*run_itl_weighted(order, self.rec.iter_end_ps, measured))
        done = np.isin(status, (FINISHED, REJECTED))
        depart = np.where(done, np.array([r.finish_ps for r in order], dtype=np.float64) / PS_PER_S, np.nan)
        req["depart_s"] = depart
        arrived = np.isfinite(req["arrival_s"])
        self.sojourn_s += float(np.sum((depart - req["arrival_s"])[arrived & done]))
        if (arrived & ~done).any():  # still in the system when the run stopped: counted until then
            self.unfinished_arrivals.append(req["arrival_s"][arrived & ~done])
        keep = req["rid"] % self.stride == 0
        if keep.any():
            self.samples["requests"].append({k: v[keep] for k, v in req.items()})
            sub = [r for r, m in zip(order, keep.tolist()) if m]
            self.samples["itl"].append(run_itl(sub, self.rec.iter_end_ps, measured[keep]))
        if "requests" in self.fh:
            write_rows(self.fh["requests"], req, REQUEST_COLUMNS, REQUEST_FORMATTERS)

    def _recorder(self) -> None:
        """Summarise, write and drop the batch segments and events recorded since the last call."""
        from simulator.outputs import BATCH_COLUMNS, EVENT_COLUMNS, EVENT_FORMATTERS, write_rows

        rec = self.rec
        b = rec.batch_columns()
        ev = rec.event_columns()
        for name, v in vars(rec).items():  # every per-segment and per-event column, whatever it holds
            if name.startswith(("batch", "ev_")):
                for a in (v.values() if isinstance(v, dict) else (v,)):
                    del a[:]
        if b["replica"].size:
            self._segments(b)
            if "batches" in self.fh:
                write_rows(self.fh["batches"], b, BATCH_COLUMNS)
        if ev["t_ps"].size:
            keep = (ev["request"] % self.stride == 0) & (ev["request"] >= 0)
            self.samples["events"].append({k: v[keep] for k, v in ev.items()})
            if "events" in self.fh:
                write_rows(self.fh["events"], ev, EVENT_COLUMNS, EVENT_FORMATTERS)

    def _segments(self, b: dict[str, np.ndarray]) -> None:
        g = self.seg
        dur = (b["end_ps"] - b["start_ps"]).astype(np.float64)
        kv_frac = np.divide(b["kv_blocks_used"], np.maximum(b["kv_blocks_total"], 1))
        g["dur"] += float(dur.sum())
        g["running"] += float((b["running"].astype(np.float64) * dur).sum())
        g["waiting"] += float((b["waiting"].astype(np.float64) * dur).sum())
        g["kv"] += float((kv_frac * dur).sum())
        g["kv_peak"] = max(g["kv_peak"], float(kv_frac.max()))
        block = self.block
        slots = b["kv_blocks_used"].astype(np.float64) * (block[b["replica"]] if block.size else 1.0)
        used = slots > 0
        frag = np.where(used, 1.0 - np.divide(b["kv_tokens"], np.where(used, slots, 1.0)), 0.0)
        g["frag"] += float((frag[used] * dur[used]).sum())
        g["frag_dur"] += float(dur[used].sum())
        g["iterations"] += int(b["iterations"].sum())
        g["count"] += int(dur.size)
        busy, flops = per_replica(b["replica"], dur, b["flops"], self.busy_r.size)
        self.busy_r += busy
        self.flops_r += flops
        if "energy_j" in b:  # dynamic joules per device; the peak segment power as energy_figures has it
            dyn = b["energy_j"].astype(np.float64)
            self.energy_r += np.bincount(b["replica"], weights=dyn, minlength=self.busy_r.size)[:self.busy_r.size]
            seg_w = np.divide(dyn, dur * 1e-12, out=np.zeros_like(dyn), where=dur > 0) + self.idle_w[b["replica"]]
            self.power_peak = max(self.power_peak, float(seg_w.max()))
        # the report's sample: every seg_stride-th segment, the stride doubling when it holds too many
        idx = np.arange(self.seg_seen, self.seg_seen + dur.size)
        self.seg_seen += dur.size
        self.samples["batches"].append({k: v[idx % self.seg_stride == 0] for k, v in b.items()})
        held = sum(x["replica"].size for x in self.samples["batches"])
        if held > SAMPLE_SEGMENTS:
            self.seg_stride *= 2
            merged = _concat(self.samples["batches"])
            self.samples["batches"] = [{k: v[::2] for k, v in merged.items()}]

    # -- at the end ----------------------------------------------------------------------
    def result(self, sim: Simulation, wall_s: float) -> RunResult:
        cl = sim.cluster
        self.pending.extend(cl.live.values())  # still queued or running when the run stopped
        cl.live.clear()
        self.flush()
        for fh in self.fh.values():
            fh.close()
        sim_time_s = sim.env.now / PS_PER_S
        facts = run_facts(sim)
        summary = self._summary(sim_time_s, facts)
        req = _concat(self.samples["requests"])
        if req:
            order = np.argsort(req["rid"], kind="stable")
            req = {k: v[order] for k, v in req.items()}
        itl = np.concatenate(self.samples["itl"]) if self.samples["itl"] else np.zeros(0)
        events = _concat(self.samples["events"]) or {k: np.zeros(0, np.int64) for k in
                                                      ("t_ps", "kind", "replica", "request", "value")}
        batches = _concat(self.samples["batches"]) or sim.recorder.batch_columns()
        return finish_result(sim, summary, req, batches, events, itl, facts["replica_facts"], wall_s,
                             spool=self.spool)

    def _summary(self, sim_time_s: float, facts: dict[str, Any]) -> dict[str, Any]:
        n, g, slo = self.n, self.seg, self.slo
        start = self.window[0] if math.isfinite(self.window[0]) else 0.0
        end = self.window[1] if math.isfinite(self.window[1]) else sim_time_s
        window = max(end - start, 1e-12)
        out_tokens = n["out_tokens"]
        s: dict[str, Any] = {
            "requests_total": facts["requests_total"],
            "requests_arrived": n["arrived"],
            "requests_finished": n["finished"],
            "requests_rejected": n["rejected"],
            "requests_unfinished": n["unfinished"],
            "requests_measured": n["measured"],
            "sim_time_s": sim_time_s,
            "measured_window_s": window,
            "throughput_rps": n["fin_measured"] / window,
            "output_tokens_per_s": out_tokens / window,
            "total_tokens_per_s": (out_tokens + n["in_tokens"]) / window,
            "ttft_s": self.sketch["ttft_s"].stats(),
            "tpot_s": self.sketch["tpot_s"].stats(),
            "itl_s": self.sketch["itl_s"].stats(),
            "e2e_s": self.sketch["e2e_s"].stats(),
            "queue_s": self.sketch["queue_s"].stats(),
            "preemptions": n["preemptions"],
        }
        s["slo"] = {"ttft_s": slo.ttft, "tpot_s": slo.tpot, "attainment_target": slo.attainment}
        att = (n["slo_ok"] / n["measured"] if (slo.ttft is not None or slo.tpot is not None) and n["measured"]
               else float("nan"))
        s["slo_attainment"] = att
        s["slo_met"] = bool(att >= slo.attainment) if np.isfinite(att) else None
        s["goodput_rps"] = n["slo_ok"] / window
        d = g["dur"]
        s["batch_size_mean"] = g["running"] / d if d > 0 else 0.0
        s["queue_length_mean"] = g["waiting"] / d if d > 0 else 0.0
        s["kv_utilization_mean"] = g["kv"] / d if d > 0 else 0.0
        s["kv_utilization_peak"] = g["kv_peak"]
        s["kv_fragmentation_mean"] = g["frag"] / g["frag_dur"] if g["frag_dur"] > 0 else 0.0
        cluster_figures(s, self.busy_r, self.flops_r, g["iterations"], g["count"], out_tokens, sim_time_s, facts)
        late = np.concatenate(self.unfinished_arrivals) if self.unfinished_arrivals else np.zeros(0)
        sojourn = self.sojourn_s + float(np.sum(sim_time_s - late))
        arrived = n["arrived"]
        if arrived == 0 or sim_time_s <= 0:
            s["littles_law"] = {"L": 0.0, "lambda_W": 0.0, "lambda": 0.0, "W": 0.0}
        else:  # the time integral of the number in system is the sum of the sojourn times
            lam, w = arrived / sim_time_s, sojourn / arrived
            s["littles_law"] = {"L": sojourn / sim_time_s, "lambda_W": lam * w, "lambda": lam, "W": w}
        s["memory"] = facts["memory"]
        if self.power_peak is not None:  # one row per replica carries its summed dynamic joules
            n_r = self.busy_r.size
            per_rep = {"replica": np.arange(n_r), "energy_j": self.energy_r, "start_ps": np.zeros(n_r, np.int64),
                       "end_ps": np.zeros(n_r, np.int64)}
            e = energy_figures(per_rep, facts["replica_facts"], sim_time_s, out_tokens, n["finished"])
            if e:
                e["power_peak_w_per_device"] = self.power_peak
                e["energy_attributed_j"] = self.energy_attributed_j
                e["energy_request_j"] = self.sketch["energy_j"].stats()
            s.update(e)
        s["metrics"] = {"mode": "streaming", "percentile_relative_error": RELATIVE_ERROR,
                        "sample_every_kth_request": self.stride}
        return s

    def start(self, sim: Simulation) -> None:
        """Called once the replicas exist."""
        facts = run_facts(sim)["replica_facts"]
        self.block = np.array([r["block_size"] for r in facts], dtype=np.float64)
        self.busy_r = np.zeros(len(facts))
        self.flops_r = np.zeros(len(facts))
        self.energy_r = np.zeros(len(facts))
        self.idle_w = np.array([r.get("idle_w") or 0.0 for r in facts], dtype=np.float64)
        self.power_peak = 0.0 if "energy_j" in self.rec.batch_columns() else None


def _concat(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not chunks:
        return {}
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


__all__ = ["CHUNK", "STREAM_THRESHOLD", "RunStream", "run_itl", "run_itl_weighted", "streaming"]
