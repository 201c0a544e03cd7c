"""Chrome / Perfetto trace-event export of a :class:`~simulator.results.RunResult`.

Open the file in https://ui.perfetto.dev or chrome://tracing. Layout:

* one process per replica (``pid`` = replica index, named ``replica N``); requests that were never
  routed (replica -1) go to one extra process named ``unrouted``;
* thread 0 ``batches``: a complete event (``ph: X``) per batch segment (a run of identical-shape
  iterations), or per iteration when the run is short (at most :data:`ITERATION_SLICES_MAX`
  iterations; see :func:`build_chrome_trace`), plus counters for KV blocks used and queue length at
  each segment start. Slices are named ``prefill``, ``prefill+decode`` or ``decode x<k>``
  (``decode`` for one iteration) after what they ran;
* thread 1 ``requests``: for the first :data:`MAX_REQUESTS` requests, an async span
  (``ph: b``/``e``, ``cat: request``, ``id`` = rid) from arrival to finish, an instant event at the
  first token, and instant events for any logged event that is not a plain lifecycle step
  (preemptions, rejections, unknown kinds).

Times are microseconds with nanosecond resolution. Start and end of a slice are each rounded to
whole nanoseconds and the duration is their difference, so slices that touch in the simulation
touch exactly in the trace and never overlap. A segment of k iterations split into per-iteration
slices is divided evenly (its iterations have the same shape; only the attention context grows).
The output is a pure function of the result: same input, same bytes.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from simulator.results import STATUS_NAMES, RunResult

MAX_REQUESTS = 2_000  # requests that get a span
MAX_BATCH_EVENTS = 50_000  # X events per replica; above this, neighbours are merged
MAX_COUNTER_POINTS = 10_000  # counter samples per replica and counter
MAX_EVENT_INSTANTS = 10_000  # instants from the event log, in total
ITERATION_SLICES_MAX = 20_000  # runs with at most this many iterations get one slice per iteration

BATCH_TID, REQUEST_TID = 0, 1
# EventKind values fixed by the event-log contract; used when simulator.core.events is absent
_LIFECYCLE_KIND_VALUES = frozenset({0, 1, 2, 3, 5})  # ARRIVED ROUTED SCHEDULED FIRST_TOKEN FINISHED


@cache
def event_kind_name(kind: int) -> str:
    """Name of an event kind (``EventKind(kind).name``), or the int as text if it has none."""
    try:
        from simulator.core.events import EventKind
    except ImportError:
        return str(int(kind))
    try:
        return EventKind(int(kind)).name
    except ValueError:
        return str(int(kind))


def _lifecycle_kinds() -> frozenset[int]:
    try:
        from simulator.core.events import EventKind
    except ImportError:
        return _LIFECYCLE_KIND_VALUES
    names = ("ARRIVED", "ROUTED", "SCHEDULED", "FIRST_TOKEN", "FINISHED")
    return frozenset(int(getattr(EventKind, n)) for n in names if hasattr(EventKind, n))


def _col(table: dict[str, np.ndarray], key: str, n: int, fill: float = math.nan,
         dtype: Any = float) -> np.ndarray:
    col = table.get(key)
    if col is None:
        return np.full(n, fill, dtype=dtype)
    return np.asarray(col)


def _nrows(table: dict[str, np.ndarray]) -> int:
    return max((len(v) for v in table.values()), default=0)


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 3)


def _ns(seconds: np.ndarray) -> np.ndarray:
    """Seconds to whole nanoseconds (monotone: ordered times stay ordered)."""
    return np.round(np.asarray(seconds, dtype=float) * 1e9).astype(np.int64)


def _ns_us(ns: int) -> int | float:
    """Whole nanoseconds as the trace's microseconds (exact to 3 decimals; an int when whole)."""
    return ns // 1000 if ns % 1000 == 0 else ns / 1000


def slice_name(prefill_tokens: int, decode_rows: int, iterations: int) -> str:
    if prefill_tokens > 0:
        return "prefill+decode" if decode_rows > 0 else "prefill"
    return "decode" if iterations == 1 else f"decode x{iterations}"


