"""A request's state inside the simulator (mutated only by the serving mechanism).

Token accounting, the one convention every part follows:
- ``num_computed`` tokens have their K/V in the cache.
- A request is in its prefill phase while ``num_computed < prefill_target``; the iteration that
  completes the prefill emits one output token. ``prefill_target`` is the prompt length, or,
  after a preemption by recompute, prompt + tokens generated so far.
- Each decode iteration processes the last generated token (``num_computed += 1``) and emits the
  next one, so in the decode phase ``num_computed == prompt_tokens + num_generated - 1``.
- The request is finished when ``num_generated == max_new_tokens``.
"""

from __future__ import annotations

WAITING, RUNNING, FINISHED, REJECTED = 0, 1, 2, 3


class Request:
    __slots__ = (
        "rid", "arrival_ps", "prompt_tokens", "max_new_tokens", "session_id", "prefix_id",
        "state", "num_computed", "num_generated", "prefill_target", "kv_blocks", "kv_reserve_tokens",
        "replica", "first_scheduled_ps", "first_token_ps", "finish_ps", "num_preemptions", "runs",
        "client", "prefix_tokens", "kv_on_host", "energy_j",
    )

    def __init__(self, rid: int, arrival_ps: int, prompt_tokens: int, max_new_tokens: int,
                 session_id: int = -1, prefix_id: int = -1, prefix_tokens: int = 0) -> None:
        self.rid = rid
        self.arrival_ps = arrival_ps
        self.prompt_tokens = prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.session_id = session_id
        self.prefix_id = prefix_id
        self.prefix_tokens = prefix_tokens  # leading prompt tokens shared with earlier requests of its group
        self.state = WAITING
        self.num_computed = 0
        self.num_generated = 0
        self.prefill_target = prompt_tokens
        self.kv_blocks = 0
        self.kv_reserve_tokens = 0
        self.replica = -1
        self.first_scheduled_ps = -1
        self.first_token_ps = -1
        self.finish_ps = -1
        self.num_preemptions = 0
        self.runs: list[list[int]] = []  # [first_iteration, end_iteration) on self.replica
        self.client = -1
        self.kv_on_host = False  # a host (DRAM/SSD) copy of its KV that it resumes from (set by the KV offload)
        self.energy_j = 0.0  # dynamic joules of the steps it was in, by its token share (serving/request_energy.py)

    @property
    def in_prefill(self) -> bool:
        return self.num_computed < self.prefill_target

    @property
    def prefill_remaining(self) -> int:
        return self.prefill_target - self.num_computed

    @property
    def remaining_tokens(self) -> int:
        """Output tokens still to generate."""
        return self.max_new_tokens - self.num_generated

    @property
    def kv_location(self) -> str:
        """Where the request's KV lives: ``gpu`` (GPU blocks only), ``host`` (swapped out: a host
        copy only), ``partly`` (GPU blocks and a host copy it resumes from: a swap in flight), or
        ``none`` (nothing cached; a recompute starts over)."""
        if self.kv_on_host:
            return "partly" if self.kv_blocks else "host"
        return "gpu" if self.kv_blocks else "none"

    @property
    def context_len(self) -> int:
        return self.num_computed

    def __repr__(self) -> str:
        return (f"Request(rid={self.rid}, prompt={self.prompt_tokens}, out={self.num_generated}/"
                f"{self.max_new_tokens}, computed={self.num_computed}, state={self.state})")
