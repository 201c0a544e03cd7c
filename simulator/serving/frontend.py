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
    a replica reports the tokens (``output``: at the end of each iteration, or of a stretch of
    decode iterations run as one, before its finished requests' clients send again): a request
    arriving behind it waits for it. Each serving instance behind the router (a replica taking
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

from simulator.core.clock import s_to_ps


class Frontend:
    """FCFS queue of ``processes`` servers in simulated picoseconds (no SimPy process of its own:
    a request's wait and service follow from the servers' free times when it arrives)."""

    __slots__ = ("free_ps", "request_ps", "token_ps", "output_ps", "busy_ps", "served")

    def __init__(self, processes: int, request_s: float, prompt_token_s: float, output_token_s: float) -> None:
        if processes < 1:
            raise ValueError("a frontend needs at least one process")
        self.free_ps = [0] * processes  # when each process has finished the work given to it so far
        self.request_ps = s_to_ps(request_s)
        self.token_ps = prompt_token_s * 1e12  # per prompt token (rounded per request, not per token)
        self.output_ps = output_token_s * 1e12  # per emitted token
        self.busy_ps = 0  # service given so far (requests and output), for utilization
        self.served = 0

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
        free = self.free_ps
        share = int(round(self.output_ps * tokens / len(free)))
        for k in range(len(free)):
            free[k] = max(now_ps, free[k]) + share
        self.busy_ps += share * len(free)
