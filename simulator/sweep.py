"""Run a sweep (simulator/sweep_spec.py) on a local process pool or on Ray; keep every row.

    from simulator.sweep import run_sweep
    rows = run_sweep("scenarios/sweeps/example.yaml", "results/sweeps/example", workers=2)

Everything is validated before the first point runs: the sweep file, every point's resolved
scenario, every axis path, and every metric an objective or constraint names (against the
summary of the first point that can run, run on a few requests). Then each missing point runs on a
backend — ``local`` (a process pool, all cores by default) or ``ray`` (``ray.init(address)``; the
same tasks, the same results) — and its row is committed to the results store
(simulator/results_store.py) as it arrives, so ``resume=True`` after a ``kill -9`` runs only the
points with no row (and those whose row records an internal error). A point that cannot run (say,
a model that does not fit) is a row with its error, not a failed sweep. At the end the store is
exported (CSV, Parquet) and compare.html written (simulator/compare.py).
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from simulator.core.errors import ConfigError, HwsimError
from simulator.results_store import ResultsStore, export
from simulator.sweep_point import probe_metric_names, run_point
from simulator.sweep_spec import Point, Sweep, build_sweep

BACKENDS = ("local", "ray")


def tasks_for(sweep: Sweep, points: Iterable[Point]) -> list[dict[str, Any]]:
    cap = sweep.spec.capacity.model_dump() if sweep.spec.capacity is not None else None
    return [{"point_id": p.point_id, "source": sweep.source, "overrides": list(p.overrides), "capacity": cap}
            for p in points]


def check_metrics(sweep: Sweep) -> list[str]:
    """Every metric the objectives and constraints name must be one a point's summary has."""
    wanted = [(f"sweep.objectives[{i}].metric", o.metric) for i, o in enumerate(sweep.spec.objectives)]
    wanted += [(f"sweep.constraints[{i}].metric", c.metric) for i, c in enumerate(sweep.spec.constraints)]
    if not wanted:
        return []
    first_error = None
    for task in tasks_for(sweep, sweep.points):  # a point that cannot run fails fast (before simulating)
        try:
            names = probe_metric_names(task)
            break
        except HwsimError as err:
            first_error = first_error or err
    else:
        raise HwsimError(f"no point can run, so the metric names cannot be checked: {first_error}", where="sweep")
    for where, metric in wanted:
        if metric not in names:
            close = difflib.get_close_matches(metric, names, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown metric {metric!r}{hint} (the run summary has: {', '.join(sorted(names))})",
                              where=where)
    sweep.metric_names = names
    return names


def row_for(sweep: Sweep, point: Point, answer: dict[str, Any]) -> dict[str, Any]:
    """The store row of a point from its worker's answer: constraints and objectives evaluated."""
    m = answer["metrics"]
    constraints = {c.label(): c.holds(m) for c in sweep.spec.constraints}
    objectives = {f"{o.goal} {o.metric}": m.get(o.metric) for o in sweep.spec.objectives}
    return {"point_id": point.point_id, "scenario_hash": point.scenario_hash, "axes": point.axes, "metrics": m,
            "constraints": constraints, "passed": answer["error"] is None and all(constraints.values()),
            "objectives": objectives, "error": answer["error"], "wall_s": answer["wall_s"],
            "detail": answer["detail"]}


def local_map(tasks: list[dict[str, Any]], workers: int) -> Iterator[dict[str, Any]]:
    """Answers as they finish, from a pool of ``workers`` processes (in this process for one)."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(run_point, tasks)
        return
    import multiprocessing as mp

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(min(workers, len(tasks)), initializer=_die_with_parent) as pool:
        yield from pool.imap_unordered(run_point, tasks, chunksize=1)


def _die_with_parent() -> None:
    """On Linux, a pool worker is killed with its parent (a sweep killed with kill -9 leaves no
    worker finishing a point nobody will store)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def ray_map(tasks: list[dict[str, Any]], workers: int | None, address: str | None = None
            ) -> Iterator[dict[str, Any]]:
    """Answers as they finish, from Ray tasks (a running Ray is used as it is; else one is started
    at ``address``, or locally with ``workers`` CPUs)."""
    try:
        import ray
    except ImportError:
        raise HwsimError("the ray backend needs Ray: pip install 'hwsim[ray]'", where="--backend") from None
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            kwargs["address"] = address
        elif workers:
            kwargs["num_cpus"] = workers
        ray.init(**kwargs)
    remote = ray.remote(num_cpus=1, max_retries=0)(run_point)
    pending = [remote.remote(t) for t in tasks]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            yield ray.get(ref)


