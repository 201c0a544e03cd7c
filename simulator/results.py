"""What one run produces: columnar tables and a summary, before anything is written to disk.

Everything here is plain data (numpy arrays and dicts), so metrics, the dashboard and the trace
exporters are pure functions of a :class:`RunResult`.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# status codes in RunResult.requests["status"]
FINISHED, REJECTED, UNFINISHED = 0, 1, 2
STATUS_NAMES = {FINISHED: "finished", REJECTED: "rejected", UNFINISHED: "unfinished"}


class Spool:
    """Tables a streaming run wrote to disk in chunks while it ran (a temporary folder, removed
    when this object goes away); :func:`simulator.outputs.write_results` moves them into place."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hwsim-run-"))
        self.files: dict[str, Path] = {}
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.dir), True)

    def path(self, key: str) -> Path:
        p = self.files[key] = self.dir / f"{key}.csv"
        return p

    def move(self, key: str, dest: Path) -> None:
        """Put table ``key`` at ``dest``: the first time a rename (a copy across file systems),
        later times a copy of where it went."""
        src = self.files[key]
        if Path(dest).resolve() == src.resolve():
            return
        if src.parent == self.dir:
            shutil.move(str(src), str(dest))
            self.files[key] = Path(dest)
        else:
            shutil.copyfile(src, dest)


@dataclass
class RunResult:
    """Columnar results of one simulation.

    requests: one row per request, columns (numpy arrays of equal length):
        rid, replica (-1 if never routed), arrival_s, first_scheduled_s, first_token_s, finish_s
        (NaN where it did not happen), prompt_tokens, output_tokens (requested),
        generated_tokens, preemptions, status (FINISHED/REJECTED/UNFINISHED), measured (bool:
        outside warm-up and cool-down), ttft_s, tpot_s, e2e_s, queue_s.
    batches: one row per executed batch segment (one or more identical-shape iterations),
        columns: replica, start_s, end_s, iterations, prefill_tokens (per segment, summed),
        decode_rows (rows per iteration), kv_blocks_used (after the segment), kv_blocks_total,
        waiting (queue length at start), running (requests in the batch), flops (whole segment).
    events: typed event log, columns t_s, kind (int, see simulator.core.events.EventKind),
        replica, request, value.
    itl_s: every inter-token gap of every measured request (seconds).
    replicas: per-replica facts: devices, tp, kv_blocks_total, block_size, kv_bytes_per_block,
        peak_flops (per GPU), price_usd_per_h (per GPU or None), tdp_w.
    stages: pipeline-parallel replicas only: pipeline, stage, engine (replica index), start_s, end_s
        of every micro-batch in every stage.
    spool: a streaming run (``run.metrics: streaming``) only: the full requests/events/batches
        tables on disk; ``requests``, ``batches``, ``events`` and ``itl_s`` then hold a bounded,
        deterministic sample (every k-th request, its events and gaps; every m-th segment) and
        ``summary`` is computed from every request (percentiles from log-bucket sketches).
    """

    name: str
    scenario: dict[str, Any]
    summary: dict[str, Any]
    requests: dict[str, np.ndarray]
    batches: dict[str, np.ndarray]
    events: dict[str, np.ndarray]
    itl_s: np.ndarray
    replicas: list[dict[str, Any]] = field(default_factory=list)
    sim_time_s: float = 0.0
    wall_s: float = 0.0
    stages: dict[str, np.ndarray] = field(default_factory=dict)  # pipeline stage spans (PP replicas)
    spool: Spool | None = None
