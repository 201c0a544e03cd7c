"""N replicas behind a router, fed by an open-loop arrival process or closed-loop clients."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import simpy

from simulator.core.clock import s_to_ps
from simulator.core.contracts import ClusterView, ReplicaLoad
from simulator.core.errors import HwsimError, PolicyError
from simulator.core.events import EventKind, Recorder
from simulator.core.request import Request
from simulator.core.resources import SharedBandwidth
from workloads.sources.base import RequestTable


class LazyLoads(Sequence):
    """The replicas' loads as a router sees them, each computed on first access.

    A router that only asks how many replicas there are (round robin, random, session affinity)
    costs O(1) per arrival whatever the replica count; one that reads every load (least
    outstanding, least KV) computes each replica's load once. Item ``i`` is the same
    :class:`ReplicaLoad` an eager tuple would hold (index ``i`` in the view shown)."""

    __slots__ = ("_targets", "_loads")

    def __init__(self, targets: list) -> None:
        self._targets = targets
        self._loads: list[ReplicaLoad | None] = [None] * len(targets)

    def __len__(self) -> int:
        return len(self._targets)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return tuple(self[j] for j in range(*i.indices(len(self._targets))))
        n = len(self._targets)
        if not -n <= i < n:
            raise IndexError(i)
        i %= n
        load = self._loads[i]
        if load is None:
            lo = self._targets[i].load()
            load = self._loads[i] = ReplicaLoad(i, lo.waiting, lo.running, lo.outstanding_tokens,
                                                lo.kv_used_fraction)
        return load

    def __iter__(self):
        for i in range(len(self._targets)):
            yield self[i]

    def computed(self) -> int:
        """How many loads have been computed so far (for tests of the per-arrival cost)."""
        return sum(x is not None for x in self._loads)


class Cluster:
    def __init__(self, env: simpy.Environment, recorder: Recorder, router, router_name: str,
                 decode_router=None, decode_router_name: str = "") -> None:
        self.env = env
        self.recorder = recorder
        self.router = router
        self.router_name = router_name
        self.decode_router = decode_router
        self.decode_router_name = decode_router_name
        self.replicas: list = []
        self.entry: list = []  # replicas that take arrivals (role both or prefill)
        self.decoders: list = []  # replicas of role decode
        self.kv_links: dict[int, SharedBandwidth] = {}  # per decode replica: its inbound KV link
        self.kv_bytes_per_token = 0.0
        self.transfers: list[tuple[int, int, int, float]] = []  # (rid, start_ps, end_ps, bytes)
        self.requests: list[Request] = []  # every request (exact metrics)
        # streaming metrics: requests leave when done (``sink`` gets them); ``live`` holds the rest
        self.sink: Callable[[Request], None] | None = None
        self.live: dict[int, Request] = {}
        self.done = 0
        self._on_done: Callable[[Request], None] | None = None
        self.progress: tuple[int, Callable[[int], None]] | None = None
        self.controller = None  # a ClusterController (serving/controller.py), if any
        self.draining: set[int] = set()  # replicas the controller keeps out of routing
        self.frontend_ps = 0  # a request's way from the client into the engine (HTTP, tokenization, IPC)
        self.frontend = None  # the frontend processes as a queue (serving/frontend.py), if the profile has one

    def add_replica(self, replica) -> None:
        self.replicas.append(replica)
        (self.decoders if replica.role == "decode" else self.entry).append(replica)

    # -- routing -------------------------------------------------------------------------
    def arrive(self, req: Request) -> None:
        env = self.env
        if self.sink is None:
            self.requests.append(req)
        else:
            self.live[req.rid] = req
        self.recorder.emit(env.now, EventKind.ARRIVED, -1, req.rid, req.prompt_tokens)
        delay = self.frontend_ps
        if self.frontend is not None:  # waits for and takes a frontend process first
            delay += self.frontend.admit(env.now, req.prompt_tokens)
        if delay > 0:  # reaches the engine later; TTFT and end-to-end time count it
            env.timeout(delay).callbacks.append(lambda _ev: self._enter(req))
        else:
            self._enter(req)

    def _enter(self, req: Request) -> None:
        env = self.env
        entry = self.entry
        if self.draining:  # a cluster controller drained some replicas: route over the others
            entry = [r for r in entry if r.index not in self.draining] or entry
        ctl = self.controller
        idx = ctl.dispatch(req) if ctl is not None and ctl.dispatches else None  # e.g. Llumnix's dispatch
        target = entry[self._route(self.router, self.router_name, entry, req)] if idx is None else self.replicas[idx]
        self.recorder.emit(env.now, EventKind.ROUTED, target.index, req.rid, target.index)
        target.submit(req)

    def _route(self, router, name: str, targets: list, req: Request) -> int:
        """Ask ``router`` for one of ``targets`` (indices 0..len-1 in the view it is shown)."""
        if len(targets) == 1:
            return 0
        view = ClusterView(self.env.now, LazyLoads(targets))
        try:
            idx = router.route(req, view)
        except HwsimError:
            raise
        except Exception as exc:  # a bug in a (user) router is reported against the router
            raise PolicyError(name, f"route() raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(idx, (int, np.integer)) or not 0 <= idx < len(targets):
            raise PolicyError(name, f"routed request {req.rid} to replica {idx!r}; valid: 0..{len(targets) - 1}")
        return int(idx)

    # -- disaggregation: prefill replica -> link -> decode replica -------------------------
    def hand_off(self, req: Request, src, src_blocks: int) -> None:
        idx = self._route(self.decode_router, self.decode_router_name, self.decoders, req)
        self.decoders[idx].request_migration(req, src, src_blocks)

    def transfer_kv(self, req: Request, src, src_blocks: int, dst) -> None:
        """Move ``req``'s KV cache from ``src`` to ``dst`` over dst's inbound link (contended)."""
        nbytes = req.num_computed * self.kv_bytes_per_token
        self.recorder.emit(self.env.now, EventKind.KV_TRANSFER_STARTED, dst.index, req.rid, int(nbytes))
        self.env.process(self._transfer(req, src, src_blocks, dst, nbytes))

    def _transfer(self, req: Request, src, src_blocks: int, dst, nbytes: float):
        start = self.env.now
        yield self.kv_links[dst.index].transfer(nbytes)
        src.kvm.release_blocks(src_blocks)
        src._poke()  # blocks freed on the prefill side
        self.transfers.append((req.rid, start, self.env.now, nbytes))
        self.recorder.emit(self.env.now, EventKind.KV_TRANSFERRED, dst.index, req.rid, self.env.now - start)
        dst.accept(req)

    def on_done(self, req: Request) -> None:
        self.done += 1
        if self.sink is not None:
            del self.live[req.rid]
            if req.replica >= 0:  # the replica's index of its requests lets go of it too
                self.replicas[req.replica].by_id.pop(req.rid, None)
            self.sink(req)
        if self.progress is not None and self.done % self.progress[0] == 0:
            self.progress[1](self.done)
        if self._on_done is not None:
            self._on_done(req)

    # -- sources -------------------------------------------------------------------------
    def start_open_loop(self, table: RequestTable) -> None:
        arrivals = np.rint(table.arrival_s * 1e12).astype(np.int64)
        self.env.process(self._open_loop(table, arrivals))

    def _open_loop(self, table: RequestTable, arrivals: np.ndarray):
        env = self.env
        prompts = table.prompt_tokens.tolist()
        outputs = table.output_tokens.tolist()
        sessions = table.session_id.tolist() if table.session_id is not None else None
        prefixes = table.prefix_id.tolist() if table.prefix_id is not None else None
        shared = table.prefix_tokens.tolist() if table.prefix_tokens is not None else None
        for i, t in enumerate(arrivals.tolist()):
            if t > env.now:
                yield env.timeout(t - env.now)
            self.arrive(Request(i, env.now, prompts[i], outputs[i], sessions[i] if sessions else -1,
                                prefixes[i] if prefixes else -1, shared[i] if shared else 0))

    def start_closed_loop(self, table: RequestTable) -> None:
        """``table.concurrency`` clients; each sends its next request ``think_s`` after the
        previous one finished (or was rejected)."""
        n = len(table)
        prompts = table.prompt_tokens.tolist()
        outputs = table.output_tokens.tolist()
        think = [s_to_ps(x) for x in (table.think_s.tolist() if table.think_s is not None else [0.0] * n)]
        sessions = table.session_id.tolist() if table.session_id is not None else [-1] * n
        prefixes = table.prefix_id.tolist() if table.prefix_id is not None else [-1] * n
        shared = table.prefix_tokens.tolist() if table.prefix_tokens is not None else [0] * n
        state = {"next": 0}

        def send(client: int) -> None:
            i = state["next"]
            if i >= n:
                return
            state["next"] = i + 1
            delay = think[i]

            def fire(_ev=None) -> None:
                req = Request(i, self.env.now, prompts[i], outputs[i], sessions[i], prefixes[i], shared[i])
                req.client = client
                self.arrive(req)

            if delay > 0:
                self.env.timeout(delay).callbacks.append(fire)
            else:
                fire()

        self._on_done = lambda req: send(req.client)
        starts = table.client_start_s.tolist() if table.client_start_s is not None else []
        for c in range(min(table.concurrency or 1, n)):
            start = s_to_ps(starts[c]) if c < len(starts) else 0
            if start > 0:
                self.env.timeout(start).callbacks.append(lambda _ev, c=c: send(c))
            else:
                send(c)