class Progress:
    """A plain progress bar on ``stream``: redrawn in place on a terminal, a line per tenth otherwise."""

    def __init__(self, total: int, done: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total, self.done, self.failed, self.width = total, done, 0, width
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.t0 = time.perf_counter()
        self.start = done
        self.step = max(1, total // 10)

    def update(self, failed: bool) -> None:
        self.done += 1
        self.failed += failed
        if self.tty or self.done == self.total or self.done % self.step == 0:
            self.stream.write(("\r" if self.tty else "") + self.line() + ("" if self.tty else "\n"))
            self.stream.flush()

    def line(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * self.width) + "." * (self.width - int(frac * self.width))
        el = time.perf_counter() - self.t0
        ran = self.done - self.start
        left = el / ran * (self.total - self.done) if ran else float("nan")
        eta = f", ~{left:.0f} s left" if ran and self.done < self.total else ""
        fail = f", {self.failed} could not run" if self.failed else ""
        return f"[{bar}] {self.done}/{self.total} points{fail}, {el:.0f} s{eta}"

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def run_sweep(source: str | Path | dict[str, Any] | Sweep, out: str | Path, workers: int | None = None,
              backend: str = "local", resume: bool = False, overwrite: bool = False,
              ray_address: str | None = None, progress: bool | TextIO = False, html: bool = True,
              on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Validate and run a sweep into the results store in ``out``; return every row (by point id)."""
    if backend not in BACKENDS:
        raise HwsimError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}", where="--backend")
    if workers is not None and workers < 1:
        raise HwsimError(f"must be >= 1, got {workers}", where="--workers")
    if resume and overwrite:
        raise HwsimError("give one of --resume (keep the rows, run the missing points) and --overwrite (drop them)",
                         where="--resume")
    sweep = source if isinstance(source, Sweep) else build_sweep(source)
    check_metrics(sweep)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with ResultsStore(out) as store:
        stored = store.meta("spec_hash")
        if store.count() and not resume and not overwrite:
            raise HwsimError(f"a results store with {store.count()} rows is here: --resume to run only the missing "
                             f"points, --overwrite to start again", where=str(store.path))
        if resume and stored is not None and stored != sweep.spec_hash:
            raise HwsimError("the sweep (or a scenario it uses) changed since this store was written: --overwrite "
                             "to start again, or write to another directory", where=str(store.path))
        if overwrite or not resume:
            store.clear()
        store.set_meta(spec_hash=sweep.spec_hash, name=sweep.spec.name, axes=",".join(sweep.axis_names),
                       source=str(sweep.path or "<dict>"), page=json.dumps(sweep_meta(sweep)))
        done = store.done()
        for point_id in store.failed_internally():  # an internal error is a bug: a resume runs it again
            done.pop(point_id, None)
        todo = [p for p in sweep.points if done.get(p.point_id) != p.scenario_hash]
        stream = progress if not isinstance(progress, bool) else sys.stdout if progress else None
        bar = Progress(len(sweep.points), len(sweep.points) - len(todo), stream) if stream else None
        by_id = {p.point_id: p for p in todo}
        tasks = tasks_for(sweep, todo)
        n = workers or os.cpu_count() or 1
        answers = ray_map(tasks, workers, ray_address) if backend == "ray" else local_map(tasks, n)
        try:
            for answer in answers:
                row = row_for(sweep, by_id[answer["point_id"]], answer)
                store.put(row)
                if on_row is not None:
                    on_row(row)
                if bar is not None:
                    bar.update(answer["error"] is not None)
        finally:
            if bar is not None:
                bar.close()
        rows = store.rows()
    export(out, rows)
    if html:
        from simulator.compare import write_sweep_page

        write_sweep_page(out, sweep_meta(sweep), rows)
    return rows


def sweep_meta(sweep: Sweep) -> dict[str, Any]:
    """What the comparison page needs to know of the sweep besides its rows."""
    return {"name": sweep.spec.name, "axes": sweep.axis_names,
            "objectives": [o.model_dump() for o in sweep.spec.objectives],
            "constraints": [c.label() for c in sweep.spec.constraints]}
