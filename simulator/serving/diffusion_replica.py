"""A replica serving diffusion requests: each request is one image needing ``steps`` denoising passes.

Models: every iteration runs one denoising pass of the denoiser (``workloads.diffusion``) over the
    batch of running requests, each at its own step index; its time is the timing backend's time of
    the pass's ops at that batch size (doubled under classifier-free guidance), memoised by batch
    size. Two batching disciplines (``scheduler.batching``):
    ``stream``: before each iteration, waiting requests join the batch up to ``max_batch``; a
    request that has run its ``steps`` passes leaves after the iteration (stream batching, as in
    StreamDiffusion: requests at different steps share a pass).
    ``request``: when the replica is idle, up to ``max_batch`` waiting requests form a batch that
    runs all its ``steps`` passes together (timed as one stretch of ``steps`` identical passes);
    arrivals wait for the batch to finish.
    A request's ``first_scheduled_ps`` is its first pass's start (queueing delay = it minus the
    arrival), ``finish_ps`` the end of its last pass, ``num_generated`` the passes it has run.
Ignores: the text encoder and the VAE decoder (once per image, outside the denoising loop),
    preemption, requests of different step counts or resolutions in one run.
Sources: Kodaira et al., "StreamDiffusion: A Pipeline-level Solution for Real-time Interactive
    Generation" (2023), stream batching.
"""

from __future__ import annotations

from collections import deque

from simulator.core.clock import s_to_ps
from simulator.core.contracts import ReplicaLoad
from simulator.core.events import EventKind
from simulator.core.request import FINISHED, RUNNING, WAITING, Request
from workloads.diffusion import DenoiserConfig, step_ops


class DenoiseTimer:
    """Seconds of one denoising pass of ``images`` images on a timing backend, memoised by batch size."""

    def __init__(self, model: DenoiserConfig, resolution_px: int, guidance: bool, backend) -> None:
        self.model, self.resolution_px, self.guidance, self.backend = model, resolution_px, guidance, backend
        self._s: dict[int, float] = {}
        self._ps: dict[int, int] = {}

    def ops(self, images: int) -> list:
        return step_ops(self.model, images, self.resolution_px, self.guidance)

    def pass_s(self, images: int) -> float:
        t = self._s.get(images)
        if t is None:
            t = self._s[images] = sum(self.backend.op_s(op) for op in self.ops(images))
        return t

    def pass_ps(self, images: int) -> int:
        t = self._ps.get(images)
        if t is None:
            t = self._ps[images] = s_to_ps(self.pass_s(images))
        return t


class DiffusionReplica:
    """One GPU serving denoising requests behind the cluster's router (``submit`` / ``load``)."""

    role = "both"

    def __init__(self, cluster, index: int, timer: DenoiseTimer, steps: int, batching: str, max_batch: int,
                 pool: int = 0) -> None:
        self.cluster, self.env, self.rec = cluster, cluster.env, cluster.recorder
        self.index, self.pool = index, pool
        self.timer, self.steps, self.batching, self.max_batch = timer, steps, batching, max_batch
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.by_id: dict[int, Request] = {}
        self.iterations = 0  # denoising passes run
        self.images_passed = 0  # sum over passes of the batch size (= images x steps when all finish)
        self.busy_ps = 0
        self._wake = None
        self.env.process(self._loop())

    # -- the router's side --------------------------------------------------------------
    def submit(self, req: Request) -> None:
        req.replica, req.state = self.index, WAITING
        self.waiting.append(req)
        self.by_id[req.rid] = req
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def load(self) -> ReplicaLoad:
        left = sum(self.steps - r.num_generated for r in self.running) + self.steps * len(self.waiting)
        return ReplicaLoad(self.index, len(self.waiting), len(self.running), left,
                           len(self.running) / self.max_batch)

    # -- the loop -------------------------------------------------------------------------
    def _admit(self) -> None:
        now = self.env.now
        while self.waiting and len(self.running) < self.max_batch:
            req = self.waiting.popleft()
            req.state, req.first_scheduled_ps = RUNNING, now
            self.rec.emit(now, EventKind.SCHEDULED, self.index, req.rid, 0)
            self.running.append(req)

    def _finish(self, req: Request) -> None:
        req.state, req.finish_ps = FINISHED, self.env.now
        self.rec.emit(self.env.now, EventKind.FINISHED, self.index, req.rid, req.num_generated)
        self.cluster.on_done(req)

    def _loop(self):
        env = self.env
        while True:
            if not self.running and not self.waiting:
                self._wake = env.event()
                yield self._wake
                self._wake = None
                continue
            if self.batching == "stream" or not self.running:
                self._admit()
            b = len(self.running)
            n = 1 if self.batching == "stream" else self.steps  # request-level: the batch's passes in one go
            dt = n * self.timer.pass_ps(b)
            yield env.timeout(dt)
            self.iterations += n
            self.images_passed += n * b
            self.busy_ps += dt
            for r in self.running:
                r.num_generated += n
            done = [r for r in self.running if r.num_generated >= self.steps]
            if done:
                self.running = [r for r in self.running if r.num_generated < self.steps]
                for r in done:
                    self._finish(r)
