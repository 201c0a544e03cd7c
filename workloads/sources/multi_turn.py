"""Multi-turn chat sessions: each turn's prompt is the whole conversation so far plus a new user
message, so every turn after the first shares its leading tokens with the previous turn.

Sessions start as an arrival process (``session_arrival``); a session has a number of turns
(``turns``), a system prompt (``system_tokens``), per-turn user messages (``user_tokens``) and
answers (``output_tokens``). Turn k+1 arrives ``response_allowance`` (a stand-in for the previous
turn's serving time) plus an exponential think time (mean ``think_time``) after turn k; a session
ends early when the next prompt plus its answer would exceed ``max_context`` tokens. Each request
carries ``session_id`` and ``prefix_tokens`` = the previous turn's prompt + answer (0 for a first
turn). The table is sorted by arrival. Streams: ``arrivals``, ``turns``, ``system_tokens``,
``user_tokens``, ``output_tokens``, ``think``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from simulator.config.quantities import PositiveSeconds, Seconds, StrictConfig
from simulator.core.registry import register_workload
from simulator.core.rng import RngStreams
from workloads.sources.base import RequestTable
from workloads.sources.lengths import LengthDist, sample_lengths
from workloads.sources.synthetic import ArrivalConfig, sample_arrivals


class MultiTurnConfig(StrictConfig):
    num_sessions: int = Field(gt=0)
    session_arrival: ArrivalConfig
    turns: LengthDist = Field(description="turns per session")
    system_tokens: LengthDist = Field(description="system prompt of a session's first turn")
    user_tokens: LengthDist = Field(description="new user message per turn")
    output_tokens: LengthDist
    think_time: PositiveSeconds = Field(default="10s", description="mean of the exponential think time")
    response_allowance: Seconds = Field(default="5s", description="added between turns for the answer itself")
    max_context: int = Field(default=4096, gt=1, description="a session stops before exceeding this")


@register_workload("multi_turn", config=MultiTurnConfig)
class MultiTurnSource:
    """Multi-turn chat sessions: each turn's prompt is the conversation so far plus a new message."""
    def __init__(self, config: MultiTurnConfig, base_dir: Path = Path(".")) -> None:
        self.config = config
        self.base_dir = Path(base_dir)

    def generate(self, rngs: RngStreams) -> RequestTable:
        c = self.config
        s = c.num_sessions
        starts = sample_arrivals(c.session_arrival, rngs.get("arrivals"), s)
        turns = sample_lengths(c.turns, rngs.get("turns"), s, self.base_dir)
        system = sample_lengths(c.system_tokens, rngs.get("system_tokens"), s, self.base_dir)
        total = int(turns.sum())
        users = sample_lengths(c.user_tokens, rngs.get("user_tokens"), total, self.base_dir).tolist()
        outs = sample_lengths(c.output_tokens, rngs.get("output_tokens"), total, self.base_dir).tolist()
        think = rngs.get("think").exponential(c.think_time, size=total).tolist()
        rows: list[tuple[float, int, int, int, int]] = []  # arrival, prompt, output, session, prefix
        j = 0
        for sid in range(s):
            t, context = float(starts[sid]), int(system[sid])
            prev = 0
            for k in range(int(turns[sid])):
                prompt = context + users[j]
                if k and prompt + outs[j] > c.max_context:
                    j += int(turns[sid]) - k
                    break
                rows.append((t, prompt, outs[j], sid, prev))
                prev = prompt + outs[j]
                context = prev
                t += c.response_allowance + think[j]
                j += 1
        rows.sort(key=lambda r: (r[0], r[3]))
        a = np.array(rows, dtype=np.float64)
        return RequestTable(
            arrival_s=a[:, 0], prompt_tokens=a[:, 1].astype(np.int64), output_tokens=a[:, 2].astype(np.int64),
            session_id=a[:, 3].astype(np.int64), prefix_tokens=a[:, 4].astype(np.int64),
            meta={"source": "multi_turn", "rows": len(rows), "sessions": s},
        )
