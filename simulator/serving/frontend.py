"""The serving frontend as a queue: the process(es) a request passes through before the engine.

A serving framework receives requests in frontend process(es) separate from the engine's scheduler:
the HTTP server and the tokenizer (SGLang's TokenizerManager, vLLM's API server, trtllm-serve). Each
is one Python process handling one request at a time, so requests queue there when they come faster
than it tokenizes them; the engine's output is relayed to the clients by the same process, so the
tokens it streams take its time too.

Models: ``processes`` identical single-threaded frontend processes serving requests first come,
    first served; a request takes ``request_s + prompt_token_s x prompt tokens`` of one process (the
    first free one), then enters the engine. Output handling takes ``output_token_s`` per token
    the engine emits, of the same processes' time (spread over them evenly), as work arriving when
    a replica reports the tokens (``output``: at the end of each iteration, before its finished
    requests' clients send again; a stretch of decode iterations run as one timeout registers its
    iterations' ends when it starts, ``stretch``, and their work joins the queue as the clock
    reaches each, so the queue is the same as with one iteration at a time): a request arriving
    behind it waits for it. Each serving instance behind the router (a replica taking
    arrivals: its own trtllm-serve / vllm serve / sglang server) has its own ``processes``; the
    instances' processes are pooled as one queue of ``processes x instances`` (the simulation routes
    a request when it reaches the engine). With every service time 0 the frontend is not built and
    nothing changes.
Ignores: one instance's queue growing while another's is idle (pooled queues wait less than
    separate ones fed by a router), the output's own delay on its way back to the client (a token
    counts as delivered when the engine emits it), back-pressure from the frontend on the engine, a
    process's time slicing between requests (asyncio interleaving: service is not preempted), and
    timing noise (service times are deterministic).
Sources: FCFS multi-server queue (Kleinrock, Queueing Systems I, 1975); the frameworks' process
    structure: sglang/srt/managers/tokenizer_manager.py (HTTP + tokenization + output relay in the
    main process, ``--tokenizer-worker-num`` processes, default 1), vllm/entrypoints/openai/api_server.py
    (tokenization and detokenization in the API server process; engine core in its own process).
"""

from __future__ import annotations

import numpy as np

from simulator.core.clock import s_to_ps


class Frontend:
    """FCFS queue of ``processes`` servers in simulated picoseconds (no SimPy process of its own:
    a request's wait and service follow from the servers' free times when it arrives)."""

    __slots__ = ("free_ps", "request_ps", "token_ps", "output_ps", "busy_ps", "served", "stretches")

    def __init__(self, processes: int, request_s: float, prompt_token_s: float, output_token_s: float) -> None:
        if processes < 1:
            raise ValueError("a frontend needs at least one process")
        self.free_ps = [0] * processes  # when each process has finished the work given to it so far
        self.request_ps = s_to_ps(request_s)
        self.token_ps = prompt_token_s * 1e12  # per prompt token (rounded per request, not per token)
        self.output_ps = output_token_s * 1e12  # per emitted token
        self.busy_ps = 0  # service given so far (requests and output), for utilization
        self.served = 0
        # decode stretches in flight (run as one timeout): [start_ps, iteration ends from start
        # (cumulative ps), tokens per iteration, iterations relayed so far]
        self.stretches: list[list] = []

    @classmethod
    def from_profile(cls, cfg, instances: int = 1) -> Frontend | None:
        """The profile's ``frontend`` block for ``instances`` serving instances (each with its own
        ``processes``); None when every service time is 0 (no queue at all)."""
        if not (cfg.request_s > 0 or cfg.prompt_token_s > 0 or cfg.output_token_s > 0):
            return None
        return cls(cfg.processes * instances, cfg.request_s, cfg.prompt_token_s, cfg.output_token_s)

    def service_ps(self, prompt_tokens: int) -> int:
        return self.request_ps + int(round(self.token_ps * prompt_tokens))

    def admit(self, now_ps: int, prompt_tokens: int) -> int:
        """A request arriving at ``now_ps``: the picoseconds until it leaves the frontend (wait + service).
        Arrivals must come in time order (they do: the simulation calls this at the arrival)."""
        if self.stretches:
            self._catch_up(now_ps)
        free = self.free_ps
        k = min(range(len(free)), key=free.__getitem__)  # the process free first
        start = max(now_ps, free[k])
        s = self.service_ps(prompt_tokens)
        free[k] = start + s
        self.busy_ps += s
        self.served += 1
        return free[k] - now_ps

    def output(self, now_ps: int, tokens: int) -> None:
        """The engine emitted ``tokens`` tokens by ``now_ps``: their relay work joins the queue,
        shared evenly by the processes."""
        if self.output_ps <= 0 or tokens <= 0:
            return
        if self.stretches:
            self._catch_up(now_ps)
        self._relay(now_ps, tokens)

    def stretch(self, start_ps: int, cum, tokens: int) -> list | None:
        """A stretch of decode iterations run as one timeout from ``start_ps``, iteration i ending at
        ``start_ps + cum[i]`` with ``tokens`` tokens: each iteration's relay work joins the queue at
        its end, as the clock reaches it (an arrival in the middle queues behind the tokens before
        it, as with one iteration at a time). None when output handling takes no time."""
        if self.output_ps <= 0 or tokens <= 0:
            return None
        st = [start_ps, cum, tokens, 0]
        self.stretches.append(st)
        return st

    def end_stretch(self, st: list, now_ps: int) -> None:
        """The stretch ended at ``now_ps`` (its last iteration done, or cut short there): the relay
        work of its iterations up to now is queued, the rest dropped."""
        self._catch_up(now_ps)
        self.stretches.remove(st)

    def _catch_up(self, now_ps: int) -> None:
        """Queue the relay work of every stretch iteration ended by ``now_ps``, in time order."""
        due = []
        for st in self.stretches:
            start, cum, tokens, i = st
            j = int(np.searchsorted(cum, now_ps - start, side="right"))
            if j > i:
                due.extend((start + c, tokens) for c in cum[i:j].tolist())
                st[3] = j
        if len(self.stretches) > 1:
            due.sort()
        for t, tokens in due:
            self._relay(t, tokens)

    def _relay(self, now_ps: int, tokens: int) -> None:
        free = self.free_ps
        share = int(round(self.output_ps * tokens / len(free)))
        for k in range(len(free)):
            free[k] = max(now_ps, free[k]) + share
        self.busy_ps += share * len(free)
