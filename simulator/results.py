"""What one run produces: columnar tables and a summary, before anything is written to disk.

Everything here is plain data (numpy arrays and dicts), so metrics, the dashboard and the trace
exporters are pure functions of a :class:`RunResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# status codes in RunResult.requests["status"]
FINISHED, REJECTED, UNFINISHED = 0, 1, 2
STATUS_NAMES = {FINISHED: "finished", REJECTED: "rejected", UNFINISHED: "unfinished"}


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