def _split_iterations(start, end, iters, prefill, rows, kv):
    """One row per iteration: a segment of k iterations split evenly in whole nanoseconds."""
    k = np.maximum(iters, 1)
    seg = np.repeat(np.arange(start.size), k)
    first = np.repeat(np.cumsum(k) - k, k)
    j = np.arange(seg.size) - first  # iteration index within its segment
    span = end - start
    s = start[seg] + span[seg] * j // k[seg]
    e = start[seg] + span[seg] * (j + 1) // k[seg]
    pf = np.where(j == 0, prefill[seg], 0)  # a segment's prefill tokens run in its first iteration
    return s, e, np.ones(seg.size, dtype=np.int64), pf, rows[seg], kv[seg], np.ones(seg.size, dtype=np.int64)


def _num(x: Any) -> Any:
    """A JSON-safe Python scalar (NaN/inf become None)."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    f = float(x)
    if not math.isfinite(f):
        return None
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


def _merge_segments(start, end, iters, prefill, rows, kv, cap):
    """Merge runs of k neighbouring segments so that at most ``cap`` remain (k = ceil(n / cap))."""
    n = len(start)
    k = -(-n // cap)
    if k <= 1:
        return start, end, iters, prefill, rows, kv, np.ones(n, dtype=np.int64)
    heads = np.arange(0, n, k)
    tails = np.minimum(heads + k, n) - 1
    return (start[heads], end[tails], np.add.reduceat(iters, heads), np.add.reduceat(prefill, heads),
            np.maximum.reduceat(rows, heads), kv[tails], tails - heads + 1)


def _batch_events(batches: dict[str, np.ndarray], replica_ids: list[int],
                  per_iteration: bool | None = None) -> dict[int, list[dict]]:
    n = _nrows(batches)
    out: dict[int, list[dict]] = {r: [] for r in replica_ids}
    if n == 0:
        return out
    rep = _col(batches, "replica", n, -1, np.int64).astype(np.int64)
    start = _col(batches, "start_s", n).astype(float)
    end = _col(batches, "end_s", n).astype(float)
    start_ns, end_ns = _ns(start), np.maximum(_ns(end), _ns(start))
    iters = np.nan_to_num(_col(batches, "iterations", n, 1).astype(float)).astype(np.int64)
    prefill = np.nan_to_num(_col(batches, "prefill_tokens", n, 0).astype(float)).astype(np.int64)
    rows = np.nan_to_num(_col(batches, "decode_rows", n, 0).astype(float)).astype(np.int64)
    kv = np.nan_to_num(_col(batches, "kv_blocks_used", n, 0).astype(float)).astype(np.int64)
    waiting = np.nan_to_num(_col(batches, "waiting", n, 0).astype(float)).astype(np.int64)
    if per_iteration is None:
        per_iteration = int(np.maximum(iters, 1).sum()) <= ITERATION_SLICES_MAX
    for r in replica_ids:
        sel = np.flatnonzero(rep == r)
        sel = sel[np.argsort(start[sel], kind="stable")]
        ev = out[r]
        cols = (start_ns[sel], end_ns[sel], iters[sel], prefill[sel], rows[sel], kv[sel])
        if per_iteration:
            cols = _split_iterations(*cols)[:6]
        s, e, it, pf, dr, kvu, segs = _merge_segments(*cols, MAX_BATCH_EVENTS)
        for s_, e_, it_, pf_, dr_, kv_, sg_ in zip(s.tolist(), e.tolist(), it.tolist(), pf.tolist(),
                                                   dr.tolist(), kvu.tolist(), segs.tolist()):
            args = {"prefill_tokens": pf_, "decode_rows": dr_, "iterations": it_, "kv_blocks_used": kv_}
            if sg_ > 1:
                args["segments"] = sg_
            ev.append({"name": slice_name(pf_, dr_, it_), "cat": "batch", "ph": "X", "pid": r, "tid": BATCH_TID,
                       "ts": _ns_us(s_), "dur": _ns_us(max(e_ - s_, 0)), "args": args})
        step = -(-len(sel) // MAX_COUNTER_POINTS) if len(sel) else 1
        sub = sel[::step]
        for s_, kv_, w_ in zip(start[sub].tolist(), kv[sub].tolist(), waiting[sub].tolist()):
            ts = _us(s_)
            ev.append({"name": "kv blocks used", "ph": "C", "pid": r, "tid": BATCH_TID, "ts": ts,
                       "args": {"used": kv_}})
            ev.append({"name": "queue length", "ph": "C", "pid": r, "tid": BATCH_TID, "ts": ts,
                       "args": {"waiting": w_}})
    return out


def _request_events(result: RunResult, pid_of: dict[int, int]) -> dict[int, list[dict]]:
    req = result.requests
    n = min(_nrows(req), MAX_REQUESTS)
    out: dict[int, list[dict]] = {}
    if n == 0:
        return out
    rid = np.asarray(req["rid"])[:n].astype(float) if "rid" in req else np.full(n, math.nan)
    rids = np.arange(n) if np.isnan(rid).any() else rid.astype(np.int64)
    rep = _col(req, "replica", n, -1, np.int64)[:n].astype(np.int64)
    arrival = _col(req, "arrival_s", n)[:n].astype(float)
    first = _col(req, "first_token_s", n)[:n].astype(float)
    finish = _col(req, "finish_s", n)[:n].astype(float)
    status = _col(req, "status", n, 2, np.int64)[:n]
    extra = {k: _col(req, k, n)[:n] for k in
             ("prompt_tokens", "output_tokens", "generated_tokens", "preemptions")}
    sim_end = float(result.sim_time_s) if math.isfinite(float(result.sim_time_s)) else math.nan
    exported: set[int] = set()
    for i in range(n):
        a = float(arrival[i])
        if not math.isfinite(a):
            continue
        r_id = int(rids[i])
        pid = pid_of[int(rep[i])]
        f = float(finish[i])
        if not math.isfinite(f):
            f = max(a, sim_end) if int(status[i]) == 2 and math.isfinite(sim_end) else a
        st = STATUS_NAMES.get(int(status[i]), str(int(status[i])))
        args = {"rid": r_id, "status": st}
        args.update({k: _num(v[i]) for k, v in extra.items()})
        ev = out.setdefault(pid, [])
        name = f"request {r_id}"
        ev.append({"name": name, "cat": "request", "ph": "b", "id": r_id, "pid": pid, "tid": REQUEST_TID,
                   "ts": _us(a), "args": args})
        ft = float(first[i])
        if math.isfinite(ft):
            ev.append({"name": "first token", "cat": "request", "ph": "i", "s": "t", "pid": pid,
                       "tid": REQUEST_TID, "ts": _us(ft), "args": {"rid": r_id}})
        ev.append({"name": name, "cat": "request", "ph": "e", "id": r_id, "pid": pid, "tid": REQUEST_TID,
                   "ts": _us(max(f, a))})
        exported.add(r_id)
    _log_instants(result.events, exported, pid_of, out)
    for ev in out.values():
        ev.sort(key=lambda e: e["ts"])  # stable: a span's b stays before its e at equal ts
    return out


def _log_instants(events: dict[str, np.ndarray], exported: set[int], pid_of: dict[int, int],
                  out: dict[int, list[dict]]) -> None:
    """Instant events for non-lifecycle log entries (preemptions, rejections, unknown kinds)."""
    n = _nrows(events)
    if n == 0 or "kind" not in events:
        return
    kind = np.asarray(events["kind"]).astype(np.int64)
    keep = np.flatnonzero(~np.isin(kind, list(_lifecycle_kinds())))
    if keep.size == 0:
        return
    t = _col(events, "t_s", n).astype(float)
    rep = _col(events, "replica", n, -1, np.int64)
    reqs = _col(events, "request", n, -1, np.int64)
    value = _col(events, "value", n)
    emitted = 0
    for i in keep.tolist():
        rq = _num(reqs[i])
        if rq not in exported or not math.isfinite(float(t[i])):
            continue
        r = int(rep[i]) if math.isfinite(float(rep[i])) else -1
        pid = pid_of.get(r, pid_of[-1])
        out.setdefault(pid, []).append({"name": event_kind_name(int(kind[i])).lower(), "cat": "event",
                                        "ph": "i", "s": "t", "pid": pid, "tid": REQUEST_TID,
                                        "ts": _us(float(t[i])), "args": {"rid": rq,
                                                                         "value": _num(value[i])}})
        emitted += 1
        if emitted >= MAX_EVENT_INSTANTS:
            break


def build_chrome_trace(result: RunResult, per_iteration: bool | None = None) -> dict[str, Any]:
    """The trace as a JSON-ready dict (``traceEvents`` and ``displayTimeUnit``).

    ``per_iteration``: one batch slice per iteration (True) or per segment (False); None (the
    default) chooses per iteration for runs of at most ITERATION_SLICES_MAX iterations."""
    ids: set[int] = set(range(len(result.replicas)))
    for table in (result.batches, result.requests):
        if "replica" in table and len(table["replica"]):
            ids.update(int(x) for x in np.unique(np.asarray(table["replica"]).astype(np.int64)))
    unrouted = -1 in ids
    ids.discard(-1)
    replica_ids = sorted(ids)
    pid_of = {r: r for r in replica_ids}
    pid_of[-1] = (max(replica_ids) + 1) if replica_ids else 0
    meta: list[dict] = []
    procs = [(r, f"replica {r}") for r in replica_ids] + ([(pid_of[-1], "unrouted")] if unrouted else [])
    for pid, label in procs:
        meta.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": label}})
        meta.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0,
                     "args": {"sort_index": pid}})
        meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": BATCH_TID,
                     "args": {"name": "batches"}})
        meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": REQUEST_TID,
                     "args": {"name": "requests"}})
    batch_ev = _batch_events(result.batches, replica_ids, per_iteration)
    req_ev = _request_events(result, pid_of)
    events = meta
    for pid, _ in procs:
        events.extend(batch_ev.get(pid, ()))
        events.extend(req_ev.get(pid, ()))
    events.extend(_stage_events(result, pid_of[-1] + 1))
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"name": str(result.name), "sim_time_s": _num(result.sim_time_s)}}


def _stage_events(result: RunResult, first_pid: int, cap: int = 20_000) -> list[dict]:
    """Pipeline-parallel replicas: one process per pipeline, one thread per stage, a span per
    micro-batch in a stage (the gaps between spans are the pipeline bubbles)."""
    st = result.stages
    if not st or not len(st.get("stage", ())):
        return []
    out: list[dict] = []
    pipes = sorted(set(int(p) for p in st["pipeline"]))
    for p in pipes:
        pid = first_pid + p
        out.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": f"pipeline {p}"}})
        rows = np.flatnonzero(st["pipeline"] == p)[:cap]
        for s in sorted(set(int(x) for x in st["stage"][rows])):
            out.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": s, "args": {"name": f"stage {s}"}})
        s_ns, e_ns = _ns(st["start_s"][rows]), _ns(st["end_s"][rows])
        for i, s_, e_ in zip(rows.tolist(), s_ns.tolist(), np.maximum(e_ns, s_ns).tolist()):
            out.append({"name": f"engine {int(st['engine'][i])}", "ph": "X", "pid": pid, "tid": int(st["stage"][i]),
                        "ts": _ns_us(s_), "dur": _ns_us(e_ - s_)})
    return out


def write_chrome_trace(result: RunResult, path: Path, per_iteration: bool | None = None) -> None:
    """Write ``result`` as Chrome/Perfetto trace-event JSON to ``path`` (``per_iteration``: see
    :func:`build_chrome_trace`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(build_chrome_trace(result, per_iteration), separators=(",", ":"), allow_nan=False)
    path.write_text(text, encoding="utf-8")
